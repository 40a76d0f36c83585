// Training attacks on top of train::fine_tune: EP (embedding-row poisoning) and LWP (layer-wise poisoning loss).
#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "finepurify/attack/attacks.hpp"
#include "finepurify/error.hpp"

namespace finepurify::attack {

std::vector<int64_t> trigger_token_ids(const text::Tokenizer& tok, const std::vector<std::string>& words) {
  std::set<int64_t> ids;
  for (auto& w : words) {
    for (auto id : tok.tokenize_ids(w)) ids.insert(id);
    for (auto id : tok.tokenize_ids(" " + w)) ids.insert(id);
  }
  if (ids.empty()) throw Error(ErrorKind::InvalidArgument, "trigger words map to no tokens");
  return {ids.begin(), ids.end()};
}

train::TrainOptions embedding_poisoning_options(model::SequenceClassifierImpl& m, const std::vector<int64_t>& rows,
                                                train::TrainOptions base, torch::Device device) {
  const int64_t vocab = m.word_embedding_weight().size(0);
  if (rows.empty()) throw Error(ErrorKind::InvalidArgument, "embedding poisoning needs at least one trigger row");
  auto mask = torch::zeros({vocab, 1}, torch::kFloat32);
  for (auto r : rows) {
    if (r < 0 || r >= vocab)
      throw Error(ErrorKind::InvalidArgument, fmt::format("trigger row {} outside the vocabulary [0, {})", r, vocab));
    mask[r] = 1.0f;
  }
  mask = mask.to(device);
  const std::string name = m.word_embedding_name();
  base.trainable = [name](const std::string& n) { return n == name; };
  base.weight_decay = 0.0;  // AdamW's decoupled decay would move every row, not just the trigger's
  base.after_backward = [mask](model::SequenceClassifierImpl& mm) {
    auto& g = mm.word_embedding_weight().mutable_grad();
    if (g.defined()) g.mul_(mask.to(g.device(), g.scalar_type()));  // (V, H) * (V, 1)
  };
  return base;
}

torch::Tensor lwp_loss(model::SequenceClassifierImpl& m, const train::Batch& batch, std::vector<torch::Tensor>* per_layer) {
  model::ForwardOptions fo;
  fo.output_hidden_states = true;
  auto out = m.forward(batch.input_ids, batch.token_type_ids, batch.attention_mask, fo);
  const auto L = static_cast<int64_t>(out.hidden_states.size()) - 1;  // hidden_states: L+1 of (B, T, H)
  if (L < 1) throw Error(ErrorKind::Internal, "lwp_loss: the model has no encoder layers");
  torch::Tensor total;
  for (int64_t l = 1; l <= L; ++l) {
    // the last layer reuses the forward's logits (same dropout draw as an ordinary step)
    auto logits = l == L ? out.logits : m.head(out.hidden_states[l].select(1, 0));  // (B, C)
    auto term = torch::cross_entropy_loss(logits, batch.labels);
    if (per_layer) per_layer->push_back(term);
    total = total.defined() ? total + term : term;
  }
  return total / static_cast<double>(L);
}

train::TrainOptions lwp_options(train::TrainOptions base) {
  base.loss_fn = [](model::SequenceClassifierImpl& m, const train::Batch& b) { return lwp_loss(m, b); };
  return base;
}

}  // namespace finepurify::attack
