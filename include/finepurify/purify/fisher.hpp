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
};

/// Fisher of every parameter of `m` (name -> float32 tensor of the parameter's shape, on CPU).
/// Examples are processed one at a time without padding; the word-embedding gradient is taken
/// only for the rows an example uses (no dense vocab x H gradient per example).
std::map<std::string, torch::Tensor> diagonal_fisher(model::SequenceClassifierImpl& m,
                                                     const train::TokenizedSet& data, torch::Device device,
                                                     const FisherOptions& opt = {});

}  // namespace finepurify::purify
