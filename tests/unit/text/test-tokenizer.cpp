// Unit tests of the tokenizers on small hand-made vocabularies: WordPiece and byte-level BPE
// pieces, special tokens, pairs, truncation (slow vs fast), long words and malformed files.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <thread>

#include "finepurify/error.hpp"
#include "finepurify/text/tokenizer.hpp"
#include "fp_test.hpp"

namespace fs = std::filesystem;
using finepurify::Error;
using finepurify::ErrorKind;
using finepurify::text::Compat;
using finepurify::text::load_tokenizer;
using finepurify::text::Tokenizer;
using Ids = std::vector<int64_t>;

namespace {

// ids: [PAD]0 [UNK]1 [CLS]2 [SEP]3 [MASK]4 hello5 world6 un7 ##aff8 ##able9 ,10 !11 a12 ##a13 cafe14 the15 ##s16 e17 中18
const char* kBertVocab =
    "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nworld\nun\n##aff\n##able\n,\n!\na\n##a\ncafe\nthe\n##s\ne\n中\n";

fs::path bert_dir(const std::string& config = "") {
  fs::path d = fp_test::temp_dir("wp");
  fp_test::write_file(d / "vocab.txt", kBertVocab);
  if (!config.empty()) fp_test::write_file(d / "tokenizer_config.json", config);
  return d;
}

// Byte-level vocabulary: specials, a few bytes and merges.
fs::path bpe_dir() {
  fs::path d = fp_test::temp_dir("bpe");
  // Ġ = space byte. merges: h e, l l, he ll, hell o, Ġ w, o r, Ġw or, Ġwor l, Ġworl d
  fp_test::write_file(d / "vocab.json",
                      R"({"<s>":0,"<pad>":1,"</s>":2,"<unk>":3,"h":4,"e":5,"l":6,"o":7,"Ġ":8,"w":9,"r":10,"d":11,)"
                      R"("he":12,"ll":13,"hell":14,"hello":15,"Ġw":16,"or":17,"Ġwor":18,"Ġworl":19,"Ġworld":20,)"
                      R"("!":21,"'":22,"s":23,"<mask>":24})");
  fp_test::write_file(d / "merges.txt",
                      "#version: 0.2\nh e\nl l\nhe ll\nhell o\nĠ w\no r\nĠw or\nĠwor l\nĠworl d\n");
  return d;
}

}  // namespace

TEST(WordPiece, BasicPiecesAndSpecials) {
  auto tok = load_tokenizer(bert_dir().string(), "bert");
  EXPECT_EQ(tok->kind(), "wordpiece");
  EXPECT_EQ(tok->tokenize_ids("Hello, WORLD!"), (Ids{5, 10, 6, 11}));
  EXPECT_EQ(tok->tokenize_ids("unaffable"), (Ids{7, 8, 9}));
  EXPECT_EQ(tok->tokenize_ids("unknownword"), (Ids{1}));
  EXPECT_EQ(tok->tokenize_ids("Café"), (Ids{14}));           // lower-case + accent stripping
  EXPECT_EQ(tok->tokenize_ids("he\u0301llo"), (Ids{5}));      // combining accent
  EXPECT_EQ(tok->tokenize_ids("a中a"), (Ids{12, 18, 12}));    // CJK characters split
  EXPECT_EQ(tok->tokenize_ids("hello\x01world"), (Ids{1}));   // control char deleted: "helloworld"
  EXPECT_EQ(tok->tokenize_ids("hello[MASK]world"), (Ids{5, 4, 6}));
  EXPECT_EQ(tok->tokenize_ids("[mask]"), (Ids{1, 1, 1}));     // case-sensitive: [ mask ] pieces
  EXPECT_EQ(tok->tokenize_ids(" [CLS]  hello [SEP] "), (Ids{2, 5, 3}));
  EXPECT_EQ(tok->tokenize_ids(""), Ids{});
  EXPECT_EQ(tok->token_to_id("[MASK]"), 4);
  EXPECT_EQ(tok->id_to_token(6), "world");
  EXPECT_EQ(tok->pad_id(), 0);
  EXPECT_EQ(tok->vocab_size(), 19);
  auto sp = tok->special_ids();
  std::sort(sp.begin(), sp.end());
  EXPECT_EQ(sp, (Ids{0, 1, 2, 3, 4}));  // [PAD] [UNK] [CLS] [SEP] [MASK]
}

TEST(WordPiece, ConfigOptions) {
  auto cased = load_tokenizer(bert_dir(R"({"do_lower_case": false})").string(), "bert");
  EXPECT_EQ(cased->tokenize_ids("Hello hello"), (Ids{1, 5}));
  EXPECT_EQ(cased->tokenize_ids("café"), (Ids{1}));  // no accent stripping when not lower-casing
  auto keep = load_tokenizer(bert_dir(R"({"strip_accents": false})").string(), "bert");
  EXPECT_EQ(keep->tokenize_ids("Café"), (Ids{1}));
  auto nocjk = load_tokenizer(bert_dir(R"({"tokenize_chinese_chars": false})").string(), "bert");
  EXPECT_EQ(nocjk->tokenize_ids("a中a"), (Ids{1}));
}

TEST(WordPiece, LongWords) {
  auto tok = load_tokenizer(bert_dir().string(), "bert");
  EXPECT_EQ(tok->tokenize_ids(std::string(100, 'a')).size(), 100u);  // a ##a ... (100 chars allowed)
  EXPECT_EQ(tok->tokenize_ids(std::string(101, 'a')), (Ids{1}));      // > max_input_chars_per_word
  EXPECT_EQ(tok->tokenize_ids(std::string(101, 'a') + " hello"), (Ids{1, 5}));
}

TEST(WordPiece, EncodePairsAndTruncation) {
  auto fast = load_tokenizer(bert_dir().string(), "bert", Compat::Fast);
  auto slow = load_tokenizer(bert_dir().string(), "bert", Compat::Slow);
  auto e = fast->encode("hello world", std::string("un"), 0);
  EXPECT_EQ(e.input_ids, (Ids{2, 5, 6, 3, 7, 3}));
  EXPECT_EQ(e.token_type_ids, (Ids{0, 0, 0, 0, 1, 1}));
  EXPECT_EQ(e.attention_mask, (Ids{1, 1, 1, 1, 1, 1}));
  // Single sequence cut to max_length including [CLS] [SEP].
  EXPECT_EQ(fast->encode("hello world hello world", std::nullopt, 4).input_ids, (Ids{2, 5, 6, 3}));
  // Odd budget, both sequences cut: slow keeps the odd token in the first text, fast in the longer.
  // a: 4 tokens, b: 5 tokens, max_length 8 -> budget 5.
  const std::string a = "hello world hello world", b = "a a a a a";
  EXPECT_EQ(slow->encode(a, b, 8).input_ids, (Ids{2, 5, 6, 5, 3, 12, 12, 3}));
  EXPECT_EQ(fast->encode(a, b, 8).input_ids, (Ids{2, 5, 6, 3, 12, 12, 12, 3}));
  // Even budget: identical.
  EXPECT_EQ(slow->encode(a, b, 9).input_ids, fast->encode(a, b, 9).input_ids);
  // Only the longer one cut: identical.
  EXPECT_EQ(slow->encode("hello", b, 6).input_ids, (Ids{2, 5, 3, 12, 12, 3}));
  EXPECT_EQ(fast->encode("hello", b, 6).input_ids, (Ids{2, 5, 3, 12, 12, 3}));
  // Empty text_pair: slow encodes an empty segment, fast a single sequence.
  EXPECT_EQ(slow->encode("hello", std::string(""), 0).input_ids, (Ids{2, 5, 3, 3}));
  EXPECT_EQ(slow->encode("hello", std::string(""), 0).token_type_ids, (Ids{0, 0, 0, 1}));
  EXPECT_EQ(fast->encode("hello", std::string(""), 0).input_ids, (Ids{2, 5, 3}));
  // Slow leaves a single sequence alone when the cut would remove all of it (transformers logs an
  // error instead); fast truncates to what is left.
  EXPECT_EQ(slow->encode("hello", std::nullopt, 2).input_ids, (Ids{2, 5, 3}));
  EXPECT_EQ(fast->encode("hello", std::nullopt, 2).input_ids, (Ids{2, 3}));
  // No truncation when it fits.
  EXPECT_EQ(fast->encode("hello", std::nullopt, 3).input_ids, (Ids{2, 5, 3}));
}

TEST(WordPiece, UnassignedCodePoints) {
  // U+0378 is unassigned; U+1FAE8 is new in Unicode 15 (unassigned for Python 3.11).
  auto slow = load_tokenizer(bert_dir().string(), "bert", Compat::Slow);
  auto fast = load_tokenizer(bert_dir().string(), "bert", Compat::Fast);
  EXPECT_EQ(slow->tokenize_ids("hello \xCD\xB8 world"), (Ids{5, 6}));
  EXPECT_EQ(fast->tokenize_ids("hello \xCD\xB8 world"), (Ids{5, 1, 6}));
  EXPECT_EQ(slow->tokenize_ids("hello \xF0\x9F\xAB\xA8"), (Ids{5}));
  EXPECT_EQ(fast->tokenize_ids("hello \xF0\x9F\xAB\xA8"), (Ids{5, 1}));
  // Private use is deleted by both.
  EXPECT_EQ(fast->tokenize_ids("hello \xEE\x80\x80"), (Ids{5}));
}

TEST(Bpe, PiecesSpecialsAndPairs) {
  auto tok = load_tokenizer(bpe_dir().string(), "roberta");
  EXPECT_EQ(tok->kind(), "bpe");
  EXPECT_EQ(tok->tokenize_ids("hello world"), (Ids{15, 20}));
  EXPECT_EQ(tok->tokenize_ids("hello's"), (Ids{15, 22, 23}));  // 's contraction piece
  EXPECT_EQ(tok->tokenize_ids("hello  world"), (Ids{15, 8, 20}));
  EXPECT_EQ(tok->tokenize_ids("hello <mask> world"), (Ids{15, 24, 20}));  // <mask> lstrip
  EXPECT_EQ(tok->tokenize_ids("hello <s>world"), (Ids{15, 8, 0, 9, 17, 6, 11}));
  EXPECT_EQ(tok->tokenize_ids("x"), (Ids{3}));  // byte not in this toy vocabulary -> <unk>
  auto e = tok->encode("hello", std::string("world"), 0);
  EXPECT_EQ(e.input_ids, (Ids{0, 15, 2, 2, 9, 17, 6, 11, 2}));
  EXPECT_EQ(e.token_type_ids, Ids(9, 0));
  EXPECT_EQ(tok->encode("hello world hello", std::nullopt, 4).input_ids, (Ids{0, 15, 20, 2}));
  EXPECT_EQ(tok->pad_id(), 1);
  auto sp = tok->special_ids();
  std::sort(sp.begin(), sp.end());
  EXPECT_EQ(sp, (Ids{0, 1, 2, 3, 24}));  // <s> <pad> </s> <unk> <mask>
  auto slow = load_tokenizer(bpe_dir().string(), "roberta", Compat::Slow);
  EXPECT_EQ(slow->encode("hello", std::string(""), 0).input_ids, (Ids{0, 15, 2, 2, 2}));
  EXPECT_EQ(tok->encode("hello", std::string(""), 0).input_ids, (Ids{0, 15, 2}));
}

TEST(Bpe, TokenizerJsonOnly) {
  fs::path d = fp_test::temp_dir("tokjson");
  fp_test::write_file(d / "tokenizer.json", R"({
    "added_tokens": [{"id": 0, "content": "<s>", "lstrip": false, "rstrip": false, "special": true},
                     {"id": 2, "content": "</s>", "lstrip": false, "rstrip": false, "special": true},
                     {"id": 5, "content": "<mask>", "lstrip": true, "rstrip": false, "special": true}],
    "normalizer": null,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false},
    "post_processor": {"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 0]},
    "model": {"type": "BPE", "vocab": {"<s>": 0, "<pad>": 1, "</s>": 2, "a": 3, "b": 4, "<mask>": 5,
                                        "ab": 6, "Ġ": 7, "Ġab": 8},
              "merges": ["a b", ["Ġ", "ab"]]}})");
  auto tok = load_tokenizer(d.string(), "roberta");
  EXPECT_EQ(tok->tokenize_ids("ab ab <mask>"), (Ids{6, 8, 5}));
  EXPECT_EQ(tok->encode("ab", std::string("ab"), 0).input_ids, (Ids{0, 6, 2, 2, 6, 2}));
}

