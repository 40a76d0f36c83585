// Loading a Hugging Face folder into a SequenceClassifier (exact name mapping, aliases, shape
// checks, missing/unused reports, fresh head for base checkpoints) and saving one back.
#pragma once
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "finepurify/model/bert.hpp"

namespace finepurify::model {

struct LoadOptions {
  std::optional<int64_t> num_labels;          ///< override / set the label count
  std::vector<std::string> label_names;       ///< names for a new head (size num_labels)
  uint64_t seed = 42;                         ///< initialises tensors the checkpoint lacks
  torch::Device device = torch::kCPU;
  /// Which tensors may be freshly initialised when missing (default: the head and the pooler).
  bool allow_missing_head = true;
};

struct LoadReport {
  std::vector<std::string> loaded;       ///< model parameter names filled from the checkpoint
  std::vector<std::string> initialised;  ///< missing from the checkpoint, initialised from the seed
  std::vector<std::string> unused;       ///< checkpoint tensors not used (excluding known ignorables)
  std::vector<std::string> ignored;      ///< known ignorables (position_ids buffers, MLM head)
  std::string summary() const;
};

struct LoadedModel {
  SequenceClassifier model{nullptr};
  ModelConfig config;
  std::string folder;
  LoadReport report;
};

/// What a load does with a checkpoint tensor it neither uses nor knows as ignorable (another
/// task's head, a stray tensor): Warn logs it (the default), Refuse throws CheckpointMismatch
/// naming it (the CLI's `--strict`). Process-wide, as a policy for every checkpoint read.
enum class UnknownTensors { Warn, Refuse };
void set_unknown_tensors(UnknownTensors policy);
UnknownTensors unknown_tensors();

/// Build a classifier from `folder` (config.json + safetensors). Throws Error naming the tensor
/// on a shape mismatch or a missing non-head tensor (and on an unknown one under Refuse).
LoadedModel load_classifier(const std::string& folder, const LoadOptions& opt = {});

/// A trained classifier folder (its head must be there: nothing is initialised) on `device`.
LoadedModel load_trained_classifier(const std::string& folder, torch::Device device = torch::kCPU);

/// Build a randomly initialised classifier with `config` (HF initialisation, seeded).
SequenceClassifier make_random_classifier(const ModelConfig& config, uint64_t seed, torch::Device device = torch::kCPU);

/// Map a checkpoint tensor name to the model's parameter name (prefix for base checkpoints,
/// LayerNorm.gamma/beta aliases). Returns "" for known ignorables.
std::string canonical_name(const std::string& ckpt_name, const ModelConfig& c);

/// The model's parameters as (name, tensor) in registration order (detached views).
std::vector<std::pair<std::string, torch::Tensor>> named_tensors(SequenceClassifierImpl& m);
/// Deep copy of all parameters (CPU), for keeping a best checkpoint or w_FT/w_Pre snapshots.
std::map<std::string, torch::Tensor> snapshot(SequenceClassifierImpl& m);
/// The parameters themselves, detached: they share the model's storage (and device), so they change
/// with it. For reading the current weights without a copy.
std::map<std::string, torch::Tensor> weights(SequenceClassifierImpl& m);
/// Write `state` back into the model's parameters (shapes must match).
void restore(SequenceClassifierImpl& m, const std::map<std::string, torch::Tensor>& state);

/// Before a save of `dst`: removes the hidden temporary folders `.NAME.tmp-PID-*` that a save of the
/// same folder left when its process died (PID no longer running), and warns about `.NAME.old-PID-*`
/// folders (the earlier contents moved aside by a save that died before it finished; never deleted).
/// Temporaries of a running process are left alone. Each action is logged.
void sweep_stale_temporaries(const std::filesystem::path& dst);

/// Write a complete HF folder atomically: built in `.out.tmp-PID-*`, then renamed to `out`.
/// Files: model.safetensors (float32, metadata format=pt), config.json, tokenizer files copied
/// from `tokenizer_from`, plus `extra_files` (name -> content, e.g. manifest.json).
/// Refuses to write over `protected_inputs`; replaces an existing `out` only when `overwrite`.
void save_classifier(SequenceClassifierImpl& m, const std::string& out, const std::string& tokenizer_from,
                     const std::map<std::string, std::string>& extra_files = {}, bool overwrite = false,
                     const std::vector<std::string>& protected_inputs = {});

/// Throws Error(InvalidArgument) when `out` is one of `inputs` or lies inside one of them.
void check_output_not_input(const std::string& out, const std::vector<std::string>& inputs);

}  // namespace finepurify::model
