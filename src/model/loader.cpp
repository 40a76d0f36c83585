// Loading HF checkpoints into SequenceClassifier and saving complete HF folders atomically.
#include "finepurify/model/loader.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <filesystem>
#include <random>
#include <set>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "finepurify/error.hpp"
#include "finepurify/io/checkpoint.hpp"
#include "finepurify/io/safetensors.hpp"
#include "finepurify/util/runtime.hpp"
#include "finepurify/util/reduce.hpp"

namespace finepurify::model {

namespace fs = std::filesystem;

std::string LoadReport::summary() const {
  std::string s = fmt::format("loaded {} tensors", loaded.size());
  if (!initialised.empty()) {
    s += fmt::format("; newly initialised {}:", initialised.size());
    for (auto& n : initialised) s += " " + n;
  }
  if (!unused.empty()) {
    s += fmt::format("; unused {}:", unused.size());
    for (std::size_t i = 0; i < unused.size() && i < 8; ++i) s += " " + unused[i];
    if (unused.size() > 8) s += " ...";
  }
  if (!ignored.empty()) s += fmt::format("; ignored {} (MLM head / buffers)", ignored.size());
  return s;
}

static bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }
static bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

std::string canonical_name(const std::string& ckpt_name, const ModelConfig& c) {
  std::string n = ckpt_name;
  if (ends_with(n, "position_ids") || starts_with(n, "cls.") || starts_with(n, "lm_head.")) return "";
  const std::string prefix = c.base_prefix();
  if (starts_with(n, "embeddings.") || starts_with(n, "encoder.") || starts_with(n, "pooler.")) n = prefix + n;
  // TF-era aliases
  if (ends_with(n, "LayerNorm.gamma")) n = n.substr(0, n.size() - 5) + "weight";
  else if (ends_with(n, "LayerNorm.beta")) n = n.substr(0, n.size() - 4) + "bias";
  return n;
}

std::vector<std::pair<std::string, torch::Tensor>> named_tensors(SequenceClassifierImpl& m) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (auto& p : m.named_parameters()) out.emplace_back(p.key(), p.value().detach());
  return out;
}

std::map<std::string, torch::Tensor> snapshot(SequenceClassifierImpl& m) {
  std::map<std::string, torch::Tensor> s;
  for (auto& p : m.named_parameters()) s[p.key()] = p.value().detach().to(torch::kCPU).clone();
  return s;
}

std::map<std::string, torch::Tensor> weights(SequenceClassifierImpl& m) {
  std::map<std::string, torch::Tensor> w;
  for (auto& p : m.named_parameters()) w[p.key()] = p.value().detach();
  return w;
}

void restore(SequenceClassifierImpl& m, const std::map<std::string, torch::Tensor>& state) {
  torch::NoGradGuard ng;
  for (auto& p : m.named_parameters()) {
    auto it = state.find(p.key());
    if (it == state.end()) throw Error(ErrorKind::Internal, "restore: no saved value for " + p.key());
    if (it->second.sizes() != p.value().sizes())
      throw Error(ErrorKind::Internal, "restore: shape mismatch for " + p.key());
    p.value().copy_(it->second);
  }
}

LoadedModel load_trained_classifier(const std::string& folder, torch::Device device) {
  LoadOptions lo;
  lo.device = device;
  lo.allow_missing_head = false;
  return load_classifier(folder, lo);
}

SequenceClassifier make_random_classifier(const ModelConfig& config, uint64_t seed, torch::Device device) {
  torch::manual_seed(seed);
  SequenceClassifier m(config);
  init_weights(*m, config.initializer_range);
  m->to(device);
  return m;
}

