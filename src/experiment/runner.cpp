// Experiment runner: data preparation, cached clean / poisoned models, every defense swept over its
// knob grid, results appended to results.jsonl (resume), then the report (see report.cpp).
#include "finepurify/experiment/runner.hpp"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <set>

#include <fmt/format.h>

#include "finepurify/attack/run.hpp"
#include "finepurify/error.hpp"
#include "finepurify/io/checkpoint.hpp"
#include "finepurify/io/model_store.hpp"
#include "finepurify/model/loader.hpp"
#include "finepurify/purify/purify.hpp"
#include "finepurify/text/dataset.hpp"
#include "finepurify/train/data.hpp"
#include "finepurify/train/trainer.hpp"
#include "finepurify/util/manifest.hpp"
#include "finepurify/util/runtime.hpp"

namespace finepurify::experiment {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

[[noreturn]] void bad(const std::string& file, const std::string& what) {
  throw Error(ErrorKind::ExperimentConfigInvalid, file + ": " + what);
}

std::string resolve(const std::string& base, const std::string& p) {
  if (p.empty() || fs::path(p).is_absolute()) return p;
  return (fs::path(base) / p).lexically_normal().string();
}

TrainSpec parse_train(const json& j, TrainSpec d, const std::string& file, const std::string& where) {
  if (j.is_null()) return d;
  if (!j.is_object()) bad(file, where + " must be an object");
  d.epochs = j.value("epochs", d.epochs);
  d.lr = j.value("lr", d.lr);
  d.batch_size = j.value("batch_size", d.batch_size);
  if (d.epochs < 1 || d.lr <= 0 || d.batch_size < 1) bad(file, where + ": epochs, lr and batch_size must be positive");
  return d;
}

std::string hash_of_folder(const std::string& folder) {
  std::string h;
  for (auto name : {"config.json", "model.safetensors", "model.safetensors.index.json"}) {
    auto p = fs::path(folder) / name;
    if (fs::exists(p)) h += util::sha256_file(p.string());
  }
  return util::sha256_string(h);
}

void append_rows(const std::string& path, const std::vector<json>& rows) {
  std::ofstream f(path, std::ios::app);
  if (!f) throw Error(ErrorKind::Io, "cannot append to " + path);
  for (auto& r : rows) f << r.dump() << "\n";
  f.flush();
}

std::vector<json> read_rows(const std::string& path) {
  std::vector<json> rows;
  std::ifstream f(path);
  std::string line;
  int64_t n = 0, dropped = 0;
  while (std::getline(f, line)) {
    ++n;
    if (line.empty()) continue;
    try {
      rows.push_back(json::parse(line));
    } catch (const json::exception&) {
      // A run killed mid-write leaves a partial last line: drop it (its unit reruns).
      util::log(fmt::format("{}:{}: unreadable result line dropped (interrupted run?)", path, n));
      ++dropped;
    }
  }
  if (dropped > 0) {  // rewrite without the torn lines so later appends start on a fresh line
    std::string good;
    for (auto& r : rows) good += r.dump() + "\n";
    io::write_text_atomic(path, good);
  }
  return rows;
}

std::string fmt_seconds(double s) {
  if (s < 90) return fmt::format("{:.0f}s", s);
  if (s < 5400) return fmt::format("{:.0f}m", s / 60);
  return fmt::format("{:.1f}h", s / 3600);
}

}  // namespace

