// Dropout with keep masks from a counter-based hash, drawn in parallel. torch's CPU bernoulli_ (what
// torch::dropout and the attention kernels' dropout call) fills its mask from one mt19937 stream, one
// element after another on one thread while the other waits: a MiniLM 32 x 64 training step spends
// 12-17% of its time on dropout (docs/perf.md). Element i's keep draw is a 32-bit half of
// splitmix64(seed + (i/2 + 1) * golden gamma) — the splitmix64 stream indexed directly, so any chunk is
// filled on any thread, the mask is the same for any thread count, and the loop vectorises.
#include "finepurify/model/dropout.hpp"

#include <algorithm>
#include <cstdint>
#include <mutex>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>

#include "finepurify/error.hpp"

namespace finepurify::model {

namespace {
/// splitmix64's output function (Steele, Lea, Flood 2014) on its state after `n` steps from `seed`.
inline uint64_t splitmix64_at(uint64_t seed, uint64_t n) {
  uint64_t z = seed + n * 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
}  // namespace

torch::Tensor dropout_noise(at::IntArrayRef sizes, double p, const torch::TensorOptions& options) {
  if (!(p > 0 && p < 1)) throw Error(ErrorKind::Internal, fmt::format("dropout_noise: p = {} outside (0, 1)", p));
  if (options.device().type() != torch::kCPU) return torch::dropout(torch::ones(sizes, options), p, /*train=*/true);
  uint64_t seed = 0;
  {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    seed = at::check_generator<at::CPUGeneratorImpl>(gen)->random64();
  }
  auto noise = torch::empty(sizes, torch::kFloat32);
  float* out = noise.data_ptr<float>();
  const int64_t n = noise.numel();
  const float scale = 1.0f / static_cast<float>(1.0 - p);
  // keep when a uniform 32-bit draw falls below (1 - p) * 2^32
  const uint32_t keep_below = static_cast<uint32_t>(std::min(4294967295.0, (1.0 - p) * 4294967296.0));
  const int64_t pairs = (n + 1) / 2;
  at::parallel_for(0, pairs, int64_t{1} << 15, [&](int64_t b, int64_t e) {
    const int64_t whole = std::min(e, n / 2);
    for (int64_t j = b; j < whole; ++j) {
      const uint64_t h = splitmix64_at(seed, static_cast<uint64_t>(j) + 1);
      out[2 * j] = static_cast<uint32_t>(h) < keep_below ? scale : 0.0f;
      out[2 * j + 1] = static_cast<uint32_t>(h >> 32) < keep_below ? scale : 0.0f;
    }
    if (e > whole && n % 2 == 1)  // the odd last element: the low half of the last pair's hash
      out[n - 1] = static_cast<uint32_t>(splitmix64_at(seed, static_cast<uint64_t>(n / 2) + 1)) < keep_below ? scale : 0.0f;
  });
  return noise.to(options.dtype());
}

torch::Tensor dropout(const torch::Tensor& x, double p, bool train) {
  if (!train || p == 0) return x;
  if (p >= 1) return x * 0;  // as torch::dropout: everything dropped
  if (!x.is_cpu()) return torch::dropout(x, p, /*train=*/true);
  return x * dropout_noise(x.sizes(), p, x.options());
}

}  // namespace finepurify::model
