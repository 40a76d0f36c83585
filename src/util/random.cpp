// Portable seeded randomness (see random.hpp).
#include "finepurify/util/random.hpp"

#include <limits>

#include "finepurify/error.hpp"

namespace finepurify::util {

uint64_t uniform_below(std::mt19937_64& rng, uint64_t n) {
  if (n == 0) throw Error(ErrorKind::Internal, "uniform_below: n must be > 0");
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  const uint64_t limit = max - max % n;  // a multiple of n; draws at or above it are rejected
  uint64_t x;
  do x = rng();
  while (x >= limit);
  return x % n;
}

}  // namespace finepurify::util
