// Tokenised datasets and padded batches (dynamic padding to the longest example in a batch).
#pragma once
#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "finepurify/model/config.hpp"
#include "finepurify/text/dataset.hpp"
#include "finepurify/text/tokenizer.hpp"

namespace finepurify::train {

struct TokenizedSet {
  std::vector<text::Encoding> encodings;
  std::vector<int64_t> labels;  ///< -1 when unlabelled
  int64_t pad_id = 0;
  int64_t size() const { return static_cast<int64_t>(encodings.size()); }
  int64_t num_tokens() const;
};

/// Reads a labelled task file (TSV/CSV/JSONL), mapping label names through the model's id2label
/// when they are not the generic LABEL_i. Throws Error(DataInvalid) naming the file when it is empty.
text::Dataset read_task_data(const std::string& path, const model::ModelConfig& c, bool require_labels = true,
                             const std::string& text_column = "", const std::string& pair_column = "",
                             const std::string& label_column = "label");

/// Tokenise every example (truncation longest_first to max_length).
TokenizedSet tokenize(const text::Tokenizer& tok, const text::Dataset& data, int max_length);
/// The subset of rows `idx`.
TokenizedSet subset(const TokenizedSet& s, const std::vector<int64_t>& idx);

struct Batch {
  torch::Tensor input_ids, token_type_ids, attention_mask;  ///< (B, T) int64
  torch::Tensor labels;                                     ///< (B) int64
  int64_t num_tokens = 0;                                   ///< real (unpadded) tokens
};

/// Right-pads rows `idx` to the longest of them.
Batch collate(const TokenizedSet& s, const std::vector<int64_t>& idx, torch::Device device);
/// Splits 0..n-1 into batches; shuffled with a seeded generator when `shuffle`.
std::vector<std::vector<int64_t>> make_batches(int64_t n, int64_t batch_size, bool shuffle, uint64_t seed);
/// Like make_batches without shuffling but grouping similar lengths (for fast inference).
std::vector<std::vector<int64_t>> length_sorted_batches(const TokenizedSet& s, int64_t batch_size);
/// Shuffled training batches of similar lengths (less padding): a seeded permutation cut into windows
/// of `window` batches, each window sorted by length and cut into batches, then the batch order
/// shuffled. Every row once per call; deterministic in `seed`. window <= 1: same as make_batches.
std::vector<std::vector<int64_t>> length_grouped_batches(const TokenizedSet& s, int64_t batch_size, int64_t window,
                                                         uint64_t seed);

}  // namespace finepurify::train