namespace {

/// The checkpoint's tensor names mapped once: by the model parameter name each loads into, and the
/// known ignorables (canonical_name ""). Two tensors for one parameter are refused by name.
struct NameMap {
  std::map<std::string, std::string> by_param;  ///< model parameter name -> checkpoint name
  std::vector<std::string> ignored;
};
NameMap map_names(const io::CheckpointReader& reader, const ModelConfig& c, const std::string& folder) {
  NameMap m;
  for (const auto& ck : reader.names()) {
    auto n = canonical_name(ck, c);
    if (n.empty()) { m.ignored.push_back(ck); continue; }
    auto [it, fresh] = m.by_param.emplace(n, ck);
    if (!fresh)
      throw Error(ErrorKind::CheckpointMismatch,
                  fmt::format("{}: tensors '{}' and '{}' both map to parameter '{}'", folder, it->second, ck, n));
  }
  return m;
}

/// The config's sizes against the checkpoint's header, before anything is allocated: the tensors
/// whose size every config field decides (embeddings, the last layer's attention and FFN) must be in
/// the file with the shapes the config implies. A config cannot ask for more memory than the
/// checkpoint holds (a hostile 300-byte config.json with vocab_size 1e12 fails here, by name).
void check_config_against_header(const io::CheckpointReader& reader, const std::map<std::string, std::string>& by,
                                 const ModelConfig& c, const std::string& folder) {
  const std::string p = c.base_prefix();
  const std::string last = fmt::format("{}encoder.layer.{}.", p, c.num_hidden_layers - 1);
  const std::vector<std::pair<std::string, std::vector<int64_t>>> expect = {
      {p + "embeddings.word_embeddings.weight", {c.vocab_size, c.hidden_size}},
      {p + "embeddings.position_embeddings.weight", {c.max_position_embeddings, c.hidden_size}},
      {p + "embeddings.token_type_embeddings.weight", {c.type_vocab_size, c.hidden_size}},
      {last + "attention.self.query.weight", {c.hidden_size, c.hidden_size}},
      {last + "intermediate.dense.weight", {c.intermediate_size, c.hidden_size}},
  };
  for (const auto& [name, shape] : expect) {
    auto it = by.find(name);
    if (it == by.end())
      throw Error(ErrorKind::CheckpointMismatch,
                  fmt::format("{}: tensor '{}' (shape [{}] from config.json) is missing from the checkpoint{}", folder,
                              name, fmt::join(shape, ", "),
                              starts_with(name, last)
                                  ? fmt::format(" (config.json says num_hidden_layers {})", c.num_hidden_layers)
                                  : ""));
    const auto got = reader.shape(it->second);
    if (got != shape)
      throw Error(ErrorKind::CheckpointMismatch,
                  fmt::format("{}: tensor '{}' has shape [{}] in the checkpoint, config.json implies [{}]", folder,
                              it->second, fmt::join(got, ", "), fmt::join(shape, ", ")));
  }
}

}  // namespace

namespace {
std::atomic<UnknownTensors> g_unknown_tensors{UnknownTensors::Warn};
}  // namespace

void set_unknown_tensors(UnknownTensors policy) { g_unknown_tensors = policy; }
UnknownTensors unknown_tensors() { return g_unknown_tensors; }

