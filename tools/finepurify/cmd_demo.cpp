// `finepurify demo`: the main job in one command (experiment/demo.hpp): plant a BadWord backdoor into
// the vendored small BERT on vendored SST-2 (or --model / --data), scan it, purify it under a
// 3-point budget, print the before / after table. Says how long it will take before it starts.
#include <fmt/format.h>

#include "bind.hpp"
#include "finepurify/experiment/demo.hpp"
#include "finepurify/report/html.hpp"
#include "finepurify/util/runtime.hpp"

namespace fp_cli {

using namespace finepurify;

void register_demo(CLI::App& app) {
  struct Demo {
    experiment::DemoSpec spec;
    bool estimate_only = false;
  };
  auto a = std::make_shared<Demo>();
  a->spec.model = std::string(FINEPURIFY_ASSETS_DIR) + "/models/bert-mini-mlm";
  a->spec.data = std::string(FINEPURIFY_ASSETS_DIR) + "/data/sst2";
  auto* cmd = app.add_subcommand(
      "demo", "The main job on the vendored model and data: plant a backdoor, scan, purify, before / after table");
  bind_options(cmd, a->spec, experiment::demo_fields());
  cmd->add_flag("--estimate-only", a->estimate_only, "print the time estimate and stop");
  cmd->callback([a]() {
    const auto& s = a->spec;
    auto dev = globals().dev();
    const auto est = experiment::estimate_demo(s, dev);
    std::cout << fmt::format(
                     "demo: {} on {}: about {} on this machine (measured just now: training {:.0f} ex/s, inference "
                     "{:.0f} ex/s, batches of 32 x {} and 32 x {} tokens)",
                     s.model, s.data, util::format_duration(est.seconds), est.train_examples_per_second,
                     est.inference_examples_per_second, est.train_tokens, est.eval_tokens)
              << std::endl;
    if (a->estimate_only) return;
    int n = 0;
    auto r = experiment::run_demo(s, dev, [&](const std::string& stage) {
      ++n;
      std::string line = stage == "attack" ? "plant the BadWord trigger '" + s.trigger + "' (the attacker's side)"
                         : stage == "scan" ? "Fisher, indicator, suspicious tokens, behavioural probe (the defender)"
                                           : fmt::format("reset, clean fine-tuning, {}-point accuracy budget", s.max_acc_drop);
      std::cout << fmt::format("demo [{}/3] {}: {}", n, stage, line) << std::endl;
    });
    std::cout << "\n" << experiment::demo_table(r) << "\n";
    for (auto& [stage, secs] : r.stage_seconds) std::cout << fmt::format("  {}: {}\n", stage, util::format_duration(secs));
    const auto html = report::html_path_for(r.report_path);
    std::cout << fmt::format("demo: suspect model {}\ndemo: purified model {} (report: {}/purify_report.html)\n"
                             "demo: summary {} (with the plots: {})\n",
                             r.suspect_dir, r.purified_dir, r.purified_dir, r.report_path, html);
  });
}

}  // namespace fp_cli
