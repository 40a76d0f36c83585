// Dropout with keep masks from Philox in parallel chunks. torch's CPU bernoulli_ (what torch::dropout
// and the attention kernels' dropout call) fills its mask from one mt19937 stream, one element after
// another on one thread: 145 ms of a 32 x 64 all-MiniLM-L6-v2 training step on this project's 2-core
// machine, about 1/7 of the step, with the other core waiting (docs/perf.md). A counter-based
// generator gives every chunk its own stream, so the mask is filled on all threads and stays the same
// for any thread count.
#include "finepurify/model/dropout.hpp"

#include <mutex>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/core/PhiloxRNGEngine.h>
#include <fmt/format.h>

#include "finepurify/error.hpp"

namespace finepurify::model {

torch::Tensor dropout_noise(at::IntArrayRef sizes, double p) {
  if (!(p > 0 && p < 1)) throw Error(ErrorKind::Internal, fmt::format("dropout_noise: p = {} outside (0, 1)", p));
  uint64_t seed = 0;
  {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    seed = at::check_generator<at::CPUGeneratorImpl>(gen)->random64();
  }
  auto noise = torch::empty(sizes, torch::kFloat32);
  float* out = noise.data_ptr<float>();
  const int64_t n = noise.numel();
  constexpr int64_t kChunk = int64_t{1} << 16;
  const float scale = 1.0f / static_cast<float>(1.0 - p);
  // keep when a uniform 32-bit draw falls below (1 - p) * 2^32
  const uint64_t keep_below = static_cast<uint64_t>((1.0 - p) * 4294967296.0);
  at::parallel_for(0, (n + kChunk - 1) / kChunk, 1, [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) {
      at::Philox4_32 rng(seed, static_cast<uint64_t>(c), 0);
      for (int64_t i = c * kChunk, end = std::min(n, i + kChunk); i < end; ++i)
        out[i] = static_cast<uint64_t>(rng()) < keep_below ? scale : 0.0f;
    }
  });
  return noise;
}

torch::Tensor dropout(const torch::Tensor& x, double p, bool train) {
  if (!train || p == 0) return x;
  if (p >= 1) return x * 0;  // as torch::dropout: everything dropped
  if (!x.is_cpu()) return torch::dropout(x, p, /*train=*/true);
  return x * dropout_noise(x.sizes(), p).to(x.scalar_type());
}

}  // namespace finepurify::model
