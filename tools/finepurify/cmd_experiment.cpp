// `finepurify experiment --config FILE`: datasets x attacks x defenses x seeds, cached and resumable,
// with results tables and plots (see src/experiment).
#include <fmt/format.h>

#include "commands.hpp"
#include "finepurify/experiment/runner.hpp"

namespace fp_cli {

using namespace finepurify;

void register_experiment(CLI::App& app) {
  struct Args {
    std::string config, out;
    std::vector<std::string> datasets, attacks, defenses;
    std::vector<uint64_t> seeds;
    bool report_only = false;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("experiment", "Run an experiment config (attacks x defenses x seeds): results, tables, plots");
  cmd->add_option("--config", a->config, "experiment config (JSON), e.g. experiments/paper-small.json")
      ->required()->check(CLI::ExistingFile);
  cmd->add_option("--out", a->out, "output folder (default runs/<config name>); rerunning resumes");
  cmd->add_option("--datasets", a->datasets, "run only these datasets of the config (comma-separated); the report "
                  "still covers every row in results.jsonl")->delimiter(',');
  cmd->add_option("--attacks", a->attacks, "run only these attacks of the config (comma-separated)")->delimiter(',');
  cmd->add_option("--defenses", a->defenses, "run only these defenses of the config (comma-separated; the "
                  "undefended row always runs)")->delimiter(',');
  cmd->add_option("--seeds", a->seeds, "run only these seeds of the config (comma-separated); a finished seed "
                  "left out builds none of its models")->delimiter(',');
  cmd->add_flag("--report-only", a->report_only, "rebuild tables and plots from results.jsonl without running");
  cmd->callback([a]() {
    auto cfg = experiment::load_config(a->config);
    experiment::RunOptions ro;
    ro.out = a->out.empty() ? "runs/" + cfg.name : a->out;
    ro.report_only = a->report_only;
    ro.datasets = a->datasets;
    ro.attacks = a->attacks;
    ro.defenses = a->defenses;
    ro.seeds = a->seeds;
    auto n = experiment::run(cfg, ro, globals().dev());
    std::cout << fmt::format("{} result rows; report: {}/report.md (tables), {}/results.csv\n", n, ro.out, ro.out);
  });
}

}  // namespace fp_cli
