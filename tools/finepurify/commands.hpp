// Shared pieces of the CLI: global options, subcommand registration, model/data loading helpers.
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "finepurify/model/loader.hpp"
#include "finepurify/text/dataset.hpp"
#include "finepurify/text/tokenizer.hpp"
#include "finepurify/train/data.hpp"
#include "finepurify/train/run.hpp"
#include "finepurify/train/trainer.hpp"

namespace fp_cli {

struct Globals {
  int threads = 0;
  std::string device = "cpu";
  bool quiet = false;
  std::string tokenizer_compat = "fast";
  bool strict = false;
  torch::Device dev() const;
};
Globals& globals();

/// Each subcommand file defines one of these; main() calls them all.
void register_finetune(CLI::App&), register_eval(CLI::App&), register_predict(CLI::App&), register_tokenize(CLI::App&),
    register_demo(CLI::App&), register_bench(CLI::App&), register_purify(CLI::App&), register_defend(CLI::App&),
    register_experiment(CLI::App&), register_scan(CLI::App&), register_attack(CLI::App&), register_models(CLI::App&),
    register_fisher(CLI::App&);

/// CLI11 transform for every option taking a model: a folder as given, else a store name, else a
/// Hugging Face hub cache entry (finepurify::io::resolve_model); unresolvable names are errors.
const CLI::Validator& model_folder();

/// The global --tokenizer-compat.
finepurify::text::Compat tokenizer_compat();
/// Tokenizer of a model folder, with the global --tokenizer-compat.
std::unique_ptr<finepurify::text::Tokenizer> load_tokenizer_for(const std::string& folder,
                                                                const finepurify::model::ModelConfig& c);
/// Reads a dataset, mapping label names through the model's id2label when they are not LABEL_i.
finepurify::text::Dataset read_data(const std::string& path, const finepurify::model::ModelConfig& c,
                                    bool require_labels = true, const std::string& text_column = "",
                                    const std::string& pair_column = "", const std::string& label_column = "label");
/// Loads a trained classifier folder (its head must be present).
/// Prints evaluation as a small table (accuracy, per-class P/R/F1, confusion matrix).
void print_eval(const finepurify::train::EvalResult& r, const std::vector<std::string>& names);
/// Writes text to a file atomically (temp + rename), refusing to overwrite `inputs`.
void write_output(const std::string& path, const std::string& content, const std::vector<std::string>& inputs);

/// The options every data-file command shares (model, data, columns, max length).
struct DataArgs {
  std::string model, data, output, text_column, pair_column, label_column = "label";
  int max_length = 128;
  int64_t batch_size = 128;
  bool json_out = false;
  int64_t target_label = -1;
  std::string attack_test;
};
/// A subcommand over a data file: its DataArgs and the shared data options bound.
std::pair<CLI::App*, std::shared_ptr<DataArgs>> add_data_command(CLI::App& app, const char* name, const char* help);

/// Loads the model folder and data file of `a` and runs eval-mode inference over every example
/// (train::run_eval; with --attack-test also the ASR).
finepurify::train::EvalRun run_inference(const DataArgs& a, torch::Device dev, bool require_labels);

}  // namespace fp_cli
