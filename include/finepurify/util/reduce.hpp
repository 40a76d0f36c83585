// Whole-tensor reductions in slices, without a model-sized temporary: torch's sum with a float64
// dtype first converts its whole float32 input (+182 MiB for a 30,522 x 768 matrix), and
// isfinite(t).all() makes temporaries of the tensor's size.
#pragma once
#include <torch/torch.h>

namespace finepurify::util {
/// Sum of all elements in float64, read in slices of 2^20 elements (CPU or device).
double sum_float64(const torch::Tensor& t);
/// Whether every element is finite, checked in slices of 2^20 elements (torch::isfinite on the whole
/// tensor makes a float temporary of its size and three boolean ones).
bool all_finite(const torch::Tensor& t);
/// Row sums (over dim 1) of a 2-D tensor in float64, read in blocks of about 2^20 elements.
torch::Tensor row_sums_float64(const torch::Tensor& t);
}  // namespace finepurify::util
