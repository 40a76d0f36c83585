// AtomicFile: write a file through a temporary in the same folder, then fsync + rename (internal).
#pragma once
#include <cstddef>
#include <string>

namespace finepurify::io {

/// Creates a hidden temporary file next to `path`. commit() fsyncs it and renames it onto `path`;
/// without commit() (an exception on the way) the destructor removes the temporary, so `path` is
/// either untouched or complete. Errors throw Error(Io) naming `path`.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  void write(const void* data, std::size_t size);
  void commit();

 private:
  std::string path_, temp_;
  int fd_ = -1;
};

}  // namespace finepurify::io
