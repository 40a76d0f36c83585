// Experiment configs: parsing and validation (errors name the file and the field), and the
// mapping of a config's entries onto the library's typed specs (attack::AttackSpec,
// purify::DefenseSpec) through their option tables.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include <fmt/format.h>

#include "finepurify/error.hpp"
#include "finepurify/experiment/runner.hpp"
#include "finepurify/io/model_store.hpp"

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

/// The import attack's files (the attacker's own poisoned data): relative to the config's folder, and there.
void resolve_attack_files(json& o, const std::string& base, const std::string& file, const std::string& where) {
  for (const char* key : {"poisoned_train", "triggered_test"}) {
    if (!o.contains(key) || !o.at(key).is_string()) continue;
    o[key] = resolve(base, o.at(key).get<std::string>());
    if (!fs::is_regular_file(o[key].get<std::string>()))
      bad(file, fmt::format("{}: {} file not found: {}", where, key, o[key].get<std::string>()));
  }
}

/// Attack options are checked against the attack table when the config is read, not mid-run.
void check_attack_options(const json& o, const std::string& file, const std::string& where) {
  attack::AttackSpec probe;
  util::read_options(o, probe, attack::attack_config_fields(), ErrorKind::ExperimentConfigInvalid, file + ": " + where);
}

DatasetSpec parse_dataset(const json& d, const ExperimentConfig& c, const std::string& base, const std::string& path) {
  DatasetSpec s;
  s.name = d.at("name").get<std::string>();
  s.train = resolve(base, d.at("train").get<std::string>());
  s.dev = resolve(base, d.value("dev", std::string()));
  s.test = resolve(base, d.at("test").get<std::string>());
  s.target = d.value("target", s.target);
  s.train_limit = d.value("train_limit", s.train_limit);
  s.test_skip = d.value("test_skip", s.test_skip);
  s.test_limit = d.value("test_limit", s.test_limit);
  s.clean_size = d.value("clean_size", s.clean_size);
  s.clean_dev_size = d.value("clean_dev_size", s.clean_dev_size);
  s.bias_word = d.value("bias_word", std::string());
  s.max_length = d.value("max_length", 0);
  s.attack_options = d.value("attack_options", json::object());
  if (!s.attack_options.is_object()) bad(path, "dataset " + s.name + ": attack_options must be an object");
  for (auto it = s.attack_options.begin(); it != s.attack_options.end(); ++it) {
    if (!it.value().is_object())
      bad(path, "dataset " + s.name + ": attack_options." + it.key() + " must be an object of options");
    resolve_attack_files(it.value(), base, path, "dataset " + s.name + ": attack_options." + it.key());
    check_attack_options(it.value(), path, "dataset " + s.name + ": attack_options." + it.key());
  }
  if (d.contains("attack_training"))
    s.attack_train = parse_train(d.at("attack_training"), c.attack_train, path, "dataset " + s.name + ": attack_training");
  if (s.max_length < 0 || s.max_length > 4096) bad(path, "dataset " + s.name + ": max_length outside [0, 4096]");
  if (s.target < 0) bad(path, "dataset " + s.name + ": target must be >= 0");
  if (s.test_skip < 0) bad(path, "dataset " + s.name + ": test_skip must be >= 0");
  if (s.clean_dev_size > 0 && s.test == s.dev && s.test_skip < s.clean_dev_size)
    bad(path, "dataset " + s.name + ": test is the dev file, so test_skip must be >= clean_dev_size (the rows that select)");
  if (s.clean_size < 10) bad(path, "dataset " + s.name + ": clean_size must be >= 10");
  if (s.clean_dev_size > 0 && s.dev.empty()) bad(path, "dataset " + s.name + ": clean_dev_size needs \"dev\"");
  for (auto* p : {&s.train, &s.test, &s.dev})
    if (!p->empty() && !fs::exists(*p)) bad(path, "dataset " + s.name + ": file not found: " + *p);
  return s;
}

