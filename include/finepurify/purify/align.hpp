// Alignment of a suspect fine-tuned model with its clean pre-trained checkpoint: which parameters
// have a pre-trained counterpart of equal shape (and may be reset), and which do not (head, pooler).
#pragma once
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "finepurify/model/bert.hpp"

namespace finepurify::purify {

struct Alignment {
  std::vector<std::string> aligned;             ///< model parameter names, registration order
  std::map<std::string, torch::Tensor> pre;     ///< name -> w_Pre (float32, CPU) for aligned names
  std::map<std::string, std::string> unaligned; ///< name -> reason (no counterpart, shape differs)
  int64_t aligned_dims() const;
};

/// Reads `pretrained_folder` and maps its tensors onto `m`'s parameter names (prefix and alias
/// mapping as the loader does). Throws Error(CheckpointMismatch) when nothing aligns or the model
/// types differ.
Alignment align_with_pretrained(model::SequenceClassifierImpl& m, const std::string& pretrained_folder);

}  // namespace finepurify::purify
