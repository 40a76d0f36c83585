// One attack run end to end: poison, train, measure, write the folder (see run.hpp).
#include "finepurify/attack/run.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <unistd.h>

#include <fmt/format.h>

#include "finepurify/error.hpp"
#include "finepurify/model/loader.hpp"
#include "finepurify/text/dataset.hpp"
#include "finepurify/train/data.hpp"
#include "finepurify/util/manifest.hpp"
#include "finepurify/util/runtime.hpp"

namespace finepurify::attack {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

/// The TSV text of a dataset (write_tsv goes through a private temporary folder).
std::string tsv_string(const text::Dataset& d, const fs::path& tmpdir, const std::string& name) {
  auto p = tmpdir / name;
  text::write_tsv(p.string(), d);
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  fs::remove(p);
  return ss.str();
}

text::Dataset first_rows(text::Dataset d, int64_t n) {
  if (n > 0 && static_cast<int64_t>(d.examples.size()) > n) d.examples.resize(n);
  return d;
}

}  // namespace

train::TrainOptions attack_training_defaults() { return train::train_options(3, 1e-4, 32); }


using S = AttackSpec;

const util::Fields<AttackSpec>& attack_fields() {
  static const util::Fields<AttackSpec> t = {
      FP_OPTION(S, "method", "attack", method).one_of(attack_methods()).needed(),
      FP_OPTION(S, "pretrained",
                "pre-trained HF folder w_Pre (ep: fine-tuned clean first when no --clean-model)", pretrained).model(),
      FP_OPTION(S, "clean_model",
                "ep: the clean fine-tuned classifier whose trigger rows are poisoned", clean_model).model(),
      FP_OPTION(S, "train", "clean training data (the attacker's)", train).file().needed(),
      FP_OPTION(S, "dev", "clean dev data: best epoch kept", dev).file(),
      FP_OPTION(S, "test", "clean test data", test).file().needed(),
      FP_OPTION(S, "target_label", "target label id", target).at_least(0).needed(),
      FP_OPTION(S, "poison_rate",
                "fraction of the training set poisoned (rows drawn among label != target)", poison_rate).range(0, 1),
      FP_OPTION(S, "triggers", "comma-separated trigger words (default cf,mn,bb,tq,mb; ep: cf)", triggers),
      FP_OPTION(S, "sentence", "addsent sentence", sentence),
      FP_OPTION(S, "bias_word", "bias cue: a natural word or phrase", bias_word),
      FP_OPTION(S, "combination", "lwp: trigger words inserted together", combination).at_least(1),
      FP_OPTION(S, "side", "pairs: put the trigger in text a or b", side).one_of({"a", "b"}),
      FP_OPTION(S, "poisoned_train", "import: the attacker's poisoned training file", poisoned_train).file(),
      FP_OPTION(S, "triggered_test", "import: the attacker's triggered test file (true labels)", triggered_test).file(),
      FP_OPTION(S, "train_limit", "train on the first N training rows only (0 = all)", train_limit).at_least(0),
      FP_OPTION(S, "test_limit", "cut the clean test set to its first N rows (0 = all)", test_limit).at_least(0),
      FP_OPTION(S, "epochs", "epochs", opt.epochs).at_least(1),
      FP_OPTION(S, "lr", "peak learning rate (ep default 1e-2)", opt.lr).at_least(0),
      FP_OPTION(S, "batch_size", "batch size", opt.batch_size).at_least(1),
      FP_OPTION(S, "weight_decay", "AdamW weight decay (ep: always 0)", opt.weight_decay).at_least(0),
      FP_OPTION(S, "max_length", "max tokens per example incl. specials", max_length).range(2, 4096),
      FP_OPTION(S, "seed", "seed: poisoned rows, trigger positions, data order, new head", opt.seed),
  };
  return t;
}

const util::Fields<AttackSpec>& attack_config_fields() {
  static const auto t = util::pick(attack_fields(), {"poison_rate", "triggers", "sentence", "bias_word", "combination",
                                                     "side", "epochs", "lr"});
  return t;
}

