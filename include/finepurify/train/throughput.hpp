// Throughput of a model (behind `finepurify bench`): seconds per inference and per fine-tuning step
// on random (B, T) token ids or on fixed batches of real rows, and the matrix-product FLOPs they do.
#pragma once
#include <cstdint>

#include <torch/torch.h>

#include "finepurify/model/bert.hpp"
#include "finepurify/train/data.hpp"

namespace finepurify::train {

/// Forward FLOPs per token (matrix products only): per layer 8H^2 (Q,K,V,O) + 4HI (FFN) + 4TH (attention).
double forward_flops_per_token(const model::ModelConfig& c, int64_t T);

struct Throughput {
  int64_t batch = 0, tokens = 0;       ///< B and the longest T
  double mean_padded_tokens = 0;       ///< T per timed batch, padding included
  double inference_seconds = 0;        ///< per batch
  double train_seconds = 0;            ///< per optimizer step (AdamW)
  double forward_flops = 0;            ///< per batch; a training step does about 3x
};

/// Times `steps` batches of random token ids (after one warm-up) in eval and in training mode.
Throughput measure_throughput(model::SequenceClassifierImpl& m, int64_t batch, int64_t seq_len, int steps,
                              torch::Device dev);
/// The same on `steps` batches taken in turn from `batches` (labels taken modulo the model's classes).
Throughput measure_throughput(model::SequenceClassifierImpl& m, const std::vector<Batch>& batches, int steps,
                              torch::Device dev);
/// Rows 0..B-1, B..2B-1, ... of `data` (a last partial batch dropped) as batches on `dev`, each
/// padded to its longest row, or to `pad_to` tokens when that is longer (0: dynamic padding only).
std::vector<Batch> consecutive_batches(const TokenizedSet& data, int64_t batch, int64_t pad_to, torch::Device dev);

}  // namespace finepurify::train
