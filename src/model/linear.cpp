// Linear layers through oneDNN on the CPU. torch's float32 addmm (what torch::nn::Linear and
// transformers call) goes to MKL's sgemm, which on this project's AMD CPUs runs its AVX2 code; oneDNN,
// shipped in the same libtorch, dispatches on the instruction set and runs AVX-512 there: 7-36% more
// GFLOP/s on the forward of BERT's Linear shapes at 2 threads (docs/perf.md, bench/linear-kernels.py).
// The forward and the input gradient go through oneDNN; the weight gradient stays torch::mm (MKL was
// faster on two of the three shapes).
#include "finepurify/model/linear.hpp"

#include <ATen/core/dispatch/Dispatcher.h>

namespace finepurify::model {

namespace {
/// mkldnn::_linear_pointwise(Tensor X, Tensor W, Tensor? B, str attr, Scalar?[] scalars, str? algorithm),
/// looked up once; nullopt when this libtorch has no oneDNN.
const std::optional<c10::OperatorHandle>& onednn_op() {
  static const std::optional<c10::OperatorHandle> op = [] {
    if (!at::hasMKLDNN()) return std::optional<c10::OperatorHandle>();
    return c10::Dispatcher::singleton().findSchema({"mkldnn::_linear_pointwise", ""});
  }();
  return op;
}

/// post(x Wᵀ (+ b)) by oneDNN, no autograd. x: (..., in), w: (out, in) (may be strided), b: (out) or
/// undefined; post: oneDNN's post-op ("none", or "gelu" with algorithm "none" (erf) or "tanh").
torch::Tensor onednn_linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b,
                            const char* post = "none", const char* algorithm = nullptr) {
  torch::jit::Stack stack;
  stack.reserve(6);
  stack.emplace_back(x);
  stack.emplace_back(w);
  stack.emplace_back(b.defined() ? c10::IValue(b) : c10::IValue());
  stack.emplace_back(std::string(post));
  stack.emplace_back(c10::List<std::optional<c10::Scalar>>());
  stack.emplace_back(algorithm ? c10::IValue(std::string(algorithm)) : c10::IValue());
  onednn_op()->callBoxed(&stack);
  return stack.back().toTensor();
}

struct OneDnnLinear : torch::autograd::Function<OneDnnLinear> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& w, const torch::Tensor& b) {
    ctx->save_for_backward({x, w});
    return onednn_linear(x, w, b);
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &w = saved[1];
    auto g = grads[0].reshape({-1, w.size(0)});  // (N, out)
    torch::Tensor gx, gw, gb;
    if (ctx->needs_input_grad(0)) gx = onednn_linear(g, w.t(), {}).view(x.sizes());  // (N, in) as x
    if (ctx->needs_input_grad(1)) gw = torch::mm(g.t(), x.reshape({-1, w.size(1)}));   // (out, in)
    if (ctx->needs_input_grad(2)) gb = g.sum(0);                                       // (out)
    return {gx, gw, gb};
  }
};

/// Whether linear(x, w, b) goes through oneDNN: non-empty float32 CPU tensors and the operator present
/// (oneDNN builds no primitive for an empty product; torch returns zeros or an empty tensor there).
bool use_onednn(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  return x.is_cpu() && x.numel() > 0 && w.numel() > 0 && x.scalar_type() == torch::kFloat32 &&
         w.scalar_type() == torch::kFloat32 &&
         (!b.defined() || b.scalar_type() == torch::kFloat32) && onednn_linear_available();
}

bool needs_grad(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  return torch::GradMode::is_enabled() &&
         (x.requires_grad() || w.requires_grad() || (b.defined() && b.requires_grad()));
}
}  // namespace

bool onednn_linear_available() { return onednn_op().has_value(); }

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  if (!use_onednn(x, w, b)) return torch::nn::functional::linear(x, w, b);
  if (!needs_grad(x, w, b)) return onednn_linear(x, w, b);
  // autograd's Function takes defined tensors only: no bias is a zero bias without a gradient
  return OneDnnLinear::apply(x, w, b.defined() ? b : torch::zeros({w.size(0)}, w.options()));
}

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b, Activation act) {
  const bool tanh = act == Activation::gelu_tanh;
  if (use_onednn(x, w, b) && !needs_grad(x, w, b)) return onednn_linear(x, w, b, "gelu", tanh ? "tanh" : "none");
  return torch::gelu(linear(x, w, b), tanh ? "tanh" : "none");
}

}  // namespace finepurify::model
