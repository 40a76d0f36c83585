// Experiment outputs: results.csv / results.json, Markdown tables in the paper's form (per accuracy
// budget: ACC and ASR of every defense, mean ± std over seeds), SVG plots in report.md, and the same
// as one self-contained report.html.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "finepurify/error.hpp"
#include "finepurify/experiment/runner.hpp"
#include "finepurify/io/checkpoint.hpp"
#include "finepurify/report/html.hpp"
#include "finepurify/report/svg.hpp"

namespace finepurify::experiment {

using nlohmann::json;
namespace fs = std::filesystem;

const json* choose_under_budget(const std::vector<json>& rows, const std::string& dataset, const std::string& attack,
                                uint64_t seed, const std::string& defense, double points, purify::KnobRule rule,
                                int64_t dev_rows) {
  const json* fallback = nullptr;
  bool ran = false;               // the defense has rows here (else nullptr: not run, not "fell back")
  std::vector<const json*> grid;  // the defense's rows with a knob > 0
  for (auto& r : rows) {
    if (r.value("dataset", "") != dataset || r.value("attack", "") != attack || r.value("seed", 0ull) != seed)
      continue;
    const auto d = r.value("defense", std::string());
    if (d == "finetune" || (d == defense && r.value("knob", 0.0) == 0.0)) fallback = &r;
    if (d != defense) continue;
    ran = true;
    const std::string method = r.value("method", d);
    if (method == "finetune") return &r;  // no knob and no reset: the single point
    // Everything else, reinit's single full reset included, must keep the budget or falls back.
    if (r.value("knob", 0.0) > 0) grid.push_back(&r);
  }
  if (!ran) return nullptr;
  if (grid.empty()) return fallback;
  std::sort(grid.begin(), grid.end(), [](auto* a, auto* b) { return a->value("knob", 0.0) < b->value("knob", 0.0); });
  std::vector<purify::KnobPoint> pts;
  for (auto* r : grid) pts.push_back({r->value("knob", 0.0), r->value("dev_acc", 0.0)});
  const int64_t n_dev = grid.front()->value("clean_dev_rows", dev_rows);
  if (rule == purify::KnobRule::Tolerant && n_dev < 1)
    throw Error(ErrorKind::InvalidArgument,
                fmt::format("experiment report: dataset {}'s rows record no clean_dev_rows and the config sets no "
                            "clean_dev_size; the tolerant knob rule needs the clean-dev row count", dataset));
  const auto i = purify::choose_knob(pts, grid.front()->value("suspect_dev_acc", 0.0), points, rule, n_dev);
  return i >= 0 ? grid[static_cast<std::size_t>(i)] : fallback;
}

namespace {

struct Stat {
  std::vector<double> v;
  double mean() const {
    double m = 0;
    for (double x : v) m += x;
    return v.empty() ? 0 : m / v.size();
  }
  std::string str(int digits = 1) const {
    if (v.empty()) return "–";
    double m = 0, s = 0;
    for (double x : v) m += x;
    m /= v.size();
    if (v.size() == 1) return fmt::format("{:.{}f}", 100 * m, digits);
    for (double x : v) s += (x - m) * (x - m);
    s = std::sqrt(s / (v.size() - 1));
    return fmt::format("{:.{}f} ± {:.{}f}", 100 * m, digits, 100 * s, digits);
  }
};

std::string csv_field(const json& v) {
  if (v.is_string()) {
    auto s = v.get<std::string>();
    if (s.find_first_of(",\"\n") == std::string::npos) return s;
    std::string q = "\"";
    for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
    return q + "\"";
  }
  if (v.is_null()) return "";
  return v.dump();
}

std::string slug(const std::string& s) {
  std::string r;
  for (char c : s) r += std::isalnum(static_cast<unsigned char>(c)) ? c : '-';
  return r;
}

}  // namespace

namespace {

/// What every part of the report reads: the config's names in order and the rows.
struct ReportInput {
  const ExperimentConfig& cfg;
  const std::vector<json>& rows;
  const std::string& out;
  std::vector<std::string> datasets, attacks, defenses;
  /// The knob rule a defense of the config runs with.
  purify::KnobRule rule_of(const std::string& defense) const {
    for (auto& d : cfg.defenses)
      if (d.name == defense) return defense_spec(cfg, d, cfg.seeds.front()).purify.knob_rule;
    return purify::PurifyOptions{}.knob_rule;
  }
  /// The clean-dev row count of a dataset's defense units, for rows that do not record it.
  int64_t dev_rows_of(const std::string& dataset) const {
    for (auto& d : cfg.datasets)
      if (d.name == dataset) return d.clean_dev_size;
    return 0;
  }
  const json* choose(const std::string& ds, const std::string& at, uint64_t seed, const std::string& de,
                     double points) const {
    return choose_under_budget(rows, ds, at, seed, de, points, rule_of(de), dev_rows_of(ds));
  }
  std::vector<const json*> rows_of(const std::string& ds, const std::string& at, const std::string& de) const {
    std::vector<const json*> r;
    for (auto& x : rows)
      if (x.value("dataset", "") == ds && x.value("attack", "") == at && x.value("defense", "") == de) r.push_back(&x);
    return r;
  }
};

void write_tables(const std::vector<json>& rows, const std::string& out) {
  // results.csv and results.json
  const std::vector<std::string> cols = {"dataset", "attack", "seed", "defense", "method", "knob", "reset_dims",
                                         "dev_acc", "suspect_dev_acc", "test_acc", "asr", "flip", "clean_model_test_acc",
                                         "clean_model_asr", "clean_model_flip", "seconds"};
  std::string csv;
  for (std::size_t i = 0; i < cols.size(); ++i) csv += (i ? "," : "") + cols[i];
  csv += "\n";
  for (auto& r : rows) {
    for (std::size_t i = 0; i < cols.size(); ++i) csv += (i ? "," : "") + csv_field(r.value(cols[i], json()));
    csv += "\n";
  }
  io::write_text_atomic((fs::path(out) / "results.csv").string(), csv);
  io::write_text_atomic((fs::path(out) / "results.json").string(), json(rows).dump(1) + "\n");

}

std::string header_md(const ReportInput& c) {
  std::string md = fmt::format("# Experiment `{}`\n\n", c.cfg.name);
  md += fmt::format(
      "Config: `{}` · model: `{}` · seeds: {} · max length {} · attack training {} epochs lr {:g} · defense "
      "fine-tuning {} epochs lr {:g} · {} result rows.\n\n",
      c.cfg.config_path, c.cfg.pretrained, json(c.cfg.seeds).dump(), c.cfg.max_length, c.cfg.attack_train.epochs,
      c.cfg.attack_train.lr, c.cfg.defense_train.epochs, c.cfg.defense_train.lr, c.rows.size());
  for (auto& ds : c.cfg.datasets) {  // per-dataset settings that differ from the config-level ones
    std::vector<std::string> extra;
    if (ds.max_length > 0) extra.push_back(fmt::format("max length {}", ds.max_length));
    if (ds.attack_train)
      extra.push_back(fmt::format("attack training {} epochs lr {:g} batch {}", ds.attack_train->epochs,
                                  ds.attack_train->lr, ds.attack_train->batch_size));
    if (!ds.attack_options.empty()) extra.push_back("attack options " + ds.attack_options.dump());
    if (!extra.empty()) md += fmt::format("Dataset `{}`: {}.\n\n", ds.name, fmt::join(extra, " · "));
  }
  md += "ACC = clean test accuracy (%), ASR = attack success rate on triggered test examples whose true label is not "
        "the target (%). Each defense's knob is chosen per run from clean-dev accuracy alone, by its knob rule "
        "(`tolerant` unless the config says otherwise: the largest grid value whose clean-dev accuracy is not below "
        "the budget line, the suspect's clean-dev accuracy less the budget, by more than half a standard error of the "
        "suspect's clean-dev accuracy; fine-tuning when none qualifies). Values are mean ± std over seeds.\n\n";

  return md;
}

/// The clean reference model's ASR and flip rate over seeds (the floor a defense can reach).
std::pair<Stat, Stat> floor_of(const ReportInput& c, const std::string& ds, const std::string& at) {
  Stat asr, flip;
  for (auto* r : c.rows_of(ds, at, "none")) {
    if (r->contains("clean_model_asr")) asr.v.push_back(r->value("clean_model_asr", 0.0));
    if (r->value("clean_model_flip", -1.0) >= 0) flip.v.push_back(r->value("clean_model_flip", 0.0));
  }
  return {asr, flip};
}

std::string attacks_md(const ReportInput& c) {
  std::string md;
  md += "## Attacks on the undefended model\n\nThe clean fine-tune is trained on the same rows without poison; its "
        "ASR on the same triggered set is the floor a defense can reach (a model without a backdoor still "
        "predicts the target for some non-target inputs).\n\n"
        "Flip rate = share of the triggered rows whose clean row the model classifies correctly that the trigger "
        "turns into the target (leaves out the model's own errors; – for rows from before it was measured).\n\n"
        "| dataset | attack | clean fine-tune ACC | clean fine-tune ASR | clean fine-tune flip | poisoned ACC | "
        "poisoned ASR | poisoned flip |\n|---|---|---|---|---|---|---|---|\n";
  for (auto& ds : c.datasets)
    for (auto& at : c.attacks) {
      Stat ca, pa, asr, flip;
      const auto [casr, cflip] = floor_of(c, ds, at);
      for (auto* r : c.rows_of(ds, at, "none")) {
        ca.v.push_back(r->value("clean_model_test_acc", 0.0));
        pa.v.push_back(r->value("test_acc", 0.0));
        asr.v.push_back(r->value("asr", 0.0));
        if (r->value("flip", -1.0) >= 0) flip.v.push_back(r->value("flip", 0.0));
      }
      if (pa.v.empty()) continue;
      md += fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} |\n", ds, at, ca.str(), casr.str(), cflip.str(), pa.str(),
                        asr.str(), flip.str());
    }
  md += "\n";