ExperimentConfig load_config(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw Error(ErrorKind::Io, "cannot read experiment config " + path);
  ExperimentConfig c;
  try {
    c.raw = json::parse(f);
  } catch (const json::exception& e) {
    bad(path, std::string("not valid JSON: ") + e.what());
  }
  const auto& j = c.raw;
  if (!j.is_object()) bad(path, "top level must be an object");
  const std::string base = fs::absolute(path).parent_path().string();
  c.config_path = path;
  try {
    c.name = j.value("name", fs::path(path).stem().string());
    if (!j.contains("pretrained")) bad(path, "missing \"pretrained\" (the clean pre-trained model folder)");
    // A folder (relative to the config) or a model name (store, then Hugging Face hub cache).
    const std::string pre = j.at("pretrained").get<std::string>();
    c.pretrained = resolve(base, pre);
    if (!fs::exists(c.pretrained)) {
      try {
        c.pretrained = io::resolve_model(pre);
      } catch (const Error& e) {
        bad(path, std::string("pretrained: ") + e.what());
      }
    }
    if (j.contains("seeds")) c.seeds = j.at("seeds").get<std::vector<uint64_t>>();
    if (c.seeds.empty()) bad(path, "\"seeds\" is empty");
    c.max_length = j.value("max_length", c.max_length);
    c.fisher_examples = j.value("fisher_examples", c.fisher_examples);
    if (j.contains("thresholds")) c.thresholds = j.at("thresholds").get<std::vector<double>>();
    c.attack_train = parse_train(j.value("attack_training", json()), c.attack_train, path, "attack_training");
    c.defense_train = parse_train(j.value("defense_training", json()), c.defense_train, path, "defense_training");
    std::set<std::string> names;
    for (auto& d : j.value("datasets", json::array())) {
      DatasetSpec s;
      s.name = d.at("name").get<std::string>();
      if (!names.insert("d:" + s.name).second) bad(path, "dataset \"" + s.name + "\" listed twice");
      s.train = resolve(base, d.at("train").get<std::string>());
      s.dev = resolve(base, d.value("dev", std::string()));
      s.test = resolve(base, d.at("test").get<std::string>());
      s.target = d.value("target", s.target);
      s.train_limit = d.value("train_limit", s.train_limit);
      s.test_limit = d.value("test_limit", s.test_limit);
      s.clean_size = d.value("clean_size", s.clean_size);
      s.clean_dev_size = d.value("clean_dev_size", s.clean_dev_size);
      s.bias_word = d.value("bias_word", std::string());
      s.max_length = d.value("max_length", 0);
      s.attack_options = d.value("attack_options", json::object());
      if (!s.attack_options.is_object()) bad(path, "dataset " + s.name + ": attack_options must be an object");
      for (auto it = s.attack_options.begin(); it != s.attack_options.end(); ++it)
        if (!it.value().is_object())
          bad(path, "dataset " + s.name + ": attack_options." + it.key() + " must be an object of options");
      if (d.contains("attack_training"))
        s.attack_train = parse_train(d.at("attack_training"), c.attack_train, path, "dataset " + s.name + ": attack_training");
      if (s.max_length < 0 || s.max_length > 4096) bad(path, "dataset " + s.name + ": max_length outside [0, 4096]");
      if (s.target < 0) bad(path, "dataset " + s.name + ": target must be >= 0");
      if (s.clean_size < 10) bad(path, "dataset " + s.name + ": clean_size must be >= 10");
      if (s.clean_dev_size > 0 && s.dev.empty()) bad(path, "dataset " + s.name + ": clean_dev_size needs \"dev\"");
      for (auto* p : {&s.train, &s.test, &s.dev})
        if (!p->empty() && !fs::exists(*p)) bad(path, "dataset " + s.name + ": file not found: " + *p);
      c.datasets.push_back(s);
    }
    for (auto& a : j.value("attacks", json::array())) {
      AttackEntry e;
      e.method = a.at("method").get<std::string>();
      e.name = a.value("name", e.method);
      const auto& ms = attack::attack_methods();
      if (std::find(ms.begin(), ms.end(), e.method) == ms.end() || e.method == "import")
        bad(path, "attack \"" + e.name + "\": unknown or unsupported method \"" + e.method + "\"");
      if (!names.insert("a:" + e.name).second) bad(path, "attack \"" + e.name + "\" listed twice");
      e.options = a.value("options", json::object());
      c.attacks.push_back(e);
    }
    for (auto& d : j.value("defenses", json::array())) {
      DefenseEntry e;
      e.method = d.at("method").get<std::string>();
      e.name = d.value("name", e.method);
      auto m = purify::defense_from_string(e.method);
      if (!names.insert("x:" + e.name).second) bad(path, "defense \"" + e.name + "\" listed twice");
      if (d.contains("grid")) e.grid = d.at("grid").get<std::vector<double>>();
      if (purify::defense_has_knob(m) && e.grid.empty()) bad(path, "defense \"" + e.name + "\" needs a \"grid\"");
      for (double g : e.grid)
        if (!(g > 0 && g <= 1)) bad(path, fmt::format("defense \"{}\": grid value {} outside (0, 1]", e.name, g));
      e.options = d.value("options", json::object());
      c.defenses.push_back(e);
    }
    for (auto& ds : c.datasets)
      for (auto it = ds.attack_options.begin(); it != ds.attack_options.end(); ++it)
        if (std::none_of(c.attacks.begin(), c.attacks.end(), [&](const AttackEntry& a) { return a.name == it.key(); }))
          bad(path, "dataset " + ds.name + ": attack_options names \"" + it.key() + "\", which \"attacks\" does not list");
  } catch (const json::exception& e) {
    bad(path, std::string("bad field: ") + e.what());
  }
  if (c.datasets.empty() || c.attacks.empty() || c.defenses.empty())
    bad(path, "needs at least one dataset, one attack and one defense");
  if (!fs::exists(c.pretrained)) bad(path, "pretrained model folder not found: " + c.pretrained);
  return c;
}

