// The JSON forms of training, evaluation and attack results (manifests, attack.json, eval --json)
// and the output folders of attack and fine-tuning runs.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "finepurify/attack/run.hpp"
#include "finepurify/train/run.hpp"
#include "finepurify/train/trainer.hpp"

namespace finepurify::report {

nlohmann::json train_json(const train::TrainResult& r);
/// Accuracy, macro F1, per-class P/R/F1 (named by `label_names` where given) and the confusion matrix.
nlohmann::json eval_json(const train::EvalResult& r, const std::vector<std::string>& label_names = {});
nlohmann::json trigger_json(const attack::Trigger& t);

/// attack.json's content.
nlohmann::json attack_json(const attack::AttackRun& run, const attack::AttackSpec& spec);
/// Writes the poisoned model as an HF folder at `out` (atomically; never over an input) with
/// clean_test.tsv, triggered_test.tsv, poisoned_train.tsv, attack.json and manifest.json.
void save_attack(attack::AttackRun& run, const attack::AttackSpec& spec, const std::string& out, bool overwrite);
/// The result recorded in an attack folder's attack.json (Error(DataInvalid) naming the file if malformed).
attack::AttackResult load_attack_result(const std::string& folder);

/// Writes the fine-tuned model as an HF folder at `out` with its manifest.
void save_finetune(train::FinetuneRun& run, const train::FinetuneSpec& spec, const std::string& out, bool overwrite);

}  // namespace finepurify::report
