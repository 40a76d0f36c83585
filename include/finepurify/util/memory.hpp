// Process memory: figures from /proc (peak and current resident set) for benchmarks and reports, and
// handing the allocator's cached free pages back to the system between long units of work.
#pragma once
#include <cstdint>

namespace finepurify::util {
/// Peak resident set size (VmHWM) in bytes; 0 if unknown.
int64_t peak_rss_bytes();
/// Current resident set size (VmRSS) in bytes; 0 if unknown.
int64_t current_rss_bytes();
/// Returns the free pages the allocator keeps for reuse to the system (jemalloc's purge of all arenas,
/// when the process runs on jemalloc; glibc's malloc_trim otherwise). The CLI configures jemalloc never
/// to return them by itself (fastest for training); a long-lived process that runs unit after unit
/// (the experiment runner) calls this between units, or its resident memory grows with cached free pages.
void release_free_memory();
}  // namespace finepurify::util
