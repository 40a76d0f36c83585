// AdamW through at::_fused_adamw_ (see optimizer.hpp).
#include "finepurify/train/optimizer.hpp"

#include "finepurify/error.hpp"

namespace finepurify::train {

void FusedAdamW::add_group(const std::vector<torch::Tensor>& params, double weight_decay) {
  Group g;
  g.weight_decay = weight_decay;
  for (auto& p : params) {
    if (!p.is_floating_point()) throw Error(ErrorKind::Internal, "FusedAdamW: a parameter that is not floating point");
    g.params.push_back(p);
    g.exp_avg.push_back(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    g.exp_avg_sq.push_back(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    g.steps.push_back(torch::zeros({}, p.options().dtype(torch::kFloat32)));
  }
  groups_.push_back(std::move(g));
}

void FusedAdamW::zero_grad() {
  for (auto& g : groups_)
    for (auto& p : g.params) p.mutable_grad().reset();
}

void FusedAdamW::step(double lr) {
  torch::NoGradGuard ng;
  for (auto& g : groups_) {
    std::vector<torch::Tensor> ps, gs, m, v, st;
    for (std::size_t i = 0; i < g.params.size(); ++i) {
      const auto& grad = g.params[i].grad();
      if (!grad.defined()) continue;  // unused this step: untouched, as torch::optim::AdamW
      ps.push_back(g.params[i]);
      gs.push_back(grad);
      m.push_back(g.exp_avg[i]);
      v.push_back(g.exp_avg_sq[i]);
      st.push_back(g.steps[i]);
    }
    if (ps.empty()) continue;
    at::_foreach_add_(st, 1);
    at::_fused_adamw_(ps, gs, m, v, {}, st, lr, opt_.beta1, opt_.beta2, g.weight_decay, opt_.eps, /*amsgrad=*/false,
                      /*maximize=*/false);
  }
}

}  // namespace finepurify::train
