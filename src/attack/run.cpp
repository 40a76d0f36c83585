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

AttackSpec default_attack_spec() {
  AttackSpec s;
  s.opt.epochs = 3;  // measured: 2 epochs gave ASR 86.6% (badword, SST-2, small BERT)
  s.opt.lr = 1e-4;
  s.opt.batch_size = 32;
  return s;
}

json run_attack(const AttackSpec& a, const std::string& out, bool overwrite, torch::Device dev) {
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
  std::vector<std::string> inputs = {a.pretrained, a.clean_model, a.train, a.dev, a.test, a.poisoned_train,
                                     a.triggered_test};
  inputs.erase(std::remove(inputs.begin(), inputs.end(), std::string()), inputs.end());
  model::check_output_not_input(out, inputs);
  if (fs::exists(out) && !overwrite)
    throw Error(ErrorKind::InvalidArgument, out + " exists (pass --overwrite to replace it)");
  const char side = a.side;
  const int64_t target = a.target;

  // Trigger
  std::vector<std::string> words =
      !a.triggers.empty() ? a.triggers
                               : (is_ep ? std::vector<std::string>{"cf"} : attack::default_trigger_words());
  attack::Trigger trig;
  if (method == "badword" || is_ep) trig = attack::badword_trigger(words);
  else if (method == "addsent") trig = attack::addsent_trigger(a.sentence);
  else if (method == "bias") trig = attack::bias_trigger(a.bias_word);
  else if (method == "lwp") trig = attack::lwp_trigger(words, a.combination);

  // Model
  const std::string model_dir = !a.clean_model.empty() ? a.clean_model : a.pretrained;
  auto cfg = model::load_config(model_dir);
  auto tok = text::load_tokenizer(model_dir, cfg.model_type, a.compat);
  auto clean_train = first_rows(train::read_task_data(a.train, cfg), a.train_limit);
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
    if (n_labels > 0) lo.num_labels = std::max<int64_t>(n_labels, target + 1);
    lm = model::load_classifier(model_dir, lo);
  }
  util::log(fmt::format("{}: {}", model_dir, lm.report.summary()));
  if (target >= lm.config.num_labels())
    throw Error(ErrorKind::InvalidArgument,
                fmt::format("target label {} outside the model's {} classes", target, lm.config.num_labels()));

  // Data
  attack::PoisonResult pr;
  attack::TestSets ts;
  auto test_data = first_rows(train::read_task_data(a.test, lm.config), a.test_limit);
  if (is_import) {
    pr.data = train::read_task_data(a.poisoned_train, lm.config);
    ts.clean = test_data;
    ts.triggered = attack::non_target_subset(train::read_task_data(a.triggered_test, lm.config), target);
    if (ts.triggered.examples.empty())
      throw Error(ErrorKind::DataInvalid, a.triggered_test + ": no example with a label other than the target");
    util::log(fmt::format("import: {} training examples, {} triggered test examples with label != {}",
                          pr.data.examples.size(), ts.triggered.examples.size(), target));
  } else {
    attack::PoisonOptions po;
    po.poison_rate = a.poison_rate;
    po.target_label = target;
    po.seed = a.opt.seed;
    po.side = side;
    pr = attack::poison_dataset(clean_train, trig, po);
    ts = attack::make_test_sets(test_data, trig, target, a.opt.seed + 1, side);
    util::log(fmt::format("{}: poisoned {} of {} non-target training examples ({} total), trigger {}", method,
                          pr.poisoned.size(), pr.eligible, pr.data.examples.size(), trig.to_json().dump()));
    if (method == "bias")
      util::log(fmt::format("bias cue \"{}\" occurs in {} clean training examples", a.bias_word,
                            attack::count_containing(clean_train, a.bias_word)));
  }
  std::optional<train::TokenizedSet> dv;
  if (!a.dev.empty()) dv = train::tokenize(*tok, train::read_task_data(a.dev, lm.config), a.max_length);
  auto clean_tok = train::tokenize(*tok, ts.clean, a.max_length);
  auto trig_tok = train::tokenize(*tok, ts.triggered, a.max_length);
  auto measure = [&](const char* what) {
    auto ev = train::evaluate(*lm.model, clean_tok, dev);
    auto et = train::evaluate(*lm.model, trig_tok, dev);
    double asr = train::attack_success_rate(et.predictions, trig_tok.labels, target);
    util::log(fmt::format("{}: clean test accuracy {:.2f}%, ASR {:.2f}%", what, 100 * ev.accuracy, 100 * asr));
    return std::make_pair(ev, asr);
  };

  // Training
  train::TrainOptions opt = a.opt;
  json clean_stage = nullptr;
  std::vector<int64_t> trigger_rows;
  train::TrainResult res;
  if (is_ep) {
    if (a.clean_model.empty()) {  // clean fine-tune of w_Pre first
      opt.label = "clean";
      auto ctr = train::tokenize(*tok, clean_train, a.max_length);
      auto cres = train::fine_tune(*lm.model, ctr, dv ? &*dv : nullptr, opt, dev);
      clean_stage = cres.to_json();
    }
    auto before = measure("clean model before EP");
    clean_stage = {{"train", clean_stage}, {"clean_test_accuracy", before.first.accuracy}, {"asr", before.second}};
    trigger_rows = attack::trigger_token_ids(*tok, trig.words);
    std::vector<std::string> pieces;
    for (auto id : trigger_rows) pieces.push_back(tok->id_to_token(id));
    util::log(fmt::format("ep: training embedding rows {} ({})", json(trigger_rows).dump(), json(pieces).dump()));
    train::TrainOptions eo = a.opt;
    if (!a.lr_given) eo.lr = 1e-2;
    eo.label = "ep";
    eo.keep_best = false;  // clean dev accuracy cannot see the trigger row: keep the last epoch
    eo = attack::embedding_poisoning_options(*lm.model, trigger_rows, eo, dev);
    // Only the poisoned rows contain the trigger; clean rows give the trigger rows no gradient.
    auto ptok = train::subset(train::tokenize(*tok, pr.data, a.max_length), pr.poisoned);
    opt = eo;
    res = train::fine_tune(*lm.model, ptok, dv ? &*dv : nullptr, eo, dev);
  } else {
    opt.label = method;
    if (method == "lwp") opt = attack::lwp_options(opt);
    auto ptok = train::tokenize(*tok, pr.data, a.max_length);
    util::log(fmt::format("train {} examples ({} tokens){}", ptok.size(), ptok.num_tokens(),
                          dv ? fmt::format(", dev {}", dv->size()) : ""));
    res = train::fine_tune(*lm.model, ptok, dv ? &*dv : nullptr, opt, dev);
  }
  auto after = measure("poisoned model");
  const double acc = after.first.accuracy, asr = after.second;

  // Outputs
  json attack_json = {{"method", method},
                      {"trigger", is_import ? json({{"kind", "import"}, {"poisoned_train", a.poisoned_train},
                                                    {"triggered_test", a.triggered_test}})
                                            : trig.to_json()},
                      {"target_label", target},
                      {"poison_rate", is_import ? json(nullptr) : json(a.poison_rate)},
                      {"side", std::string(1, side)},
                      {"num_poisoned", is_import ? json(nullptr) : json(pr.poisoned.size())},
                      {"num_eligible", is_import ? json(nullptr) : json(pr.eligible)},
                      {"num_train", pr.data.examples.size()},
                      {"clean_test_accuracy", acc},
                      {"asr", asr},
                      {"num_clean_test", ts.clean.examples.size()},
                      {"num_triggered_test", ts.triggered.examples.size()},
                      {"train", res.to_json()}};
  if (is_ep) {
    attack_json["trigger_rows"] = trigger_rows;
    attack_json["before"] = clean_stage;
  }
  if (!is_import) attack_json["poisoned_indices"] = pr.poisoned;
  json opts = {{"method", method}, {"pretrained", a.pretrained}, {"clean_model", a.clean_model},
               {"train", a.train}, {"dev", a.dev}, {"test", a.test}, {"target_label", target},
               {"poison_rate", a.poison_rate}, {"side", std::string(1, a.side)}, {"epochs", opt.epochs}, {"lr", opt.lr},
               {"batch_size", opt.batch_size}, {"weight_decay", opt.weight_decay}, {"max_length", a.max_length},
               {"seed", a.opt.seed}, {"train_limit", a.train_limit}, {"test_limit", a.test_limit}, {"poisoned_train", a.poisoned_train}, {"triggered_test", a.triggered_test}};
  util::Manifest man("attack", opts);
  for (auto& [role, path] : std::vector<std::pair<std::string, std::string>>{
           {"pretrained", a.pretrained}, {"clean_model", a.clean_model}, {"train", a.train}, {"dev", a.dev},
           {"test", a.test}, {"poisoned_train", a.poisoned_train}, {"triggered_test", a.triggered_test}})
    if (!path.empty()) man.add_input(role, path);
  man.set("result", {{"clean_test_accuracy", acc}, {"asr", asr}});
  man.set("clean_test_eval", after.first.to_json(lm.config.id2label));

  fs::path tmpdir = fs::temp_directory_path() / fmt::format("finepurify-attack-{}", ::getpid());
  fs::create_directories(tmpdir);
  std::map<std::string, std::string> extra = {
      {"clean_test.tsv", tsv_string(ts.clean, tmpdir, "clean_test.tsv")},
      {"triggered_test.tsv", tsv_string(ts.triggered, tmpdir, "triggered_test.tsv")},
      {"poisoned_train.tsv", tsv_string(pr.data, tmpdir, "poisoned_train.tsv")},
      {"attack.json", attack_json.dump(2) + "\n"},
      {"manifest.json", man.to_json().dump(2) + "\n"}};
  fs::remove_all(tmpdir);
  model::save_classifier(*lm.model, out, model_dir, extra, overwrite, inputs);
  util::log(fmt::format("clean test accuracy {:.2f}% ({} examples), ASR {:.2f}% ({} triggered, target {}); saved {}",
                        100 * acc, ts.clean.examples.size(), 100 * asr, ts.triggered.examples.size(), target, out));
  return attack_json;
}

}  // namespace finepurify::attack
