// Unit tests of the process-memory helpers and the sliced reductions: a stage's sampled peak sees a
// transient allocation without touching the process's own high-water mark; float64 sums, row sums and
// the finiteness check in slices equal torch's whole-tensor forms.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <memory>
#include <thread>

#include "finepurify/error.hpp"
#include "finepurify/util/memory.hpp"
#include "finepurify/util/reduce.hpp"

using namespace finepurify;

TEST(Memory, SamplerSeesATransientAllocationAndLeavesTheHighWaterMark) {
  const int64_t before_hwm = util::peak_rss_bytes();
  if (before_hwm == 0) GTEST_SKIP() << "no /proc/self/status";
  util::RssSampler rss;
  const int64_t start = util::current_rss_bytes();
  constexpr std::size_t kBytes = std::size_t{256} << 20;
  {
    std::unique_ptr<char[]> block(new char[kBytes]);
    std::memset(block.get(), 1, kBytes);  // resident now
    std::this_thread::sleep_for(std::chrono::milliseconds(60));  // several samples while it is held
    EXPECT_EQ(block[kBytes - 1], 1);
  }
  const int64_t peak = rss.peak();
  EXPECT_GE(peak, start + static_cast<int64_t>(kBytes) * 9 / 10);
  EXPECT_EQ(rss.peak(), peak);  // stopped: later calls return the same figure
  EXPECT_GE(util::peak_rss_bytes(), std::max(before_hwm, peak) * 9 / 10);  // the kernel's mark still holds it
}

TEST(Reduce, SlicedFormsEqualTheWholeTensorOnes) {
  torch::manual_seed(5);
  auto t = torch::rand({3001, 777});  // 2.3M elements: three slices, a partial last one
  const double want = t.sum(torch::kFloat64).item<double>();
  EXPECT_NEAR(util::sum_float64(t), want, 1e-12 * want);
  EXPECT_EQ(util::sum_float64(torch::zeros({0})), 0.0);
  EXPECT_TRUE(torch::equal(util::row_sums_float64(t), t.sum(1, false, torch::kFloat64)));
  EXPECT_TRUE(torch::equal(util::row_sums_float64(t.slice(0, 0, 1)), t.slice(0, 0, 1).sum(1, false, torch::kFloat64)));
  EXPECT_TRUE(util::all_finite(t));
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    auto u = t.clone();
    u[3000][776] = bad;  // the last element: the last, partial slice
    EXPECT_FALSE(util::all_finite(u));
    u = t.clone();
    u[0][0] = bad;
    EXPECT_FALSE(util::all_finite(u));
  }
  EXPECT_THROW(util::row_sums_float64(torch::zeros({4})), Error);
}
