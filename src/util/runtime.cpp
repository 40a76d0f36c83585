// Runtime set-up: threads, BLAS detection, devices, logging and progress lines.
#include "finepurify/util/runtime.hpp"

#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <torch/torch.h>

#include "finepurify/error.hpp"

namespace finepurify::util {

namespace {
const auto g_start = std::chrono::steady_clock::now();
bool g_quiet = false;
std::mutex g_log_mutex;
LogSink g_sink;
}  // namespace

BlasInfo detect_blas() {
  BlasInfo info;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    auto pos = line.find('/');
    if (pos == std::string::npos) continue;
    std::string path = line.substr(pos);
    auto base = path.substr(path.rfind('/') + 1);
    bool is_blas = base.find("blas") != std::string::npos || base.find("libmkl") != std::string::npos;
    if (!is_blas || base.find("cublas") != std::string::npos) continue;
    info.library = path;
    if (path.find("openblas") != std::string::npos) { info.kind = "openblas"; break; }
    if (path.find("mkl") != std::string::npos) { info.kind = "mkl"; break; }
    if (path.find("blis") != std::string::npos) { info.kind = "blis"; break; }
    if (path.find("atlas") != std::string::npos) { info.kind = "atlas"; break; }
    // Debian's reference BLAS lives at .../blas/libblas.so.3
    if (path.find("/blas/libblas.so") != std::string::npos) info.kind = "reference";
  }
  if (info.kind.empty()) {
    // No separate BLAS library mapped: libtorch carries its own (PyPI wheels link MKL statically);
    // its build configuration names it.
    const std::string cfg = at::show_config();
    auto pos = cfg.find("BLAS_INFO=");
    if (pos != std::string::npos) {
      auto end = cfg.find_first_of(", \n", pos);
      info.kind = cfg.substr(pos + 10, end == std::string::npos ? std::string::npos : end - pos - 10);
      info.library = "libtorch (built in)";
    }
  }
  if (info.kind.empty()) info.kind = "unknown";
  info.slow = info.kind == "reference";
  return info;
}

double measure_matmul_gflops(int64_t n, int repeats,
                             const std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)>& product) {
  torch::NoGradGuard ng;
  auto a = torch::randn({n, n}), b = torch::randn({n, n});
  auto mul = [&] { return product ? product(a, b) : torch::matmul(a, b); };
  auto c = mul();  // warm-up
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < repeats; ++i) c = mul();
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return 2.0 * n * n * n * repeats / s / 1e9;
}

int configure_threads(int threads) {
  int n = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(n);
  return n;
}

torch::Device parse_device(const std::string& s) {
  if (s == "auto") return torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  try {
    torch::Device d(s);
    if (d.is_cuda() && !torch::cuda::is_available())
      throw Error(ErrorKind::InvalidArgument, "--device " + s + ": CUDA is not available in this libtorch build/machine");
    return d;
  } catch (const c10::Error&) {
    throw Error(ErrorKind::InvalidArgument, "--device '" + s + "' is not a device (use cpu, cuda, cuda:N or auto)");
  }
}

void synchronize(torch::Device device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.has_index() ? device.index() : -1);
}

void set_quiet(bool q) { g_quiet = q; }
void set_log_sink(LogSink sink) {
  std::lock_guard<std::mutex> lock(g_log_mutex);
  g_sink = std::move(sink);
}
bool quiet() { return g_quiet; }

void log(const std::string& msg) {
  if (g_quiet) return;
  double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - g_start).count();
  LogSink sink;
  {
    std::lock_guard<std::mutex> lock(g_log_mutex);
    sink = g_sink;
  }
  if (sink) return sink(msg);  // outside the lock: the sink may take its own (Python's GIL)
  std::lock_guard<std::mutex> lock(g_log_mutex);
  std::cerr << fmt::format("[{:7.1f}s] {}\n", t, msg) << std::flush;
}

std::string format_duration(double s) {
  if (!(s >= 0) || s > 1e7) return "?";
  int64_t t = static_cast<int64_t>(s + 0.5);
  if (t < 60) return fmt::format("{}s", t);
  if (t < 3600) return fmt::format("{}m{:02d}s", t / 60, t % 60);
  return fmt::format("{}h{:02d}m", t / 3600, (t % 3600) / 60);
}

Progress::Progress(std::string label, int64_t total, double min_interval_s)
    : label_(std::move(label)), total_(total), min_interval_(min_interval_s),
      start_(std::chrono::steady_clock::now()), last_(start_) {}

double Progress::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}
double Progress::rate() const { double e = elapsed_s(); return e > 0 ? done_ / e : 0.0; }

void Progress::step(int64_t n, const std::string& extra) {
  done_ += n;
  auto now = std::chrono::steady_clock::now();
  bool end = done_ >= total_;
  if (!end && std::chrono::duration<double>(now - last_).count() < min_interval_) return;
  last_ = now;
  double r = rate();
  double eta = r > 0 ? (total_ - done_) / r : -1;
  log(fmt::format("{} {}/{} ({:.0f}%) {:.1f}/s {}{}{}", label_, done_, total_,
                  total_ > 0 ? 100.0 * done_ / total_ : 100.0, r, end ? "done in " : "ETA ",
                  format_duration(end ? elapsed_s() : eta), extra.empty() ? "" : "  " + extra));
}

}  // namespace finepurify::util
