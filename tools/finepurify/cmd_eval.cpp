// `finepurify eval` and `predict`: eval-mode inference over a data file with a model folder.
#include <sstream>

#include <fmt/format.h>

#include "commands.hpp"
#include "finepurify/error.hpp"
#include "finepurify/report/run_report.hpp"
#include "finepurify/util/runtime.hpp"

namespace fp_cli {

using namespace finepurify;
using nlohmann::json;

void register_eval(CLI::App& app) {
  auto [cmd, a] = add_data_command(app, "eval", "Accuracy, per-class precision/recall/F1 and confusion matrix");
  cmd->add_option("--batch-size", a->batch_size, "inference batch size")->capture_default_str();
  cmd->add_flag("--json", a->json_out, "print JSON instead of a table");
  cmd->add_option("--attack-test", a->attack_test, "triggered test set: also report ASR")->check(CLI::ExistingFile);
  cmd->add_option("--target-label", a->target_label, "attack target label (with --attack-test)");
  cmd->callback([a]() {
    if (!a->attack_test.empty() && a->target_label < 0)
      throw Error(ErrorKind::InvalidArgument, "--attack-test needs --target-label");
    const auto run = run_inference(*a, globals().dev(), true);
    const auto& names = run.model.config.id2label;
    json j = report::eval_json(run.result, names);
    if (run.asr) j["asr"] = *run.asr;
    if (a->json_out) {
      std::cout << j.dump(2) << "\n";
    } else {
      print_eval(run.result, names);
      if (j.contains("asr")) std::cout << fmt::format("attack success rate: {:.2f}%\n", 100 * j["asr"].get<double>());
    }
  });
}

void register_predict(CLI::App& app) {
  auto [cmd, a] = add_data_command(app, "predict", "Write {\"logits\": [...], \"pred\": k} per example as JSON Lines");
  cmd->add_option("--output", a->output, "output .jsonl")->required();
  cmd->add_option("--batch-size", a->batch_size, "inference batch size")->capture_default_str();
  cmd->callback([a]() {
    const auto run = run_inference(*a, globals().dev(), false);
    const auto& r = run.result;
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

}  // namespace fp_cli
