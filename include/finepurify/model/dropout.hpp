// Dropout with keep masks from a counter-based hash, drawn in parallel (see dropout.cpp).
#pragma once
#include <torch/torch.h>

namespace finepurify::model {

/// The dropout noise for a tensor of `sizes`: each element 1/(1-p) with probability 1-p, else 0, with
/// `options`' dtype and device. On the CPU one 64-bit draw from torch's default CPU generator seeds the
/// mask, so torch::manual_seed drives it; element i keeps when a 32-bit half of the splitmix64 stream's
/// output i/2 falls below (1-p)·2^32, filled in parallel: the same mask for any thread count. On other
/// devices torch::dropout of ones (the device's own generator).
torch::Tensor dropout_noise(at::IntArrayRef sizes, double p, const torch::TensorOptions& options = torch::kFloat32);

/// x * dropout_noise(x.sizes(), p, x.options()) in training on the CPU (p in (0, 1)); x itself when
/// !train or p = 0; torch::dropout (the fused kernel) on other devices. x: any shape.
torch::Tensor dropout(const torch::Tensor& x, double p, bool train);

}  // namespace finepurify::model
