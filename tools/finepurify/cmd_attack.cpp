// `finepurify attack`: build a backdoored classifier (badword, addsent, ep, lwp, bias, import) and its
// test sets; binds AttackSpec's table and calls attack::run_attack, then report::save_attack.
#include <fmt/format.h>

#include "bind.hpp"
#include "finepurify/report/run_report.hpp"
#include "finepurify/util/runtime.hpp"

namespace fp_cli {

using namespace finepurify;

void register_attack(CLI::App& app) {
  auto* cmd = app.add_subcommand("attack", "Build a backdoored (poisoned) classifier and its clean / triggered test sets");
  auto a = add_spec_command(cmd, attack::attack_fields(), "output folder (HF model + test sets + attack.json)");
  auto* lr = cmd->get_option("--lr");
  cmd->callback([a, lr]() {
    auto& s = a->spec;
    for (auto& w : s.triggers) {  // "cf, mn" as well as "cf,mn"
      const auto b = w.find_first_not_of(' '), e = w.find_last_not_of(' ');
      w = b == std::string::npos ? "" : w.substr(b, e - b + 1);
    }
    std::erase(s.triggers, std::string());
    s.lr_given = lr->count() > 0;
    s.compat = tokenizer_compat();
    attack::check_attack_output(s, a->out, a->overwrite);
    auto run = attack::run_attack(s, globals().dev());
    report::save_attack(run, s, a->out, a->overwrite);
    util::log("saved " + a->out);
    const auto& res = run.result;
    std::cout << fmt::format("clean test accuracy: {:.2f}% ({} examples)\n", 100 * res.clean_test_accuracy, res.num_clean_test);
    std::cout << fmt::format("ASR: {:.2f}% ({} triggered examples, target {})\n", 100 * res.asr, res.num_triggered_test,
                             s.target);
  });
}

}  // namespace fp_cli