AttackEntry parse_attack(const json& a, const std::string& base, const std::string& path) {
  AttackEntry e;
  e.method = a.at("method").get<std::string>();
  e.name = a.value("name", e.method);
  const auto& ms = attack::attack_methods();
  if (std::find(ms.begin(), ms.end(), e.method) == ms.end())
    bad(path, "attack \"" + e.name + "\": unknown method \"" + e.method + "\"");
  e.options = a.value("options", json::object());
  if (!e.options.is_object()) bad(path, "attack \"" + e.name + "\": options must be an object");
  resolve_attack_files(e.options, base, path, "attack \"" + e.name + "\"");
  check_attack_options(e.options, path, "attack \"" + e.name + "\"");
  // import trains on the attacker's own files, the same for every dataset and seed of the config.
  const bool is_import = attack::attack_method(e.method).poisoning == attack::Poisoning::Import;
  for (const char* key : {"poisoned_train", "triggered_test"})
    if (is_import != e.options.contains(key))
      bad(path, fmt::format("attack \"{}\": \"{}\" {}", e.name, key,
                            is_import ? "is needed by method import" : "is for method import only"));
  return e;
}

DefenseEntry parse_defense(const json& d, const ExperimentConfig& c, const std::string& path) {
  DefenseEntry e;
  e.method = d.at("method").get<std::string>();
  e.name = d.value("name", e.method);
  purify::Defense m{};
  try {
    m = util::parse_enum<purify::Defense>(e.method);
  } catch (const Error& err) {
    bad(path, "defense \"" + e.name + "\": " + err.what());
  }
  if (d.contains("grid")) e.grid = d.at("grid").get<std::vector<double>>();
  if (purify::defense_has_knob(m) && e.grid.empty()) bad(path, "defense \"" + e.name + "\" needs a \"grid\"");
  for (double g : e.grid)
    if (!(g > 0 && g <= 1)) bad(path, fmt::format("defense \"{}\": grid value {} outside (0, 1]", e.name, g));
  e.options = d.value("options", json::object());
  defense_spec(c, e, 1);  // checks the options against the defense table now
  return e;
}

std::string resolve_pretrained(const json& j, const std::string& base, const std::string& path) {
  if (!j.contains("pretrained")) bad(path, "missing \"pretrained\" (the clean pre-trained model folder)");
  // A folder (relative to the config) or a model name (store, then Hugging Face hub cache).
  const std::string pre = j.at("pretrained").get<std::string>();
  std::string p = resolve(base, pre);
  if (fs::exists(p)) return p;
  try {
    return io::resolve_model(pre);
  } catch (const Error& e) {
    bad(path, std::string("pretrained: ") + e.what());
  }
}

void parse_top_level(ExperimentConfig& c, const std::string& base, const std::string& path) {
  const auto& j = c.raw;
  c.name = j.value("name", fs::path(path).stem().string());
  c.pretrained = resolve_pretrained(j, base, path);
  if (j.contains("seeds")) c.seeds = j.at("seeds").get<std::vector<uint64_t>>();
  if (c.seeds.empty()) bad(path, "\"seeds\" is empty");
  c.max_length = j.value("max_length", c.max_length);
  c.fisher_examples = j.value("fisher_examples", c.fisher_examples);
  if (j.contains("thresholds")) c.thresholds = j.at("thresholds").get<std::vector<double>>();
  c.attack_train = parse_train(j.value("attack_training", json()), c.attack_train, path, "attack_training");
  c.defense_train = parse_train(j.value("defense_training", json()), c.defense_train, path, "defense_training");
}

