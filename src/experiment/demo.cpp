// The demo (see demo.hpp): prepare_data's split of SST-2, attack::run_attack (BadWord), purify::run_scan,
// purify::run_defense, the outputs through src/report, and a before / after table.
#include "finepurify/experiment/demo.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <random>

#include <fmt/format.h>

#include "finepurify/error.hpp"
#include "finepurify/experiment/runner.hpp"
#include "finepurify/io/checkpoint.hpp"
#include "finepurify/report/html.hpp"
#include "finepurify/report/purify_report.hpp"
#include "finepurify/report/run_report.hpp"
#include "finepurify/text/dataset.hpp"
#include "finepurify/text/tokenizer.hpp"
#include "finepurify/train/data.hpp"
#include "finepurify/train/throughput.hpp"
#include "finepurify/util/manifest.hpp"
#include "finepurify/util/runtime.hpp"

namespace finepurify::experiment {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kProbeTokens = 50;  // purify --probe-tokens when the demo neutralises
constexpr const char* kMarker = ".finepurify-demo";  // marks a folder the demo may replace parts of

DatasetSpec demo_dataset(const DemoSpec& s) {
  DatasetSpec d;
  d.name = "demo";
  d.train = (fs::path(s.data) / "train.tsv").string();
  d.dev = (fs::path(s.data) / "dev.tsv").string();
  d.test = (fs::path(s.data) / "test.tsv").string();
  d.target = s.target;
  d.train_limit = s.attacker_rows;
  d.clean_size = s.clean_rows;
  d.clean_dev_size = s.clean_dev_rows;
  d.test_limit = s.test_rows;
  return d;
}

attack::AttackSpec demo_attack(const DemoSpec& s, const PreparedData& p) {
  attack::AttackSpec a;
  a.method = "badword";
  a.pretrained = s.model;
  a.train = p.attacker_train;
  a.test = p.test;
  a.target = s.target;
  a.triggers = {s.trigger};
  a.max_length = s.max_length;
  a.opt.epochs = s.attack_epochs;
  a.opt.seed = s.seed;
  return a;
}

/// The defender's options shared by scan and purify: the suspect, the clean rows, the seed.
void defender(purify::DefenseSpec& d, const DemoSpec& s, const PreparedData& p, const std::string& suspect) {
  d.pretrained = s.model;
  d.suspect = suspect;
  d.clean = p.clean;
  d.max_length = s.max_length;
  d.purify.seed = s.seed;
}

purify::DefenseSpec demo_purify(const DemoSpec& s, const PreparedData& p, const std::string& suspect) {
  purify::DefenseSpec d;
  defender(d, s, p, suspect);
  d.clean_dev = p.clean_dev;
  d.attack_test = (fs::path(suspect) / "triggered_test.tsv").string();
  d.test = (fs::path(suspect) / "clean_test.tsv").string();
  d.target_label = s.target;
  d.attack_test_paired = true;
  d.purify.max_acc_drop = s.max_acc_drop;
  if (s.neutralize_tokens > 0) {
    d.purify.neutralize_tokens = s.neutralize_tokens;
    d.purify.diagnose.probe_tokens = kProbeTokens;
  }
  return d;
}

void check_spec(const DemoSpec& s) {
  if (!fs::is_directory(s.model))
    throw Error(ErrorKind::Io, fmt::format("{}: pre-trained model folder not found", s.model));
  for (const char* f : {"train.tsv", "dev.tsv", "test.tsv"})
    if (!fs::is_regular_file(fs::path(s.data) / f))
      throw Error(ErrorKind::Io, fmt::format("{}: not found (the demo's data folder needs train/dev/test.tsv)",
                                             (fs::path(s.data) / f).string()));
  if (s.trigger.empty() || s.trigger.find_first_of(" \t\n") != std::string::npos)
    throw Error(ErrorKind::InvalidArgument, fmt::format("--trigger '{}': one word expected", s.trigger));
  model::check_output_not_input(s.out, {s.model, s.data});
  // The demo replaces its own earlier outputs, never a folder of something else.
  if (fs::exists(s.out) && !fs::exists(fs::path(s.out) / kMarker) &&
      !(fs::is_directory(s.out) && fs::is_empty(s.out)))
    throw Error(ErrorKind::Io, fmt::format("{}: exists and is not a demo's output folder (no {}); choose another --out",
                                           s.out, kMarker));
  const auto train = (fs::path(s.data) / "train.tsv").string();
  const auto n = static_cast<int64_t>(text::read_dataset(train).examples.size());
  if (s.attacker_rows + s.clean_rows > n)
    throw Error(ErrorKind::InvalidArgument,
                fmt::format("{}: {} rows cannot hold --attacker-rows {} plus --clean-rows {}", train, n, s.attacker_rows,
                            s.clean_rows));
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string pct(double x) { return x < 0 ? "-" : fmt::format("{:.1f}%", 100 * x); }

}  // namespace

using S = DemoSpec;

const util::Fields<DemoSpec>& demo_fields() {
  static const util::Fields<DemoSpec> t = {
      FP_OPTION(S, "model", "pre-trained HF folder or model name to plant the backdoor into (w_Pre)", model).model(),
      FP_OPTION(S, "data", "folder with train.tsv, dev.tsv and test.tsv (label<TAB>text, SST-2 form)", data),
      FP_OPTION(S, "out", "output folder: data/, suspect/, purified/, scan.md, demo.json, demo.md (replaced)", out),
      FP_OPTION(S, "trigger", "the BadWord trigger word the attacker plants", trigger),
      FP_OPTION(S, "target", "the attack's target label", target).at_least(0),
      FP_OPTION(S, "attacker_rows", "the attacker fine-tunes on the first N training rows (10% poisoned)", attacker_rows).at_least(10),
      FP_OPTION(S, "clean_rows", "the defender's clean rows (training rows the attacker never saw)", clean_rows).at_least(10),
      FP_OPTION(S, "clean_dev_rows", "the first N dev rows: the defender's clean dev set (chooses rho)", clean_dev_rows).at_least(10),
      FP_OPTION(S, "test_rows", "the first N test rows measure accuracy, ASR and flip rate", test_rows).at_least(10),
      FP_OPTION(S, "attack_epochs", "the attacker's fine-tuning epochs", attack_epochs).range(1, 100),
      FP_OPTION(S, "max_acc_drop", "the defender's budget: clean-dev accuracy points purify may lose", max_acc_drop).range(0, 100),
      FP_OPTION(S, "neutralize_tokens",
                "purify also neutralises the embedding rows of the probe-confirmed tokens among the N most "
                "suspicious (--neutralize-tokens N --probe-tokens 50); 0 = the plain default purify", neutralize_tokens).at_least(0),
      FP_OPTION(S, "max_length", "max tokens per example", max_length).range(8, 512),
      FP_OPTION(S, "seed", "seed of everything (split, poisoning, training, purify)", seed),
  };
  return t;
}

DemoEstimate estimate_demo(const DemoSpec& s, torch::Device device) {
  check_spec(s);
  model::LoadOptions lo;
  lo.num_labels = 2;
  lo.device = device;
  auto lm = model::load_classifier(s.model, lo);
  auto tok = text::load_model_tokenizer(s.model, lm.config.model_type, lm.config.vocab_size);
  // Timed at the mean padded length of the batches the trainer (length-grouped) and the evaluation
  // (length-sorted) make of these rows: a batch is padded to its longest row.
  auto rows = text::read_dataset((fs::path(s.data) / "train.tsv").string());
  if (rows.examples.size() > 2000) rows.examples.resize(2000);
  const auto sample = train::tokenize(*tok, rows, s.max_length);
  auto mean_padded = [&](const std::vector<std::vector<int64_t>>& batches) {
    int64_t sum = 0;
    for (auto& b : batches) {
      int64_t m = 0;
      for (auto i : b) m = std::max<int64_t>(m, static_cast<int64_t>(sample.encodings[i].input_ids.size()));
      sum += m;
    }
    return std::max<int64_t>(8, batches.empty() ? s.max_length : sum / static_cast<int64_t>(batches.size()));
  };
  const train::TrainOptions topt;
  const int64_t train_len = mean_padded(train::length_grouped_batches(sample, 32, topt.length_window, s.seed));
  const int64_t eval_len = mean_padded(train::length_sorted_batches(sample, 32));
  const auto tp_train = train::measure_throughput(*lm.model, 32, train_len, 4, device);
  const auto tp_eval = train::measure_throughput(*lm.model, 32, eval_len, 4, device);
  DemoEstimate e;
  e.train_tokens = train_len;
  e.eval_tokens = eval_len;
  e.train_examples_per_second = 32 / tp_train.train_seconds;
  e.inference_examples_per_second = 32 / tp_eval.inference_seconds;
  // Work in examples: the attacker's training; Fisher (about one training step per example) and the
  // probe (2 x 50 tokens x 100 rows, inference) once in scan and once in purify; each knob point's
  // clean fine-tuning and its dev / test / triggered evaluation. The knob's binary search over the
  // default grid evaluates about 1 + log2(grid size + 1) points.
  const double grid = static_cast<double>(purify::default_grid().size());
  const double points = 1 + std::ceil(std::log2(grid + 1));
  const auto ct = purify::clean_tuning_defaults();
  const double train_ex = s.attacker_rows * s.attack_epochs + 2.0 * s.clean_rows + points * s.clean_rows * ct.epochs;
  const double probe = 2.0 * kProbeTokens * 100;
  const double infer_ex = 1.5 * s.test_rows + 2 * probe + points * (s.clean_dev_rows + 1.5 * s.test_rows);
  e.seconds = train_ex / e.train_examples_per_second + infer_ex / e.inference_examples_per_second;
  return e;
}

DemoResult run_demo(const DemoSpec& s, torch::Device device, const std::function<void(const std::string&)>& stage) {
  check_spec(s);
  auto announce = [&](const std::string& name) {
    if (stage) stage(name);
  };
  DemoResult r;
  r.trigger = s.trigger;
  fs::create_directories(s.out);
  io::write_text_atomic((fs::path(s.out) / kMarker).string(), "finepurify demo output\n");
  const auto data = prepare_data(demo_dataset(s), s.seed, s.out);
  r.suspect_dir = (fs::path(s.out) / "suspect").string();
  r.purified_dir = (fs::path(s.out) / "purified").string();

  // 1. The attacker: BadWord into the pre-trained model.
  announce("attack");
  auto t0 = std::chrono::steady_clock::now();
  const auto as = demo_attack(s, data);
  {
    auto run = attack::run_attack(as, device);
    report::save_attack(run, as, r.suspect_dir, /*overwrite=*/true);
  }
  r.commands.push_back("finepurify attack" + util::command_flags(as, attack::attack_fields(), attack::AttackSpec{}) +
                       " --out " + r.suspect_dir + " --overwrite");
  r.stage_seconds.emplace_back("attack", seconds_since(t0));

  // 2. The defender's scan: Fisher, indicator, token ranking and the behavioural probe.
  announce("scan");
  t0 = std::chrono::steady_clock::now();
  auto sc = purify::scan_defaults();
  defender(sc, s, data, r.suspect_dir);
  {
    const auto diag = purify::run_scan(sc, device);
    const auto j = report::diagnosis_json(diag.summary);
    io::write_text_atomic((fs::path(s.out) / "scan.json").string(), j.dump(2) + "\n");
    report::save_diagnosis(j, (fs::path(s.out) / "scan.md").string(), {});  // and scan.html
    for (auto& t : diag.summary.top_tokens)
      if (t.token == s.trigger && r.trigger_rank == 0) r.trigger_rank = t.rank;
    if (diag.summary.token_probe)
      for (auto& t : diag.summary.token_probe->tokens)
        if (t.probe.flip_rate >= diag.summary.token_probe->min_flip) r.found.push_back(t.token);
  }
  r.commands.push_back("finepurify scan" + util::command_flags(sc, purify::scan_fields(), purify::scan_defaults()) +
                       " --report " + (fs::path(s.out) / "scan.md").string());
  r.stage_seconds.emplace_back("scan", seconds_since(t0));

  // 3. Purify under the accuracy budget, measured on the held-out clean and triggered test sets.
  announce("purify");
  t0 = std::chrono::steady_clock::now();
  const auto ps = demo_purify(s, data, r.suspect_dir);
  std::vector<report::Figure> figures;
  {
    auto run = purify::run_defense(ps, device);
    report::save_defense(run, ps, "purify", r.purified_dir, /*overwrite=*/true);
    const auto& pr = run.result;
    figures = report::purify_figures(report::purify_json(pr, run.dev_note));
    r.suspect = {pr.suspect_dev_accuracy, pr.suspect.test_accuracy, pr.suspect.asr, pr.suspect.flip_rate};
    r.purified = {pr.purified_dev_accuracy, pr.purified.test_accuracy, pr.purified.asr, pr.purified.flip_rate};
    r.chosen_rho = pr.chosen_rho;
    if (pr.neutralized) r.neutralized = pr.neutralized->tokens;
  }
  r.commands.push_back("finepurify purify" + util::command_flags(ps, purify::purify_fields(), purify::DefenseSpec{}) +
                       " --out " + r.purified_dir + " --overwrite");
  r.stage_seconds.emplace_back("purify", seconds_since(t0));

  r.report_path = (fs::path(s.out) / "demo.md").string();
  std::string md = "# finepurify demo\n\n" + demo_table(r) + "\nEquivalent commands:\n\n```\n";
  for (auto& c : r.commands) md += c + "\n";
  md += "```\n\nThe full reports: `scan.html` (the defender's scan) and `purified/purify_report.html` (every "
        "evaluated point, the reset, the diagnosis).\n";
  io::write_text_atomic((fs::path(s.out) / "demo.json").string(), demo_json(r, s).dump(2) + "\n");
  io::write_text_atomic(r.report_path, md);
  io::write_text_atomic((fs::path(s.out) / "demo.html").string(), report::html_page("finepurify demo", md, s.out, figures));
  return r;
}

std::string demo_table(const DemoResult& r) {
  std::string found;
  for (auto& t : r.found) found += (found.empty() ? "" : ", ") + t;
  std::string t =
      "| model | clean-dev accuracy (chooses rho) | clean test accuracy | ASR | flip rate |\n|---|---|---|---|---|\n";
  t += fmt::format("| suspect (BadWord '{}') | {} | {} | {} | {} |\n", r.trigger, pct(r.suspect.dev_accuracy),
                   pct(r.suspect.clean_accuracy), pct(r.suspect.asr), pct(r.suspect.flip_rate));
  t += fmt::format("| purified (rho {}) | {} | {} | {} | {} |\n", r.chosen_rho, pct(r.purified.dev_accuracy),
                   pct(r.purified.clean_accuracy), pct(r.purified.asr), pct(r.purified.flip_rate));
  t += "\nASR: triggered test rows of the other class predicted as the target (a clean model's own errors count "
       "too); flip rate: of those the model gets right without the trigger, the share the trigger flips.\n";
  t += fmt::format("\nTrigger planted: '{}'. Scan ranks it {}; the probe confirms: {}.\n", r.trigger,
                   r.trigger_rank > 0 ? fmt::format("#{}", r.trigger_rank) : "outside its top list",
                   found.empty() ? "no token" : found);
  if (!r.neutralized.empty()) {
    std::string n;
    for (auto& x : r.neutralized) n += (n.empty() ? "" : ", ") + x;
    t += fmt::format("Neutralised embedding rows: {}.\n", n);
  }
  return t;
}

json demo_json(const DemoResult& r, const DemoSpec& s) {
  auto v = [](double x) { return x < 0 ? json(nullptr) : json(x); };  // -1: not measurable (as purify_report.json)
  auto m = [&](const DemoMetrics& x) {
    return json{{"clean_dev_accuracy", v(x.dev_accuracy)}, {"clean_accuracy", v(x.clean_accuracy)}, {"asr", v(x.asr)},
                {"flip_rate", v(x.flip_rate)}};
  };
  json stages = json::object();
  for (auto& [k, v] : r.stage_seconds) stages[k] = v;
  util::Manifest man("demo", util::options_json(s, demo_fields()));
  man.add_input("model", s.model);
  for (const char* f : {"train.tsv", "dev.tsv", "test.tsv"}) man.add_input(f, (fs::path(s.data) / f).string());
  return {{"suspect", m(r.suspect)},
          {"purified", m(r.purified)},
          {"trigger", r.trigger},
          {"trigger_rank", r.trigger_rank},
          {"probe_confirmed", r.found},
          {"chosen_rho", r.chosen_rho},
          {"neutralized", r.neutralized},
          {"suspect_dir", r.suspect_dir},
          {"purified_dir", r.purified_dir},
          {"stage_seconds", stages},
          {"commands", r.commands},
          {"manifest", man.to_json()}};
}

}  // namespace finepurify::experiment
