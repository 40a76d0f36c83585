// Experiment runner: data preparation, cached clean / poisoned models, every defense swept over its
// knob grid through purify::run_defense, results appended to results.jsonl (resume; units.cpp),
// then the report (report.cpp).
#include "finepurify/experiment/runner.hpp"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <random>

#include <fmt/format.h>

#include "finepurify/error.hpp"
#include "finepurify/model/loader.hpp"
#include "finepurify/report/purify_report.hpp"
#include "finepurify/report/run_report.hpp"
#include "finepurify/text/dataset.hpp"
#include "finepurify/train/data.hpp"
#include "finepurify/train/trainer.hpp"
#include "finepurify/util/manifest.hpp"
#include "finepurify/util/memory.hpp"
#include "finepurify/util/runtime.hpp"
#include "units.hpp"

namespace finepurify::experiment {

using nlohmann::json;
namespace fs = std::filesystem;

PreparedData prepare_data(const DatasetSpec& d, uint64_t seed, const std::string& out) {
  fs::path dir = fs::path(out) / "data" / d.name;
  fs::create_directories(dir);
  PreparedData p;
  auto tr = text::read_dataset(d.train);
  const int64_t n = tr.examples.size();
  int64_t n_attacker = d.train_limit > 0 ? d.train_limit : n - d.clean_size;
  if (n_attacker <= 0 || n_attacker + d.clean_size > n)
    throw Error(ErrorKind::ExperimentConfigInvalid,
                fmt::format("{}: {} training rows cannot hold train_limit {} plus clean_size {}", d.train, n,
                            d.train_limit, d.clean_size));
  for (auto& e : tr.examples) p.num_labels = std::max<int64_t>(p.num_labels, e.label + 1);
  text::Dataset attacker = tr, pool = tr, clean = tr;
  attacker.examples.assign(tr.examples.begin(), tr.examples.begin() + n_attacker);
  pool.examples.assign(tr.examples.begin() + n_attacker, tr.examples.end());
  std::vector<int64_t> idx(pool.examples.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::mt19937_64 rng(seed * 7919 + 17);
  std::shuffle(idx.begin(), idx.end(), rng);
  idx.resize(d.clean_size);
  std::sort(idx.begin(), idx.end());
  clean.examples.clear();
  for (auto i : idx) clean.examples.push_back(pool.examples[i]);
  auto te = text::read_dataset(d.test);
  if (d.test_skip >= static_cast<int64_t>(te.examples.size()))
    throw Error(ErrorKind::ExperimentConfigInvalid,
                fmt::format("{}: {} rows, all skipped by test_skip {}", d.test, te.examples.size(), d.test_skip));
  te.examples.erase(te.examples.begin(), te.examples.begin() + d.test_skip);
  if (d.test_limit > 0 && static_cast<int64_t>(te.examples.size()) > d.test_limit) te.examples.resize(d.test_limit);
  p.attacker_train = (dir / "attacker_train.tsv").string();
  p.test = (dir / "test.tsv").string();
  p.clean = (dir / fmt::format("clean-seed{}.tsv", seed)).string();
  text::write_tsv(p.attacker_train, attacker);
  text::write_tsv(p.test, te);
  text::write_tsv(p.clean, clean);
  if (d.clean_dev_size > 0) {
    auto dv = text::read_dataset(d.dev);
    if (static_cast<int64_t>(dv.examples.size()) > d.clean_dev_size) dv.examples.resize(d.clean_dev_size);
    p.clean_dev = (dir / "clean_dev.tsv").string();
    text::write_tsv(p.clean_dev, dv);
  }
  return p;
}

namespace {

/// The clean fine-tuned reference model of one dataset and seed (also EP's start), cached by its inputs.
struct CleanModel {
  json key;
  std::string dir;
  bool cached = false;
  model::LoadedModel lm;
};

/// The poisoned model of one attack, cached by a hash of everything that determines it.
struct PoisonedModel {
  json key;
  std::string dir;
  attack::AttackResult result;
};

class Runner {
 public:
  Runner(const ExperimentConfig& cfg, const RunOptions& opt, torch::Device device)
      : cfg_(cfg), opt_(opt), device_(device), store_((fs::path(opt.out) / "results.jsonl").string(), !opt.report_only) {}
  int64_t run();

 private:
  /// Whether a config entry runs: the filter (RunOptions::datasets / attacks / defenses) is empty or names it.
  template <class T>
  static bool picked(const std::vector<T>& filter, const T& x) {
    return filter.empty() || std::find(filter.begin(), filter.end(), x) != filter.end();
  }
  bool selected(const DatasetSpec& d) const { return picked(opt_.datasets, d.name); }
  bool selected(uint64_t seed) const { return picked(opt_.seeds, seed); }
  void plan();
  CleanModel clean_model(const DatasetSpec& ds, uint64_t seed, const PreparedData& data);
  PoisonedModel poisoned_model(const DatasetSpec& ds, uint64_t seed, const AttackEntry& at, const PreparedData& data,
                               const CleanModel& clean);
  void base_unit(const DatasetSpec& ds, uint64_t seed, const AttackEntry& at, CleanModel& clean,
                 const PoisonedModel& pm);
  void defense_unit(const DatasetSpec& ds, uint64_t seed, const AttackEntry& at, const DefenseEntry& de,
                    const PreparedData& data, const json& clean_hashes, const PoisonedModel& pm);
  void dataset_seed(const DatasetSpec& ds, uint64_t seed);
  /// Models and rows made on a GPU differ from the CPU's in rounding and dropout stream: their cache
  /// keys and unit fingerprints name the device (absent for the CPU, so earlier keys stay valid).
  void mark_device(json& key) const {
    if (!device_.is_cpu()) key["device"] = device_.str();
  }

  const ExperimentConfig& cfg_;
  const RunOptions& opt_;
  torch::Device device_;
  ResultStore store_;
  Eta eta_;
  std::string pre_hash_;
  std::unique_ptr<text::Tokenizer> tok_;
};

int max_length_of(const ExperimentConfig& cfg, const DatasetSpec& ds) {
  return ds.max_length > 0 ? ds.max_length : cfg.max_length;
}

/// Throws naming the option when a filter names an entry the config does not list.
template <class Entry>
void check_filter(const std::vector<std::string>& filter, const std::vector<Entry>& entries, const char* option,
                  const std::string& config_path) {
  for (auto& name : filter)
    if (std::none_of(entries.begin(), entries.end(), [&](const Entry& e) { return e.name == name; }))
      throw Error(ErrorKind::InvalidArgument,
                  fmt::format("experiment: {} names \"{}\", which {} does not list", option, name, config_path));
}

void Runner::plan() {
  check_filter(opt_.datasets, cfg_.datasets, "--datasets", cfg_.config_path);
  check_filter(opt_.attacks, cfg_.attacks, "--attacks", cfg_.config_path);
  check_filter(opt_.defenses, cfg_.defenses, "--defenses", cfg_.config_path);
  for (auto seed : opt_.seeds)
    if (std::find(cfg_.seeds.begin(), cfg_.seeds.end(), seed) == cfg_.seeds.end())
      throw Error(ErrorKind::InvalidArgument,
                  fmt::format("experiment: --seeds names {}, which {} does not list", seed, cfg_.config_path));
  for (auto& ds : cfg_.datasets) {
    if (!selected(ds)) continue;
    for (auto seed : cfg_.seeds) {
      if (!selected(seed)) continue;
      eta_.total_cost += Eta::kModel;  // clean model
      for (auto& at : cfg_.attacks) {
        if (!picked(opt_.attacks, at.name)) continue;
        eta_.total_cost += Eta::kModel;
        for (auto& de : cfg_.defenses)
          if (picked(opt_.defenses, de.name) && !store_.has_rows(unit_key(ds.name, seed, at.name, de.name)))
            eta_.total_cost += Eta::defense_cost(de.method, de.grid.size());
      }
    }
  }
}

CleanModel Runner::clean_model(const DatasetSpec& ds, uint64_t seed, const PreparedData& data) {
  const int max_len = max_length_of(cfg_, ds);
  const TrainSpec& atrain = ds.attack_train ? *ds.attack_train : cfg_.attack_train;
  CleanModel c;
  c.key = {{"kind", "clean"}, {"pretrained", pre_hash_}, {"train", util::sha256_file(data.attacker_train)},
           {"epochs", atrain.epochs}, {"lr", atrain.lr}, {"batch_size", atrain.batch_size}, {"max_length", max_len},
           {"seed", seed}, {"num_labels", data.num_labels}, {"length_window", train::TrainOptions{}.length_window}};
  mark_device(c.key);
  c.dir = (fs::path(opt_.out) / "cache" / ("clean-" + util::sha256_string(c.key.dump()).substr(0, 16))).string();
  c.cached = fs::exists(fs::path(c.dir) / "config.json");
  if (c.cached) eta_.total_cost -= Eta::kModel;  // the ETA counts only work this run does
  if (!c.cached) {
    util::log(eta_.line(fmt::format("{} seed {}: clean fine-tune (reference and EP start)", ds.name, seed)));
    model::LoadOptions lo;
    lo.num_labels = data.num_labels;
    lo.seed = seed;
    lo.device = device_;
    auto lm = model::load_classifier(cfg_.pretrained, lo);
    auto trs = train::tokenize(*tok_, train::read_task_data(data.attacker_train, lm.config), max_len);
    train::TrainOptions to;
    to.epochs = atrain.epochs;
    to.lr = atrain.lr;
    to.batch_size = atrain.batch_size;
    to.seed = seed;
    to.keep_best = false;
    to.label = ds.name + " clean";
    auto tr = train::fine_tune(*lm.model, trs, nullptr, to, device_);
    util::Manifest man("experiment clean model", c.key);
    man.set("train", report::train_json(tr));
    model::save_classifier(*lm.model, c.dir, cfg_.pretrained, {{"manifest.json", man.to_json().dump(2) + "\n"}}, false,
                           {cfg_.pretrained});
  }
  util::release_free_memory();  // the training's buffers (see defense_unit)
  // Loaded once per dataset and seed (measured per attack in base_unit).
  c.lm = model::load_trained_classifier(c.dir, device_);
  if (!c.cached) eta_.done_cost += Eta::kModel;
  return c;
}

/// Flip rates pair triggered rows with the clean test's non-target rows in order: our attacks build
/// them so; an imported triggered file must have been made from the same test rows (checked before training).
void check_pairing(const DatasetSpec& ds, const AttackEntry& at, const std::string& triggered, const std::string& test) {
  auto non_target = [&](const std::string& file) {
    const auto d = text::read_dataset(file);
    return std::count_if(d.examples.begin(), d.examples.end(), [&](const text::Example& e) { return e.label != ds.target; });
  };
  const auto n_trig = non_target(triggered), n_test = non_target(test);
  if (n_trig != n_test)
    throw Error(ErrorKind::ExperimentConfigInvalid,
                fmt::format("attack \"{}\": {} has {} rows with label != {}, dataset {}'s test rows ({}, after "
                            "test_skip / test_limit) have {}; an experiment pairs them row by row for the flip rate",
                            at.name, triggered, n_trig, ds.target, ds.name, ds.test, n_test));
}

PoisonedModel Runner::poisoned_model(const DatasetSpec& ds, uint64_t seed, const AttackEntry& at,
                                     const PreparedData& data, const CleanModel& clean) {
  auto spec = attack_spec(cfg_, ds, at, seed);
  spec.train = data.attacker_train;
  spec.test = data.test;
  const bool from_clean = attack::attack_method(at.method).poisoning == attack::Poisoning::Embedding;
  if (from_clean) spec.clean_model = clean.dir;
  PoisonedModel p;
  p.key = {{"kind", "attack"}, {"method", spec.method}, {"start", from_clean ? hash_of_folder(clean.dir) : pre_hash_},
           {"train", util::sha256_file(spec.train)}, {"test", util::sha256_file(spec.test)},
           {"target", spec.target}, {"max_length", spec.max_length}, {"epochs", spec.opt.epochs},
           {"lr", attack::attack_lr(spec)}, {"batch_size", spec.opt.batch_size},
           {"seed", seed}, {"poison_rate", spec.poison_rate}, {"triggers", spec.triggers},
           {"sentence", spec.sentence}, {"bias_word", spec.bias_word}};
  // Non-default pair side / LWP combination only (keeps keys of earlier caches valid).
  if (spec.side != "a") p.key["side"] = spec.side;
  if (spec.combination != 2) p.key["combination"] = spec.combination;
  p.key["length_window"] = spec.opt.length_window;  // training batches grouped by length (since 2026-12)
  mark_device(p.key);
  // import: the attacker's own files decide the model (config paths; hashed so an edited file retrains).
  for (auto& [name, file] : {std::pair{"poisoned_train", &spec.poisoned_train}, {"triggered_test", &spec.triggered_test}})
    if (!file->empty()) p.key[name] = util::sha256_file(*file);
  p.dir = (fs::path(opt_.out) / "cache" / ("attack-" + util::sha256_string(p.key.dump()).substr(0, 16))).string();
  if (!fs::exists(fs::path(p.dir) / "attack.json")) {
    if (!spec.triggered_test.empty()) check_pairing(ds, at, spec.triggered_test, data.test);
    util::log(eta_.line(fmt::format("{} seed {}: attack {}", ds.name, seed, at.name)));
    auto run = attack::run_attack(spec, device_);
    report::save_attack(run, spec, p.dir, false);
    p.result = run.result;
    util::release_free_memory();
    eta_.done_cost += Eta::kModel;
  } else {
    p.result = report::load_attack_result(p.dir);
    eta_.total_cost -= Eta::kModel;
  }
  return p;
}

void Runner::base_unit(const DatasetSpec& ds, uint64_t seed, const AttackEntry& at, CleanModel& clean,
                       const PoisonedModel& pm) {
  const std::string id = unit_id(unit_key(ds.name, seed, at.name, "none"), {{"attack", pm.key}, {"clean_model", clean.key}});
  if (store_.done(id)) return;
  // The clean reference model on the same triggered set: the ASR a model without a backdoor gets
  // (its errors on non-target examples plus any effect of the trigger text itself).
  auto read = [&](const char* file) {
    return train::tokenize(*tok_, train::read_task_data((fs::path(pm.dir) / file).string(), clean.lm.config),
                           max_length_of(cfg_, ds));
  };
  const auto trig = read("triggered_test.tsv"), test = read("clean_test.tsv");
  purify::Measurements ms{&trig, ds.target, &test, train::non_target_rows(test.labels, ds.target)};
  const auto of_clean = purify::measure(*clean.lm.model, ms, device_);
  auto suspect = model::load_trained_classifier(pm.dir, device_);
  const auto of_suspect = purify::measure(*suspect.model, ms, device_);
  store_.add(id, {{{"dataset", ds.name}, {"attack", at.name}, {"seed", seed}, {"defense", "none"}, {"knob", 0},
                   {"test_acc", pm.result.clean_test_accuracy}, {"asr", pm.result.asr}, {"flip", of_suspect.flip_rate},
                   {"clean_model_test_acc", of_clean.test_accuracy}, {"clean_model_asr", of_clean.asr},
                   {"clean_model_flip", of_clean.flip_rate}, {"model", pm.dir}}});
}

void Runner::defense_unit(const DatasetSpec& ds, uint64_t seed, const AttackEntry& at, const DefenseEntry& de,
                          const PreparedData& data, const json& clean_hashes, const PoisonedModel& pm) {
  const int max_len = max_length_of(cfg_, ds);
  auto spec = defense_spec(cfg_, de, seed);
  const json settings = {  // the attack's key names the device where it is not the CPU
      {"attack", pm.key},
      {"defense", {{"method", de.method}, {"grid", de.grid}, {"options", de.options}}},
      {"defense_training",
       {{"epochs", cfg_.defense_train.epochs}, {"lr", cfg_.defense_train.lr}, {"batch_size", cfg_.defense_train.batch_size},
        {"length_window", spec.purify.train.length_window}}},
      {"max_acc_drop", *spec.purify.max_acc_drop},
      {"fisher_examples", cfg_.fisher_examples},
      {"clean_data", clean_hashes},
      {"max_length", max_len}};
  const std::string id = unit_id(unit_key(ds.name, seed, at.name, de.name), settings);
  if (store_.done(id)) return;
  util::log(eta_.line(fmt::format("{} seed {}: attack {} -> defense {}", ds.name, seed, at.name, de.name)));
  spec.suspect = pm.dir;
  spec.clean = data.clean;
  spec.clean_dev = data.clean_dev;
  spec.attack_test = (fs::path(pm.dir) / "triggered_test.tsv").string();
  spec.target_label = ds.target;
  spec.test = (fs::path(pm.dir) / "clean_test.tsv").string();
  spec.attack_test_paired = true;  // attack::run_attack builds the triggered set from clean_test in order
  spec.max_length = max_len;
  const auto t0 = std::chrono::steady_clock::now();
  const auto res = purify::run_defense(spec, device_).result;
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::vector<json> rows;
  for (auto& pt : res.evaluated)
    rows.push_back({{"dataset", ds.name}, {"attack", at.name}, {"seed", seed}, {"defense", de.name},
                    {"method", de.method}, {"knob", pt.rho}, {"reset_dims", pt.reset_dims}, {"dev_acc", pt.dev_accuracy},
                    {"suspect_dev_acc", res.suspect_dev_accuracy}, {"test_acc", pt.measured.test_accuracy},
                    {"asr", pt.measured.asr}, {"flip", pt.measured.flip_rate},
                    {"seconds", pt.seconds}, {"clean_dev_rows", res.clean_dev_examples},
                    {"per_layer", report::selection_json(pt.selection).at("per_layer")},
                    {"aligned_dims", res.diagnosis.aligned_dimensions}});
  store_.add(id, std::move(rows));
  eta_.done_cost += Eta::defense_cost(de.method, de.grid.size());
  // jemalloc is set never to return free pages by itself; without a purge per unit the runner's
  // resident memory grew by ~2 GB a unit in cached free pages (23 GB after ten units on real-dev).
  util::release_free_memory();
  util::log(fmt::format("{} seed {}: attack {} -> defense {}: {} points in {:.0f}s wall (Fisher, search, evaluation); "
                        "resident memory {:.2f} GB after the unit",
                        ds.name, seed, at.name, de.name, res.evaluated.size(), wall, util::current_rss_bytes() / 1e9));
  write_report(cfg_, store_.rows(), opt_.out);
}

void Runner::dataset_seed(const DatasetSpec& ds, uint64_t seed) {
  auto data = prepare_data(ds, seed, opt_.out);
  // The defender's data, part of every defense unit's fingerprint (hashed once per dataset and seed).
  const json clean_hashes = {{"clean", util::sha256_file(data.clean)},
                             {"clean_dev", data.clean_dev.empty() ? std::string() : util::sha256_file(data.clean_dev)}};
  auto clean = clean_model(ds, seed, data);
  for (auto& at : cfg_.attacks) {
    if (!picked(opt_.attacks, at.name)) continue;
    const auto pm = poisoned_model(ds, seed, at, data, clean);
    base_unit(ds, seed, at, clean, pm);
    util::release_free_memory();
    for (auto& de : cfg_.defenses)
      if (picked(opt_.defenses, de.name)) defense_unit(ds, seed, at, de, data, clean_hashes, pm);
  }
}

int64_t Runner::run() {
  if (opt_.report_only) {
    write_report(cfg_, store_.rows(), opt_.out);
    return store_.rows().size();
  }
  plan();
  pre_hash_ = hash_of_folder(cfg_.pretrained);
  const auto pre_cfg = model::load_config(cfg_.pretrained);
  tok_ = text::load_model_tokenizer(cfg_.pretrained, pre_cfg.model_type, pre_cfg.vocab_size);
  for (auto& ds : cfg_.datasets)
    if (selected(ds))
      for (auto seed : cfg_.seeds)
        if (selected(seed)) dataset_seed(ds, seed);
  write_report(cfg_, store_.rows(), opt_.out);
  util::log(eta_.line(fmt::format("done: {} result rows in {}", store_.rows().size(), opt_.out)));
  return store_.rows().size();
}

}  // namespace

int64_t run(const ExperimentConfig& cfg, const RunOptions& opt, torch::Device device) {
  if (opt.out.empty()) throw Error(ErrorKind::InvalidArgument, "experiment: no output folder");
  fs::create_directories(fs::path(opt.out) / "cache");
  return Runner(cfg, opt, device).run();
}

}  // namespace finepurify::experiment
