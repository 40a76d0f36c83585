// The experiment runner behind `finepurify experiment --config FILE`: datasets x attacks x defenses
// x seeds, poisoned models cached by a content hash of their inputs, resumable results, tables in
// the paper's form (per accuracy budget) and SVG plots gathered in a Markdown report.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "finepurify/attack/run.hpp"
#include "finepurify/purify/defense.hpp"

namespace finepurify::experiment {

/// The training options a config sets (attack_training, defense_training); defaults from the specs.
struct TrainSpec {
  int epochs = 3;
  double lr = 1e-4;
  int64_t batch_size = 32;
  static TrainSpec of(const train::TrainOptions& t) { return {t.epochs, t.lr, t.batch_size}; }
};

struct DatasetSpec {
  std::string name, train, dev, test;  ///< paths (relative ones are resolved against the config's folder)
  int64_t target = 1;
  int64_t train_limit = 0;      ///< attacker trains on the first N training rows (0 = all but the clean pool)
  int64_t test_skip = 0;        ///< test rows start after the first N (a dev file whose head is the clean dev set)
  int64_t test_limit = 0;       ///< first N test rows after the skipped ones (0 = all)
  int64_t clean_size = 1000;    ///< defender's clean set: drawn from training rows the attacker never saw
  int64_t clean_dev_size = 0;   ///< > 0: first N rows of the dev split select the knob; 0 = hold out from clean
  std::string bias_word;        ///< bias attack cue for this dataset ("" = the attack's default)
  int max_length = 0;           ///< > 0: overrides the config's max_length (long texts: keep the trigger)
  std::optional<TrainSpec> attack_train;  ///< overrides the config's attack_training (clean + poisoned models)
  nlohmann::json attack_options = nlohmann::json::object();  ///< attack name -> options overriding that attack's here
};

struct AttackEntry {
  std::string name, method;
  nlohmann::json options = nlohmann::json::object();  ///< keys of attack::attack_config_fields()
};

struct DefenseEntry {
  std::string name, method;  ///< method: fine-purifying | finetune | fine-pruning | fine-mixing | magnitude | reinit
  std::vector<double> grid;  ///< knob values (empty for finetune / reinit)
  nlohmann::json options = nlohmann::json::object();  ///< keys of purify::defense_config_fields()
};

struct ExperimentConfig {
  std::string name, pretrained, config_path;
  std::vector<uint64_t> seeds = {1};
  int max_length = 64;
  std::vector<DatasetSpec> datasets;
  std::vector<AttackEntry> attacks;
  std::vector<DefenseEntry> defenses;
  TrainSpec attack_train = TrainSpec::of(attack::attack_training_defaults());
  TrainSpec defense_train = TrainSpec::of(purify::clean_tuning_defaults());
  std::vector<double> thresholds = {1, 3, 5};  ///< accuracy budgets in points
  int64_t fisher_examples = 0;
  nlohmann::json raw;
};

/// The data files of one dataset and seed (under out/data/<dataset>/).
struct PreparedData {
  std::string attacker_train, test, clean, clean_dev;
  int64_t num_labels = 2;
};
/// Writes the dataset's files for one seed: the attacker's training rows (the first train_limit,
/// else all but clean_size), the defender's clean set (a seeded draw of clean_size rows the attacker
/// never trains on), the clean dev set (the first clean_dev_size dev rows) and the test set.
PreparedData prepare_data(const DatasetSpec& d, uint64_t seed, const std::string& out);

/// Parses and validates a config (JSON). Errors name the file and the offending field.
ExperimentConfig load_config(const std::string& path);

struct RunOptions {
  std::string out;             ///< output folder (results, cache, report)
  bool report_only = false;    ///< rebuild tables/plots from results.jsonl without running anything
  std::vector<std::string> datasets;  ///< run only these config datasets (empty = all); the report covers every row
  std::vector<std::string> attacks;   ///< run only these config attacks (empty = all)
  std::vector<std::string> defenses;  ///< run only these config defenses (empty = all; the undefended row always)
  std::vector<uint64_t> seeds;        ///< run only these config seeds (empty = all); a seed not run builds no models
};

/// Runs everything not already in `out/results.jsonl` (resume), then writes results.csv,
/// results.json, report.md and plots/*.svg. Returns the number of result rows.
int64_t run(const ExperimentConfig& cfg, const RunOptions& opt, torch::Device device);

/// The defense run of one unit: `base`'s options (the spec defaults) with the config's on top: the
/// defense training, the entry's method, grid and options, the largest budget, the Fisher size.
purify::DefenseSpec defense_spec(const ExperimentConfig& cfg, const DefenseEntry& d, uint64_t seed,
                                 const purify::DefenseSpec& base = {});
/// The attack run of one unit before its data paths are set: the attack's options with the dataset's
/// overrides on top, the dataset's target, bias word and max length, the attacker's training.
attack::AttackSpec attack_spec(const ExperimentConfig& cfg, const DatasetSpec& ds, const AttackEntry& a, uint64_t seed);

/// Builds results.csv / results.json / report.md / plots from result rows (one JSON object per row).
void write_report(const ExperimentConfig& cfg, const std::vector<nlohmann::json>& rows, const std::string& out);

/// For one (dataset, attack, seed, defense): the row chosen under budget `points` by `rule`
/// (purify::choose_knob on the rows' clean-dev accuracies; the fine-tuning row when none qualifies).
/// A defense without a knob but with a reset (reinit) is a one-point grid: it too must keep the budget.
/// `dev_rows`: the clean-dev row count for rows that do not record theirs ("clean_dev_rows").
/// nullptr if absent.
const nlohmann::json* choose_under_budget(const std::vector<nlohmann::json>& rows, const std::string& dataset,
                                          const std::string& attack, uint64_t seed, const std::string& defense,
                                          double points, purify::KnobRule rule, int64_t dev_rows);

}  // namespace finepurify::experiment
