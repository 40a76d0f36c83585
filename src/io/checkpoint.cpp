// Checkpoint folders: one model.safetensors or validated shards, the pickle refusal, and the
// atomic text / tokenizer-file helpers used when writing a model folder.
#include "finepurify/io/checkpoint.hpp"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "finepurify/error.hpp"
#include "finepurify/io/safetensors.hpp"
#include "io/atomic_file.hpp"

namespace finepurify::io {

namespace fs = std::filesystem;

namespace {

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}


[[noreturn]] void refuse_pickle(const fs::path& found) {
  throw Error(ErrorKind::PickleRefused,
              fmt::format("{}: pickle checkpoints (pytorch_model.bin) can run arbitrary code when loaded, so "
                          "finepurify only reads safetensors. Convert the folder once with Python:\n"
                          "  python -c \"from transformers import AutoModel; m = AutoModel.from_pretrained('{}'); "
                          "m.save_pretrained('{}', safe_serialization=True)\"\n"
                          "(use the model's own class, e.g. AutoModelForSequenceClassification, to keep its "
                          "head)",
                          found.string(), found.parent_path().string(), found.parent_path().string()));
}

/// A pickle file given directly (any of torch's usual extensions).
bool is_pickle_file(const std::string& name) {
  return ends_with(name, ".bin") || ends_with(name, ".pt") || ends_with(name, ".pth") ||
         ends_with(name, ".ckpt") || ends_with(name, ".pkl");
}

/// A pickle model checkpoint inside a folder (not e.g. the Trainer's training_args.bin).
bool is_pickle_checkpoint(const std::string& name) {
  return (name.rfind("pytorch_model", 0) == 0 && ends_with(name, ".bin")) || ends_with(name, ".bin.index.json");
}

/// Records every key with its parent key, so duplicates that nlohmann's DOM would drop are seen.
class DuplicateKeySax {
 public:
  using json = nlohmann::json;
  bool found = false;
  std::string duplicate, duplicate_parent;

  bool null() { return true; }
  bool boolean(bool) { return true; }
  bool number_integer(json::number_integer_t) { return true; }
  bool number_unsigned(json::number_unsigned_t) { return true; }
  bool number_float(json::number_float_t, const std::string&) { return true; }
  bool string(std::string&) { return true; }
  bool binary(json::binary_t&) { return true; }
  bool start_object(std::size_t) {
    objects_.push_back({last_key_, {}});
    return true;
  }
  bool key(std::string& k) {
    last_key_ = k;
    if (!objects_.back().keys.insert(k).second) {
      found = true;
      duplicate = k;
      duplicate_parent = objects_.back().parent;
      return false;
    }
    return true;
  }
  bool end_object() {
    objects_.pop_back();
    return true;
  }
  bool start_array(std::size_t) {
    objects_.push_back({last_key_, {}});
    return true;
  }
  bool end_array() {
    objects_.pop_back();
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) { return false; }

 private:
  struct Level {
    std::string parent;
    std::set<std::string> keys;
  };
  std::vector<Level> objects_;
  std::string last_key_;
};

/// Parses the shard index: tensor name -> shard filename, every check as ShardIndexInvalid.
std::map<std::string, std::string> read_weight_map(const fs::path& index_path) {
  const std::string where = index_path.string();
  const std::string text = read_file_bytes(index_path);
  DuplicateKeySax dup;
  nlohmann::json::sax_parse(text, &dup, nlohmann::json::input_format_t::json, true, false);
  if (dup.found)
    throw Error(ErrorKind::ShardIndexInvalid,
                dup.duplicate_parent == "weight_map"
                    ? fmt::format("{}: tensor \"{}\" is listed twice in weight_map", where, dup.duplicate)
                    : fmt::format("{}: key \"{}\" appears twice", where, dup.duplicate));
  nlohmann::json index;
  try {
    index = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorKind::ShardIndexInvalid, fmt::format("{}: invalid JSON: {}", where, e.what()));
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    throw Error(ErrorKind::ShardIndexInvalid, fmt::format("{}: expected an object with a \"weight_map\" object", where));
  const auto& wm = index["weight_map"];
  if (wm.empty()) throw Error(ErrorKind::ShardIndexInvalid, fmt::format("{}: weight_map is empty", where));
  std::map<std::string, std::string> out;
  for (const auto& [tensor, shard] : wm.items()) {
    if (!shard.is_string())
      throw Error(ErrorKind::ShardIndexInvalid,
                  fmt::format("{}: weight_map[\"{}\"] must be a file name, found {}", where, tensor, shard.dump()));
    const std::string name = shard.get<std::string>();
    if (name.empty() || name == "." || name.find('/') != std::string::npos ||
        name.find('\\') != std::string::npos || name.find("..") != std::string::npos ||
        name.find('\0') != std::string::npos)
      throw Error(ErrorKind::ShardIndexInvalid,
                  fmt::format("{}: weight_map[\"{}\"] = \"{}\" is not a plain file name in the folder", where,
                              tensor, name));
    out[tensor] = name;
  }
  return out;
}

}  // namespace

