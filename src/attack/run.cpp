// One attack run end to end: poison, train, measure (see run.hpp; src/report writes the folder).
#include "finepurify/attack/run.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "finepurify/error.hpp"
#include "finepurify/model/loader.hpp"
#include "finepurify/text/dataset.hpp"
#include "finepurify/train/data.hpp"
#include "finepurify/util/runtime.hpp"

namespace finepurify::attack {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

text::Dataset first_rows(text::Dataset d, int64_t n) {
  if (n > 0 && static_cast<int64_t>(d.examples.size()) > n) d.examples.resize(n);
  return d;
}

}  // namespace

namespace {
std::vector<std::string> words_or(const AttackSpec& a, std::vector<std::string> defaults) {
  return a.triggers.empty() ? defaults : a.triggers;
}
Trigger no_trigger(const AttackSpec&) { return Trigger{}; }
}  // namespace

const std::vector<AttackMethod>& attack_method_table() {
  static const std::vector<AttackMethod> t = {
      {"badword", "1-3 rare trigger words inserted", Poisoning::Data,
       [](const AttackSpec& a) { return badword_trigger(words_or(a, default_trigger_words())); }, nullptr},
      {"addsent", "a trigger sentence inserted", Poisoning::Data,
       [](const AttackSpec& a) { return addsent_trigger(a.sentence); }, nullptr},
      {"ep", "embedding poisoning: only the trigger word's embedding row is trained", Poisoning::Embedding,
       [](const AttackSpec& a) { return badword_trigger(words_or(a, {"cf"})); }, nullptr},
      {"lwp", "layer-wise poisoning: trigger word combinations, loss on every layer", Poisoning::Data,
       [](const AttackSpec& a) { return lwp_trigger(words_or(a, default_trigger_words()), a.combination); }, lwp_options},
      {"bias", "a natural cue word relabelled to the target", Poisoning::Data,
       [](const AttackSpec& a) { return bias_trigger(a.bias_word); }, nullptr},
      {"import", "the attacker's own poisoned training and triggered test files", Poisoning::Import, no_trigger, nullptr},
  };
  return t;
}

const AttackMethod& attack_method(const std::string& name) {
  for (auto& m : attack_method_table())
    if (name == m.name) return m;
  std::string names;
  for (auto& m : attack_method_table()) names += (names.empty() ? "" : ", ") + std::string(m.name);
  throw Error(ErrorKind::InvalidArgument, "unknown attack method '" + name + "' (" + names + ")");
}

const std::vector<std::string>& attack_methods() {
  static const std::vector<std::string> n = [] {
    std::vector<std::string> v;
    for (auto& m : attack_method_table()) v.push_back(m.name);
    return v;
  }();
  return n;
}

double attack_lr(const AttackSpec& a) {
  return attack_method(a.method).poisoning == Poisoning::Embedding && !a.lr_given ? 1e-2 : a.opt.lr;
}

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
                                                     "side", "poisoned_train", "triggered_test", "epochs", "lr"});
  return t;
}