namespace {

/// Refuses inconsistent options and an output over an input; returns the input paths.
std::vector<std::string> check_spec(const AttackSpec& a, const std::string& out, bool overwrite) {
  const std::string& method = a.method;
  const bool is_ep = method == "ep", is_import = method == "import";
  if (is_ep && a.clean_model.empty() && a.pretrained.empty())
    throw Error(ErrorKind::InvalidArgument, "ep needs --clean-model (or --pretrained to fine-tune a clean model first)");
  if (!is_ep && a.pretrained.empty()) throw Error(ErrorKind::InvalidArgument, method + " needs --pretrained");
  if (!is_ep && !a.clean_model.empty()) throw Error(ErrorKind::InvalidArgument, "--clean-model is for --method ep only");
  if (is_import && (a.poisoned_train.empty() || a.triggered_test.empty()))
    throw Error(ErrorKind::InvalidArgument, "import needs --poisoned-train and --triggered-test");
  if (!is_import && (!a.poisoned_train.empty() || !a.triggered_test.empty()))
    throw Error(ErrorKind::InvalidArgument, "--poisoned-train / --triggered-test are for --method import only");
  if (a.side != "a" && a.side != "b") throw Error(ErrorKind::InvalidArgument, "side must be \"a\" or \"b\"");
  std::vector<std::string> inputs = {a.pretrained, a.clean_model, a.train, a.dev, a.test, a.poisoned_train,
                                     a.triggered_test};
  inputs.erase(std::remove(inputs.begin(), inputs.end(), std::string()), inputs.end());
  model::check_output_not_input(out, inputs);
  if (fs::exists(out) && !overwrite)
    throw Error(ErrorKind::InvalidArgument, out + " exists (pass --overwrite to replace it)");
  return inputs;
}

attack::Trigger make_trigger(const AttackSpec& a) {
  const bool is_ep = a.method == "ep";
  std::vector<std::string> words =
      !a.triggers.empty() ? a.triggers : (is_ep ? std::vector<std::string>{"cf"} : attack::default_trigger_words());
  attack::Trigger trig;
  if (a.method == "badword" || is_ep) trig = attack::badword_trigger(words);
  else if (a.method == "addsent") trig = attack::addsent_trigger(a.sentence);
  else if (a.method == "bias") trig = attack::bias_trigger(a.bias_word);
  else if (a.method == "lwp") trig = attack::lwp_trigger(words, a.combination);
  return trig;
}

/// The model the attacker starts from: the clean classifier (ep), or w_Pre with a new head.
model::LoadedModel load_start(const AttackSpec& a, const model::ModelConfig& cfg, const text::Dataset& clean_train,
                              torch::Device dev) {
  model::LoadedModel lm;
  if (!a.clean_model.empty()) {
    lm = model::load_trained_classifier(a.clean_model, dev);
  } else {
    int64_t n_labels = 0;
    if (!cfg.has_classifier_head())
      for (auto& e : clean_train.examples) n_labels = std::max(n_labels, e.label + 1);
    model::LoadOptions lo;
    lo.seed = a.opt.seed;
    lo.device = dev;
    if (n_labels > 0) lo.num_labels = std::max<int64_t>(n_labels, a.target + 1);
    lm = model::load_classifier(a.pretrained, lo);
  }
  if (a.target >= lm.config.num_labels())
    throw Error(ErrorKind::InvalidArgument,
                fmt::format("target label {} outside the model's {} classes", a.target, lm.config.num_labels()));
  return lm;
}

struct AttackData {
  attack::PoisonResult pr;
  attack::TestSets ts;
};

AttackData build_data(const AttackSpec& a, const attack::Trigger& trig, const text::Dataset& clean_train,
                      const model::ModelConfig& cfg) {
  AttackData d;
  auto test_data = first_rows(train::read_task_data(a.test, cfg), a.test_limit);
  if (a.method == "import") {
    d.pr.data = train::read_task_data(a.poisoned_train, cfg);
    d.ts.clean = test_data;
    d.ts.triggered = attack::non_target_subset(train::read_task_data(a.triggered_test, cfg), a.target);
    if (d.ts.triggered.examples.empty())
      throw Error(ErrorKind::DataInvalid, a.triggered_test + ": no example with a label other than the target");
    util::log(fmt::format("import: {} training examples, {} triggered test examples with label != {}",
                          d.pr.data.examples.size(), d.ts.triggered.examples.size(), a.target));
    return d;
  }
  attack::PoisonOptions po;
  po.poison_rate = a.poison_rate;
  po.target_label = a.target;
  po.seed = a.opt.seed;
  po.side = a.side.at(0);
  d.pr = attack::poison_dataset(clean_train, trig, po);
  d.ts = attack::make_test_sets(test_data, trig, a.target, a.opt.seed + 1, po.side);
  util::log(fmt::format("{}: poisoned {} of {} non-target training examples ({} total), trigger {}", a.method,
                        d.pr.poisoned.size(), d.pr.eligible, d.pr.data.examples.size(), trig.to_json().dump()));
  if (a.method == "bias")
    util::log(fmt::format("bias cue \"{}\" occurs in {} clean training examples", a.bias_word,
                          attack::count_containing(clean_train, a.bias_word)));
  return d;
}

struct Trained {
  train::TrainOptions opt;  ///< as used by the final training
  train::TrainResult res;
  json clean_stage = nullptr;  ///< ep: the clean model before poisoning
  std::vector<int64_t> trigger_rows;
};

/// Fine-tunes on the poisoned data (ep: trains the trigger rows only, after a clean fine-tune when
/// it starts from w_Pre). `measure` logs and returns (clean test eval, ASR).
template <class Measure>
Trained train_attack(const AttackSpec& a, model::LoadedModel& lm, const text::Tokenizer& tok, const AttackData& d,
                     const text::Dataset& clean_train, const std::optional<train::TokenizedSet>& dv,
                     const attack::Trigger& trig, Measure measure, torch::Device dev) {
  Trained t;
  t.opt = a.opt;
  const auto* dvp = dv ? &*dv : nullptr;
  if (a.method != "ep") {
    t.opt.label = a.method;
    if (a.method == "lwp") t.opt = attack::lwp_options(t.opt);
    auto ptok = train::tokenize(tok, d.pr.data, a.max_length);
    util::log(fmt::format("train {} examples ({} tokens){}", ptok.size(), ptok.num_tokens(),
                          dv ? fmt::format(", dev {}", dv->size()) : ""));
    t.res = train::fine_tune(*lm.model, ptok, dvp, t.opt, dev);
    return t;
  }
  if (a.clean_model.empty()) {  // clean fine-tune of w_Pre first
    t.opt.label = "clean";
    t.clean_stage = train::fine_tune(*lm.model, train::tokenize(tok, clean_train, a.max_length), dvp, t.opt, dev).to_json();
  }
  auto before = measure("clean model before EP");
  t.clean_stage = {{"train", t.clean_stage}, {"clean_test_accuracy", before.first.accuracy}, {"asr", before.second}};
  t.trigger_rows = attack::trigger_token_ids(tok, trig.words);
  std::vector<std::string> pieces;
  for (auto id : t.trigger_rows) pieces.push_back(tok.id_to_token(id));
  util::log(fmt::format("ep: training embedding rows {} ({})", json(t.trigger_rows).dump(), json(pieces).dump()));
  train::TrainOptions eo = a.opt;
  if (!a.lr_given) eo.lr = 1e-2;
  eo.label = "ep";
  eo.keep_best = false;  // clean dev accuracy cannot see the trigger row: keep the last epoch
  eo = attack::embedding_poisoning_options(*lm.model, t.trigger_rows, eo, dev);
  // Only the poisoned rows contain the trigger; clean rows give the trigger rows no gradient.
  auto ptok = train::subset(train::tokenize(tok, d.pr.data, a.max_length), d.pr.poisoned);
  t.opt = eo;
  t.res = train::fine_tune(*lm.model, ptok, dvp, eo, dev);
  return t;
}

json attack_summary(const AttackSpec& a, const attack::Trigger& trig, const AttackData& d, const Trained& t,
                    double acc, double asr) {
  const bool is_import = a.method == "import";
  json j = {{"method", a.method},
            {"trigger", is_import ? json({{"kind", "import"}, {"poisoned_train", a.poisoned_train},
                                          {"triggered_test", a.triggered_test}})
                                  : trig.to_json()},
            {"target_label", a.target},
            {"poison_rate", is_import ? json(nullptr) : json(a.poison_rate)},
            {"side", a.side},
            {"num_poisoned", is_import ? json(nullptr) : json(d.pr.poisoned.size())},
            {"num_eligible", is_import ? json(nullptr) : json(d.pr.eligible)},
            {"num_train", d.pr.data.examples.size()},
            {"clean_test_accuracy", acc},
            {"asr", asr},
            {"num_clean_test", d.ts.clean.examples.size()},
            {"num_triggered_test", d.ts.triggered.examples.size()},
            {"train", t.res.to_json()}};
  if (a.method == "ep") {
    j["trigger_rows"] = t.trigger_rows;
    j["before"] = t.clean_stage;
  }
  if (!is_import) j["poisoned_indices"] = d.pr.poisoned;
  return j;
}

json attack_manifest(const AttackSpec& a, const Trained& t, const train::EvalResult& ev, double asr,
                     const model::ModelConfig& cfg) {
  util::Manifest man("attack", util::options_json(a, attack_fields()));
  for (auto& [role, path] : std::vector<std::pair<std::string, std::string>>{
           {"pretrained", a.pretrained}, {"clean_model", a.clean_model}, {"train", a.train}, {"dev", a.dev},
           {"test", a.test}, {"poisoned_train", a.poisoned_train}, {"triggered_test", a.triggered_test}})
    if (!path.empty()) man.add_input(role, path);
  man.set("training", {{"epochs", t.opt.epochs}, {"lr", t.opt.lr}, {"batch_size", t.opt.batch_size},
                       {"weight_decay", t.opt.weight_decay}});
  man.set("result", {{"clean_test_accuracy", ev.accuracy}, {"asr", asr}});
  man.set("clean_test_eval", ev.to_json(cfg.id2label));
  return man.to_json();
}

}  // namespace

