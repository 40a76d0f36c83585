// AtomicFile: temporary file + fsync + rename, removing the temporary on any failure.
#include "io/atomic_file.hpp"

#include <cerrno>
#include <fcntl.h>
#include <filesystem>
#include <random>
#include <system_error>
#include <unistd.h>

#include <fmt/format.h>

#include "finepurify/error.hpp"

namespace finepurify::io {

namespace fs = std::filesystem;

namespace {
std::string errno_text(int e) { return std::system_category().message(e); }
}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  const fs::path p(path_);
  if (!p.has_filename()) throw Error(ErrorKind::Io, fmt::format("{}: not a file path", path_));
  std::random_device rd;
  for (int attempt = 0; attempt < 100; ++attempt) {
    temp_ = (p.parent_path() / fmt::format(".{}.tmp-{}-{:08x}", p.filename().string(), getpid(), rd()))
                .string();
    fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd_ >= 0) return;
    if (errno != EEXIST) break;
  }
  const int e = errno;
  throw Error(ErrorKind::Io, fmt::format("{}: cannot create temporary file {}: {}", path_, temp_, errno_text(e)));
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!temp_.empty()) ::unlink(temp_.c_str());
}

void AtomicFile::write(const void* data, std::size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd_, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      throw Error(ErrorKind::Io, fmt::format("{}: write failed: {}", path_, errno_text(e)));
    }
    p += n;
    size -= static_cast<std::size_t>(n);
  }
}

void AtomicFile::commit() {
  if (::fsync(fd_) != 0) {
    const int e = errno;
    throw Error(ErrorKind::Io, fmt::format("{}: fsync failed: {}", path_, errno_text(e)));
  }
  const int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) {
    const int e = errno;
    throw Error(ErrorKind::Io, fmt::format("{}: close failed: {}", path_, errno_text(e)));
  }
  if (::rename(temp_.c_str(), path_.c_str()) != 0) {
    const int e = errno;
    throw Error(ErrorKind::Io, fmt::format("{}: cannot rename {} onto it: {}", path_, temp_, errno_text(e)));
  }
  temp_.clear();
  // Make the rename itself durable; the file is already complete, so this is best effort.
  fs::path dir = fs::path(path_).parent_path();
  if (dir.empty()) dir = ".";
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace finepurify::io
