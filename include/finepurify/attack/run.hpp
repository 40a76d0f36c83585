// One attack run end to end (the logic behind `finepurify attack` and the experiment runner):
// poison the attacker's data, train the backdoored model, build the clean / triggered test sets,
// measure clean accuracy and ASR (report::save_attack writes the HF folder with the test sets, attack.json
// and manifest).
#pragma once
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "finepurify/attack/attacks.hpp"
#include "finepurify/model/loader.hpp"
#include "finepurify/text/tokenizer.hpp"
#include "finepurify/train/trainer.hpp"
#include "finepurify/util/options.hpp"

namespace finepurify::attack {

/// How an attack plants its backdoor. Data: rows with the trigger inserted and the target label,
/// fine-tuned on with the clean rows (BadWord, AddSent, bias, LWP); Embedding: EP, only the trigger
/// words' embedding rows of a clean classifier trained on the poisoned rows; Import: the attacker's
/// own poisoned training file and triggered test file.
enum class Poisoning { Data, Embedding, Import };

struct AttackSpec;

/// One row per attack method: a new data-poisoning attack is its trigger (one file in src/attack)
/// plus a row here (src/attack/run.cpp).
struct AttackMethod {
  const char* name;
  const char* help;
  Poisoning poisoning;
  Trigger (*trigger)(const AttackSpec&);                    ///< the trigger from the spec's options
  train::TrainOptions (*training)(train::TrainOptions);     ///< adjusts the fine-tuning (LWP's loss) or null
};
const std::vector<AttackMethod>& attack_method_table();
/// The row of `name` (Error(InvalidArgument) listing the methods).
const AttackMethod& attack_method(const std::string& name);

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

/// The learning rate the attack trains with: the spec's, except EP without an explicit lr (1e-2:
/// only one embedding row learns).
double attack_lr(const AttackSpec& spec);

/// Every option of an attack run, once (CLI flags, experiment configs, manifests).
const util::Fields<AttackSpec>& attack_fields();
/// The options an experiment config's attack entry (or a dataset's attack_options) may set.
const util::Fields<AttackSpec>& attack_config_fields();

/// The headline numbers of an attack run (attack.json holds them with the details).
struct AttackResult {
  double clean_test_accuracy = 0, asr = 0;
  int64_t num_clean_test = 0, num_triggered_test = 0;
};

/// Everything an attack run produced; report::save_attack writes it as an HF folder with the test
/// sets, attack.json and manifest.json.
struct AttackRun {
  model::LoadedModel model;       ///< the poisoned model
  std::string model_dir;          ///< the folder it started from (tokenizer files are copied from there)
  Trigger trigger;
  PoisonResult pr;                ///< the attacker's (poisoned) training set
  TestSets ts;                    ///< clean and triggered test sets
  train::TrainOptions opt;        ///< as used by the final training
  train::TrainResult train;
  std::optional<train::TrainResult> clean_stage;  ///< ep from w_Pre: the clean fine-tune first
  double before_accuracy = -1, before_asr = -1;   ///< ep: the clean model before poisoning
  std::vector<int64_t> trigger_rows;              ///< ep: the trained embedding rows
  train::EvalResult clean_eval;   ///< the poisoned model on the clean test set
  AttackResult result;
};

/// The input paths of a spec (never written over).
std::vector<std::string> attack_inputs(const AttackSpec& spec);
/// Refuses an `out` that is an input, or that exists without `overwrite` (call before the run).
void check_attack_output(const AttackSpec& spec, const std::string& out, bool overwrite);
/// Poisons the attacker's data, trains the backdoored model, builds the clean / triggered test sets
/// and measures clean accuracy and ASR.
AttackRun run_attack(const AttackSpec& spec, torch::Device device);

}  // namespace finepurify::attack