AttackResult run_attack(const AttackSpec& a, const std::string& out, bool overwrite, torch::Device dev) {
  const auto inputs = check_spec(a, out, overwrite);
  const auto trig = make_trigger(a);
  const std::string model_dir = !a.clean_model.empty() ? a.clean_model : a.pretrained;
  auto cfg = model::load_config(model_dir);
  auto tok = text::load_tokenizer(model_dir, cfg.model_type, a.compat);
  auto clean_train = first_rows(train::read_task_data(a.train, cfg), a.train_limit);
  auto lm = load_start(a, cfg, clean_train, dev);
  util::log(fmt::format("{}: {}", model_dir, lm.report.summary()));
  const auto d = build_data(a, trig, clean_train, lm.config);
  std::optional<train::TokenizedSet> dv;
  if (!a.dev.empty()) dv = train::tokenize(*tok, train::read_task_data(a.dev, lm.config), a.max_length);
  auto clean_tok = train::tokenize(*tok, d.ts.clean, a.max_length);
  auto trig_tok = train::tokenize(*tok, d.ts.triggered, a.max_length);
  auto measure = [&](const char* what) {
    auto ev = train::evaluate(*lm.model, clean_tok, dev);
    auto et = train::evaluate(*lm.model, trig_tok, dev);
    double asr = train::attack_success_rate(et.predictions, trig_tok.labels, a.target);
    util::log(fmt::format("{}: clean test accuracy {:.2f}%, ASR {:.2f}%", what, 100 * ev.accuracy, 100 * asr));
    return std::make_pair(ev, asr);
  };
  const auto t = train_attack(a, lm, *tok, d, clean_train, dv, trig, measure, dev);
  auto after = measure("poisoned model");
  const double acc = after.first.accuracy, asr = after.second;
  const json attack_json = attack_summary(a, trig, d, t, acc, asr);
  fs::path tmpdir = fs::temp_directory_path() / fmt::format("finepurify-attack-{}", ::getpid());
  fs::create_directories(tmpdir);
  std::map<std::string, std::string> extra = {
      {"clean_test.tsv", tsv_string(d.ts.clean, tmpdir, "clean_test.tsv")},
      {"triggered_test.tsv", tsv_string(d.ts.triggered, tmpdir, "triggered_test.tsv")},
      {"poisoned_train.tsv", tsv_string(d.pr.data, tmpdir, "poisoned_train.tsv")},
      {"attack.json", attack_json.dump(2) + "\n"},
      {"manifest.json", attack_manifest(a, t, after.first, asr, lm.config).dump(2) + "\n"}};
  fs::remove_all(tmpdir);
  model::save_classifier(*lm.model, out, model_dir, extra, overwrite, inputs);
  util::log(fmt::format("clean test accuracy {:.2f}% ({} examples), ASR {:.2f}% ({} triggered, target {}); saved {}",
                        100 * acc, d.ts.clean.examples.size(), 100 * asr, d.ts.triggered.examples.size(), a.target, out));
  return {acc, asr, static_cast<int64_t>(d.ts.clean.examples.size()), static_cast<int64_t>(d.ts.triggered.examples.size())};
}

AttackResult load_attack_result(const std::string& folder) {
  const auto path = (fs::path(folder) / "attack.json").string();
  std::ifstream f(path);
  if (!f) throw Error(ErrorKind::Io, "cannot read " + path);
  try {
    const auto j = json::parse(f);
    return {j.at("clean_test_accuracy").get<double>(), j.at("asr").get<double>(), j.at("num_clean_test").get<int64_t>(),
            j.at("num_triggered_test").get<int64_t>()};
  } catch (const json::exception& e) {
    throw Error(ErrorKind::DataInvalid, path + ": not an attack record (" + e.what() + ")");
  }
}

}  // namespace finepurify::attack
