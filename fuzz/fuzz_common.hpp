// Shared helpers of the libFuzzer targets: a per-process scratch folder on a RAM disk and a way to
// split one fuzz input into several files. A target treats finepurify::Error as the expected way
// to refuse an input; anything else (a crash, a sanitizer report, another exception) is a finding.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

namespace fp_fuzz {

/// A folder private to this process (under /dev/shm when it exists), emptied by `fresh()`.
inline const std::filesystem::path& scratch() {
  static const std::filesystem::path p = [] {
    const std::filesystem::path base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path();
    auto d = base / ("fp-fuzz-" + std::to_string(getpid()));
    std::filesystem::create_directories(d);
    std::atexit([] { std::error_code ec; std::filesystem::remove_all(scratch(), ec); });
    return d;
  }();
  return p;
}

/// The scratch folder with every file of the previous input removed.
inline const std::filesystem::path& fresh() {
  for (auto& e : std::filesystem::directory_iterator(scratch())) std::filesystem::remove_all(e.path());
  return scratch();
}

inline void write(const std::filesystem::path& p, std::string_view bytes) {
  std::ofstream f(p, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// Splits the input at each "\n----\n" into at most `n` parts (the last takes the rest; missing parts are "").
inline std::vector<std::string_view> split(const uint8_t* data, size_t size, size_t n) {
  std::string_view s(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> parts;
  constexpr std::string_view sep = "\n----\n";
  while (parts.size() + 1 < n) {
    const auto at = s.find(sep);
    if (at == std::string_view::npos) break;
    parts.push_back(s.substr(0, at));
    s.remove_prefix(at + sep.size());
  }
  parts.push_back(s);
  parts.resize(n);
  return parts;
}

}  // namespace fp_fuzz
