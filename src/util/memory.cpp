// Reads VmHWM / VmRSS from /proc/self/status and samples VmRSS for a stage's peak; purges the
// allocator's free pages (jemalloc's mallctl, found at run time as a weak symbol so the library links
// without jemalloc, or glibc's malloc_trim).
#include "finepurify/util/memory.hpp"

#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>

// jemalloc's control interface; null unless the process is linked with (or preloads) jemalloc.
extern "C" int mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen)
    __attribute__((weak));

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

struct RssSampler::State {
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  int64_t peak = 0;
  std::thread thread;
};

RssSampler::RssSampler() : s_(new State) {
  s_->peak = current_rss_bytes();
  s_->thread = std::thread([s = s_.get()] {
    std::unique_lock<std::mutex> lock(s->mu);
    while (!s->cv.wait_for(lock, std::chrono::milliseconds(10), [s] { return s->stop; })) {
      lock.unlock();
      const int64_t r = current_rss_bytes();
      lock.lock();
      s->peak = std::max(s->peak, r);
    }
  });
}

int64_t RssSampler::peak() {
  if (s_->thread.joinable()) {
    {
      std::lock_guard<std::mutex> lock(s_->mu);
      s_->stop = true;
    }
    s_->cv.notify_all();
    s_->thread.join();
    s_->peak = std::max(s_->peak, current_rss_bytes());
  }
  return s_->peak;
}

RssSampler::~RssSampler() { peak(); }

void release_free_memory() {
  if (mallctl != nullptr) {
    // "arena.<MALLCTL_ARENAS_ALL>.purge" (4096 in jemalloc 5): dirty and muzzy pages of every arena.
    mallctl("arena.4096.purge", nullptr, nullptr, nullptr, 0);
    return;
  }
  malloc_trim(0);
}

}  // namespace finepurify::util
