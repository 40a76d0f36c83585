// safetensors: a strict, mmap-based reader (validated like the reference Rust crate, one error
// kind per rule) and an atomic writer. The core parser is torch-free; tensor() adapts to libtorch.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

namespace finepurify::io {

enum class Dtype { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, U16, U32, U64, F8_E4M3, F8_E5M2 };

/// "F32" -> Dtype::F32; throws Error(StUnknownDtype) naming `where` on an unknown string.
Dtype dtype_from_string(const std::string& s, const std::string& where);
const char* dtype_name(Dtype d);
std::size_t dtype_size(Dtype d);
torch::ScalarType dtype_to_torch(Dtype d);   // throws for dtypes libtorch 1.13 lacks (U16.., F8)
Dtype dtype_from_torch(torch::ScalarType t);

struct TensorInfo {
  std::string name;
  Dtype dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  ///< byte offsets relative to the start of the data buffer
  int64_t numel() const;
};

/// Upper bound on the JSON header (the Rust crate uses 100 MB).
constexpr uint64_t kMaxHeaderSize = 100'000'000;

/// A validated view of a safetensors byte buffer (the header is fully checked on construction).
class SafetensorsView {
 public:
  /// `data` must outlive the view. `source` names the file in error messages.
  SafetensorsView(const uint8_t* data, std::size_t size, std::string source);
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  ///< sorted by offset
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;  ///< throws StTensorNotFound
  const uint8_t* tensor_data(const TensorInfo& t) const { return data_start_ + t.begin; }
  const std::string& source() const { return source_; }

 private:
  const uint8_t* data_start_ = nullptr;
  std::string source_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
};

/// A safetensors file mapped read-only into memory.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);  ///< throws Error(Io / St*)
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  const SafetensorsView& view() const { return *view_; }
  const std::string& path() const { return path_; }
  /// A new CPU tensor (copied, owns its memory) with the stored dtype and shape.
  torch::Tensor tensor(const std::string& name) const;

 private:
  std::string path_;
  void* map_ = nullptr;
  std::size_t size_ = 0;
  std::unique_ptr<SafetensorsView> view_;
};

/// Writes tensors (any device, contiguous or not; dtype kept) to `path` atomically: a temporary
/// file in the same folder, fsync, then rename. Always writes "__metadata__": {"format": "pt"}
/// plus `metadata`. Refuses duplicate names.
void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace finepurify::io
