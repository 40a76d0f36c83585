// CLI helpers shared by subcommands: tokenizer/data loading, printing, safe output writing.
#include <filesystem>
#include <iostream>

#include <fmt/format.h>

#include "commands.hpp"
#include "finepurify/error.hpp"
#include "finepurify/io/checkpoint.hpp"

namespace fp_cli {

using namespace finepurify;

text::Compat tokenizer_compat() { return globals().tokenizer_compat == "slow" ? text::Compat::Slow : text::Compat::Fast; }

std::unique_ptr<text::Tokenizer> load_tokenizer_for(const std::string& folder, const model::ModelConfig& c) {
  return text::load_model_tokenizer(folder, c.model_type, c.vocab_size, tokenizer_compat());
}

text::Dataset read_data(const std::string& path, const model::ModelConfig& c, bool require_labels,
                        const std::string& text_column, const std::string& pair_column, const std::string& label_column) {
  return train::read_task_data(path, c, require_labels, text_column, pair_column, label_column);
}

void print_eval(const train::EvalResult& r, const std::vector<std::string>& names) {
  std::cout << fmt::format("accuracy: {:.2f}% ({} examples)\n", 100 * r.accuracy, r.n);
  std::cout << fmt::format("{:>16} {:>9} {:>9} {:>9}\n", "class", "precision", "recall", "f1");
  for (std::size_t c = 0; c < r.f1.size(); ++c)
    std::cout << fmt::format("{:>16} {:>9.4f} {:>9.4f} {:>9.4f}\n", c < names.size() ? names[c] : std::to_string(c),
                             r.precision[c], r.recall[c], r.f1[c]);
  std::cout << fmt::format("macro F1: {:.4f}\nconfusion (rows = true, columns = predicted):\n", r.macro_f1);
  for (auto& row : r.confusion) {
    for (auto v : row) std::cout << fmt::format("{:>8}", v);
    std::cout << "\n";
  }
}

void write_output(const std::string& path, const std::string& content, const std::vector<std::string>& inputs) {
  model::check_output_not_input(path, inputs);
  auto parent = std::filesystem::absolute(path).parent_path();
  std::filesystem::create_directories(parent);
  io::write_text_atomic(path, content);
}

std::pair<CLI::App*, std::shared_ptr<DataArgs>> add_data_command(CLI::App& app, const char* name, const char* help) {
  auto p = std::make_shared<DataArgs>();
  auto* cmd = app.add_subcommand(name, help);
  auto& a = *p;
  cmd->add_option("--model", a.model, "HF classifier folder or model name")->required()->transform(model_folder());
  cmd->add_option("--data", a.data, "data file (.tsv/.csv/.jsonl)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--max-length", a.max_length, "max tokens incl. specials")->capture_default_str();
  cmd->add_option("--text-column", a.text_column, "text column (csv/jsonl)");
  cmd->add_option("--pair-column", a.pair_column, "second text column (csv/jsonl)");
  cmd->add_option("--label-column", a.label_column, "label column")->capture_default_str();
  return {cmd, p};
}

train::EvalRun run_inference(const DataArgs& a, torch::Device dev, bool require_labels) {
  train::EvalSpec s;
  s.model = a.model;
  s.data = a.data;
  s.text_column = a.text_column;
  s.pair_column = a.pair_column;
  s.label_column = a.label_column;
  s.max_length = a.max_length;
  s.batch_size = a.batch_size;
  s.require_labels = require_labels;
  s.attack_test = a.attack_test;
  s.target_label = a.target_label;
  s.compat = tokenizer_compat();
  return train::run_eval(s, dev);
}

}  // namespace fp_cli
