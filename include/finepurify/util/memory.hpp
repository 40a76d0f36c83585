// Process memory: figures from /proc (peak and current resident set) for benchmarks and reports, and
// handing the allocator's cached free pages back to the system between long units of work.
#pragma once
#include <cstdint>
#include <memory>

namespace finepurify::util {
/// Peak resident set size (VmHWM) in bytes; 0 if unknown.
int64_t peak_rss_bytes();
/// Current resident set size (VmRSS) in bytes; 0 if unknown.
int64_t current_rss_bytes();
/// The peak resident set size of a stretch of work: a thread samples VmRSS every 10 ms from
/// construction to peak() (a spike shorter than that can be missed). The process's own high-water
/// mark is left alone: resetting it (/proc/self/clear_refs) would hide earlier peaks from getrusage
/// and /usr/bin/time.
class RssSampler {
 public:
  RssSampler();
  ~RssSampler();
  RssSampler(const RssSampler&) = delete;
  RssSampler& operator=(const RssSampler&) = delete;
  /// Stops sampling (at the first call) and returns the largest sample in bytes; 0 if unknown.
  int64_t peak();

 private:
  struct State;
  std::unique_ptr<State> s_;
};
/// Returns the free pages the allocator keeps for reuse to the system (jemalloc's purge of all arenas,
/// when the process runs on jemalloc; glibc's malloc_trim otherwise). The CLI configures jemalloc never
/// to return them by itself (fastest for training); a long-lived process that runs unit after unit
/// (the experiment runner) calls this between units, or its resident memory grows with cached free pages.
void release_free_memory();
}  // namespace finepurify::util
