// `finepurify eval`, `predict`, `tokenize` and `fisher`: inference (or the clean Fisher) over a data
// file with a model folder.
#include <sstream>

#include <fmt/format.h>

#include "commands.hpp"
#include "finepurify/error.hpp"
#include "finepurify/io/safetensors.hpp"
#include "finepurify/purify/fisher.hpp"
#include "finepurify/util/runtime.hpp"

namespace fp_cli {

using namespace finepurify;
using nlohmann::json;

namespace {
struct DataArgs {
  std::string model, data, output, text_column, pair_column, label_column = "label";
  int max_length = 128;
  int64_t batch_size = 128;
  bool json_out = false;
  int64_t target_label = -1;
  std::string attack_test;
};

void add_data_options(CLI::App* cmd, DataArgs& a) {
  cmd->add_option("--model", a.model, "HF classifier folder or model name")->required()->transform(model_folder());
  cmd->add_option("--data", a.data, "data file (.tsv/.csv/.jsonl)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--max-length", a.max_length, "max tokens incl. specials")->capture_default_str();
  cmd->add_option("--text-column", a.text_column, "text column (csv/jsonl)");
  cmd->add_option("--pair-column", a.pair_column, "second text column (csv/jsonl)");
  cmd->add_option("--label-column", a.label_column, "label column")->capture_default_str();
}
struct Inference {
  model::LoadedModel lm;
  std::unique_ptr<text::Tokenizer> tok;
  train::EvalResult result;
};

/// Loads the model folder and data file of `a` and runs eval-mode inference over every example.
Inference run_inference(const DataArgs& a, torch::Device dev, bool require_labels) {
  Inference in;
  in.lm = model::load_trained_classifier(a.model, dev);
  in.tok = load_tokenizer_for(a.model, in.lm.config);
  auto data = train::tokenize(
      *in.tok, read_data(a.data, in.lm.config, require_labels, a.text_column, a.pair_column, a.label_column), a.max_length);
  in.result = train::evaluate(*in.lm.model, data, dev, a.batch_size);
  return in;
}
}  // namespace

void register_eval(CLI::App& app) {
  auto a = std::make_shared<DataArgs>();
  auto* cmd = app.add_subcommand("eval", "Accuracy, per-class precision/recall/F1 and confusion matrix");
  add_data_options(cmd, *a);
  cmd->add_option("--batch-size", a->batch_size, "inference batch size")->capture_default_str();
  cmd->add_flag("--json", a->json_out, "print JSON instead of a table");
  cmd->add_option("--attack-test", a->attack_test, "triggered test set: also report ASR")->check(CLI::ExistingFile);
  cmd->add_option("--target-label", a->target_label, "attack target label (with --attack-test)");
  cmd->callback([a]() {
    auto dev = globals().dev();
    auto [lm, tok, r] = run_inference(*a, dev, true);
    json j = r.to_json(lm.config.id2label);
    if (!a->attack_test.empty()) {
      if (a->target_label < 0) throw Error(ErrorKind::InvalidArgument, "--attack-test needs --target-label");
      auto at = train::tokenize(*tok, read_data(a->attack_test, lm.config), a->max_length);
      auto ra = train::evaluate(*lm.model, at, dev, a->batch_size);
      j["asr"] = train::attack_success_rate(ra.predictions, at.labels, a->target_label);
    }
    if (a->json_out) {
      std::cout << j.dump(2) << "\n";
    } else {
      print_eval(r, lm.config.id2label);
      if (j.contains("asr")) std::cout << fmt::format("attack success rate: {:.2f}%\n", 100 * j["asr"].get<double>());
    }
  });
}

void register_predict(CLI::App& app) {
  auto a = std::make_shared<DataArgs>();
  auto* cmd = app.add_subcommand("predict", "Write {\"logits\": [...], \"pred\": k} per example as JSON Lines");
  add_data_options(cmd, *a);
  cmd->add_option("--output", a->output, "output .jsonl")->required();
  cmd->add_option("--batch-size", a->batch_size, "inference batch size")->capture_default_str();
  cmd->callback([a]() {
    auto [lm, tok, r] = run_inference(*a, globals().dev(), false);
    std::ostringstream os;
    auto acc = r.logits.accessor<float, 2>();
    for (int64_t i = 0; i < r.n; ++i) {
      json row = {{"logits", std::vector<float>(&acc[i][0], &acc[i][0] + r.logits.size(1))}, {"pred", r.predictions[i]}};
      os << row.dump() << "\n";
    }
    write_output(a->output, os.str(), {a->model, a->data});
    util::log(fmt::format("wrote {} predictions to {}", r.n, a->output));
  });
}

void register_tokenize(CLI::App& app) {
  auto a = std::make_shared<DataArgs>();
  auto* cmd = app.add_subcommand("tokenize", "Write input_ids/token_type_ids/attention_mask per example (JSON Lines)");
  add_data_options(cmd, *a);
  cmd->add_option("--output", a->output, "output .jsonl")->required();
  cmd->callback([a]() {
    auto cfg = model::load_config(a->model);
    auto tok = load_tokenizer_for(a->model, cfg);
    auto data = read_data(a->data, cfg, false, a->text_column, a->pair_column, a->label_column);
    std::ostringstream os;
    for (auto& ex : data.examples) {
      auto e = tok->encode(ex.text_a, ex.text_b, a->max_length);
      os << json{{"input_ids", e.input_ids}, {"token_type_ids", e.token_type_ids}, {"attention_mask", e.attention_mask}}.dump()
         << "\n";
    }
    write_output(a->output, os.str(), {a->model, a->data});
    util::log(fmt::format("wrote {} encodings to {}", data.examples.size(), a->output));
  });
}

void register_fisher(CLI::App& app) {
  auto a = std::make_shared<DataArgs>();
  auto* cmd = app.add_subcommand("fisher", "Write the diagonal empirical Fisher of a classifier on labelled data (safetensors, HF names)");
  add_data_options(cmd, *a);
  cmd->add_option("--output", a->output, "output .safetensors (one float32 tensor per parameter)")->required();
  auto examples = std::make_shared<int64_t>(0);
  cmd->add_option("--examples", *examples, "use only the first N examples (0 = all)")->check(CLI::NonNegativeNumber);
  cmd->callback([a, examples]() {
    auto dev = globals().dev();
    auto lm = model::load_trained_classifier(a->model, dev);
    auto tok = load_tokenizer_for(a->model, lm.config);
    auto data = train::tokenize(*tok, read_data(a->data, lm.config, true, a->text_column, a->pair_column, a->label_column),
                                a->max_length);
    purify::FisherOptions fo;
    fo.max_examples = *examples;
    fo.progress = !globals().quiet;
    auto fisher = purify::diagonal_fisher(*lm.model, data, dev, fo);
    model::check_output_not_input(a->output, {a->model, a->data});
    std::vector<std::pair<std::string, torch::Tensor>> out(fisher.begin(), fisher.end());
    io::write_safetensors(a->output, out, {{"finepurify", "diagonal empirical Fisher"}});
    util::log(fmt::format("wrote the Fisher of {} tensors to {}", out.size(), a->output));
  });
}

}  // namespace fp_cli