CheckpointReader::CheckpointReader(const std::string& folder) : folder_(folder) {
  const fs::path p(folder);
  std::error_code ec;
  if (is_file(p)) {
    const std::string name = p.filename().string();
    if (is_pickle_file(name)) refuse_pickle(p);
    files_.push_back(std::make_unique<SafetensorsFile>(folder));
  } else if (!fs::is_directory(p, ec)) {
    throw Error(ErrorKind::Io, fmt::format("{}: no such checkpoint folder or .safetensors file", folder));
  } else if (is_file(p / kSingleFile)) {
    files_.push_back(std::make_unique<SafetensorsFile>((p / kSingleFile).string()));
  } else if (is_file(p / kIndexFile)) {
    const fs::path index_path = p / kIndexFile;
    const auto weight_map = read_weight_map(index_path);
    std::map<std::string, std::size_t> shard_index;
    for (const auto& [tensor, shard] : weight_map) {
      if (shard_index.count(shard)) continue;
      const fs::path shard_path = p / shard;
      if (!is_file(shard_path))
        throw Error(ErrorKind::ShardIndexInvalid,
                    fmt::format("{}: shard \"{}\" (of tensor \"{}\") does not exist", index_path.string(), shard,
                                tensor));
      shard_index[shard] = files_.size();
      files_.push_back(std::make_unique<SafetensorsFile>(shard_path.string()));
    }
    for (const auto& [tensor, shard] : weight_map)
      if (!files_[shard_index[shard]]->view().contains(tensor))
        throw Error(ErrorKind::ShardIndexInvalid,
                    fmt::format("{}: tensor \"{}\" is mapped to shard \"{}\", which does not contain it",
                                index_path.string(), tensor, shard));
    for (const auto& [shard, i] : shard_index)
      for (const auto& t : files_[i]->view().tensors()) {
        auto it = weight_map.find(t.name);
        if (it == weight_map.end())
          throw Error(ErrorKind::ShardIndexInvalid,
                      fmt::format("{}: shard \"{}\" holds tensor \"{}\", which weight_map does not list",
                                  index_path.string(), shard, t.name));
        if (it->second != shard)
          throw Error(ErrorKind::ShardIndexInvalid,
                      fmt::format("{}: tensor \"{}\" is in shard \"{}\" and in shard \"{}\"", index_path.string(),
                                  t.name, it->second, shard));
      }
  } else {
    for (fs::directory_iterator it(p, ec), end; !ec && it != end; it.increment(ec))
      if (it->is_regular_file(ec) && is_pickle_checkpoint(it->path().filename().string())) refuse_pickle(it->path());
    throw Error(ErrorKind::Io, fmt::format("{}: no {} or {} in this folder", folder, kSingleFile, kIndexFile));
  }
  for (std::size_t i = 0; i < files_.size(); ++i)
    for (const auto& t : files_[i]->view().tensors()) where_[t.name] = i;
}

CheckpointReader::~CheckpointReader() = default;

std::vector<std::string> CheckpointReader::names() const {
  std::vector<std::string> out;
  for (const auto& [name, i] : where_) out.push_back(name);
  return out;
}

bool CheckpointReader::contains(const std::string& name) const { return where_.count(name) > 0; }

std::vector<int64_t> CheckpointReader::shape(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end())
    throw Error(ErrorKind::StTensorNotFound, fmt::format("{}: checkpoint has no tensor \"{}\"", folder_, name));
  return files_[it->second]->view().info(name).shape;
}

torch::Tensor CheckpointReader::tensor(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end())
    throw Error(ErrorKind::StTensorNotFound, fmt::format("{}: checkpoint has no tensor \"{}\"", folder_, name));
  return files_[it->second]->tensor(name);
}

std::map<std::string, std::string> CheckpointReader::metadata() const { return files_.front()->view().metadata(); }

std::vector<std::string> CheckpointReader::files() const {
  std::vector<std::string> out;
  for (const auto& f : files_) out.push_back(f->path());
  return out;
}

std::string read_file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(ErrorKind::Io, fmt::format("{}: cannot open", path));
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) throw Error(ErrorKind::Io, fmt::format("{}: read failed", path));
  return ss.str();
}

void copy_tokenizer_files(const std::string& from, const std::string& to) {
  static const char* const kNames[] = {"vocab.txt",        "vocab.json",          "merges.txt",
                                       "tokenizer.json",   "tokenizer_config.json", "special_tokens_map.json",
                                       "added_tokens.json"};
  std::error_code ec;
  fs::create_directories(to, ec);
  if (ec) throw Error(ErrorKind::Io, fmt::format("{}: cannot create folder: {}", to, ec.message()));
  for (const char* name : kNames) {
    const fs::path src = fs::path(from) / name;
    if (is_file(src)) write_text_atomic((fs::path(to) / name).string(), read_file_bytes(src));
  }
}

void write_text_atomic(const std::string& path, const std::string& content) {
  AtomicFile out(path);
  out.write(content.data(), content.size());
  out.commit();
}

}  // namespace finepurify::io
