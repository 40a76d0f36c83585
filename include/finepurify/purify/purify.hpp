// Fine-purifying end to end: Fisher at the chosen point, indicators, selection, reset to w_Pre,
// clean fine-tuning, and the reset-fraction search under an accuracy budget. Also the diagnosis
// used by `scan` (where suspicious dimensions concentrate, top suspicious tokens).
#pragma once
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "finepurify/purify/align.hpp"
#include "finepurify/purify/fisher.hpp"
#include "finepurify/purify/select.hpp"
#include "finepurify/text/tokenizer.hpp"
#include "finepurify/train/trainer.hpp"

namespace finepurify::purify {

enum class FisherAt { FT, Pre, Mean };
FisherAt fisher_at_from_string(const std::string& s);
const char* fisher_at_name(FisherAt f);

/// Default grid of reset fractions, log-spaced at the low end.
std::vector<double> default_grid();

struct DiagnoseOptions {
  IndicatorOptions indicator;
  FisherAt fisher_at = FisherAt::FT;
  int64_t fisher_examples = 0;  ///< 0 = all of the clean training part
  int64_t top_tokens = 20;
  /// Behavioural check (probe.hpp): the `probe_tokens` most suspicious rows by indicator mass and by
  /// row drift are inserted into `probe_examples` clean examples each; 0 = off.
  int64_t probe_tokens = 0;
  int64_t probe_examples = 100;
  /// Tokens flipping at least this share of predictions count as trigger candidates.
  double probe_min_flip = 0.9;
};

/// Everything `scan` reports and `purify` selects from.
struct Diagnosis {
  Alignment alignment;
  std::map<std::string, torch::Tensor> ft;      ///< w_FT snapshot (CPU)
  std::map<std::string, torch::Tensor> fisher;  ///< empty for indicators that need none
  std::map<std::string, torch::Tensor> r;       ///< indicator per aligned tensor
  double epsilon = 0;
  nlohmann::json summary;  ///< per-tensor / per-layer statistics, distribution, top tokens
};

/// Computes the Fisher (if needed) and the indicator, and summarises them. The model's weights are
/// left as w_FT.
Diagnosis diagnose(model::SequenceClassifierImpl& m, const std::string& pretrained_folder,
                   const train::TokenizedSet& clean_train, const text::Tokenizer& tok, const DiagnoseOptions& opt,
                   torch::Device device);

/// Masks of `rho` dimensions from a diagnosis; summary of where they are (per tensor / layer).
nlohmann::json selection_summary(const std::map<std::string, torch::Tensor>& masks, int64_t num_layers);

/// Sets selected dimensions to w_Pre (others keep their current value).
void reset_to_pretrained(model::SequenceClassifierImpl& m, const Alignment& a,
                         const std::map<std::string, torch::Tensor>& masks);

/// The defenses compared in the paper, all run through the same reset -> fine-tune -> knob search:
/// fine-purifying (reset top rho by the chosen indicator, default fisher-ratio), finetune (rho = 0),
/// fine-pruning (zero the least active FFN neurons per layer; knob = pruned fraction), fine-mixing
/// (random rho, optional E-PUR), magnitude (top rho by drift^2), reinit (rho = 1).
enum class Defense { FinePurifying, FineTune, FinePruning, FineMixing, Magnitude, Reinit };
Defense defense_from_string(const std::string& s);
const char* defense_name(Defense d);
const std::vector<std::string>& defense_names();
/// Whether the defense has a knob to search (finetune and reinit have a single point).
bool defense_has_knob(Defense d);

/// Mean FFN intermediate activation per neuron over the non-padding tokens of `data`:
/// L tensors of (I), float32, CPU.
std::vector<torch::Tensor> ffn_mean_activations(model::SequenceClassifierImpl& m, const train::TokenizedSet& data,
                                                torch::Device device);
/// Fine-pruning masks (true = pruned) for `fraction` of the least active neurons of every layer:
/// the neuron's intermediate.dense weight row and bias, and its output.dense weight column.
std::map<std::string, torch::Tensor> pruning_masks(model::SequenceClassifierImpl& m,
                                                   const std::vector<torch::Tensor>& mean_activation, double fraction);

/// E-PUR (Fine-mixing's embedding purification): the `rows` vocabulary rows with the largest
/// ||delta_row|| / log(2 + clean count of the token), as a mask over the word-embedding matrix.
torch::Tensor epur_mask(const torch::Tensor& ft_word, const torch::Tensor& pre_word, const train::TokenizedSet& clean,
                        int64_t rows);

struct PurifyOptions {
  Defense method = Defense::FinePurifying;
  DiagnoseOptions diagnose;
  Scope scope = Scope::Global;
  std::optional<double> reset_fraction;  ///< fixed rho, or
  std::optional<double> max_acc_drop;    ///< accuracy points: search the grid
  std::vector<double> grid = default_grid();
  train::TrainOptions train;             ///< clean fine-tuning after the reset
  bool reinit_head = false;              ///< re-initialise tensors without pre-trained counterpart
  uint64_t seed = 42;
  bool epur = false;                     ///< fine-mixing: also reset the E-PUR embedding rows
  int64_t epur_rows = 100;
  /// > 0: trigger-candidate unlearning (an extension beyond the paper, see unlearn.hpp): the clean
  /// fine-tuning also trains on a copy of every clean example with 1..unlearn_max_insertions of the
  /// `unlearn_tokens` most suspicious tokens (fisher-ratio row mass, as `scan` ranks them) inserted.
  int64_t unlearn_tokens = 0;
  int unlearn_max_insertions = 3;
  /// > 0: the word-embedding rows of the `neutralize_tokens` most suspicious tokens are set to the
  /// pre-trained unknown-token row (mean pre-trained row when the vocabulary has none) before the
  /// clean fine-tuning (an extension beyond the paper, see unlearn.hpp).
  int64_t neutralize_tokens = 0;
  int max_length = 0;                    ///< the clean set's max length (caps the unlearning copies)
  bool sweep = false;                    ///< evaluate every grid value (curves) instead of a binary search
  /// Optional extra measurement of every evaluated model (e.g. test accuracy and ASR in experiments).
  std::function<nlohmann::json(model::SequenceClassifierImpl&)> measure;
};

struct AttackProbe {  ///< optional: a triggered test set to report ASR (never used for selection)
  train::TokenizedSet data;
  int64_t target = -1;
};

struct EvaluatedPoint {
  double rho = 0;
  int64_t reset_dims = 0;
  double dev_accuracy = 0;
  double asr = -1;
  double seconds = 0;
  bool within_budget = false;
  nlohmann::json selection;  ///< where the reset / pruned dimensions are (per tensor, per layer)
  nlohmann::json extra;      ///< PurifyOptions::measure's result
};

struct PurifyResult {
  double chosen_rho = 0;
  double suspect_dev_accuracy = 0;
  double purified_dev_accuracy = 0;
  double suspect_asr = -1, purified_asr = -1;
  std::vector<EvaluatedPoint> evaluated;
  nlohmann::json report;  ///< everything for purify_report.json
};

/// Runs purification on `m` (its weights become the purified model's).
PurifyResult purify(model::SequenceClassifierImpl& m, const std::string& pretrained_folder,
                    const train::TokenizedSet& clean_train, const train::TokenizedSet& clean_dev,
                    const text::Tokenizer& tok, const PurifyOptions& opt, torch::Device device,
                    const AttackProbe* probe = nullptr);

/// Seeded hold-out split of a clean set: (train part, dev part) with `dev_fraction` in the dev part.
std::pair<train::TokenizedSet, train::TokenizedSet> split_clean(const train::TokenizedSet& s, double dev_fraction,
                                                                uint64_t seed);

}  // namespace finepurify::purify