  return md;
}

std::string budget_tables_md(const ReportInput& c) {
  std::string md;
  for (double th : c.cfg.thresholds) {
    md += fmt::format("## ΔACC ≤ {:g} points: ACC / ASR / flip rate\n\n| dataset | attack | clean model ASR / flip |", th);
    for (auto& de : c.defenses) md += " " + de + " |";
    md += "\n|---|---|---|";
    for (std::size_t i = 0; i < c.defenses.size(); ++i) md += "---|";
    md += "\n";
    std::map<std::string, int> wins;  // defense -> rows where its mean ASR is the lowest (ties count for each)
    int rows_with_data = 0;
    for (auto& ds : c.datasets)
      for (auto& at : c.attacks) {
        const auto [floor_asr, floor_flip] = floor_of(c, ds, at);
        std::vector<std::string> cells;
        std::vector<double> mean_asr;
        for (auto& de : c.defenses) {
          Stat acc, asr, flip;
          std::vector<std::string> knobs;
          for (auto seed : c.cfg.seeds)
            if (auto* r = c.choose(ds, at, seed, de, th)) {
              acc.v.push_back(r->value("test_acc", 0.0));
              asr.v.push_back(r->value("asr", 0.0));
              if (r->value("flip", -1.0) >= 0) flip.v.push_back(r->value("flip", 0.0));
              knobs.push_back(fmt::format("{:g}", r->value("knob", 0.0)));
            }
          std::string k;
          for (auto& s : knobs) k += (k.empty() ? "" : ",") + s;
          cells.push_back(acc.v.empty() ? "–" : fmt::format("{} / **{}** / {} <sub>({})</sub>", acc.str(), asr.str(), flip.str(), k));
          mean_asr.push_back(asr.v.empty() ? -1 : std::round(1000 * asr.mean()) / 1000);  // compared at 0.1 points
        }
        double best = -1;
        for (double a : mean_asr)
          if (a >= 0 && (best < 0 || a < best)) best = a;
        if (best < 0) continue;
        ++rows_with_data;
        std::string line = fmt::format("| {} | {} | {} / {} |", ds, at, floor_asr.str(), floor_flip.str());
        for (std::size_t i = 0; i < cells.size(); ++i) {
          const bool lowest = mean_asr[i] >= 0 && mean_asr[i] == best;
          if (lowest) ++wins[c.defenses[i]];
          line += " " + cells[i] + (lowest ? " ◀" : "") + " |";
        }
        md += line + "\n";
      }
    md += "\n<sub>(knob chosen per seed: reset fraction ρ, or pruned fraction for fine-pruning; ◀ = lowest mean ASR "
          "of the row, to 0.1 points)</sub>\n\n";
    if (rows_with_data > 0) {
      std::vector<std::string> w;
      for (auto& de : c.defenses) w.push_back(fmt::format("{} {}", de, wins[de]));
      md += fmt::format("Lowest mean ASR, rows of {}: {}.\n\n", rows_with_data, fmt::join(w, ", "));
    }
  }

  return md;
}

