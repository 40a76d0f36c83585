// Process memory figures from /proc (peak and current resident set), for benchmarks and reports.
#pragma once
#include <cstdint>

namespace finepurify::util {
/// Peak resident set size (VmHWM) in bytes; 0 if unknown.
int64_t peak_rss_bytes();
/// Current resident set size (VmRSS) in bytes; 0 if unknown.
int64_t current_rss_bytes();
}  // namespace finepurify::util