LoadedModel load_classifier(const std::string& folder, const LoadOptions& opt) {
  LoadedModel lm;
  lm.folder = folder;
  lm.config = load_config(folder);
  auto& c = lm.config;
  const int64_t config_labels = c.num_labels();
  if (opt.num_labels) set_num_labels(c, *opt.num_labels, opt.label_names);
  io::CheckpointReader reader(folder);
  const auto names = map_names(reader, c, folder);
  check_config_against_header(reader, names.by_param, c, folder);
  lm.report.ignored = names.ignored;

  // Build with HF initialisation first so tensors missing from the file get a seeded init.
  lm.model = make_random_classifier(c, opt.seed, torch::kCPU);
  auto params = lm.model->named_parameters();
  std::set<std::string> head;
  for (auto& n : head_parameter_names(*lm.model)) head.insert(n);

  std::map<std::string, std::string> source;  // model name -> ckpt name, for the tensors the model has
  for (const auto& [n, ck] : names.by_param) {
    if (!params.contains(n)) {
      // Part of the encoder the config does not describe (more layers than num_hidden_layers, a
      // tensor BERT does not have): refused by name. A pooler the model has none of (RoBERTa's
      // classifier) is a documented ignorable; other names (another task's head) are reported.
      if (starts_with(n, c.base_prefix() + "pooler.")) { lm.report.ignored.push_back(ck); continue; }
      if (starts_with(n, c.base_prefix()))
        throw Error(ErrorKind::CheckpointMismatch,
                    fmt::format("{}: tensor '{}' is not part of the model config.json describes ({}, {} layers); "
                                "is config.json the checkpoint's own?",
                                folder, ck, c.model_type, c.num_hidden_layers));
      if (unknown_tensors() == UnknownTensors::Refuse)
        throw Error(ErrorKind::CheckpointMismatch,
                    fmt::format("{}: tensor '{}' is not used by the {} classifier (refused under --strict)", folder,
                                ck, c.model_type));
      lm.report.unused.push_back(ck);
      continue;
    }
    source[n] = ck;
  }
  torch::NoGradGuard ng;
  for (auto& p : params) {
    const auto& name = p.key();
    auto it = source.find(name);
    if (it == source.end()) {
      if (opt.allow_missing_head && head.count(name)) { lm.report.initialised.push_back(name); continue; }
      throw Error(ErrorKind::CheckpointMismatch,
                  fmt::format("{}: tensor '{}' (shape [{}]) is missing from the checkpoint{}", folder, name,
                              fmt::join(p.value().sizes(), ", "),
                              head.count(name) ? " (a base / pre-trained checkpoint without a trained classifier "
                                                 "head? fine-tune it first)"
                                               : ""));
    }
    auto shape = reader.shape(it->second);
    if (std::vector<int64_t>(p.value().sizes().begin(), p.value().sizes().end()) != shape) {
      // An explicit label count that differs from the checkpoint's head starts a new head
      // (as transformers' ignore_mismatched_sizes); the old head tensors are reported unused.
      if (opt.num_labels && *opt.num_labels != config_labels && opt.allow_missing_head && head.count(name)) {
        lm.report.initialised.push_back(name);
        lm.report.unused.push_back(it->second);
        continue;
      }
      std::string hint;
      if (head.count(name)) hint = " (a different number of labels? pass --num-labels to start a new head)";
      throw Error(ErrorKind::CheckpointMismatch,
                  fmt::format("{}: tensor '{}' has shape [{}] in the checkpoint, the model expects [{}]{}", folder,
                              it->second, fmt::join(shape, ", "), fmt::join(p.value().sizes(), ", "), hint));
    }
    auto t = reader.tensor(it->second);
    if (!t.is_floating_point())
      throw Error(ErrorKind::CheckpointMismatch,
                  fmt::format("{}: tensor '{}' has non-float dtype {}", folder, it->second, std::string(c10::toString(t.scalar_type()))));
    p.value().copy_(t.to(torch::kFloat32));
    if (!util::all_finite(p.value()))
      throw Error(ErrorKind::CheckpointMismatch, fmt::format("{}: tensor '{}' holds NaN or Inf values", folder, it->second));
    lm.report.loaded.push_back(name);
  }
  if (!lm.report.unused.empty())
    util::log(fmt::format("warning: {}: {} checkpoint tensor(s) not used by the {} classifier: {}{}", folder,
                          lm.report.unused.size(), c.model_type,
                          fmt::join(lm.report.unused.begin(),
                                    lm.report.unused.begin() + std::min<std::size_t>(lm.report.unused.size(), 8), ", "),
                          lm.report.unused.size() > 8 ? ", ..." : ""));
  // If the head is new, label count comes from options or config; record that the head is new.
  lm.model->to(opt.device);
  return lm;
}

void check_output_not_input(const std::string& out, const std::vector<std::string>& inputs) {
  std::error_code ec;
  fs::path o = fs::weakly_canonical(fs::absolute(out), ec);
  for (const auto& in : inputs) {
    if (in.empty()) continue;
    fs::path i = fs::weakly_canonical(fs::absolute(in), ec);
    auto rel = o.lexically_relative(i);
    if (o == i || (!rel.empty() && *rel.begin() != ".."))
      throw Error(ErrorKind::InvalidArgument,
                  fmt::format("output '{}' would overwrite or sit inside the input '{}'; choose another --out", out, in));
  }
}

namespace {

/// The pid in a temporary name ".NAME.KIND-PID-X" (KIND "tmp" or "old"), or -1 (another name, or
/// the pid-less form of earlier versions).
pid_t temporary_owner(const std::string& file, const std::string& name, const std::string& kind) {
  const std::string prefix = "." + name + "." + kind + "-";
  if (file.rfind(prefix, 0) != 0) return -1;
  const auto rest = file.substr(prefix.size());
  const auto dash = rest.find('-');
  if (dash == std::string::npos || dash == 0 || dash > 9) return -1;
  for (std::size_t i = 0; i < dash; ++i)
    if (rest[i] < '0' || rest[i] > '9') return -1;
  return static_cast<pid_t>(std::stol(rest.substr(0, dash)));
}

bool process_alive(pid_t pid) { return ::kill(pid, 0) == 0 || errno == EPERM; }

}  // namespace