void parse_entries(ExperimentConfig& c, const std::string& base, const std::string& path) {
  const auto& j = c.raw;
  std::set<std::string> names;
  auto unique = [&](const std::string& kind, const std::string& prefix, const std::string& name) {
    if (!names.insert(prefix + name).second) bad(path, kind + " \"" + name + "\" listed twice");
  };
  for (auto& d : j.value("datasets", json::array())) {
    c.datasets.push_back(parse_dataset(d, c, base, path));
    unique("dataset", "d:", c.datasets.back().name);
  }
  for (auto& a : j.value("attacks", json::array())) {
    c.attacks.push_back(parse_attack(a, base, path));
    unique("attack", "a:", c.attacks.back().name);
  }
  for (auto& d : j.value("defenses", json::array())) {
    c.defenses.push_back(parse_defense(d, c, path));
    unique("defense", "x:", c.defenses.back().name);
  }
  for (auto& ds : c.datasets)
    for (auto it = ds.attack_options.begin(); it != ds.attack_options.end(); ++it)
      if (std::none_of(c.attacks.begin(), c.attacks.end(), [&](const AttackEntry& a) { return a.name == it.key(); }))
        bad(path, "dataset " + ds.name + ": attack_options names \"" + it.key() + "\", which \"attacks\" does not list");
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
  if (!c.raw.is_object()) bad(path, "top level must be an object");
  const std::string base = fs::absolute(path).parent_path().string();
  c.config_path = path;
  try {
    parse_top_level(c, base, path);
    parse_entries(c, base, path);
  } catch (const json::exception& e) {
    bad(path, std::string("bad field: ") + e.what());
  }
  if (c.datasets.empty() || c.attacks.empty() || c.defenses.empty())
    bad(path, "needs at least one dataset, one attack and one defense");
  if (!fs::exists(c.pretrained)) bad(path, "pretrained model folder not found: " + c.pretrained);
  return c;
}

purify::DefenseSpec defense_spec(const ExperimentConfig& cfg, const DefenseEntry& d, uint64_t seed,
                                 const purify::DefenseSpec& base) {
  purify::DefenseSpec s = base;
  s.pretrained = cfg.pretrained;
  auto& po = s.purify;
  po.method = util::parse_enum<purify::Defense>(d.method);
  po.seed = seed;
  po.diagnose.fisher_examples = cfg.fisher_examples;
  po.grid = d.grid;
  po.sweep = true;
  po.max_acc_drop = cfg.thresholds.empty() ? 3.0 : *std::max_element(cfg.thresholds.begin(), cfg.thresholds.end());
  po.train.epochs = cfg.defense_train.epochs;
  po.train.lr = cfg.defense_train.lr;
  po.train.batch_size = cfg.defense_train.batch_size;
  util::read_options(d.options, s, purify::defense_config_fields(), ErrorKind::ExperimentConfigInvalid,
                     cfg.config_path + ": defense \"" + d.name + "\"");
  return s;
}

attack::AttackSpec attack_spec(const ExperimentConfig& cfg, const DatasetSpec& ds, const AttackEntry& at, uint64_t seed) {
  attack::AttackSpec spec;
  const TrainSpec& atrain = ds.attack_train ? *ds.attack_train : cfg.attack_train;
  spec.method = at.method;
  spec.target = ds.target;
  spec.max_length = ds.max_length > 0 ? ds.max_length : cfg.max_length;
  spec.opt.epochs = atrain.epochs;
  spec.opt.lr = atrain.lr;
  spec.opt.batch_size = atrain.batch_size;
  spec.opt.seed = seed;
  if (!ds.bias_word.empty()) spec.bias_word = ds.bias_word;
  // The attack's options, with this dataset's overrides for it on top.
  json aopt = at.options;
  if (ds.attack_options.contains(at.name)) aopt.update(ds.attack_options.at(at.name));
  util::read_options(aopt, spec, attack::attack_config_fields(), ErrorKind::ExperimentConfigInvalid,
                     cfg.config_path + ": attack \"" + at.name + "\"");
  spec.lr_given = aopt.contains("lr");
  // Embedding poisoning starts from the clean model (the runner sets it) and trains 1 epoch by default here.
  const bool from_clean = attack::attack_method(at.method).poisoning == attack::Poisoning::Embedding;
  if (from_clean && !aopt.contains("epochs")) spec.opt.epochs = 1;
  spec.pretrained = from_clean ? "" : cfg.pretrained;
  return spec;
}

}  // namespace finepurify::experiment