std::string asr_plots_md(const ReportInput& c) {
  std::string md;
  md += "## ASR against ACC as each defense's knob varies\n\n";
  for (auto& ds : c.datasets)
    for (auto& at : c.attacks) {
      std::vector<report::Series> series;
      for (std::size_t d = 0; d < c.defenses.size(); ++d) {
        const auto& de = c.defenses[d];
        report::Series s;
        s.name = de;
        s.slot = static_cast<int>(d);  // one colour per defense in every plot
        std::vector<const json*> pts = c.rows_of(ds, at, de);
        std::sort(pts.begin(), pts.end(), [](auto* a, auto* b) { return a->value("knob", 0.0) < b->value("knob", 0.0); });
        for (auto* p : pts) {
          if (p->value("seed", 0ull) != c.cfg.seeds.front()) continue;
          s.x.push_back(100 * p->value("test_acc", 0.0));
          s.y.push_back(100 * p->value("asr", 0.0));
          s.labels.push_back(fmt::format("{:g}", p->value("knob", 0.0)));
        }
        if (!s.x.empty()) series.push_back(s);
      }
      auto none = c.rows_of(ds, at, "none");
      if (series.empty() || none.empty()) continue;
      const int n = static_cast<int>(c.defenses.size());
      series.push_back({"undefended", {100 * none[0]->value("test_acc", 0.0)}, {100 * none[0]->value("asr", 0.0)}, {}, n});
      if (none[0]->contains("clean_model_asr"))
        series.push_back({"clean model", {100 * none[0]->value("clean_model_test_acc", 0.0)},
                          {100 * none[0]->value("clean_model_asr", 0.0)}, {}, n + 1});
      report::ChartOptions co;
      co.title = fmt::format("{} / {} (seed {})", ds, at, c.cfg.seeds.front());
      co.x_label = "clean test ACC (%)";
      co.y_label = "ASR (%)";
      co.y_min = 0;  // ASR on its whole scale; ACC fitted to the points
      co.y_max = 100;
      const std::string file = fmt::format("plots/asr-acc-{}-{}.svg", slug(ds), slug(at));
      io::write_text_atomic((fs::path(c.out) / file).string(), report::line_chart(series, co));
      md += fmt::format("![{} {}]({})\n", ds, at, file);
    }
  return md;
}

