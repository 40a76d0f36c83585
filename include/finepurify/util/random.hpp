// Portable seeded randomness: the same draws on every standard library (poisoning, augmentation).
#pragma once
#include <cstdint>
#include <random>

namespace finepurify::util {

/// Uniform integer in [0, n) from a 64-bit Mersenne Twister by rejection sampling. Unlike
/// std::uniform_int_distribution, the result is the same on every standard library, so poisoned
/// and augmented sets are reproducible across platforms. Throws Error(Internal) when n == 0.
uint64_t uniform_below(std::mt19937_64& rng, uint64_t n);

}  // namespace finepurify::util
