// Hugging Face checkpoint folders: single or sharded safetensors, the pickle refusal, and
// small atomic-write helpers used when writing a model folder.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

namespace finepurify::io {

class SafetensorsFile;

/// All tensors of a checkpoint folder (model.safetensors, or model.safetensors.index.json with
/// shards), loaded lazily per tensor. A folder that only has pytorch_model.bin (pickle) is refused
/// with Error(PickleRefused) explaining how to convert it.
class CheckpointReader {
 public:
  explicit CheckpointReader(const std::string& folder);
  ~CheckpointReader();
  std::vector<std::string> names() const;                ///< all tensor names, sorted
  bool contains(const std::string& name) const;
  std::vector<int64_t> shape(const std::string& name) const;
  torch::Tensor tensor(const std::string& name) const;     ///< CPU copy, stored dtype
  std::map<std::string, std::string> metadata() const;     ///< __metadata__ of the (first) file
  std::vector<std::string> files() const;                  ///< the safetensors files read

 private:
  std::string folder_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, std::size_t> where_;  // tensor name -> index into files_
};

/// Copy tokenizer files (vocab.txt, vocab.json, merges.txt, tokenizer.json, tokenizer_config.json,
/// special_tokens_map.json, added_tokens.json) that exist in `from` into `to`.
void copy_tokenizer_files(const std::string& from, const std::string& to);

/// The whole file as bytes (Error(Io) naming `path` when it cannot be read).
std::string read_file_bytes(const std::string& path);

/// Write `content` to `path` atomically (temp file in the same folder + fsync + rename).
void write_text_atomic(const std::string& path, const std::string& content);

}  // namespace finepurify::io
