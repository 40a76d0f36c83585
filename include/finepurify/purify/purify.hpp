// Fine-purifying and the baseline defenses, all run through the same reset -> clean fine-tune ->
// knob search under an accuracy budget, on tokenized data (run_defense in defense.hpp does the
// loading). Results are typed; src/report writes them as JSON and Markdown.
#pragma once
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "finepurify/purify/baselines.hpp"
#include "finepurify/purify/diagnose.hpp"
#include "finepurify/purify/knob.hpp"
#include "finepurify/purify/unlearn.hpp"
#include "finepurify/text/tokenizer.hpp"
#include "finepurify/train/trainer.hpp"

namespace finepurify::purify {

/// The defenses compared in the paper: fine-purifying (reset top rho by the chosen indicator, default
/// fisher-ratio), finetune (rho = 0), fine-pruning (zero the least active FFN neurons per layer; knob =
/// pruned fraction), fine-mixing (random rho, optional E-PUR), magnitude (top rho by drift^2), reinit (rho = 1).
enum class Defense { FinePurifying, FineTune, FinePruning, FineMixing, Magnitude, Reinit };
const util::EnumTable<Defense>& enum_table(Defense);
/// Whether the defense has a knob to search (finetune and reinit have a single point).
bool defense_has_knob(Defense d);
/// The knob's name in logs and reports ("rho", or "pruned" for fine-pruning).
const char* knob_name(Defense d);

/// Default grid of reset fractions, log-spaced at the low end, up to 0.5: on the real model no
/// defense removed more past 0.5 and every one lost accuracy there that 300 clean-dev rows did not
/// show, so "largest within budget" took a costly 0.8 (docs/results/real-dev/).
std::vector<double> default_grid();
/// The clean fine-tuning after a reset: 3 epochs, lr 5e-5, batch 16 (other fields TrainOptions').
train::TrainOptions clean_tuning_defaults();

struct PurifyOptions {
  Defense method = Defense::FinePurifying;
  DiagnoseOptions diagnose;
  /// Tensor since issue 13: on all-MiniLM-L6-v2 the global ranking costs 2-5 more points of accuracy
  /// at the same removal (docs/results/real-dev/); `--scope global` is the paper's.
  Scope scope = Scope::Tensor;
  WordEmbedding word_embedding = WordEmbedding::Rank;
  std::optional<double> reset_fraction;  ///< fixed rho, or
  std::optional<double> max_acc_drop;    ///< accuracy points: search the grid
  KnobRule knob_rule = KnobRule::Tolerant;  ///< how the grid point is chosen (knob.hpp)
  std::vector<double> grid = default_grid();
  train::TrainOptions train = clean_tuning_defaults();  ///< clean fine-tuning after the reset
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
  NeutralizeTo neutralize_to = NeutralizeTo::Unknown;  ///< what a neutralised row becomes
  int max_length = 0;                    ///< the clean set's max length (caps the unlearning copies)
  bool sweep = false;                    ///< evaluate every grid value (curves) instead of a binary search
};

/// Optional measurements of every evaluated model, never used for selection.
struct Measurements {
  const train::TokenizedSet* triggered = nullptr;  ///< triggered test set (true labels): ASR
  int64_t target = -1;
  const train::TokenizedSet* test = nullptr;       ///< clean test set: test accuracy
  /// Triggered row i is clean test row triggered_source[i] with the trigger (train::non_target_rows for
  /// sets made by attack::make_test_sets): the flip rate is measured too. Empty: no pairing known.
  std::vector<int64_t> triggered_source;
};

/// What the measurements give for one model (-1 where a set is missing).
struct Measured {
  double asr = -1, test_accuracy = -1, flip_rate = -1;
};
/// Evaluates `m` on the sets `ms` gives.
Measured measure(model::SequenceClassifierImpl& m, const Measurements& ms, torch::Device device);

struct EvaluatedPoint {
  double rho = 0;
  int64_t reset_dims = 0;
  double dev_accuracy = 0;
  Measured measured;          ///< ASR, test accuracy, flip rate (never used to choose)
  double seconds = 0;
  bool within_budget = false;
  Selection selection;        ///< where the reset / pruned dimensions are
};

/// The trigger-candidate extensions as run (unlearn.hpp).
struct TokenAction {
  std::vector<std::string> tokens;
  std::string replacement;     ///< neutralisation: the row the tokens got
  int max_insertions = 0;      ///< unlearning
  int64_t train_examples = 0;  ///< unlearning: examples the fine-tuning saw
};

struct PurifyResult {
  PurifyOptions options;  ///< as run
  double chosen_rho = 0;
  double suspect_dev_accuracy = 0, purified_dev_accuracy = 0;
  std::optional<double> budget_line;  ///< with max_acc_drop: the lowest clean-dev accuracy kept (knob.hpp)
  Measured suspect, purified;  ///< the suspect's and the chosen point's measurements
  std::vector<EvaluatedPoint> evaluated;  ///< in evaluation order
  Selection selection;                    ///< of the chosen point
  DiagnosisSummary diagnosis;
  std::optional<TokenAction> unlearning, neutralized;
  int64_t clean_train_examples = 0, clean_dev_examples = 0;
};

/// Runs the defense on `m` (its weights become the purified model's).
PurifyResult purify(model::SequenceClassifierImpl& m, const std::string& pretrained_folder,
                    const train::TokenizedSet& clean_train, const train::TokenizedSet& clean_dev,
                    const text::Tokenizer& tok, const PurifyOptions& opt, torch::Device device,
                    const Measurements& measure = {});

/// Seeded hold-out split of a clean set: (train part, dev part) with `dev_fraction` in the dev part.
std::pair<train::TokenizedSet, train::TokenizedSet> split_clean(const train::TokenizedSet& s, double dev_fraction,
                                                                uint64_t seed);

}  // namespace finepurify::purify
