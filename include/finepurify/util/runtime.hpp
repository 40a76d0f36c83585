// Process-level runtime set-up and facts: threads, BLAS detection (warn on the slow reference
// BLAS), device choice, logging with timestamps, and a progress/ETA line for long loops.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include <torch/types.h>

namespace finepurify::util {

struct BlasInfo {
  std::string library;   ///< resolved path of the BLAS shared object in use ("" if unknown)
  std::string kind;      ///< "openblas", "mkl", "blis", "reference", "unknown"
  bool slow = false;     ///< the reference BLAS (about 10x slower)
};
/// Inspects /proc/self/maps for the loaded libblas and classifies it.
BlasInfo detect_blas();
/// Measured rate (GFLOP/s, 2n³ flops a product) of `product` on two n x n float32 matrices;
/// torch::matmul when product is empty.
double measure_matmul_gflops(int64_t n = 512, int repeats = 5,
                             const std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)>& product = {});

/// Sets torch's intra-op threads (0 = all cores); returns the number in use.
int configure_threads(int threads);
/// "cpu", "cuda", "cuda:1" -> Device; "auto" = CUDA when available. Error on unavailable devices.
torch::Device parse_device(const std::string& s);
/// Waits for the work queued on `device` (a no-op on the CPU): CUDA kernels run asynchronously, so a
/// timer read without it measures only the launches.
void synchronize(torch::Device device);

/// Log a line to stderr prefixed with elapsed time ("[  12.3s] ..."), unless quiet.
void log(const std::string& msg);
void set_quiet(bool q);
bool quiet();
/// Where log lines go instead of stderr (the Python front end's progress callback); {} restores
/// stderr. The sink gets the message without the time prefix and may throw to abort the run.
using LogSink = std::function<void(const std::string&)>;
void set_log_sink(LogSink sink);

/// Tracks progress of `total` units and formats "12/100 (12%) 34.5 ex/s ETA 1m02s".
class Progress {
 public:
  Progress(std::string label, int64_t total, double min_interval_s = 2.0);
  /// Advance by `n` units; prints a line at most every min_interval_s (and at the end).
  void step(int64_t n, const std::string& extra = "");
  double elapsed_s() const;
  double rate() const;  ///< units per second so far

 private:
  std::string label_;
  int64_t total_, done_ = 0;
  double min_interval_;
  std::chrono::steady_clock::time_point start_, last_;
};

std::string format_duration(double seconds);

}  // namespace finepurify::util