std::string layer_plots_md(const ReportInput& c) {
  std::string md;
  md += "\n## Where the reset dimensions sit (share per layer, largest knob within the 3-point budget, seed " +
        std::to_string(c.cfg.seeds.front()) + ")\n\n";
  for (auto& ds : c.datasets)
    for (auto& at : c.attacks) {
      std::vector<std::string> cats;
      std::vector<report::Series> series;
      std::set<std::string> layer_names;
      struct Chosen {
        std::string name;
        json per_layer;
        int slot;
      };
      std::vector<Chosen> chosen;
      for (std::size_t d = 0; d < c.defenses.size(); ++d) {
        const auto& de = c.defenses[d];
        auto* r = c.choose(ds, at, c.cfg.seeds.front(), de, 3.0);
        if (!r || r->value("defense", "") != de || r->value("reset_dims", 0) == 0) continue;
        chosen.push_back({de + fmt::format(" ({:g})", r->value("knob", 0.0)), r->value("per_layer", json::object()),
                          static_cast<int>(d)});
        for (auto& [k, v] : chosen.back().per_layer.items()) layer_names.insert(k);
      }
      if (chosen.empty()) continue;
      const auto order = report::layer_order({layer_names.begin(), layer_names.end()});
      for (auto& [name, pl, slot] : chosen) {
        report::Series s;
        s.name = name;
        s.slot = slot;
        double total = 0;
        for (auto& [k, v] : pl.items()) total += v.get<double>();
        for (auto& l : order) s.y.push_back(total > 0 ? 100 * pl.value(l, 0.0) / total : 0);
        series.push_back(s);
      }
      for (auto& l : order) cats.push_back(report::layer_label(l));
      report::ChartOptions co;
      co.title = fmt::format("{} / {}: reset dimensions per layer", ds, at);
      co.x_label = "layer";
      co.y_label = "share of reset dims (%)";
      const std::string file = fmt::format("plots/layers-{}-{}.svg", slug(ds), slug(at));
      io::write_text_atomic((fs::path(c.out) / file).string(), report::bar_chart(cats, series, co));
      md += fmt::format("![{} {} layers]({})\n", ds, at, file);
    }
  return md;
}

}  // namespace

void write_report(const ExperimentConfig& cfg, const std::vector<json>& rows, const std::string& out) {
  fs::create_directories(fs::path(out) / "plots");
  write_tables(rows, out);
  ReportInput c{cfg, rows, out, {}, {}, {}};
  for (auto& d : cfg.datasets) c.datasets.push_back(d.name);
  for (auto& a : cfg.attacks) c.attacks.push_back(a.name);
  for (auto& d : cfg.defenses) c.defenses.push_back(d.name);
  const std::string md = header_md(c) + attacks_md(c) + budget_tables_md(c) + asr_plots_md(c) + layer_plots_md(c) + "\n";
  io::write_text_atomic((fs::path(out) / "report.md").string(), md);
  // The same report as one self-contained page (plots inlined; report/html.hpp).
  io::write_text_atomic((fs::path(out) / "report.html").string(),
                        report::html_page("finepurify experiment: " + cfg.name, md, out));
}

}  // namespace finepurify::experiment