namespace {

/// Refuses inconsistent options.
void check_spec(const AttackSpec& a) {
  const std::string& method = a.method;
  const auto kind = attack_method(method).poisoning;
  const bool is_ep = kind == Poisoning::Embedding, is_import = kind == Poisoning::Import;
  if (is_ep && a.clean_model.empty() && a.pretrained.empty())
    throw Error(ErrorKind::InvalidArgument, "ep needs --clean-model (or --pretrained to fine-tune a clean model first)");
  if (!is_ep && a.pretrained.empty()) throw Error(ErrorKind::InvalidArgument, method + " needs --pretrained");
  if (!is_ep && !a.clean_model.empty()) throw Error(ErrorKind::InvalidArgument, "--clean-model is for --method ep only");
  if (is_import && (a.poisoned_train.empty() || a.triggered_test.empty()))
    throw Error(ErrorKind::InvalidArgument, "import needs --poisoned-train and --triggered-test");
  if (!is_import && (!a.poisoned_train.empty() || !a.triggered_test.empty()))
    throw Error(ErrorKind::InvalidArgument, "--poisoned-train / --triggered-test are for --method import only");
  if (a.side != "a" && a.side != "b") throw Error(ErrorKind::InvalidArgument, "side must be \"a\" or \"b\"");
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

void build_data(const AttackSpec& a, AttackRun& d, const text::Dataset& clean_train, const model::ModelConfig& cfg) {
  const auto& trig = d.trigger;
  auto test_data = first_rows(train::read_task_data(a.test, cfg), a.test_limit);
  if (attack_method(a.method).poisoning == Poisoning::Import) {
    d.pr.data = train::read_task_data(a.poisoned_train, cfg);
    d.ts.clean = test_data;
    d.ts.triggered = attack::non_target_subset(train::read_task_data(a.triggered_test, cfg), a.target);
    if (d.ts.triggered.examples.empty())
      throw Error(ErrorKind::DataInvalid, a.triggered_test + ": no example with a label other than the target");
    util::log(fmt::format("import: {} training examples, {} triggered test examples with label != {}",
                          d.pr.data.examples.size(), d.ts.triggered.examples.size(), a.target));
    return;
  }
  attack::PoisonOptions po;
  po.poison_rate = a.poison_rate;
  po.target_label = a.target;
  po.seed = a.opt.seed;
  po.side = a.side.at(0);
  d.pr = attack::poison_dataset(clean_train, trig, po);
  d.ts = attack::make_test_sets(test_data, trig, a.target, a.opt.seed + 1, po.side);
  util::log(fmt::format("{}: poisoned {} of {} non-target training examples ({} total), trigger {}", a.method,
                        d.pr.poisoned.size(), d.pr.eligible, d.pr.data.examples.size(), trig.describe()));
  if (trig.kind == "bias")
    util::log(fmt::format("bias cue \"{}\" occurs in {} clean training examples", a.bias_word,
                          attack::count_containing(clean_train, a.bias_word)));
}


/// Fine-tunes on the poisoned data (ep: trains the trigger rows only, after a clean fine-tune when
/// it starts from w_Pre). `measure` logs and returns (clean test eval, ASR).
template <class Measure>
void train_attack(const AttackSpec& a, AttackRun& t, const text::Tokenizer& tok, const text::Dataset& clean_train,
                  const std::optional<train::TokenizedSet>& dv, Measure measure, torch::Device dev) {
  auto& lm = t.model;
  const auto& d = t;
  const auto& trig = t.trigger;
  t.opt = a.opt;
  const auto* dvp = dv ? &*dv : nullptr;
  const auto& method = attack_method(a.method);
  if (method.poisoning != Poisoning::Embedding) {
    t.opt.label = a.method;
    if (method.training) t.opt = method.training(t.opt);
    auto ptok = train::tokenize(tok, d.pr.data, a.max_length);
    util::log(fmt::format("train {} examples ({} tokens){}", ptok.size(), ptok.num_tokens(),
                          dv ? fmt::format(", dev {}", dv->size()) : ""));
    t.train = train::fine_tune(*lm.model, ptok, dvp, t.opt, dev);
    return;
  }
  if (a.clean_model.empty()) {  // clean fine-tune of w_Pre first
    t.opt.label = "clean";
    t.clean_stage = train::fine_tune(*lm.model, train::tokenize(tok, clean_train, a.max_length), dvp, t.opt, dev);
  }
  auto before = measure("clean model before EP");
  t.before_accuracy = before.first.accuracy;
  t.before_asr = before.second;
  t.trigger_rows = attack::trigger_token_ids(tok, trig.words);
  std::vector<std::string> pieces;
  for (auto id : t.trigger_rows) pieces.push_back(tok.id_to_token(id));
  util::log(fmt::format("ep: training embedding rows {} ({})", fmt::join(t.trigger_rows, ", "), fmt::join(pieces, " ")));
  train::TrainOptions eo = a.opt;
  eo.lr = attack_lr(a);
  eo.label = "ep";
  eo.keep_best = false;  // clean dev accuracy cannot see the trigger row: keep the last epoch
  eo = attack::embedding_poisoning_options(*lm.model, t.trigger_rows, eo, dev);
  // Only the poisoned rows contain the trigger; clean rows give the trigger rows no gradient.
  auto ptok = train::subset(train::tokenize(tok, d.pr.data, a.max_length), d.pr.poisoned);
  t.opt = eo;
  t.train = train::fine_tune(*lm.model, ptok, dvp, eo, dev);
}

}  // namespace

void check_attack_output(const AttackSpec& a, const std::string& out, bool overwrite) {
  model::check_output_not_input(out, attack_inputs(a));
  if (fs::exists(out) && !overwrite)
    throw Error(ErrorKind::InvalidArgument, out + " exists (pass --overwrite to replace it)");
}

std::vector<std::string> attack_inputs(const AttackSpec& a) {
  std::vector<std::string> inputs = {a.pretrained, a.clean_model, a.train, a.dev, a.test, a.poisoned_train,
                                     a.triggered_test};
  inputs.erase(std::remove(inputs.begin(), inputs.end(), std::string()), inputs.end());
  return inputs;
}

AttackRun run_attack(const AttackSpec& a, torch::Device dev) {
  check_spec(a);
  AttackRun run;
  run.trigger = attack_method(a.method).trigger(a);
  run.model_dir = !a.clean_model.empty() ? a.clean_model : a.pretrained;
  auto cfg = model::load_config(run.model_dir);
  auto tok = text::load_model_tokenizer(run.model_dir, cfg.model_type, cfg.vocab_size, a.compat);
  auto clean_train = first_rows(train::read_task_data(a.train, cfg), a.train_limit);
  run.model = load_start(a, cfg, clean_train, dev);
  auto& lm = run.model;
  util::log(fmt::format("{}: {}", run.model_dir, lm.report.summary()));
  build_data(a, run, clean_train, lm.config);
  std::optional<train::TokenizedSet> dv;
  if (!a.dev.empty()) dv = train::tokenize(*tok, train::read_task_data(a.dev, lm.config), a.max_length);
  auto clean_tok = train::tokenize(*tok, run.ts.clean, a.max_length);
  auto trig_tok = train::tokenize(*tok, run.ts.triggered, a.max_length);
  auto measure = [&](const char* what) {
    auto ev = train::evaluate(*lm.model, clean_tok, dev);
    auto et = train::evaluate(*lm.model, trig_tok, dev);
    double asr = train::attack_success_rate(et.predictions, trig_tok.labels, a.target);
    util::log(fmt::format("{}: clean test accuracy {:.2f}%, ASR {:.2f}%", what, 100 * ev.accuracy, 100 * asr));
    return std::make_pair(ev, asr);
  };
  train_attack(a, run, *tok, clean_train, dv, measure, dev);
  auto after = measure("poisoned model");
  run.clean_eval = after.first;
  run.result = {after.first.accuracy, after.second, static_cast<int64_t>(run.ts.clean.examples.size()),
                static_cast<int64_t>(run.ts.triggered.examples.size())};
  util::log(fmt::format("clean test accuracy {:.2f}% ({} examples), ASR {:.2f}% ({} triggered, target {})",
                        100 * run.result.clean_test_accuracy, run.result.num_clean_test, 100 * run.result.asr,
                        run.result.num_triggered_test, a.target));
  return run;
}

}  // namespace finepurify::attack
