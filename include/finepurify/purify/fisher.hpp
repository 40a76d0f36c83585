// Diagonal empirical Fisher on clean data: F_i = (1/N) sum_n (d loss_n / d w_i)^2, one squared
// gradient per example (never the square of a batch gradient), dropout off, float64 accumulation.
#pragma once
#include <map>
#include <string>

#include <torch/torch.h>

#include "finepurify/model/bert.hpp"
#include "finepurify/train/data.hpp"

namespace finepurify::purify {

struct FisherOptions {
  int64_t max_examples = 0;  ///< > 0: use only the first N examples
  bool progress = true;
  /// Examples per forward pass (batches of similar lengths). 1 = the per-example reference loop:
  /// one unpadded forward and backward per example (slower; the batched path is checked against it).
  int64_t batch_size = 32;
};

/// Fisher of every parameter of `m` (name -> float32 tensor of the parameter's shape, on CPU).
/// Batched (batch_size > 1): one forward per batch records every Linear's and LayerNorm's inputs
/// (model::ActivationTape), one backward gives the gradients at their outputs, and each example's
/// weight gradient is formed from those (Linear: sum_t g_t x_t^T; LayerNorm: sum_t g_t * xhat_t;
/// biases: sum_t g_t; embeddings: the rows an example uses, summed per row), then squared and summed
/// over the batch in float64. Padding contributes nothing (its gradients are exactly zero).
/// Per-example (batch_size 1): the word-embedding gradient is taken only for the rows an example uses.
std::map<std::string, torch::Tensor> diagonal_fisher(model::SequenceClassifierImpl& m,
                                                     const train::TokenizedSet& data, torch::Device device,
                                                     const FisherOptions& opt = {});

/// Examples per second of diagonal_fisher on `n` random examples of `tokens` tokens each with the
/// given batch size (the `bench` subcommand; one untimed warm-up batch first).
double fisher_throughput(model::SequenceClassifierImpl& m, int64_t n, int64_t tokens, int64_t batch_size,
                         torch::Device device);
/// The same on the rows of `data` (labels taken modulo the model's classes).
double fisher_throughput(model::SequenceClassifierImpl& m, const train::TokenizedSet& data, int64_t batch_size,
                         torch::Device device);

}  // namespace finepurify::purify
