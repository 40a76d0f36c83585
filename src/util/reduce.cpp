// Reductions of whole tensors in slices (see reduce.hpp).
#include "finepurify/util/reduce.hpp"

#include <algorithm>
#include <vector>

#include "finepurify/error.hpp"

namespace finepurify::util {

namespace {
constexpr int64_t kSlice = int64_t{1} << 20;
}

double sum_float64(const torch::Tensor& t) {
  const auto flat = t.reshape(-1);
  double s = 0;
  for (int64_t b = 0; b < flat.numel(); b += kSlice)
    s += flat.slice(0, b, std::min(flat.numel(), b + kSlice)).sum(torch::kFloat64).item<double>();
  return s;
}

bool all_finite(const torch::Tensor& t) {
  const auto flat = t.reshape(-1);
  for (int64_t b = 0; b < flat.numel(); b += kSlice)
    if (!torch::isfinite(flat.slice(0, b, std::min(flat.numel(), b + kSlice))).all().item<bool>()) return false;
  return true;
}

torch::Tensor row_sums_float64(const torch::Tensor& t) {
  if (t.dim() != 2) throw Error(ErrorKind::Internal, "row_sums_float64: needs a 2-D tensor");
  const int64_t rows = std::max<int64_t>(1, kSlice / std::max<int64_t>(1, t.size(1)));
  std::vector<torch::Tensor> parts;
  for (int64_t b = 0; b < t.size(0); b += rows)
    parts.push_back(t.slice(0, b, std::min(t.size(0), b + rows)).sum(1, false, torch::kFloat64));
  return parts.empty() ? torch::zeros({0}, t.options().dtype(torch::kFloat64)) : torch::cat(parts);
}

}  // namespace finepurify::util
