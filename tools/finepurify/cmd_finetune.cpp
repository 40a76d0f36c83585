// `finepurify finetune`: fine-tune a (pre-trained or classifier) HF folder on a labelled file;
// binds FinetuneSpec's table and calls train::run_finetune, then report::save_finetune.
#include <fmt/format.h>

#include "bind.hpp"
#include "finepurify/report/run_report.hpp"
#include "finepurify/util/runtime.hpp"

namespace fp_cli {

using namespace finepurify;

void register_finetune(CLI::App& app) {
  auto* cmd = app.add_subcommand("finetune", "Fine-tune a model folder on a labelled dataset and save an HF folder");
  auto a = add_spec_command(cmd, train::finetune_fields(), "output HF folder");
  cmd->callback([a]() {
    a->spec.compat = tokenizer_compat();
    train::check_finetune_output(a->spec, a->out, a->overwrite);
    auto run = train::run_finetune(a->spec, globals().dev());
    if (run.dev_eval) std::cout << fmt::format("dev accuracy: {:.2f}%\n", 100 * run.dev_eval->accuracy);
    report::save_finetune(run, a->spec, a->out, a->overwrite);
    util::log("saved " + a->out);
  });
}

}  // namespace fp_cli
