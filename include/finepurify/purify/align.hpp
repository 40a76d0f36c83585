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
  std::map<std::string, torch::Tensor> pre;     ///< name -> w_Pre (float32, CPU) for aligned names, once loaded
  std::map<std::string, std::string> unaligned; ///< name -> reason (no counterpart, shape differs)
  struct Source {
    std::string tensor;           ///< its name in the pre-trained checkpoint
    std::vector<int64_t> shape;
  };
  std::map<std::string, Source> source;         ///< aligned name -> where its w_Pre is
  std::string folder;                           ///< the pre-trained checkpoint folder
  int64_t dims = 0;                             ///< aligned dimensions
  /// w_Pre of the aligned tensor `name`: its value in `pre`, else read from `folder` (opened for this
  /// one tensor, so no mapping of it outlives the call; checked for the aligned shape and finite values
  /// again, Error(CheckpointMismatch) otherwise; not kept).
  torch::Tensor pre_of(const std::string& name) const;
};

/// Reads `pretrained_folder` and maps its tensors onto `m`'s parameter names (prefix and alias
/// mapping as the loader does); every aligned tensor is read and checked finite. With `load_values`
/// their values are kept in `pre`; without, `pre` stays empty and each use reads its tensor (pre_of):
/// the diagnosis and purify never hold w_Pre whole. Throws Error(CheckpointMismatch) when nothing
/// aligns, the model types differ or a tensor holds NaN or Inf.
Alignment align_with_pretrained(model::SequenceClassifierImpl& m, const std::string& pretrained_folder,
                                bool load_values = true);

}  // namespace finepurify::purify
