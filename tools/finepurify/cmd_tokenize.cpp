// `finepurify tokenize` and `fisher`: the encodings, or the clean diagonal Fisher, of a data file.
#include <sstream>

#include <fmt/format.h>

#include "commands.hpp"
#include "finepurify/io/safetensors.hpp"
#include "finepurify/purify/fisher.hpp"
#include "finepurify/util/runtime.hpp"

namespace fp_cli {

using namespace finepurify;

void register_tokenize(CLI::App& app) {
  auto [cmd, a] = add_data_command(app, "tokenize", "Write input_ids/token_type_ids/attention_mask per example (JSON Lines)");
  cmd->add_option("--output", a->output, "output .jsonl")->required();
  cmd->callback([a]() {
    auto cfg = model::load_config(a->model);
    auto tok = load_tokenizer_for(a->model, cfg);
    auto data = read_data(a->data, cfg, false, a->text_column, a->pair_column, a->label_column);
    std::ostringstream os;
    for (auto& ex : data.examples) {
      auto e = tok->encode(ex.text_a, ex.text_b, a->max_length);
      os << nlohmann::json{{"input_ids", e.input_ids}, {"token_type_ids", e.token_type_ids}, {"attention_mask", e.attention_mask}}.dump()
         << "\n";
    }
    write_output(a->output, os.str(), {a->model, a->data});
    util::log(fmt::format("wrote {} encodings to {}", data.examples.size(), a->output));
  });
}

void register_fisher(CLI::App& app) {
  auto [cmd, a] = add_data_command(app, "fisher", "Write the diagonal empirical Fisher of a classifier on labelled data (safetensors, HF names)");
  cmd->add_option("--output", a->output, "output .safetensors (one float32 tensor per parameter)")->required();
  auto examples = std::make_shared<int64_t>(0);
  cmd->add_option("--examples", *examples, "use only the first N examples (0 = all)")->check(CLI::NonNegativeNumber);
  auto batch = std::make_shared<int64_t>(purify::FisherOptions{}.batch_size);
  cmd->add_option("--batch-size", *batch, "examples per forward pass (1 = the per-example reference loop)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->callback([a, examples, batch]() {
    auto dev = globals().dev();
    auto lm = model::load_trained_classifier(a->model, dev);
    auto tok = load_tokenizer_for(a->model, lm.config);
    auto data = train::tokenize(*tok, read_data(a->data, lm.config, true, a->text_column, a->pair_column, a->label_column),
                                a->max_length);
    purify::FisherOptions fo;
    fo.max_examples = *examples;
    fo.batch_size = *batch;
    fo.progress = !globals().quiet;
    auto fisher = purify::diagonal_fisher(*lm.model, data, dev, fo);
    model::check_output_not_input(a->output, {a->model, a->data});
    std::vector<std::pair<std::string, torch::Tensor>> out(fisher.begin(), fisher.end());
    io::write_safetensors(a->output, out, {{"finepurify", "diagonal empirical Fisher"}});
    util::log(fmt::format("wrote the Fisher of {} tensors to {}", out.size(), a->output));
  });
}

}  // namespace fp_cli
