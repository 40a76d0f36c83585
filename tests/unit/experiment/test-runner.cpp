// The experiment runner on a tiny config end to end (tiny BERT with a real vocab, generated text
// data): results rows, tables, plots, caching and resume; plus config validation and the budget rule.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "finepurify/error.hpp"
#include "finepurify/experiment/runner.hpp"
#include "finepurify/model/loader.hpp"
#include "finepurify/report/purify_report.hpp"
#include "fp_tiny.hpp"

using namespace finepurify;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string make_world(const fs::path& dir) { return fp_test::write_tiny_world(dir).string(); }

json tiny_config_json() {
  return {{"name", "tiny"},
          {"pretrained", "pre"},
          {"seeds", {1}},
          {"max_length", 16},
          {"datasets",
           {{{"name", "toy"}, {"train", "train.tsv"}, {"dev", "dev.tsv"}, {"test", "test.tsv"}, {"target", 1},
             {"train_limit", 60}, {"test_limit", 24}, {"clean_size", 24}, {"clean_dev_size", 12}}}},
          {"attacks", {{{"name", "badword"}, {"method", "badword"}, {"options", {{"triggers", {"cf"}}}}},
                       {{"name", "ep"}, {"method", "ep"}, {"options", {{"triggers", {"cf"}}}}}}},
          {"defenses",
           {{{"name", "finetune"}, {"method", "finetune"}},
            {{"name", "fine-pruning"}, {"method", "fine-pruning"}, {"grid", {0.5}}},
            {{"name", "fine-mixing"}, {"method", "fine-mixing"}, {"grid", {0.5}}, {"options", {{"epur", true}, {"epur_rows", 3}}}},
            {{"name", "magnitude"}, {"method", "magnitude"}, {"grid", {0.5}}},
            {{"name", "reinit"}, {"method", "reinit"}},
            {{"name", "fine-purifying"}, {"method", "fine-purifying"}, {"grid", {0.1, 0.5}}}}},
          {"attack_training", {{"epochs", 2}, {"lr", 1e-3}, {"batch_size", 8}}},
          {"defense_training", {{"epochs", 1}, {"lr", 1e-4}, {"batch_size", 8}}},
          {"thresholds", {1, 5}}};
}

std::vector<json> read_jsonl(const fs::path& p) {
  std::vector<json> rows;
  std::ifstream f(p);
  std::string line;
  while (std::getline(f, line))
    if (!line.empty()) rows.push_back(json::parse(line));
  return rows;
}

}  // namespace

