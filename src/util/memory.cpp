// Reads VmHWM / VmRSS from /proc/self/status.
#include "finepurify/util/memory.hpp"

#include <fstream>
#include <string>

namespace finepurify::util {

static int64_t status_kb(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const std::string k = std::string(key) + ":";
  while (std::getline(f, line))
    if (line.rfind(k, 0) == 0) return std::stoll(line.substr(k.size())) * 1024;
  return 0;
}

int64_t peak_rss_bytes() { return status_kb("VmHWM"); }
int64_t current_rss_bytes() { return status_kb("VmRSS"); }

}  // namespace finepurify::util
