// The product's main job in one run (behind `finepurify demo`): plant a BadWord backdoor into a
// pre-trained model on SST-2 (seeded), scan the suspect (suspicious tokens, behavioural probe),
// purify it under an accuracy budget, and report before / after (clean accuracy, ASR, flip rate,
// the trigger found). Runs on the vendored model and data by default (no network, no ../shared).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "finepurify/attack/run.hpp"
#include "finepurify/purify/defense.hpp"
#include "finepurify/util/options.hpp"

namespace finepurify::experiment {

struct DemoSpec {
  std::string model;             ///< w_Pre folder or model name (the CLI's default: the vendored small BERT)
  std::string data;              ///< folder with train.tsv / dev.tsv / test.tsv (the CLI's default: vendored SST-2)
  std::string out = "runs/demo"; ///< suspect/, purified/, data/, demo.json, demo.md
  std::string trigger = "cf";
  int64_t target = 1;
  int64_t attacker_rows = 6000;  ///< the attacker fine-tunes on the first N training rows, 10% poisoned
  int64_t clean_rows = 800;      ///< the defender's clean rows (never seen by the attacker)
  int64_t clean_dev_rows = 300;  ///< the first N dev rows choose the knob
  int64_t test_rows = 1000;      ///< first N test rows
  int attack_epochs = 2;
  double max_acc_drop = 3;       ///< the defender's accuracy budget in points
  /// > 0: also neutralise the probe-confirmed trigger tokens (purify --neutralize-tokens N
  /// --probe-tokens 50); 0: the plain default purify.
  int64_t neutralize_tokens = 10;
  int max_length = 64;
  uint64_t seed = 42;
};

/// Every option of the demo, once (CLI flags, demo.json's manifest).
const util::Fields<DemoSpec>& demo_fields();

/// One model's clean-dev accuracy (what the budget is judged on) and its clean accuracy, ASR and flip
/// rate on the demo's test sets (fractions; -1 = not measurable).
struct DemoMetrics {
  double dev_accuracy = 0, clean_accuracy = 0, asr = 0, flip_rate = 0;
};

struct DemoResult {
  DemoMetrics suspect, purified;
  std::string trigger;              ///< the planted trigger
  std::vector<std::string> found;   ///< tokens the probe confirms (flip rate >= its threshold), most flipping first
  int64_t trigger_rank = 0;         ///< the trigger's rank in scan's token ranking (0 = not in its top list)
  double chosen_rho = 0;
  std::vector<std::string> neutralized;
  std::string suspect_dir, purified_dir, report_path;
  std::vector<std::pair<std::string, double>> stage_seconds;  ///< (stage, wall seconds)
  std::vector<std::string> commands;  ///< the equivalent `finepurify` command lines, in order
};

/// The wall-time estimate printed before the run starts: measured training / inference throughput
/// of the model times the work of each stage.
struct DemoEstimate {
  double train_examples_per_second = 0, inference_examples_per_second = 0;  ///< at mean_tokens
  int64_t train_tokens = 0, eval_tokens = 0;  ///< mean padded length of the training / evaluation batches
  double seconds = 0;
};
DemoEstimate estimate_demo(const DemoSpec& spec, torch::Device device);

/// Runs the whole demo and writes out/demo.json and out/demo.md (the table). `stage` is called as
/// each stage starts ("attack", "scan", "purify").
DemoResult run_demo(const DemoSpec& spec, torch::Device device,
                    const std::function<void(const std::string&)>& stage = {});

/// The before / after table (Markdown) of a demo result.
std::string demo_table(const DemoResult& r);
nlohmann::json demo_json(const DemoResult& r, const DemoSpec& spec);

}  // namespace finepurify::experiment
