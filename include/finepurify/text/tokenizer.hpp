// Tokenizers that reproduce Hugging Face's token for token: BERT WordPiece (vocab.txt) and
// RoBERTa byte-level BPE (vocab.json + merges.txt), or either from tokenizer.json alone.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace finepurify::text {

/// The fast (Rust, AutoTokenizer default) and slow (Python) HF tokenizers differ in three
/// documented cases (pair truncation with an odd budget, empty text_pair, Unicode-unassigned
/// characters for BERT). Fast is the default.
enum class Compat { Fast, Slow };

struct Encoding {
  std::vector<int64_t> input_ids;
  std::vector<int64_t> token_type_ids;
  std::vector<int64_t> attention_mask;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  /// Pieces of one text without special tokens (ids).
  virtual std::vector<int64_t> tokenize_ids(const std::string& text) const = 0;
  /// Full encoding as `tok(text, text_pair, truncation="longest_first", max_length=max_length)`
  /// (max_length 0 = no truncation); no padding (mask all ones).
  virtual Encoding encode(const std::string& text, const std::optional<std::string>& text_pair,
                          int max_length) const = 0;
  virtual std::string id_to_token(int64_t id) const = 0;
  virtual std::optional<int64_t> token_to_id(const std::string& token) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual int64_t pad_id() const = 0;
  /// Ids of the registered special tokens ([CLS], [SEP], <s>, added tokens, ... as configured).
  virtual std::vector<int64_t> special_ids() const { return {}; }
  virtual std::string kind() const = 0;  ///< "wordpiece" or "bpe"
  Compat compat = Compat::Fast;
};

/// Loads the tokenizer of a HF model folder: vocab.txt (+ tokenizer_config.json) for BERT,
/// vocab.json + merges.txt for RoBERTa, else tokenizer.json. `model_type` ("bert"/"roberta")
/// from config.json disambiguates. Throws Error(TokenizerInvalid) naming the file.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& folder, const std::string& model_type,
                                          Compat compat = Compat::Fast);

/// A tokenizer paired with a model: throws TokenizerInvalid, naming `folder`, when it can emit ids
/// >= `model_vocab_size` (the model's embedding rows; vocab.txt, tokenizer.json and added tokens all
/// count), which would index past the embedding matrix.
void check_fits_model(const Tokenizer& tok, int64_t model_vocab_size, const std::string& folder);

/// The tokenizer of a model folder, paired with that model: load_tokenizer, then check_fits_model
/// against the model's `vocab_size` (what every command that encodes text for a model calls).
std::unique_ptr<Tokenizer> load_model_tokenizer(const std::string& folder, const std::string& model_type,
                                                int64_t model_vocab_size, Compat compat = Compat::Fast);

}  // namespace finepurify::text
