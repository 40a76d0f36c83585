// Per-example diagonal empirical Fisher with a sparse word-embedding gradient.
#include "finepurify/purify/fisher.hpp"

#include <fmt/format.h>

#include "finepurify/error.hpp"
#include "finepurify/util/runtime.hpp"

namespace finepurify::purify {

std::map<std::string, torch::Tensor> diagonal_fisher(model::SequenceClassifierImpl& m, const train::TokenizedSet& data,
                                                     torch::Device device, const FisherOptions& opt) {
  const int64_t N = opt.max_examples > 0 ? std::min(opt.max_examples, data.size()) : data.size();
  if (N == 0) throw Error(ErrorKind::InvalidArgument, "Fisher: the clean set is empty");
  m.to(device);
  bool was_training = m.is_training();
  m.eval();  // dropout off
  const std::string word_name = m.word_embedding_name();
  const int64_t pad = m.config.pad_token_id;
  auto word = m.word_embedding_weight();

  std::vector<std::string> names;
  std::vector<torch::Tensor> params;
  std::map<std::string, torch::Tensor> acc;  // float64 accumulators on the device
  for (auto& p : m.named_parameters()) {
    acc[p.key()] = torch::zeros(p.value().sizes(), p.value().options().dtype(torch::kFloat64));
    if (p.key() == word_name) continue;
    names.push_back(p.key());
    params.push_back(p.value());
  }
  auto& word_acc = acc[word_name];
  util::Progress progress("fisher", N, opt.progress ? 5.0 : 1e18);
  for (int64_t n = 0; n < N; ++n) {
    if (data.labels[n] < 0 || data.labels[n] >= m.config.num_labels())
      throw Error(ErrorKind::DataInvalid, fmt::format("Fisher: example {} has label {} outside [0, {})", n,
                                                      data.labels[n], m.config.num_labels()));
    auto b = train::collate(data, {n}, device);  // one example, no padding
    auto ids = b.input_ids.view({-1});
    auto uniq_inv = torch::_unique2(ids, /*sorted=*/true, /*return_inverse=*/true);
    auto uniq = std::get<0>(uniq_inv), inverse = std::get<1>(uniq_inv);
    auto rows = word.detach().index_select(0, uniq).requires_grad_(true);  // (U, H)
    auto embeds = rows.index_select(0, inverse).unsqueeze(0);              // (1, T, H)
    model::ForwardOptions fo;
    fo.inputs_embeds = embeds;
    auto logits = m.forward(b.input_ids, b.token_type_ids, b.attention_mask, fo).logits;
    auto loss = torch::cross_entropy_loss(logits, b.labels);
    std::vector<torch::Tensor> inputs = params;
    inputs.push_back(rows);
    auto grads = torch::autograd::grad({loss}, inputs, {}, /*retain_graph=*/false, /*create_graph=*/false,
                                       /*allow_unused=*/true);
    for (std::size_t i = 0; i < params.size(); ++i)
      if (grads[i].defined()) acc[names[i]].add_(grads[i].to(torch::kFloat64).square());
    auto row_sq = grads.back().to(torch::kFloat64).square();
    row_sq.masked_fill_(uniq.eq(pad).unsqueeze(1), 0.0);  // padding_idx row gets no gradient (as nn.Embedding)
    word_acc.index_add_(0, uniq, row_sq);
    progress.step(1);
  }
  if (was_training) m.train();
  std::map<std::string, torch::Tensor> out;
  for (auto& [k, v] : acc) out[k] = (v / static_cast<double>(N)).to(torch::kFloat32).to(torch::kCPU);
  return out;
}

}  // namespace finepurify::purify
