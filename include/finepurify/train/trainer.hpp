// Fine-tuning (AdamW without decay on biases/LayerNorm, linear warm-up/decay, gradient clipping,
// best-dev checkpoint) and evaluation (accuracy, per-class P/R/F1, confusion, ASR).
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "finepurify/model/bert.hpp"
#include "finepurify/train/data.hpp"

namespace finepurify::train {

struct TrainOptions {
  int epochs = 3;
  int64_t max_steps = 0;        ///< > 0: stop after this many optimizer steps (overrides epochs)
  int64_t batch_size = 32;
  /// Training batches of similar lengths: rows sorted by length within shuffled windows of this many
  /// batches (train::length_grouped_batches); less padding, the same rows each epoch. 1 = plain shuffle.
  int64_t length_window = 50;
  double lr = 5e-5;
  double weight_decay = 0.01;
  double warmup_ratio = 0.06;   ///< fraction of total steps with linear warm-up
  double max_grad_norm = 1.0;   ///< <= 0 disables clipping
  uint64_t seed = 42;           ///< data order and dropout
  bool keep_best = true;        ///< restore the best-dev-accuracy epoch at the end (needs dev)
  int64_t eval_batch_size = 128;
  std::string label = "train";  ///< prefix of progress lines
  /// Optional custom loss (e.g. layer-wise poisoning); default: cross-entropy on logits.
  std::function<torch::Tensor(model::SequenceClassifierImpl&, const Batch&)> loss_fn;
  /// Optional: which parameters train (by name); default all.
  std::function<bool(const std::string&)> trainable;
  /// Optional hook after backward, before clipping/step (e.g. mask gradients).
  std::function<void(model::SequenceClassifierImpl&)> after_backward;
};

/// TrainOptions with these three set (the others at their defaults).
TrainOptions train_options(int epochs, double lr, int64_t batch_size);

struct EpochStats {
  int epoch = 0;
  double train_loss = 0;
  double dev_accuracy = -1;
  double seconds = 0;
};

struct TrainResult {
  std::vector<EpochStats> epochs;
  int best_epoch = -1;
  double best_dev_accuracy = -1;
  int64_t steps = 0;
  double seconds = 0;
  double examples_per_second = 0;
  double tokens_per_second = 0;
};

TrainResult fine_tune(model::SequenceClassifierImpl& m, const TokenizedSet& train, const TokenizedSet* dev,
                      const TrainOptions& opt, torch::Device device);

struct EvalResult {
  int64_t n = 0;
  double accuracy = 0;
  std::vector<std::vector<int64_t>> confusion;  ///< [true][pred]
  std::vector<double> precision, recall, f1;    ///< per class
  double macro_f1 = 0;
  torch::Tensor logits;                         ///< (N, C) float, CPU, in dataset order
  std::vector<int64_t> predictions;
  double seconds = 0;
};

/// Eval-mode inference over the whole set (labels may be -1 for predict-only use).
EvalResult evaluate(model::SequenceClassifierImpl& m, const TokenizedSet& data, torch::Device device,
                    int64_t batch_size = 128);
/// ASR: fraction of rows with a label other than `target` (unlabelled rows, -1, excluded) predicted as
/// `target`; -1 when there is no such row.
double attack_success_rate(const std::vector<int64_t>& predictions, const std::vector<int64_t>& labels, int64_t target);
/// The clean rows a triggered set made by attack::make_test_sets comes from: the labelled rows whose
/// label is not `target`, in order (triggered row i <- clean row result[i]).
std::vector<int64_t> non_target_rows(const std::vector<int64_t>& labels, int64_t target);
/// Flip rate: of the triggered rows whose clean source row (source[i]) the model classifies correctly,
/// the share predicted as `target` with the trigger. Unlike the ASR it leaves out the model's own errors
/// on clean rows. -1 when no row qualifies.
double flip_rate(const std::vector<int64_t>& clean_predictions, const std::vector<int64_t>& clean_labels,
                 const std::vector<int64_t>& triggered_predictions, const std::vector<int64_t>& source, int64_t target);

}  // namespace finepurify::train
