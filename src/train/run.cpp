// A fine-tuning run from files, and the one table of its options (see run.hpp).
#include "finepurify/train/run.hpp"

#include <filesystem>

#include <fmt/format.h>

#include "finepurify/error.hpp"
#include "finepurify/model/loader.hpp"
#include "finepurify/util/runtime.hpp"

namespace finepurify::train {

using S = FinetuneSpec;

const util::Fields<FinetuneSpec>& finetune_fields() {
  static const util::Fields<S> t = {
      FP_OPTION(S, "model", "HF model folder or name (base/MLM checkpoint or classifier)", model).model().needed(),
      FP_OPTION(S, "train", "training data (.tsv/.csv/.jsonl)", train).file().needed(),
      FP_OPTION(S, "dev", "dev data: evaluated each epoch, best epoch kept", dev).file(),
      FP_OPTION(S, "num_labels", "labels of a new head (default: from config or data)", num_labels).at_least(0),
      FP_OPTION(S, "epochs", "epochs", opt.epochs).at_least(0),
      FP_OPTION(S, "steps", "stop after N optimizer steps (overrides --epochs)", opt.max_steps).at_least(0),
      FP_OPTION(S, "batch_size", "batch size", opt.batch_size).at_least(1),
      FP_OPTION(S, "length_window", "group batches by length within windows of N batches (1 = plain shuffle)",
                opt.length_window).at_least(1),
      FP_OPTION(S, "lr", "peak learning rate (AdamW)", opt.lr).at_least(0),
      FP_OPTION(S, "weight_decay", "AdamW weight decay (not on biases/LayerNorm)", opt.weight_decay).at_least(0),
      FP_OPTION(S, "warmup_ratio", "linear warm-up fraction", opt.warmup_ratio).range(0, 1),
      FP_OPTION(S, "max_grad_norm", "gradient clipping (0 = off)", opt.max_grad_norm),
      FP_OPTION(S, "max_length", "max tokens per example incl. specials", max_length).range(2, 4096),
      FP_OPTION(S, "seed", "seed: data order, dropout, new head", opt.seed),
      FP_OPTION(S, "from_scratch", "random initialisation instead of the checkpoint's weights", from_scratch),
  };
  return t;
}

void check_finetune_output(const FinetuneSpec& s, const std::string& out, bool overwrite) {
  // Refuse a bad --out before spending time on training (save_classifier checks again).
  model::check_output_not_input(out, {s.model, s.train, s.dev});
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!overwrite && fs::exists(out, ec) && !(fs::is_directory(out, ec) && fs::is_empty(out, ec)))
    throw Error(ErrorKind::InvalidArgument,
                fmt::format("output folder '{}' already exists and is not empty (pass --overwrite to replace it)", out));
}

namespace {

/// Labels: num_labels, else the config's head, else the data's largest label + 1.
model::LoadedModel load_start(const FinetuneSpec& s, const model::ModelConfig& cfg, const text::Dataset& data,
                              torch::Device dev) {
  int64_t n_labels = s.num_labels;
  if (n_labels <= 0 && !cfg.has_classifier_head())
    for (auto& e : data.examples) n_labels = std::max(n_labels, e.label + 1);
  model::LoadedModel lm;
  if (s.from_scratch) {
    lm.config = cfg;
    if (n_labels > 0) model::set_num_labels(lm.config, n_labels);
    lm.model = model::make_random_classifier(lm.config, s.opt.seed, dev);
    util::log("random initialisation (--from-scratch)");
    return lm;
  }
  model::LoadOptions lo;
  lo.seed = s.opt.seed;
  lo.device = dev;
  if (n_labels > 0) lo.num_labels = n_labels;
  lm = model::load_classifier(s.model, lo);
  util::log(fmt::format("{}: {}", s.model, lm.report.summary()));
  return lm;
}

}  // namespace

FinetuneRun run_finetune(const FinetuneSpec& s, torch::Device dev) {
  auto cfg = model::load_config(s.model);
  auto tok = text::load_model_tokenizer(s.model, cfg.model_type, cfg.vocab_size, s.compat);
  auto train_data = read_task_data(s.train, cfg);
  FinetuneRun run;
  run.model = load_start(s, cfg, train_data, dev);
  auto& lm = run.model;
  auto tr = tokenize(*tok, train_data, s.max_length);
  std::optional<TokenizedSet> dv;
  if (!s.dev.empty()) dv = tokenize(*tok, read_task_data(s.dev, lm.config), s.max_length);
  util::log(fmt::format("train {} examples ({} tokens){}", tr.size(), tr.num_tokens(),
                        dv ? fmt::format(", dev {}", dv->size()) : ""));
  run.train = fine_tune(*lm.model, tr, dv ? &*dv : nullptr, s.opt, dev);
  if (dv) run.dev_eval = evaluate(*lm.model, *dv, dev);
  util::log(fmt::format("trained ({:.1f} examples/s, {:.0f} tokens/s)", run.train.examples_per_second,
                        run.train.tokens_per_second));
  return run;
}

EvalRun run_eval(const EvalSpec& s, torch::Device dev) {
  if (!s.attack_test.empty() && s.target_label < 0)
    throw Error(ErrorKind::InvalidArgument, "an attack test set (" + s.attack_test + ") needs the target label");
  EvalRun r;
  r.model = model::load_trained_classifier(s.model, dev);
  const auto& c = r.model.config;
  auto tok = text::load_model_tokenizer(s.model, c.model_type, c.vocab_size, s.compat);
  auto data = tokenize(*tok, read_task_data(s.data, c, s.require_labels, s.text_column, s.pair_column, s.label_column),
                       s.max_length);
  r.result = evaluate(*r.model.model, data, dev, s.batch_size);
  if (!s.attack_test.empty()) {
    auto at = tokenize(*tok, read_task_data(s.attack_test, c), s.max_length);
    r.asr = attack_success_rate(evaluate(*r.model.model, at, dev, s.batch_size).predictions, at.labels, s.target_label);
  }
  return r;
}

}  // namespace finepurify::train
