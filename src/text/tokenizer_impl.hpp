// Internal declarations of the text layer's tokenizers: shared encode/truncation logic, special-token
// splitting, and the WordPiece / byte-level BPE implementations with their configurations.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "finepurify/text/tokenizer.hpp"

namespace finepurify::text::detail {

/// A token matched literally in the text (HF registers special tokens as no-split tokens).
struct SpecialToken {
  std::string content;
  int64_t id = -1;
  bool lstrip = false;  ///< swallows the whitespace before it
  bool rstrip = false;  ///< swallows the whitespace after it
};

/// A piece of the input: either a special token (id >= 0) or a text segment [begin, end).
struct Segment {
  std::size_t begin = 0, end = 0;
  int64_t special_id = -1;
  int token_index = -1;  ///< index into SpecialSplitter::tokens() for a special token
};

/// Finds the special tokens in a code-point string (leftmost, longest at a position) and applies
/// their lstrip / rstrip to the neighbouring text segments (Python str.strip whitespace).
class SpecialSplitter {
 public:
  void set(const std::vector<SpecialToken>& tokens);
  void split(const std::u32string& text, std::vector<Segment>& out) const;
  /// Index of the special token matching at `pos`, or -1.
  int match_at(const std::u32string& text, std::size_t pos) const;
  bool empty() const { return tokens_.empty(); }
  const std::vector<SpecialToken>& tokens() const { return tokens_; }
  const std::vector<std::u32string>& contents() const { return contents_; }

 private:
  std::vector<SpecialToken> tokens_;
  std::vector<std::u32string> contents_;
  std::u32string first_chars_;
};

/// How ids of one or two sequences are wrapped (BERT: [CLS] A [SEP] B [SEP], types 0/1;
/// RoBERTa: <s> A </s></s> B </s>, types all 0).
struct PostProcessor {
  int64_t cls_id = -1;
  int64_t sep_id = -1;
  bool double_sep = false;   ///< RoBERTa pair format
  bool pair_types = true;    ///< second segment gets token type 1
  int num_special(bool pair) const { return pair ? (double_sep ? 4 : 3) : 2; }
};

/// Truncates ids (longest_first) to fit `max_length` including `n_special`, the slow or fast way.
void truncate_longest_first(std::vector<int64_t>& a, std::vector<int64_t>* b, int max_length,
                            int n_special, Compat compat);

/// Vocabulary: id -> token and token -> id (string_view lookup without allocation).
class Vocab {
 public:
  /// Adds token with id; a token seen again keeps the later id (as Python dict assignment).
  void add(std::string token, int64_t id);
  void finish();  ///< builds the lookup table; call once after all add()s
  std::optional<int64_t> find(std::string_view token) const {
    auto it = map_.find(token);
    if (it == map_.end()) return std::nullopt;
    return it->second;
  }
  const std::string* token(int64_t id) const {
    if (id < 0 || static_cast<std::size_t>(id) >= by_id_.size() || !has_[static_cast<std::size_t>(id)])
      return nullptr;
    return &by_id_[static_cast<std::size_t>(id)];
  }
  int64_t size() const { return static_cast<int64_t>(by_id_.size()); }
  std::size_t max_token_bytes() const { return max_bytes_; }

 private:
  std::vector<std::pair<std::string, int64_t>> pending_;
  std::vector<std::string> by_id_;
  std::vector<char> has_;
  std::unordered_map<std::string_view, int64_t> map_;  // views into by_id_
  std::size_t max_bytes_ = 0;
};

/// Common parts: encode(), id/token conversion, special tokens.
class TokenizerBase : public Tokenizer {
 public:
  Encoding encode(const std::string& text, const std::optional<std::string>& text_pair,
                  int max_length) const override;
  std::string id_to_token(int64_t id) const override;
  std::optional<int64_t> token_to_id(const std::string& token) const override;
  int64_t vocab_size() const override;
  int64_t pad_id() const override { return pad_id_; }
  std::vector<int64_t> special_ids() const override;

  Vocab vocab;
  SpecialSplitter specials;
  PostProcessor post;
  int64_t pad_id_ = 0;
  int64_t unk_id = -1;
};

struct WordPieceOptions {
  bool do_lower_case = true;
  std::optional<bool> strip_accents;  ///< nullopt: follow do_lower_case
  bool tokenize_chinese_chars = true;
  bool clean_text = true;
  int max_input_chars_per_word = 100;
  std::string continuing_prefix = "##";
};

class WordPieceTokenizer final : public TokenizerBase {
 public:
  WordPieceOptions opt;
  std::vector<int64_t> tokenize_ids(const std::string& text) const override;
  std::string kind() const override { return "wordpiece"; }

 private:
  struct Scratch {
    std::u32string buf, tmp;
    std::string word, cand;
    std::vector<std::size_t> offsets;
  };
  void basic_segment(const char32_t* p, std::size_t n, Scratch& s, std::vector<int64_t>& ids) const;
  /// One whitespace-separated token of the cleaned text: never_split, accents, punctuation, WordPiece.
  void basic_token(const char32_t* tok, std::size_t len, Scratch& s, std::vector<int64_t>& ids) const;
  void word_piece(const char32_t* p, std::size_t n, Scratch& s, std::vector<int64_t>& ids) const;
};

struct BpeMerge {
  int32_t rank;
  int32_t result;
};

class BpeTokenizer final : public TokenizerBase {
 public:
  BpeTokenizer();
  bool add_prefix_space = false;
  /// Adds a merge "a b" (byte-level symbol strings); rank = order of addition.
  void add_merge(const std::string& a, const std::string& b);
  /// Call after the vocabulary and merges are complete.
  void finish_model();
  std::vector<int64_t> tokenize_ids(const std::string& text) const override;
  std::string kind() const override { return "bpe"; }
  /// The byte-level alphabet symbol of byte b (GPT-2 bytes_to_unicode).
  const std::string& byte_symbol(unsigned char b) const { return byte_str_[b]; }

 private:
  int32_t intern(const std::string& s);
  void bpe_word(const std::string& bytes, std::vector<int64_t>& ids) const;
  void pretokenize_and_encode(const char32_t* p, std::size_t n, std::vector<int64_t>& ids) const;

  std::string byte_str_[256];
  std::unordered_map<std::string, int32_t> sym_ids_;
  std::vector<std::string> sym_strs_;
  std::vector<int64_t> sym_vocab_;  ///< symbol -> vocab id (unk when absent)
  std::unordered_map<uint64_t, BpeMerge> merges_;
  int32_t n_merges_ = 0;

  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int64_t>> cache_;
};

}  // namespace finepurify::text::detail
