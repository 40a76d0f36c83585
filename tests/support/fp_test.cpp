// Shared test helpers (see fp_test.hpp).
#include "fp_test.hpp"

#include <array>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace fs = std::filesystem;

namespace fp_test {

namespace {
struct TempRegistry {
  std::vector<fs::path> dirs;
  ~TempRegistry() {
    if (std::getenv("FP_KEEP_TEMP")) return;
    for (auto& d : dirs) { std::error_code ec; fs::remove_all(d, ec); }
  }
};
TempRegistry& registry() { static TempRegistry r; return r; }
}  // namespace

fs::path shared_dir() {
  if (const char* e = std::getenv("FINEPURIFY_SHARED")) return fs::path(e);
  return fs::path(FP_SHARED_DIR);
}
bool have_shared() { return fs::exists(shared_dir() / "data"); }
fs::path source_dir() { return fs::path(FP_SOURCE_DIR); }

fs::path temp_dir(const std::string& tag) {
  std::random_device rd;
  fs::path base = fs::temp_directory_path();
  for (int i = 0; i < 100; ++i) {
    fs::path p = base / ("fp-test-" + tag + "-" + std::to_string(getpid()) + "-" + std::to_string(rd() % 1000000));
    std::error_code ec;
    if (fs::create_directories(p, ec)) { registry().dirs.push_back(p); return p; }
  }
  throw std::runtime_error("cannot create temp dir");
}

std::string cli_path() { return FP_CLI_PATH; }

int run_command(const std::string& cmd, std::string* output) {
  std::string full = cmd + " 2>&1";
  FILE* p = popen(full.c_str(), "r");
  if (!p) return -1;
  std::array<char, 4096> buf{};
  std::string out;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int st = pclose(p);
  if (output) *output = out;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss; ss << f.rdbuf(); return ss.str();
}
void write_file(const fs::path& p, const std::string& content) {
  std::ofstream f(p, std::ios::binary); f << content;
}

}  // namespace fp_test
