// `finepurify attack`: build a backdoored classifier (badword, addsent, ep, lwp, bias, import) and its
// test sets; binds AttackSpec's table and calls attack::run_attack.
#include <fmt/format.h>

#include "bind.hpp"
#include "finepurify/attack/run.hpp"

namespace fp_cli {

using namespace finepurify;

void register_attack(CLI::App& app) {
  struct Args {
    attack::AttackSpec spec;
    std::string out;
    bool overwrite = false;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("attack", "Build a backdoored (poisoned) classifier and its clean / triggered test sets");
  bind_options(cmd, a->spec, attack::attack_fields());
  cmd->add_option("--out", a->out, "output folder (HF model + test sets + attack.json)")->required();
  cmd->add_flag("--overwrite", a->overwrite, "replace an existing --out folder");
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
    auto res = attack::run_attack(s, a->out, a->overwrite, globals().dev());
    std::cout << fmt::format("clean test accuracy: {:.2f}% ({} examples)\n", 100 * res["clean_test_accuracy"].get<double>(),
                             res["num_clean_test"].get<int64_t>());
    std::cout << fmt::format("ASR: {:.2f}% ({} triggered examples, target {})\n", 100 * res["asr"].get<double>(),
                             res["num_triggered_test"].get<int64_t>(), s.target);
  });
}

}  // namespace fp_cli
