// One attack run end to end (the logic behind `finepurify attack` and the experiment runner):
// poison the attacker's data, train the backdoored model, build the clean / triggered test sets,
// measure clean accuracy and ASR, and write an HF folder with the test sets, attack.json and manifest.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "finepurify/attack/attacks.hpp"
#include "finepurify/text/tokenizer.hpp"
#include "finepurify/train/trainer.hpp"
#include "finepurify/util/options.hpp"

namespace finepurify::attack {

/// The attacker's fine-tuning: 3 epochs (measured: 2 epochs gave ASR 86.6%, badword, SST-2, small
/// BERT), lr 1e-4, batch 32 (other fields TrainOptions').
train::TrainOptions attack_training_defaults();

struct AttackSpec {
  std::string method;             ///< badword | addsent | ep | lwp | bias | import
  std::string pretrained;         ///< w_Pre folder (ep: fine-tuned clean first when no clean_model)
  std::string clean_model;        ///< ep: clean fine-tuned classifier
  std::string train, dev, test;   ///< attacker's clean training data, optional dev, clean test data
  std::string poisoned_train, triggered_test;  ///< import
  int64_t target = -1;
  double poison_rate = 0.1;
  std::vector<std::string> triggers;  ///< empty: defaults (cf,mn,bb,tq,mb; ep: cf)
  std::string sentence = kDefaultSentence, bias_word = kDefaultBiasWord;
  int combination = 2;
  std::string side = "a";         ///< pairs: the trigger goes into text a or b
  int max_length = 64;
  int64_t train_limit = 0;        ///< > 0: the attacker trains on the first N rows only
  int64_t test_limit = 0;         ///< > 0: the clean test set is cut to its first N rows
  train::TrainOptions opt = attack_training_defaults();
  bool lr_given = false;          ///< ep: false = lr 1e-2
  text::Compat compat = text::Compat::Fast;
};

/// Every option of an attack run, once (CLI flags, experiment configs, manifests).
const util::Fields<AttackSpec>& attack_fields();
/// The options an experiment config's attack entry (or a dataset's attack_options) may set.
const util::Fields<AttackSpec>& attack_config_fields();

/// The headline numbers of an attack run (attack.json holds them with the details).
struct AttackResult {
  double clean_test_accuracy = 0, asr = 0;
  int64_t num_clean_test = 0, num_triggered_test = 0;
};

/// Runs the attack and writes `out` atomically (HF folder + clean_test.tsv, triggered_test.tsv,
/// poisoned_train.tsv, attack.json, manifest.json). Refuses to write over an input; replaces `out`
/// only with `overwrite`.
AttackResult run_attack(const AttackSpec& spec, const std::string& out, bool overwrite, torch::Device device);

/// The result recorded in an attack folder's attack.json (Error(DataInvalid) naming the file if malformed).
AttackResult load_attack_result(const std::string& folder);

}  // namespace finepurify::attack
