// Linear layers: y = x Wᵀ + b, on the CPU through oneDNN's matrix product (see linear.cpp).
#pragma once
#include <torch/torch.h>

namespace finepurify::model {

/// x Wᵀ + b. x: (..., in), w: (out, in), b: (out) or undefined -> (..., out). float32 CPU tensors go
/// through oneDNN (mkldnn::_linear_pointwise, in the same libtorch) with a backward of its own (input
/// gradient through oneDNN, weight gradient torch::mm, bias gradient a column sum); anything else, or
/// a libtorch without that operator, is torch::nn::functional::linear. Differentiable in x, w and b.
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b);

/// An activation applied to a Linear's output.
enum class Activation { gelu_erf, gelu_tanh };

/// act(x Wᵀ + b), shapes as linear(). Without autograd on a float32 CPU tensor, one oneDNN call with the
/// activation fused into the product (no second pass over the (..., out) output); otherwise linear()
/// then torch::gelu (erf or tanh form). Equal to the unfused result at float32 rounding.
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b, Activation act);

/// Whether linear() finds oneDNN's operator in the libtorch it runs on.
bool onednn_linear_available();

}  // namespace finepurify::model