TEST(WordPiece, TokenizerJsonOnly) {
  fs::path d = fp_test::temp_dir("wpjson");
  fp_test::write_file(d / "tokenizer.json", R"({
    "added_tokens": [{"id": 0, "content": "[PAD]", "special": true}, {"id": 1, "content": "[UNK]", "special": true},
                     {"id": 2, "content": "[CLS]", "special": true}, {"id": 3, "content": "[SEP]", "special": true}],
    "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                   "strip_accents": null, "lowercase": true},
    "pre_tokenizer": {"type": "BertPreTokenizer"},
    "post_processor": {"type": "TemplateProcessing",
      "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
      "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
               {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
               {"SpecialToken": {"id": "[SEP]", "type_id": 1}}]},
    "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
              "max_input_chars_per_word": 100,
              "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "hello": 4, "##s": 5, "é": 6}}})");
  auto tok = load_tokenizer(d.string(), "bert");
  EXPECT_EQ(tok->encode("HELLOS", std::string("x"), 0).input_ids, (Ids{2, 4, 5, 3, 1, 3}));
  EXPECT_EQ(tok->encode("HELLOS", std::string("x"), 0).token_type_ids, (Ids{0, 0, 0, 0, 1, 1}));
}

TEST(TokenizerErrors, MissingAndGarbledFiles) {
  auto expect_invalid = [](const fs::path& d, const std::string& type, const std::string& needle) {
    try {
      load_tokenizer(d.string(), type);
      ADD_FAILURE() << "no error for " << d;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::TokenizerInvalid) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  fs::path empty = fp_test::temp_dir("empty");
  expect_invalid(empty, "bert", "no vocab.txt");
  expect_invalid(empty, "roberta", "vocab.json");
  expect_invalid(empty / "nope", "bert", "not found");

  fs::path bad_utf8 = fp_test::temp_dir("badutf8");
  fp_test::write_file(bad_utf8 / "vocab.txt", "[PAD]\n[UNK]\n\xff\xfe\n[CLS]\n[SEP]\n");
  expect_invalid(bad_utf8, "bert", "vocab.txt:3");

  fs::path no_cls = fp_test::temp_dir("nocls");
  fp_test::write_file(no_cls / "vocab.txt", "[PAD]\n[UNK]\n[SEP]\n");
  expect_invalid(no_cls, "bert", "[CLS]");

  fs::path bad_cfg = bert_dir();
  fp_test::write_file(bad_cfg / "tokenizer_config.json", "{\"do_lower_case\": tru");
  expect_invalid(bad_cfg, "bert", "tokenizer_config.json");

  fs::path bad_merges = bpe_dir();
  fp_test::write_file(bad_merges / "merges.txt", "#version: 0.2\nh e\nl l x\n");
  expect_invalid(bad_merges, "roberta", "merges.txt:3");

  fs::path no_merges = bpe_dir();
  fs::remove(no_merges / "merges.txt");
  expect_invalid(no_merges, "roberta", "merges.txt");

  fs::path bad_json = bpe_dir();
  fp_test::write_file(bad_json / "vocab.json", "{\"a\": 1,\n \"b\": }");
  expect_invalid(bad_json, "roberta", "line 2");

  fs::path bad_ids = bpe_dir();
  fp_test::write_file(bad_ids / "vocab.json", R"({"<s>": "zero"})");
  expect_invalid(bad_ids, "roberta", "not an integer");

  fs::path bad_tj = fp_test::temp_dir("badtj");
  fp_test::write_file(bad_tj / "tokenizer.json", R"({"model": {"type": "Unigram", "vocab": []}})");
  expect_invalid(bad_tj, "", "Unigram");
}

TEST(TokenizerThreads, ConcurrentEncodeIsConsistent) {
  auto tok = load_tokenizer(bpe_dir().string(), "roberta");
  const Ids want = tok->tokenize_ids("hello world hello's world");
  std::vector<std::thread> ts;
  std::atomic<int> bad{0};
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 500; ++i)
        if (tok->tokenize_ids("hello world hello's world") != want) ++bad;
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST(Tokenizer, PairedModelMustCoverEveryId) {
  // Ids from vocab.txt beyond the model's vocab_size used to reach torch ("index out of range in
  // self", exit 70, no file named).
  auto d = bert_dir();
  auto tok = load_tokenizer(d.string(), "bert");
  ASSERT_EQ(tok->vocab_size(), 19);
  EXPECT_NO_THROW(finepurify::text::check_fits_model(*tok, 19, d.string()));
  EXPECT_NO_THROW(finepurify::text::check_fits_model(*tok, 30522, d.string()));  // a padded embedding is fine
  try {
    finepurify::text::check_fits_model(*tok, 18, d.string());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::TokenizerInvalid);
    EXPECT_NE(std::string(e.what()).find(d.string()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("vocab_size is 18"), std::string::npos) << e.what();
  }
}

TEST(Bpe, PieceOutsideAVocabularyWithoutUnkIsDropped) {
  // Found by fuzzing: without <unk> the piece became id -1. The tokenizers crate drops it.
  fs::path d = fp_test::temp_dir("bpe-nounk");
  fp_test::write_file(d / "vocab.json",
                      R"({"<s>":0,"<pad>":1,"</s>":2,"h":4,"e":5,"l":6,"o":7,"Ġ":8,"w":9,"r":10,"d":11,)"
                      R"("he":12,"ll":13,"hell":14,"hello":15})");
  fp_test::write_file(d / "merges.txt", "#version: 0.2\nh e\nl l\nhe ll\nhell o\n");
  auto tok = load_tokenizer(d.string(), "roberta");
  EXPECT_EQ(tok->tokenize_ids("hello x"), (Ids{15, 8}));  // "Ġx": Ġ kept, x dropped
  EXPECT_EQ(tok->tokenize_ids("x"), Ids{});
  auto e = tok->encode("hello x", std::nullopt, 0);
  EXPECT_EQ(e.input_ids, (Ids{0, 15, 8, 2}));
  for (auto id : e.input_ids) {
    EXPECT_GE(id, 0);
    EXPECT_LT(id, tok->vocab_size());
  }
}
