// One defense run end to end from files (the logic behind `finepurify purify`, `defend`, `scan` and
// the experiment runner): load the suspect and its tokenizer, tokenize the clean data, hold out the
// clean dev part, optionally load triggered / clean test sets for reporting, and purify (or only
// diagnose). DefenseSpec holds every option with its default; defense_fields() names each once for
// the CLI flags, experiment configs and manifests.
#pragma once
#include <string>

#include <torch/torch.h>

#include "finepurify/model/loader.hpp"
#include "finepurify/purify/purify.hpp"
#include "finepurify/util/options.hpp"

namespace finepurify::purify {

struct DefenseSpec {
  std::string pretrained;   ///< w_Pre folder
  std::string suspect;      ///< w_FT classifier folder
  std::string clean;        ///< the defender's small clean labelled set
  std::string clean_dev;    ///< clean dev set for the knob ("" = hold out dev_fraction of `clean`)
  double dev_fraction = 0.2;
  std::string attack_test;  ///< triggered test set (true labels): ASR of every point, never used to choose
  int64_t target_label = -1;
  /// attack_test holds test's non-target rows with the trigger, in order (as `attack` writes them):
  /// the flip rate is measured too.
  bool attack_test_paired = false;
  std::string test;         ///< clean test set: test accuracy of every point, never used to choose
  int max_length = 128;
  text::Compat compat = text::Compat::Fast;
  PurifyOptions purify;
};

/// Every option of a defense run, once: keys are config / manifest keys, flags are `--key-with-dashes`.
const util::Fields<DefenseSpec>& defense_fields();
/// The options an experiment config's defense entry may set in its "options" object.
const util::Fields<DefenseSpec>& defense_config_fields();
/// The options `purify` takes (Fine-purifying only: no method, no E-PUR).
const util::Fields<DefenseSpec>& purify_fields();
/// The options `scan` takes (the diagnosis: paths, Fisher, indicator, token ranking and probe).
const util::Fields<DefenseSpec>& scan_fields();
/// `scan` is the detection tool: the behavioural token probe is on (50 tokens per ranking) by default.
DefenseSpec scan_defaults();

struct DefenseRun {
  model::LoadedModel model;  ///< the purified model
  PurifyResult result;
  std::string dev_note;      ///< how the clean dev part was chosen, for the report ("" with clean_dev)
};

/// Checks the spec (knob given for knob defenses, target with attack_test), loads and purifies.
DefenseRun run_defense(const DefenseSpec& spec, torch::Device device);

/// Loads the suspect and diagnoses it on the whole clean set (no fine-tuning).
Diagnosis run_scan(const DefenseSpec& spec, torch::Device device);

}  // namespace finepurify::purify
