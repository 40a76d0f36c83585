// One fine-tuning run end to end from files (the logic behind `finepurify finetune`): load the model
// (a pre-trained checkpoint gets a new head; --from-scratch a random one), tokenize, fine-tune
// (report::save_finetune writes the HF folder with its manifest). FinetuneSpec holds every option with its default;
// finetune_fields() names each once for the CLI flags and the manifest.
#pragma once
#include <optional>
#include <string>

#include <torch/torch.h>

#include "finepurify/model/loader.hpp"
#include "finepurify/text/tokenizer.hpp"
#include "finepurify/train/trainer.hpp"
#include "finepurify/util/options.hpp"

namespace finepurify::train {

struct FinetuneSpec {
  std::string model;         ///< HF folder: a pre-trained checkpoint or a classifier
  std::string train, dev;    ///< labelled data; dev (optional) picks the best epoch
  int64_t num_labels = 0;    ///< labels of a new head (0: from the config's head or the data)
  int max_length = 128;
  bool from_scratch = false; ///< random initialisation instead of the checkpoint's weights
  text::Compat compat = text::Compat::Fast;
  TrainOptions opt;
};

const util::Fields<FinetuneSpec>& finetune_fields();

struct FinetuneRun {
  model::LoadedModel model;            ///< the fine-tuned model
  TrainResult train;
  std::optional<EvalResult> dev_eval;  ///< of the final model, with a dev set
};

/// Refuses an `out` that is an input, or an existing non-empty one without `overwrite` (call before
/// the run; report::save_finetune writes the folder).
void check_finetune_output(const FinetuneSpec& spec, const std::string& out, bool overwrite);
FinetuneRun run_finetune(const FinetuneSpec& spec, torch::Device device);

/// Inference over a data file with a trained classifier folder (`eval`, `predict`, the Python
/// front end's evaluate); with attack_test and target_label also the ASR.
struct EvalSpec {
  std::string model, data;
  std::string text_column, pair_column, label_column = "label";  ///< csv / jsonl columns
  int max_length = 128;
  int64_t batch_size = 128;
  bool require_labels = true;   ///< false: predict-only (labels may be absent)
  std::string attack_test;      ///< triggered test set (true labels)
  int64_t target_label = -1;
  text::Compat compat = text::Compat::Fast;
};

struct EvalRun {
  model::LoadedModel model;
  EvalResult result;
  std::optional<double> asr;    ///< with attack_test
};

EvalRun run_eval(const EvalSpec& spec, torch::Device device);

}  // namespace finepurify::train