namespace {

struct PreparedData {
  std::string attacker_train, test, clean, clean_dev;  // files under out/data/<dataset>/
  int64_t num_labels = 2;
};

/// Writes the dataset's files for one seed: the attacker's training rows, the defender's clean set
/// (rows the attacker never trains on), the clean dev set and the test set.
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

struct Eta {
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  double done_cost = 0, total_cost = 0;
  double elapsed() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  std::string line(const std::string& what) const {
    double e = elapsed();
    std::string eta = done_cost > 0 ? fmt_seconds(e / done_cost * (total_cost - done_cost)) : "?";
    return fmt::format("[experiment {:.0f}% | {} elapsed | ETA {}] {}", total_cost > 0 ? 100 * done_cost / total_cost : 0,
                       fmt_seconds(e), eta, what);
  }
};

}  // namespace

int64_t run(const ExperimentConfig& cfg, const RunOptions& opt, torch::Device device) {
  if (opt.out.empty()) throw Error(ErrorKind::InvalidArgument, "experiment: no output folder");
  fs::create_directories(fs::path(opt.out) / "cache");
  const std::string results = (fs::path(opt.out) / "results.jsonl").string();
  auto rows = read_rows(results);
  if (opt.report_only) {
    write_report(cfg, rows, opt.out);
    return rows.size();
  }
  // A unit (one defense on one poisoned model) is done when all its rows made it to disk; an
  // interrupted unit's partial rows are dropped and the unit reruns.
  std::map<std::string, int64_t> seen;
  for (auto& r : rows) seen[r.value("unit", std::string())] += 1;
  std::set<std::string> done;
  {
    std::vector<json> complete;
    for (auto& r : rows) {
      const auto u = r.value("unit", std::string());
      const int64_t size = r.contains("unit_size") ? r["unit_size"].get<int64_t>() : seen[u];
      if (seen[u] == size) { done.insert(u); complete.push_back(r); }
    }
    if (complete.size() != rows.size()) {
      util::log(fmt::format("{}: {} rows of interrupted units dropped; those units rerun", results, rows.size() - complete.size()));
      std::string good;
      for (auto& r : complete) good += r.dump() + "\n";
      io::write_text_atomic(results, good);
      rows = std::move(complete);
    }
  }
  // A unit's id is its name plus a fingerprint of every setting its rows depend on (the poisoned
  // model's cache key, the defense's method/options/grid, the clean data, the defense training):
  // after a config change the unit reruns and its rows from the earlier settings are replaced.
  auto unit_key = [](const std::string& ds, uint64_t seed, const std::string& attack, const std::string& defense) {
    return fmt::format("{}/seed{}/{}/{}", ds, seed, attack, defense);
  };
  auto unit_id = [](const std::string& name, const json& settings) {
    return name + "@" + util::sha256_string(settings.dump()).substr(0, 12);
  };
  auto name_of = [](const std::string& unit) { return unit.substr(0, unit.find('@')); };
  std::set<std::string> done_names;  // for the ETA only: units with rows under any settings
  for (auto& u : done) done_names.insert(name_of(u));
  // Drops the rows of `id`'s unit name that were made under other settings (before its new rows go in).
  auto replace_stale = [&](const std::string& id) {
    const std::string name = name_of(id);
    std::vector<json> kept;
    for (auto& r : rows) {
      const auto u = r.value("unit", std::string());
      if (name_of(u) != name || u == id) kept.push_back(r);
    }
    if (kept.size() == rows.size()) return;
    util::log(fmt::format("{}: {} rows of {} came from earlier settings; replaced", results, rows.size() - kept.size(), name));
    std::string good;
    for (auto& r : kept) good += r.dump() + "\n";
    io::write_text_atomic(results, good);
    rows = std::move(kept);
  };

  // Cost model for the ETA: one attack ~ 3 units (EP's clean model counted separately), one defense
  // point ~ 1 unit (a short clean fine-tune), fine-purifying's Fisher ~ 1 unit.
  Eta eta;
  auto defense_cost = [](const DefenseEntry& d) {
    return std::max<double>(1, d.grid.size()) + (d.method == "fine-purifying" ? 1 : 0);
  };
  for (auto& name : opt.datasets)
    if (std::none_of(cfg.datasets.begin(), cfg.datasets.end(), [&](const DatasetSpec& d) { return d.name == name; }))
      throw Error(ErrorKind::InvalidArgument, "experiment: --datasets names \"" + name + "\", which " + cfg.config_path +
                                                  " does not list");
  auto selected = [&](const DatasetSpec& d) {
    return opt.datasets.empty() || std::find(opt.datasets.begin(), opt.datasets.end(), d.name) != opt.datasets.end();
  };
  for (auto& ds : cfg.datasets) {
    if (!selected(ds)) continue;
    for (auto seed : cfg.seeds) {
      eta.total_cost += 3;  // clean model
      for (auto& at : cfg.attacks) {
        eta.total_cost += 3;
        for (auto& de : cfg.defenses)
          if (!done_names.count(unit_key(ds.name, seed, at.name, de.name))) eta.total_cost += defense_cost(de);
      }
    }
  }
  const std::string pre_hash = hash_of_folder(cfg.pretrained);
  auto cfg_pre = model::load_config(cfg.pretrained);

  for (auto& ds : cfg.datasets) {
    if (!selected(ds)) continue;
    const int max_len = ds.max_length > 0 ? ds.max_length : cfg.max_length;
    const TrainSpec& atrain = ds.attack_train ? *ds.attack_train : cfg.attack_train;
    for (auto seed : cfg.seeds) {
      auto data = prepare_data(ds, seed, opt.out);
      const std::string clean_dev_file = data.clean_dev;
      // The defender's data, part of every defense unit's fingerprint (hashed once per dataset and seed).
      const json clean_data_hashes = {
          {"clean", util::sha256_file(data.clean)},
          {"clean_dev", clean_dev_file.empty() ? std::string() : util::sha256_file(clean_dev_file)}};
      // Clean fine-tuned reference model (also EP's starting point), cached by its inputs.
      json clean_key = {{"kind", "clean"}, {"pretrained", pre_hash}, {"train", util::sha256_file(data.attacker_train)},
                        {"epochs", atrain.epochs}, {"lr", atrain.lr},
                        {"batch_size", atrain.batch_size}, {"max_length", max_len}, {"seed", seed},
                        {"num_labels", data.num_labels}};
      const std::string clean_dir =
          (fs::path(opt.out) / "cache" / ("clean-" + util::sha256_string(clean_key.dump()).substr(0, 16))).string();
      const std::string test_file = data.test;
      const bool clean_cached = fs::exists(fs::path(clean_dir) / "config.json");
      if (clean_cached) eta.total_cost -= 3;  // the ETA counts only work this run does
      auto tok = text::load_tokenizer(cfg.pretrained, cfg_pre.model_type);
      {
        if (!clean_cached) {
          util::log(eta.line(fmt::format("{} seed {}: clean fine-tune (reference and EP start)", ds.name, seed)));
          model::LoadOptions lo;
          lo.num_labels = data.num_labels;
          lo.seed = seed;
          lo.device = device;
          auto lm = model::load_classifier(cfg.pretrained, lo);
          auto trs = train::tokenize(*tok, train::read_task_data(data.attacker_train, lm.config), max_len);
          train::TrainOptions to;
          to.epochs = atrain.epochs;
          to.lr = atrain.lr;
          to.batch_size = atrain.batch_size;
          to.seed = seed;
          to.keep_best = false;
          to.label = ds.name + " clean";
          auto tr = train::fine_tune(*lm.model, trs, nullptr, to, device);
          util::Manifest man("experiment clean model", clean_key);
          man.set("train", tr.to_json());
          model::save_classifier(*lm.model, clean_dir, cfg.pretrained, {{"manifest.json", man.to_json().dump(2) + "\n"}},
                                 false, {cfg.pretrained});
        }
      }
      // The clean reference model, loaded once per dataset and seed (test ACC here, ASR per attack).
      auto clean_lm = model::load_trained_classifier(clean_dir, device);
      const double clean_acc =
          train::evaluate(*clean_lm.model, train::tokenize(*tok, train::read_task_data(test_file, clean_lm.config), max_len),
                          device)
              .accuracy;
      if (!clean_cached) eta.done_cost += 3;

      for (auto& at : cfg.attacks) {
        // Poisoned model, cached by a hash of everything that determines it.
        auto spec = attack::default_attack_spec();
        spec.method = at.method;
        spec.train = data.attacker_train;
        spec.test = test_file;
        spec.target = ds.target;
        spec.max_length = max_len;
        // The attack's options, with this dataset's overrides for it on top.
        json aopt = at.options;
        if (ds.attack_options.contains(at.name)) aopt.update(ds.attack_options.at(at.name));
        spec.opt.epochs = aopt.value("epochs", atrain.epochs);
        spec.opt.lr = aopt.value("lr", atrain.lr);
        spec.opt.batch_size = atrain.batch_size;
        spec.opt.seed = seed;
        spec.lr_given = aopt.contains("lr");
        spec.poison_rate = aopt.value("poison_rate", spec.poison_rate);
        if (aopt.contains("triggers")) spec.triggers = aopt.at("triggers").get<std::vector<std::string>>();
        spec.sentence = aopt.value("sentence", spec.sentence);
        spec.combination = aopt.value("combination", spec.combination);
        const std::string side = aopt.value("side", std::string("a"));
        if (side != "a" && side != "b")
          throw Error(ErrorKind::ExperimentConfigInvalid, "attack " + at.name + ": side must be \"a\" or \"b\"");
        spec.side = side[0];
        spec.bias_word = aopt.value("bias_word", ds.bias_word.empty() ? spec.bias_word : ds.bias_word);
        if (at.method == "ep") {
          spec.clean_model = clean_dir;
          if (!aopt.contains("epochs")) spec.opt.epochs = 1;
        } else {
          spec.pretrained = cfg.pretrained;
        }
        json akey = {{"kind", "attack"}, {"method", spec.method}, {"start", at.method == "ep" ? hash_of_folder(clean_dir) : pre_hash},
                     {"train", util::sha256_file(spec.train)}, {"test", util::sha256_file(spec.test)},
                     {"target", spec.target}, {"max_length", spec.max_length}, {"epochs", spec.opt.epochs},
                     {"lr", spec.lr_given || at.method != "ep" ? spec.opt.lr : 1e-2}, {"batch_size", spec.opt.batch_size},
                     {"seed", seed}, {"poison_rate", spec.poison_rate}, {"triggers", spec.triggers},
                     {"sentence", spec.sentence}, {"bias_word", spec.bias_word}};
        // Non-default pair side / LWP combination only (keeps keys of earlier caches valid).
        if (spec.side != 'a') akey["side"] = std::string(1, spec.side);
        if (spec.combination != 2) akey["combination"] = spec.combination;
        const std::string adir =
            (fs::path(opt.out) / "cache" / ("attack-" + util::sha256_string(akey.dump()).substr(0, 16))).string();
        json attack_info;
        if (!fs::exists(fs::path(adir) / "attack.json")) {
          util::log(eta.line(fmt::format("{} seed {}: attack {}", ds.name, seed, at.name)));
          attack_info = attack::run_attack(spec, adir, false, device);
          eta.done_cost += 3;
        } else {
          std::ifstream f(fs::path(adir) / "attack.json");
          attack_info = json::parse(f);
          eta.total_cost -= 3;
        }
        const std::string base_unit =
            unit_id(unit_key(ds.name, seed, at.name, "none"), {{"attack", akey}, {"clean_model", clean_key}});
        if (!done.count(base_unit)) {
          replace_stale(base_unit);
          // The clean reference model on the same triggered set: the ASR a model without a backdoor
          // gets (its errors on non-target examples plus any effect of the trigger text itself).
          auto trig = train::tokenize(
              *tok, train::read_task_data((fs::path(adir) / "triggered_test.tsv").string(), clean_lm.config), max_len);
          const double clean_asr = train::attack_success_rate(
              train::evaluate(*clean_lm.model, trig, device).predictions, trig.labels, ds.target);
          json r = {{"unit", base_unit}, {"dataset", ds.name}, {"attack", at.name}, {"seed", seed},
                    {"defense", "none"}, {"knob", 0}, {"test_acc", attack_info.at("clean_test_accuracy")},
                    {"asr", attack_info.at("asr")}, {"clean_model_test_acc", clean_acc},
                    {"clean_model_asr", clean_asr}, {"model", adir}, {"unit_size", 1}};
          append_rows(results, {r});
          rows.push_back(r);
          done.insert(base_unit);
        }

        for (auto& de : cfg.defenses) {
          const json settings = {
              {"attack", akey},
              {"defense", {{"method", de.method}, {"grid", de.grid}, {"options", de.options}}},
              {"defense_training",
               {{"epochs", cfg.defense_train.epochs}, {"lr", cfg.defense_train.lr}, {"batch_size", cfg.defense_train.batch_size}}},
              {"max_acc_drop", cfg.thresholds.empty() ? 3.0 : *std::max_element(cfg.thresholds.begin(), cfg.thresholds.end())},
              {"fisher_examples", cfg.fisher_examples},
              {"clean_data", clean_data_hashes},
              {"max_length", max_len}};
          const std::string unit = unit_id(unit_key(ds.name, seed, at.name, de.name), settings);
          if (done.count(unit)) continue;
          util::log(eta.line(fmt::format("{} seed {}: attack {} -> defense {}", ds.name, seed, at.name, de.name)));
          auto lm = model::load_trained_classifier(adir, device);
          auto tok = text::load_tokenizer(adir, lm.config.model_type);
          auto clean = train::tokenize(*tok, train::read_task_data(data.clean, lm.config), max_len);
          train::TokenizedSet ctr, cdv;
          if (!clean_dev_file.empty()) {
            ctr = clean;
            cdv = train::tokenize(*tok, train::read_task_data(clean_dev_file, lm.config), max_len);
          } else {
            std::tie(ctr, cdv) = purify::split_clean(clean, 0.2, seed);
          }
          auto test_set = train::tokenize(*tok, train::read_task_data((fs::path(adir) / "clean_test.tsv").string(), lm.config),
                                          max_len);
          purify::AttackProbe probe{
              train::tokenize(*tok, train::read_task_data((fs::path(adir) / "triggered_test.tsv").string(), lm.config),
                              max_len),
              ds.target};
          purify::PurifyOptions po;
          po.method = purify::defense_from_string(de.method);
          po.diagnose.indicator.indicator =
              purify::indicator_from_string(de.options.value("indicator", std::string("fisher-ratio")));
          po.diagnose.indicator.epsilon_scale = de.options.value("epsilon_scale", po.diagnose.indicator.epsilon_scale);
          po.diagnose.indicator.seed = seed;
          po.diagnose.fisher_at = purify::fisher_at_from_string(de.options.value("fisher_at", std::string("ft")));
          po.diagnose.fisher_examples = cfg.fisher_examples;
          po.scope = purify::scope_from_string(de.options.value("scope", std::string("global")));
          po.reinit_head = de.options.value("reinit_head", false);
          po.unlearn_tokens = de.options.value("unlearn_tokens", int64_t{0});
          po.neutralize_tokens = de.options.value("neutralize_tokens", int64_t{0});
          po.diagnose.probe_tokens = de.options.value("probe_tokens", int64_t{0});
          po.diagnose.probe_examples = de.options.value("probe_examples", po.diagnose.probe_examples);
          po.diagnose.probe_min_flip = de.options.value("probe_min_flip", po.diagnose.probe_min_flip);
          po.max_length = max_len;
          po.epur = de.options.value("epur", false);
          po.epur_rows = de.options.value("epur_rows", po.epur_rows);
          po.grid = de.grid;
          po.sweep = true;
          po.max_acc_drop = cfg.thresholds.empty() ? 3.0 : *std::max_element(cfg.thresholds.begin(), cfg.thresholds.end());
          po.seed = seed;
          po.train.epochs = cfg.defense_train.epochs;
          po.train.lr = de.options.value("lr", cfg.defense_train.lr);
          po.train.batch_size = cfg.defense_train.batch_size;
          po.measure = [&](model::SequenceClassifierImpl& mm) {
            auto ev = train::evaluate(mm, test_set, device);
            return json{{"test_acc", ev.accuracy}};
          };
          auto res = purify::purify(*lm.model, cfg.pretrained, ctr, cdv, *tok, po, device, &probe);
          std::vector<json> out_rows;
          for (auto& pt : res.evaluated) {
            json r = {{"unit", unit}, {"dataset", ds.name}, {"attack", at.name}, {"seed", seed},
                      {"defense", de.name}, {"method", de.method}, {"knob", pt.rho}, {"reset_dims", pt.reset_dims},
                      {"dev_acc", pt.dev_accuracy}, {"suspect_dev_acc", res.suspect_dev_accuracy},
                      {"test_acc", pt.extra.value("test_acc", -1.0)}, {"asr", pt.asr}, {"seconds", pt.seconds},
                      {"per_layer", pt.selection.value("per_layer", json::object())},
                      {"aligned_dims", res.report["diagnosis"].value("aligned_dimensions", 0)}};
            out_rows.push_back(r);
          }
          for (auto& r : out_rows) r["unit_size"] = out_rows.size();
          replace_stale(unit);
          append_rows(results, out_rows);
          rows.insert(rows.end(), out_rows.begin(), out_rows.end());
          done.insert(unit);
          eta.done_cost += defense_cost(de);
          write_report(cfg, rows, opt.out);
        }
      }
    }
  }
  write_report(cfg, rows, opt.out);
  util::log(eta.line(fmt::format("done: {} result rows in {}", rows.size(), opt.out)));
  return rows.size();
}

}  // namespace finepurify::experiment
