// AdamW as one fused kernel per parameter group (at::_fused_adamw_, what torch.optim.AdamW(fused=True)
// runs): the update of torch::optim::AdamW (decoupled weight decay, bias-corrected moments, no
// amsgrad) without its per-parameter loop of small kernels.
#pragma once
#include <vector>

#include <torch/torch.h>

namespace finepurify::train {

class FusedAdamW {
 public:
  struct Options {
    double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  };
  FusedAdamW() = default;
  explicit FusedAdamW(Options o) : opt_(o) {}
  /// A group of parameters sharing one weight decay; their moments start at zero.
  void add_group(const std::vector<torch::Tensor>& params, double weight_decay);
  /// Drops every gradient (as torch's zero_grad(set_to_none = true)).
  void zero_grad();
  /// One update at learning rate `lr` of every parameter that has a gradient.
  void step(double lr);

 private:
  struct Group {
    std::vector<torch::Tensor> params, exp_avg, exp_avg_sq, steps;  ///< steps: float32 scalars, one each
    double weight_decay = 0;
  };
  Options opt_;
  std::vector<Group> groups_;
};

}  // namespace finepurify::train