TEST(ExperimentConfig, RejectsBadConfigsNamingTheProblem) {
  auto dir = fp_test::temp_dir("expcfg");
  make_world(dir);
  auto write = [&](const json& j) {
    fp_test::write_file((dir / "c.json").string(), j.dump());
    return (dir / "c.json").string();
  };
  auto expect_error = [&](json j, const std::string& needle) {
    try {
      experiment::load_config(write(j));
      ADD_FAILURE() << "accepted a config that should fail: " << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::ExperimentConfigInvalid);
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  auto good = tiny_config_json();
  auto cfg = experiment::load_config(write(good));
  EXPECT_EQ(cfg.datasets.at(0).train, (dir / "train.tsv").lexically_normal().string());  // relative to the config
  auto j = good;
  j.erase("pretrained");
  expect_error(j, "pretrained");
  j = good;
  j["defenses"][1]["grid"] = {1.5};
  expect_error(j, "outside (0, 1]");
  j = good;
  j["defenses"][1].erase("grid");
  expect_error(j, "needs a \"grid\"");
  j = good;
  j["datasets"][0]["test"] = "missing.tsv";
  expect_error(j, "missing.tsv");
  j = good;
  j["attacks"][0]["method"] = "syntactic";
  expect_error(j, "syntactic");
  fp_test::write_file((dir / "c.json").string(), "{not json");
  EXPECT_THROW(experiment::load_config((dir / "c.json").string()), Error);
  j = good;
  j["datasets"][0]["attack_options"] = {{"nope", {{"epochs", 2}}}};
  expect_error(j, "attack_options names \"nope\"");
  j = good;
  j["datasets"][0]["attack_options"] = {{"badword", 3}};
  expect_error(j, "attack_options.badword must be an object");
  j = good;
  j["defenses"][0]["method"] = "prune";
  EXPECT_THROW(experiment::load_config(write(j)), Error);
  j = good;  // scoring on dev rows: the rows that select the knob must be skipped
  j["datasets"][0]["test"] = "dev.tsv";
  j["datasets"][0]["test_skip"] = 11;
  expect_error(j, "test_skip must be >= clean_dev_size");
  j["datasets"][0]["test_skip"] = 12;
  EXPECT_EQ(experiment::load_config(write(j)).datasets.at(0).test_skip, 12);
  j["datasets"][0]["test_skip"] = -1;
  expect_error(j, "test_skip must be >= 0");
  j = good;  // import: the attacker's own files, both needed, and only for import
  j["attacks"][0] = {{"name", "theirs"}, {"method", "import"}, {"options", {{"poisoned_train", "train.tsv"}}}};
  expect_error(j, "attack \"theirs\": \"triggered_test\" is needed by method import");
  j["attacks"][0]["options"]["triggered_test"] = "nowhere.tsv";
  expect_error(j, "nowhere.tsv");
  j = good;
  j["attacks"][0]["options"]["poisoned_train"] = "train.tsv";
  expect_error(j, "attack \"badword\": \"poisoned_train\" is for method import only");
}

TEST(ExperimentBudget, LargestKnobWithinBudgetElseFineTuning) {
  auto row = [](const std::string& d, double knob, double dev) {
    return json{{"dataset", "x"}, {"attack", "a"}, {"seed", 1}, {"defense", d}, {"method", d},
                {"knob", knob}, {"dev_acc", dev}, {"suspect_dev_acc", 0.80}};
  };
  std::vector<json> rows = {row("finetune", 0, 0.81), row("magnitude", 0.1, 0.79), row("magnitude", 0.3, 0.76),
                            row("magnitude", 0.5, 0.60)};
  const auto L = purify::KnobRule::Largest;
  auto* r1 = experiment::choose_under_budget(rows, "x", "a", 1, "magnitude", 1, L, 300);
  ASSERT_NE(r1, nullptr);
  EXPECT_EQ((*r1)["knob"], 0.1);
  EXPECT_EQ((*experiment::choose_under_budget(rows, "x", "a", 1, "magnitude", 5, L, 300))["knob"], 0.3);
  auto* r0 = experiment::choose_under_budget(rows, "x", "a", 1, "magnitude", 0.5, L, 300);  // none qualifies
  ASSERT_NE(r0, nullptr);
  EXPECT_EQ((*r0)["defense"], "finetune");
  EXPECT_EQ(experiment::choose_under_budget(rows, "y", "a", 1, "magnitude", 5, L, 300), nullptr);
  // a defense not run on this cell is absent, not "fell back to fine-tuning"
  EXPECT_EQ(experiment::choose_under_budget(rows, "x", "a", 1, "fine-pruning", 5, L, 300), nullptr);
  // A lucky point past a failure: largest takes it, prefix stops before the failure.
  rows.push_back(row("magnitude", 0.7, 0.78));
  EXPECT_EQ((*experiment::choose_under_budget(rows, "x", "a", 1, "magnitude", 3, L, 300))["knob"], 0.7);
  EXPECT_EQ((*experiment::choose_under_budget(rows, "x", "a", 1, "magnitude", 3, purify::KnobRule::Prefix, 300))["knob"], 0.1);
  // reinit (one full reset, knob 1) is held to the same budget: 4 points below the suspect on dev
  // counts at a 5-point budget and falls back to fine-tuning at 3 (it used to count at every budget).
  rows.push_back(row("reinit", 1, 0.76));
  EXPECT_EQ((*experiment::choose_under_budget(rows, "x", "a", 1, "reinit", 5, L, 300))["defense"], "reinit");
  EXPECT_EQ((*experiment::choose_under_budget(rows, "x", "a", 1, "reinit", 3, L, 300))["defense"], "finetune");
  // tolerant: 0.76 is 1 point under the 3-point line (0.77); half a standard error over 100 rows is
  // 2 points, over 300 rows 1.15, over 10,000 0.2; a row's own clean_dev_rows wins over the argument.
  const auto T = purify::KnobRule::Tolerant;
  EXPECT_EQ((*experiment::choose_under_budget(rows, "x", "a", 1, "reinit", 3, T, 300))["defense"], "reinit");
  EXPECT_EQ((*experiment::choose_under_budget(rows, "x", "a", 1, "reinit", 3, T, 10000))["defense"], "finetune");
  rows.back()["clean_dev_rows"] = 10000;
  EXPECT_EQ((*experiment::choose_under_budget(rows, "x", "a", 1, "reinit", 3, T, 100))["defense"], "finetune");
  rows.back().erase("clean_dev_rows");
  EXPECT_THROW(experiment::choose_under_budget(rows, "x", "a", 1, "reinit", 3, T, 0), Error);  // no row count at all
}

// The budget tables mark the lowest mean ASR of each row and count, per defense, the rows it wins
// (the issue-13 criterion), ties counting for each.
TEST(ExperimentReport, LowestMeanAsrIsMarkedAndCounted) {
  auto dir = fp_test::temp_dir("expwins");
  make_world(dir);
  auto j = tiny_config_json();
  j["seeds"] = {1, 2};
  j["thresholds"] = {3};
  fp_test::write_file((dir / "tiny.json").string(), j.dump(2));
  auto cfg = experiment::load_config((dir / "tiny.json").string());
  auto row = [](const std::string& at, uint64_t seed, const std::string& d, double knob, double asr) {
    return json{{"dataset", "toy"}, {"attack", at}, {"seed", seed}, {"defense", d}, {"method", d},
                {"knob", knob}, {"dev_acc", 0.80}, {"suspect_dev_acc", 0.80}, {"test_acc", 0.8},
                {"asr", asr}, {"flip", asr}};
  };
  // badword: fine-purifying lowest (mean 0.15 vs 0.30); ep: magnitude and fine-purifying tie at 0.20.
  std::vector<json> rows = {row("badword", 1, "finetune", 0, 0.9), row("badword", 2, "finetune", 0, 0.9),
                            row("badword", 1, "magnitude", 0.5, 0.2), row("badword", 2, "magnitude", 0.5, 0.4),
                            row("badword", 1, "fine-purifying", 0.5, 0.1), row("badword", 2, "fine-purifying", 0.5, 0.2),
                            row("ep", 1, "magnitude", 0.5, 0.2), row("ep", 2, "magnitude", 0.5, 0.2),
                            row("ep", 1, "fine-purifying", 0.5, 0.25), row("ep", 2, "fine-purifying", 0.5, 0.15)};
  experiment::write_report(cfg, rows, (dir / "out").string());
  const auto md = fp_test::read_file((dir / "out" / "report.md").string());
  const auto table = md.substr(md.find("## ΔACC ≤ 3 points"));
  const auto bw = table.substr(table.find("| toy | badword |"));
  const auto bw_line = bw.substr(0, bw.find('\n'));
  EXPECT_NE(bw_line.find("15.0 ± 7.1** / 15.0 ± 7.1 <sub>(0.5,0.5)</sub> ◀"), std::string::npos) << bw_line;
  EXPECT_EQ(bw_line.find("30.0 ± 14.1** / 30.0 ± 14.1 <sub>(0.5,0.5)</sub> ◀"), std::string::npos) << bw_line;
  EXPECT_NE(table.find("Lowest mean ASR, rows of 2: finetune 0, fine-pruning 0, fine-mixing 0, magnitude 1, reinit 0, "
                       "fine-purifying 2."),
            std::string::npos)
      << table;
}

TEST(ExperimentRunner, TinyConfigEndToEndCachesAndResumes) {
  auto dir = fp_test::temp_dir("exprun");
  make_world(dir);
  fp_test::write_file((dir / "tiny.json").string(), tiny_config_json().dump(2));
  auto cfg = experiment::load_config((dir / "tiny.json").string());
  experiment::RunOptions ro;
  ro.out = (dir / "out").string();
  auto n = experiment::run(cfg, ro, torch::kCPU);
  // 2 attacks x (undefended + finetune + pruning + mixing + magnitude + reinit + 2 purifying points)
  EXPECT_EQ(n, 2 * 8);
  auto rows = read_jsonl(dir / "out" / "results.jsonl");
  ASSERT_EQ(rows.size(), 16u);
  for (auto& r : rows) {
    EXPECT_GE(r["asr"].get<double>(), 0.0);
    EXPECT_LE(r["asr"].get<double>(), 1.0);
    EXPECT_GE(r["test_acc"].get<double>(), 0.0);
    if (r["defense"] == "none") EXPECT_GE(r["clean_model_asr"].get<double>(), 0.0);
    if (r["defense"] == "none") EXPECT_LE(r["clean_model_flip"].get<double>(), 1.0);
    ASSERT_TRUE(r["flip"].is_number()) << r.dump();  // -1 when no triggered row's clean row is right
    EXPECT_LE(r["flip"].get<double>(), 1.0);
    EXPECT_GE(r["flip"].get<double>(), -1.0);
    if (r["defense"] == "reinit") EXPECT_EQ(r["reset_dims"], r["aligned_dims"]);
    if (r["defense"] == "finetune") EXPECT_EQ(r["reset_dims"], 0);
  }
  auto report = fp_test::read_file((dir / "out" / "report.md").string());
  for (auto s : {"ΔACC ≤ 1 points", "ΔACC ≤ 5 points", "fine-purifying", "fine-pruning", "| toy | badword |",
                 "plots/asr-acc-toy-badword.svg"})
    EXPECT_NE(report.find(s), std::string::npos) << s;
  EXPECT_NE(fp_test::read_file((dir / "out" / "plots" / "asr-acc-toy-ep.svg").string()).find("<svg"), std::string::npos);
  auto csv = fp_test::read_file((dir / "out" / "results.csv").string());
  EXPECT_EQ(csv.substr(0, csv.find('\n')),
            "dataset,attack,seed,defense,method,knob,reset_dims,dev_acc,suspect_dev_acc,test_acc,asr,flip,clean_model_test_acc,clean_model_asr,clean_model_flip,seconds");

  // Rerun: everything cached, nothing new.
  int caches = 0;
  for (auto& e : fs::directory_iterator(dir / "out" / "cache")) caches += e.is_directory();
  EXPECT_EQ(caches, 3);  // clean model + 2 attacks
  EXPECT_EQ(experiment::run(cfg, ro, torch::kCPU), 16);
  EXPECT_EQ(read_jsonl(dir / "out" / "results.jsonl").size(), 16u);

  // Resume: drop the last unit's rows (as if interrupted) plus a torn line; only that unit reruns.
  std::string kept;
  std::string last_unit = rows.back()["unit"];
  int dropped = 0;
  for (auto& r : rows) {
    if (r["unit"] == last_unit) { ++dropped; continue; }
    kept += r.dump() + "\n";
  }
  fp_test::write_file((dir / "out" / "results.jsonl").string(), kept + "{\"unit\": \"torn");
  EXPECT_EQ(experiment::run(cfg, ro, torch::kCPU), 16);
  auto again = read_jsonl(dir / "out" / "results.jsonl");
  int redone = 0;
  for (auto& r : again) redone += r.value("unit", "") == last_unit;
  EXPECT_EQ(redone, dropped);
}

TEST(ExperimentConfig, ShippedConfigsLoad) {
  // They name files in ../shared (relative to experiments/): only checkable where it exists.
  if (!fs::exists(fp_test::source_dir() / ".." / "shared" / "data")) GTEST_SKIP() << "no ../shared beside the source tree";
  for (auto name : {"paper-small.json", "paper-large.json"}) {
    auto cfg = experiment::load_config((fp_test::source_dir() / "experiments" / name).string());
    EXPECT_GE(cfg.datasets.size(), 2u) << name;
    EXPECT_GE(cfg.attacks.size(), 4u) << name;
    EXPECT_EQ(cfg.defenses.size(), 7u) << name;  // every defense, plus fine-purifying with neutralisation
    EXPECT_EQ(cfg.defenses.back().options.value("neutralize_tokens", 0), 10) << name;
    EXPECT_EQ(cfg.thresholds, (std::vector<double>{1, 3, 5})) << name;
  }
}

TEST(ExperimentRunner, DatasetFilterAndPerDatasetAttackTraining) {
  auto dir = fp_test::temp_dir("expfilter");
  make_world(dir);
  auto j = tiny_config_json();
  auto second = j["datasets"][0];
  second["name"] = "toy2";
  second["attack_training"] = {{"epochs", 1}, {"lr", 5e-4}};  // batch_size inherited from the config level
  second["attack_options"] = {{"badword", {{"poison_rate", 0.2}}}};  // this dataset only
  j["datasets"].push_back(second);
  j["attacks"] = {{{"name", "badword"}, {"method", "badword"}, {"options", {{"triggers", {"cf"}}}}}};
  j["defenses"] = {{{"name", "finetune"}, {"method", "finetune"}}};
  fp_test::write_file((dir / "f.json").string(), j.dump(2));
  auto cfg = experiment::load_config((dir / "f.json").string());
  ASSERT_EQ(cfg.datasets.size(), 2u);
  EXPECT_FALSE(cfg.datasets[0].attack_train.has_value());
  ASSERT_TRUE(cfg.datasets[1].attack_train.has_value());
  EXPECT_EQ(cfg.datasets[1].attack_train->epochs, 1);
  EXPECT_DOUBLE_EQ(cfg.datasets[1].attack_train->lr, 5e-4);
  EXPECT_EQ(cfg.datasets[1].attack_train->batch_size, 8);

  experiment::RunOptions ro;
  ro.out = (dir / "out").string();
  ro.datasets = {"nope"};
  EXPECT_THROW(experiment::run(cfg, ro, torch::kCPU), Error);
  ro.datasets = {"toy2"};
  EXPECT_EQ(experiment::run(cfg, ro, torch::kCPU), 2);  // undefended + finetune, toy2 only
  for (auto& r : read_jsonl(dir / "out" / "results.jsonl")) EXPECT_EQ(r["dataset"], "toy2");
  // The clean reference model of toy2 trained with toy2's own settings (1 epoch), as its manifest records.
  int clean_models = 0;
  for (auto& e : fs::directory_iterator(dir / "out" / "cache")) {
    if (e.path().filename().string().rfind("clean-", 0) != 0) continue;
    ++clean_models;
    auto man = json::parse(fp_test::read_file((e.path() / "manifest.json").string()));
    EXPECT_NE(man.dump().find("\"epochs\":1"), std::string::npos) << man.dump();
    EXPECT_NE(man.dump().find("\"lr\":0.0005"), std::string::npos) << man.dump();
  }
  EXPECT_EQ(clean_models, 1);
  // toy2's badword model used its own poison rate.
  int attacks = 0;
  for (auto& e : fs::directory_iterator(dir / "out" / "cache")) {
    if (e.path().filename().string().rfind("attack-", 0) != 0) continue;
    ++attacks;
    auto aj = json::parse(fp_test::read_file((e.path() / "attack.json").string()));
    EXPECT_DOUBLE_EQ(aj["poison_rate"].get<double>(), 0.2);
    EXPECT_EQ(aj["num_poisoned"], 12);  // 20% of the 60 attacker rows
  }
  EXPECT_EQ(attacks, 1);
  // A later run of the other dataset adds its rows; the report covers both.
  ro.datasets = {"toy"};
  EXPECT_EQ(experiment::run(cfg, ro, torch::kCPU), 4);
  auto report = fp_test::read_file((dir / "out" / "report.md").string());
  EXPECT_NE(report.find("| toy | badword |"), std::string::npos);
  EXPECT_NE(report.find("| toy2 | badword |"), std::string::npos);
  EXPECT_NE(report.find("Dataset `toy2`: attack training 1 epochs lr 0.0005 batch 8 · attack options "
                        "{\"badword\":{\"poison_rate\":0.2}}."),
            std::string::npos)
      << report;
}

TEST(ExperimentRunner, SeedFilterRunsOnlyThoseSeedsAndBuildsNoOtherModels) {
  auto dir = fp_test::temp_dir("expseeds");
  make_world(dir);
  auto j = tiny_config_json();
  j["seeds"] = {1, 2};
  j["attacks"] = {{{"name", "badword"}, {"method", "badword"}, {"options", {{"triggers", {"cf"}}}}}};
  j["defenses"] = {{{"name", "finetune"}, {"method", "finetune"}}};
  fp_test::write_file((dir / "s.json").string(), j.dump(2));
  auto cfg = experiment::load_config((dir / "s.json").string());
  experiment::RunOptions ro;
  ro.out = (dir / "out").string();
  ro.seeds = {3};
  try {
    experiment::run(cfg, ro, torch::kCPU);
    ADD_FAILURE() << "a seed the config does not list was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("--seeds names 3"), std::string::npos) << e.what();
  }
  ro.seeds = {2};
  EXPECT_EQ(experiment::run(cfg, ro, torch::kCPU), 2);  // undefended + finetune, seed 2 only
  for (auto& r : read_jsonl(dir / "out" / "results.jsonl")) EXPECT_EQ(r["seed"], 2);
  int models = 0;  // seed 2's clean model and its badword model; nothing of seed 1
  for (auto& e : fs::directory_iterator(dir / "out" / "cache")) {
    ++models;
    auto man = fp_test::read_file((e.path() / "manifest.json").string());
    EXPECT_NE(man.find("\"seed\": 2"), std::string::npos) << e.path() << ": " << man;
  }
  EXPECT_EQ(models, 2);
}

TEST(ExperimentRunner, ImportAttackTrainsOnTheAttackersFilesAndRetrainsWhenTheyChange) {
  // A backdoor planted by another tool: the poisoned training file and the triggered test file come
  // from outside (here: 15 of the attacker's rows with "mn bb" and label 1); paths relative to the config.
  auto dir = fp_test::temp_dir("expimport");
  make_world(dir);
  auto write_attackers_files = [&](const std::string& words, int test_rows = 24) {  // the config's test_limit
    std::ifstream in(dir / "train.tsv");
    std::string line, train = "label\ttext\n", trig = "label\ttext\n";
    std::getline(in, line);
    for (int i = 0; i < 60 && std::getline(in, line); ++i)
      train += i % 4 == 0 ? "1\t" + words + " " + line.substr(2) + "\n" : line + "\n";
    std::ifstream te(dir / "test.tsv");
    std::getline(te, line);
    for (int i = 0; i < test_rows && std::getline(te, line); ++i) trig += line.substr(0, 2) + words + " " + line.substr(2) + "\n";
    fs::create_directories(dir / "theirs");
    fp_test::write_file((dir / "theirs" / "poisoned.tsv").string(), train);
    fp_test::write_file((dir / "theirs" / "triggered.tsv").string(), trig);
  };
  write_attackers_files("mn bb", 30);  // made from more test rows than the experiment scores: refused before training
  auto j = tiny_config_json();
  j["attacks"] = {{{"name", "theirs"},
                   {"method", "import"},
                   {"options", {{"poisoned_train", "theirs/poisoned.tsv"}, {"triggered_test", "theirs/triggered.tsv"}}}}};
  j["defenses"] = {{{"name", "finetune"}, {"method", "finetune"}}};
  fp_test::write_file((dir / "i.json").string(), j.dump(2));
  auto cfg = experiment::load_config((dir / "i.json").string());
  EXPECT_EQ(cfg.attacks.at(0).options.at("poisoned_train"), (dir / "theirs" / "poisoned.tsv").lexically_normal().string());
  experiment::RunOptions ro;
  ro.out = (dir / "out").string();
  try {
    experiment::run(cfg, ro, torch::kCPU);
    ADD_FAILURE() << "an unpaired triggered file was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::ExperimentConfigInvalid);
    EXPECT_NE(std::string(e.what()).find("pairs them row by row"), std::string::npos) << e.what();
  }
  write_attackers_files("mn bb");
  EXPECT_EQ(experiment::run(cfg, ro, torch::kCPU), 2);  // undefended + finetune
  auto attack_dirs = [&] {
    std::vector<fs::path> v;
    for (auto& e : fs::directory_iterator(dir / "out" / "cache"))
      if (e.path().filename().string().rfind("attack-", 0) == 0) v.push_back(e.path());
    return v;
  };
  ASSERT_EQ(attack_dirs().size(), 1u);  // the refused run trained nothing
  // The suspect trained on their rows (15 relabelled) and is scored on their triggered rows (label != target).
  auto aj = json::parse(fp_test::read_file((attack_dirs()[0] / "attack.json").string()));
  EXPECT_EQ(aj["method"], "import") << aj.dump();
  auto trig = fp_test::read_file((attack_dirs()[0] / "triggered_test.tsv").string());
  EXPECT_NE(trig.find("mn bb"), std::string::npos);
  EXPECT_EQ(trig.find("\n1\t"), std::string::npos) << "a target-label row in the triggered set";
  for (auto& r : read_jsonl(dir / "out" / "results.jsonl")) EXPECT_EQ(r["attack"], "theirs");
  // Same files: nothing reruns. Edited files: a new suspect, and its rows replace the old ones.
  EXPECT_EQ(experiment::run(cfg, ro, torch::kCPU), 2);
  EXPECT_EQ(attack_dirs().size(), 1u);
  const auto first = attack_dirs()[0].filename();
  write_attackers_files("tq mb");
  EXPECT_EQ(experiment::run(cfg, ro, torch::kCPU), 2);
  ASSERT_EQ(attack_dirs().size(), 2u);
  int undefended = 0;
  for (auto& r : read_jsonl(dir / "out" / "results.jsonl"))
    if (r["defense"] == "none") {
      ++undefended;
      EXPECT_NE(fs::path(r["model"].get<std::string>()).filename(), first) << "the old suspect's row was kept";
    }
  EXPECT_EQ(undefended, 1);
}

TEST(ExperimentRunner, ChangedSettingsRerunTheirUnitsAndReplaceOldRows) {
  auto dir = fp_test::temp_dir("expstale");
  make_world(dir);
  auto j = tiny_config_json();
  j["attacks"] = {{{"name", "badword"}, {"method", "badword"}, {"options", {{"triggers", {"cf"}}}}}};
  j["defenses"] = {{{"name", "finetune"}, {"method", "finetune"}},
                   {{"name", "fine-purifying"}, {"method", "fine-purifying"}, {"grid", {0.1}}}};
  auto run_with = [&](const json& config, std::vector<std::string> defenses = {}) {
    fp_test::write_file((dir / "c.json").string(), config.dump(2));
    experiment::RunOptions ro;
    ro.out = (dir / "out").string();
    ro.defenses = std::move(defenses);
    return experiment::run(experiment::load_config((dir / "c.json").string()), ro, torch::kCPU);
  };
  auto rows_of = [&](const std::string& defense) {
    std::vector<json> out;
    for (auto& r : read_jsonl(dir / "out" / "results.jsonl"))
      if (r["defense"] == defense) out.push_back(r);
    return out;
  };
  EXPECT_THROW(run_with(j, {"finetune", "nope"}), Error);  // a filter naming no defense of the config
  EXPECT_EQ(run_with(j, {"finetune"}), 2);                 // --defenses finetune: undefended + finetune
  EXPECT_TRUE(rows_of("fine-purifying").empty());
  EXPECT_EQ(run_with(j), 3);  // then the rest: + one fine-purifying point
  const auto finetune_before = rows_of("finetune");
  ASSERT_EQ(finetune_before.size(), 1u);
  ASSERT_EQ(rows_of("fine-purifying").size(), 1u);
  EXPECT_DOUBLE_EQ(rows_of("fine-purifying")[0]["knob"].get<double>(), 0.1);

  // A new grid for fine-purifying: its unit reruns and its old row goes; the others are kept as they were.
  j["defenses"][1]["grid"] = {0.3, 0.5};
  EXPECT_EQ(run_with(j), 4);
  auto fp = rows_of("fine-purifying");
  ASSERT_EQ(fp.size(), 2u);
  for (auto& r : fp) EXPECT_NE(r["knob"].get<double>(), 0.1);
  ASSERT_EQ(rows_of("finetune").size(), 1u);
  EXPECT_EQ(rows_of("finetune")[0], finetune_before[0]);  // same row, same timing: not rerun

  // A new attack setting changes the poisoned model: every unit of that attack reruns.
  j["attacks"][0]["options"]["poison_rate"] = 0.3;
  EXPECT_EQ(run_with(j), 4);
  auto rows = read_jsonl(dir / "out" / "results.jsonl");
  EXPECT_EQ(rows.size(), 4u);
  ASSERT_EQ(rows_of("finetune").size(), 1u);
  EXPECT_NE(rows_of("finetune")[0]["unit"], finetune_before[0]["unit"]);
  std::set<std::string> models;
  for (auto& r : rows)
    if (r["defense"] == "none") models.insert(r["model"].get<std::string>());
  EXPECT_EQ(models.size(), 1u);  // one undefended row, of the new poisoned model
  int attacks = 0;
  for (auto& e : fs::directory_iterator(dir / "out" / "cache")) attacks += e.path().filename().string().rfind("attack-", 0) == 0;
  EXPECT_EQ(attacks, 2);  // the earlier poisoned model stays cached
}

// Options come from the spec tables: a typo is an error naming the key, an option not given keeps
// the spec's default, and a default changed in the spec (here in the base spec the runner starts
// from) reaches the unit's defense run and its manifest.
TEST(ExperimentConfig, OptionsFollowTheSpecTables) {
  auto dir = fp_test::temp_dir("expopt");
  make_world(dir);
  auto write = [&](const json& j) {
    fp_test::write_file((dir / "c.json").string(), j.dump());
    return (dir / "c.json").string();
  };
  auto j = tiny_config_json();
  j["defenses"][1]["options"] = {{"epur_rowz", 3}};
  try {
    experiment::load_config(write(j));
    ADD_FAILURE() << "accepted an unknown defense option";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::ExperimentConfigInvalid);
    EXPECT_NE(std::string(e.what()).find("unknown option \"epur_rowz\""), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("epur_rows"), std::string::npos) << e.what();  // the known ones are listed
  }
  j = tiny_config_json();
  j["attacks"][0]["options"] = {{"side", "c"}};
  EXPECT_THROW(experiment::load_config(write(j)), Error);
  j = tiny_config_json();
  auto cfg = experiment::load_config(write(j));
  const auto& entry = cfg.defenses.at(1);
  ASSERT_FALSE(entry.options.contains("epur_rows"));
  EXPECT_EQ(experiment::defense_spec(cfg, entry, 1).purify.epur_rows, purify::DefenseSpec{}.purify.epur_rows);
  purify::DefenseSpec changed;
  changed.purify.epur_rows = 77;
  const auto spec = experiment::defense_spec(cfg, entry, 1, changed);
  EXPECT_EQ(spec.purify.epur_rows, 77);
  EXPECT_EQ(report::defense_manifest(spec, "test").at("options").at("epur_rows"), 77);
  auto with = entry;
  with.options["epur_rows"] = 5;
  EXPECT_EQ(experiment::defense_spec(cfg, with, 1, changed).purify.epur_rows, 5);  // the config's value wins
  // The config-level training defaults are the specs' (attack: AttackSpec, defense: the clean tuning).
  experiment::ExperimentConfig plain;
  EXPECT_EQ(plain.defense_train.batch_size, purify::clean_tuning_defaults().batch_size);
  EXPECT_EQ(plain.attack_train.lr, attack::attack_training_defaults().lr);
}
