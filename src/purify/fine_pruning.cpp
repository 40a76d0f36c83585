// Fine-pruning (Liu et al., 2018) for transformers: mean FFN activations on clean data and masks of
// the least active neurons per layer (see baselines.hpp).
#include <cmath>

#include <fmt/format.h>

#include "finepurify/error.hpp"
#include "finepurify/purify/baselines.hpp"

namespace finepurify::purify {

namespace {
std::string ffn_name(const model::SequenceClassifierImpl& m, int64_t layer, const std::string& rest) {
  return fmt::format("{}.encoder.layer.{}.{}", m.config.model_type == "roberta" ? "roberta" : "bert", layer, rest);
}
}  // namespace

std::vector<torch::Tensor> ffn_mean_activations(model::SequenceClassifierImpl& m, const train::TokenizedSet& data,
                                                torch::Device device) {
  if (data.size() == 0) throw Error(ErrorKind::InvalidArgument, "fine-pruning: the clean set is empty");
  torch::NoGradGuard ng;
  bool was_training = m.is_training();
  m.eval();
  std::vector<torch::Tensor> sum;
  double tokens = 0;
  for (auto& idx : train::length_sorted_batches(data, 64)) {
    auto b = train::collate(data, idx, device);
    model::ForwardOptions fo;
    fo.output_ffn_activations = true;
    auto out = m.forward(b.input_ids, b.token_type_ids, b.attention_mask, fo);
    auto mask = b.attention_mask.to(torch::kFloat64).unsqueeze(-1);  // (B, T, 1)
    for (std::size_t l = 0; l < out.ffn_activations.size(); ++l) {
      auto s_l = (out.ffn_activations[l].to(torch::kFloat64) * mask).sum(at::IntArrayRef{0, 1}).cpu();  // (I)
      if (sum.size() <= l) sum.push_back(s_l); else sum[l] += s_l;
    }
    tokens += b.attention_mask.sum().item<double>();
  }
  if (was_training) m.train();
  for (auto& t : sum) t = (t / tokens).to(torch::kFloat32);
  return sum;
}

std::map<std::string, torch::Tensor> pruning_masks(model::SequenceClassifierImpl& m,
                                                   const std::vector<torch::Tensor>& mean_activation, double fraction) {
  if (!(fraction >= 0 && fraction <= 1))
    throw Error(ErrorKind::InvalidArgument, fmt::format("pruning fraction {} outside [0, 1]", fraction));
  auto params = m.named_parameters();
  std::map<std::string, torch::Tensor> masks;
  for (std::size_t l = 0; l < mean_activation.size(); ++l) {
    const auto& a = mean_activation[l];
    const int64_t I = a.numel(), k = std::llround(fraction * I);
    auto pruned = torch::zeros({I}, torch::kBool);
    if (k > 0) {
      // Least active first; ties by neuron index (stable sort of the values).
      auto order = std::get<1>(a.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false));
      pruned.index_fill_(0, order.slice(0, 0, k), true);
    }
    auto in_w = ffn_name(m, l, "intermediate.dense.weight"), in_b = ffn_name(m, l, "intermediate.dense.bias"),
         out_w = ffn_name(m, l, "output.dense.weight");
    for (auto& n : {in_w, in_b, out_w})
      if (!params.contains(n)) throw Error(ErrorKind::Internal, "fine-pruning: no parameter " + n);
    masks[in_w] = pruned.unsqueeze(1).expand(params[in_w].sizes()).contiguous();
    masks[in_b] = pruned.clone();
    masks[out_w] = pruned.unsqueeze(0).expand(params[out_w].sizes()).contiguous();
  }
  return masks;
}

}  // namespace finepurify::purify
