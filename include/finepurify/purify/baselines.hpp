// What the baseline defenses add to the shared reset -> fine-tune -> knob search: Fine-pruning's
// activation-based neuron masks and Fine-mixing's E-PUR embedding rows (the others only change the
// indicator: magnitude, random; or the reset fraction: finetune 0, reinit 1).
#pragma once
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "finepurify/model/bert.hpp"
#include "finepurify/train/data.hpp"

namespace finepurify::purify {

/// Mean FFN intermediate activation per neuron over the non-padding tokens of `data`:
/// L tensors of (I), float32, CPU.
std::vector<torch::Tensor> ffn_mean_activations(model::SequenceClassifierImpl& m, const train::TokenizedSet& data,
                                                torch::Device device);
/// Fine-pruning masks (true = pruned) for `fraction` of the least active neurons of every layer:
/// the neuron's intermediate.dense weight row and bias, and its output.dense weight column.
std::map<std::string, torch::Tensor> pruning_masks(model::SequenceClassifierImpl& m,
                                                   const std::vector<torch::Tensor>& mean_activation, double fraction);

/// E-PUR (Fine-mixing's embedding purification): the `rows` vocabulary rows with the largest
/// ||delta_row|| / log(2 + clean count of the token), as a mask over the word-embedding matrix.
torch::Tensor epur_mask(const torch::Tensor& ft_word, const torch::Tensor& pre_word, const train::TokenizedSet& clean,
                        int64_t rows);

}  // namespace finepurify::purify
