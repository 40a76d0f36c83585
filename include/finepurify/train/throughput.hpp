// Throughput of one model shape on random inputs (behind `finepurify bench`): seconds per inference
// and per fine-tuning step of a (B, T) batch, and the matrix-product FLOPs they do.
#pragma once
#include <cstdint>

#include <torch/torch.h>

#include "finepurify/model/bert.hpp"

namespace finepurify::train {

/// Forward FLOPs per token (matrix products only): per layer 8H^2 (Q,K,V,O) + 4HI (FFN) + 4TH (attention).
double forward_flops_per_token(const model::ModelConfig& c, int64_t T);

struct Throughput {
  int64_t batch = 0, tokens = 0;       ///< B and T
  double inference_seconds = 0;        ///< per batch
  double train_seconds = 0;            ///< per optimizer step (AdamW)
  double forward_flops = 0;            ///< per batch; a training step does about 3x
};

/// Times `steps` batches of random token ids (after one warm-up) in eval and in training mode.
Throughput measure_throughput(model::SequenceClassifierImpl& m, int64_t batch, int64_t seq_len, int steps,
                              torch::Device dev);

}  // namespace finepurify::train