void sweep_stale_temporaries(const fs::path& dst) {
  std::error_code ec;
  const auto name = dst.filename().string();
  for (const auto& e : fs::directory_iterator(dst.parent_path(), ec)) {
    const auto file = e.path().filename().string();
    if (const pid_t pid = temporary_owner(file, name, "tmp"); pid > 0 && !process_alive(pid)) {
      std::error_code rec;
      const auto n = fs::remove_all(e.path(), rec);
      util::log(rec ? fmt::format("warning: cannot remove '{}', left by a save of '{}' that died (pid {}): {}",
                                  e.path().string(), dst.string(), pid, rec.message())
                    : fmt::format("removed '{}' ({} files), left by a save of '{}' that died (pid {})",
                                  e.path().string(), n, dst.string(), pid));
    } else if (const pid_t opid = temporary_owner(file, name, "old"); opid > 0 && !process_alive(opid)) {
      // The previous contents of dst, moved aside by a save that died before it finished: never deleted.
      util::log(fmt::format("warning: '{}' holds the earlier contents of '{}', kept by a save that died (pid {}); "
                            "restore or remove it by hand", e.path().string(), dst.string(), opid));
    }
  }
}

void save_classifier(SequenceClassifierImpl& m, const std::string& out, const std::string& tokenizer_from,
                     const std::map<std::string, std::string>& extra_files, bool overwrite,
                     const std::vector<std::string>& protected_inputs) {
  check_output_not_input(out, protected_inputs);
  fs::path dst = fs::absolute(out);
  if (fs::exists(dst) && !overwrite && !(fs::is_directory(dst) && fs::is_empty(dst)))
    throw Error(ErrorKind::InvalidArgument,
                fmt::format("output folder '{}' already exists and is not empty (pass --overwrite to replace it)", out));
  if (fs::exists(dst)) {
    // Replacing `out` deletes everything in it: refuse when an input lies inside it.
    std::error_code ec;
    const fs::path o = fs::weakly_canonical(dst, ec);
    for (const auto& in : protected_inputs) {
      if (in.empty()) continue;
      const fs::path i = fs::weakly_canonical(fs::absolute(in), ec);
      const auto rel = i.lexically_relative(o);
      if (!rel.empty() && *rel.begin() != "..")
        throw Error(ErrorKind::InvalidArgument,
                    fmt::format("output '{}' contains the input '{}'; replacing it would delete the input; "
                                "choose another --out", out, in));
    }
  }
  fs::create_directories(dst.parent_path());
  sweep_stale_temporaries(dst);
  std::random_device rd;
  fs::path tmp = dst.parent_path() / fmt::format(".{}.tmp-{}-{:x}", dst.filename().string(), getpid(), rd());
  try {
    fs::create_directories(tmp);
    io::write_safetensors((tmp / "model.safetensors").string(), named_tensors(m));
    io::write_text_atomic((tmp / "config.json").string(), classifier_config_json(m.config).dump(2) + "\n");
    if (!tokenizer_from.empty()) io::copy_tokenizer_files(tokenizer_from, tmp.string());
    for (auto& [name, content] : extra_files) io::write_text_atomic((tmp / name).string(), content);
    if (fs::exists(dst)) {
      // One atomic exchange: at every instant `out` is the old folder or the new one. The old one
      // then sits at the temporary name, which a kill leaves to the next save's sweep.
      if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, dst.c_str(), RENAME_EXCHANGE) == 0) {
        std::error_code ec;
        fs::remove_all(tmp, ec);
      } else if (errno == EINVAL || errno == ENOSYS) {  // a file system without exchange: two renames
        fs::path old = dst.parent_path() / fmt::format(".{}.old-{}-{:x}", dst.filename().string(), getpid(), rd());
        fs::rename(dst, old);
        fs::rename(tmp, dst);
        fs::remove_all(old);
      } else {
        throw fs::filesystem_error("exchanging the new folder with the old", tmp, dst,
                                   std::error_code(errno, std::generic_category()));
      }
    } else {
      fs::rename(tmp, dst);
    }
  } catch (const fs::filesystem_error& e) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw Error(ErrorKind::Io, fmt::format("writing model folder '{}': {}", out, e.what()));
  } catch (const Error& e) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    if (e.kind() != ErrorKind::Io) throw;
    // The message names the hidden temporary; say which output it was (a full disk, no permission).
    throw Error(ErrorKind::Io, fmt::format("writing model folder '{}': {}", out, e.what()));
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
}

}  // namespace finepurify::model
