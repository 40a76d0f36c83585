// libFuzzer target: each tokenizer loader, then encode. The first byte picks the files
// (0: vocab.txt + tokenizer_config.json for BERT, 1: vocab.json + merges.txt for RoBERTa,
// 2: tokenizer.json for BERT, 3: tokenizer.json for RoBERTa); the rest is
// "FILE1\n----\nFILE2\n----\nTEXT\n----\nPAIR". Invariant: every id encode() emits lies in
// [0, vocab_size()), and the mask and type ids have the ids' length, within max_length.
#include "finepurify/error.hpp"
#include "finepurify/text/tokenizer.hpp"
#include "fuzz_common.hpp"

using namespace finepurify;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int mode = data[0] % 4;
  const auto p = fp_fuzz::split(data + 1, size - 1, 4);
  const auto& dir = fp_fuzz::fresh();
  std::string model_type = "bert";
  switch (mode) {
    case 0: fp_fuzz::write(dir / "vocab.txt", p[0]); fp_fuzz::write(dir / "tokenizer_config.json", p[1]); break;
    case 1: fp_fuzz::write(dir / "vocab.json", p[0]); fp_fuzz::write(dir / "merges.txt", p[1]); model_type = "roberta"; break;
    case 2: fp_fuzz::write(dir / "tokenizer.json", p[0]); break;
    default: fp_fuzz::write(dir / "tokenizer.json", p[0]); model_type = "roberta"; break;
  }
  try {
    for (auto compat : {text::Compat::Fast, text::Compat::Slow}) {
      auto tok = text::load_tokenizer(dir.string(), model_type, compat);
      const int64_t v = tok->vocab_size();
      for (int max_len : {0, 7}) {
        const auto e = p[3].empty() ? tok->encode(std::string(p[2]), std::nullopt, max_len)
                                    : tok->encode(std::string(p[2]), std::string(p[3]), max_len);
        if (e.attention_mask.size() != e.input_ids.size() || e.token_type_ids.size() != e.input_ids.size())
          __builtin_trap();
        if (max_len > 0 && static_cast<int>(e.input_ids.size()) > max_len && e.input_ids.size() > 4) __builtin_trap();
        for (auto id : e.input_ids)
          if (id < 0 || id >= v) __builtin_trap();
      }
      for (auto id : tok->tokenize_ids(std::string(p[2])))
        if (id < 0 || id >= v) __builtin_trap();
    }
  } catch (const Error&) {
  }
  return 0;
}
