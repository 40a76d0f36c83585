// `finepurify purify`, `defend` and `scan`: bind DefenseSpec's table, call run_defense / run_scan
// (src/purify/defense.cpp), write the outputs through src/report.
#include <fmt/format.h>

#include "bind.hpp"
#include "finepurify/purify/defense.hpp"
#include "finepurify/report/purify_report.hpp"

namespace fp_cli {

using namespace finepurify;

namespace {
/// `purify` (Fine-purifying) and `defend --method NAME` (every defense) share options and outputs.
void register_reset_command(CLI::App& app, const char* name, const char* help, const util::Fields<purify::DefenseSpec>& fields) {
  auto* cmd = app.add_subcommand(name, help);
  auto a = add_spec_command(cmd, fields, "output HF folder (+ purify_report.json/.md)");
  cmd->get_option("--reset-fraction")->excludes(cmd->get_option("--max-acc-drop"));
  const std::string command = name;
  cmd->callback([a, command]() {
    auto& s = a->spec;
    s.compat = tokenizer_compat();
    model::check_output_not_input(a->out, {s.pretrained, s.suspect});
    auto run = purify::run_defense(s, globals().dev());
    report::save_defense(run, s, command, a->out, a->overwrite);
    const auto& r = run.result;
    std::cout << fmt::format("{}: {} = {}, clean-dev accuracy {:.2f}% (suspect {:.2f}%)", util::name_of(s.purify.method),
                             s.purify.method == purify::Defense::FinePruning ? "pruned fraction" : "rho", r.chosen_rho,
                             100 * r.purified_dev_accuracy, 100 * r.suspect_dev_accuracy);
    if (!s.attack_test.empty())
      std::cout << fmt::format(", ASR {:.2f}% (suspect {:.2f}%)", 100 * r.purified.asr, 100 * r.suspect.asr);
    std::cout << fmt::format("\nwrote {} (report: {}/purify_report.md)\n", a->out, a->out);
  });
}
}  // namespace

void register_purify(CLI::App& app) {
  register_reset_command(app, "purify", "Fine-purifying: reset poisonous dimensions to w_Pre, fine-tune on clean data",
                         purify::purify_fields());
}

void register_defend(CLI::App& app) {
  register_reset_command(app, "defend", "Run one defense (fine-purifying or a baseline) under the same clean data, "
                         "trainer and accuracy-budget rule", purify::defense_fields());
  app.get_subcommand("defend")->get_option("--method")->required();
}

void register_scan(CLI::App& app) {
  struct Scan {
    purify::DefenseSpec spec = purify::scan_defaults();
    std::string out;
    bool json = false;
  };
  auto a = std::make_shared<Scan>();
  auto* cmd = app.add_subcommand("scan", "Report suspicious dimensions and tokens (Fisher + indicator, no fine-tuning)");
  bind_options(cmd, a->spec, purify::scan_fields());
  cmd->add_option("--report", a->out, "also write the diagnosis as JSON (.json), Markdown (.md) or HTML (.html); "
                                       "an .html page with the plots is written beside a .json or .md");
  cmd->add_flag("--json", a->json, "print JSON instead of Markdown");
  cmd->callback([a]() {
    auto& s = a->spec;
    s.compat = tokenizer_compat();
    const auto j = report::diagnosis_json(purify::run_scan(s, globals().dev()).summary);
    std::cout << (a->json ? j.dump(2) + "\n" : report::diagnosis_page_markdown(j));
    if (!a->out.empty()) report::save_diagnosis(j, a->out, {s.pretrained, s.suspect, s.clean});
  });
}

}  // namespace fp_cli
