// Training, evaluation and attack results as JSON, and the attack / fine-tuning output folders
// (see run_report.hpp).
#include "finepurify/report/run_report.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include <fmt/format.h>

#include "finepurify/error.hpp"
#include "finepurify/text/dataset.hpp"
#include "finepurify/util/manifest.hpp"

namespace finepurify::report {

using nlohmann::json;
namespace fs = std::filesystem;

json train_json(const train::TrainResult& r) {
  json ep = json::array();
  for (auto& e : r.epochs)
    ep.push_back({{"epoch", e.epoch}, {"train_loss", e.train_loss}, {"dev_accuracy", e.dev_accuracy}, {"seconds", e.seconds}});
  return {{"epochs", ep},
          {"best_epoch", r.best_epoch},
          {"best_dev_accuracy", r.best_dev_accuracy},
          {"steps", r.steps},
          {"seconds", r.seconds},
          {"examples_per_second", r.examples_per_second},
          {"tokens_per_second", r.tokens_per_second}};
}

json eval_json(const train::EvalResult& r, const std::vector<std::string>& names) {
  json per_class = json::array();
  for (std::size_t c = 0; c < r.f1.size(); ++c)
    per_class.push_back({{"label", c < names.size() ? names[c] : std::to_string(c)},
                         {"precision", r.precision[c]}, {"recall", r.recall[c]}, {"f1", r.f1[c]}});
  return {{"n", r.n}, {"accuracy", r.accuracy}, {"macro_f1", r.macro_f1}, {"per_class", per_class},
          {"confusion", r.confusion}, {"seconds", r.seconds}};
}

json trigger_json(const attack::Trigger& t) {
  json j = {{"kind", t.kind}};
  if (t.kind == "badword") {
    j["words"] = t.words;
    j["insertions"] = {t.min_insertions, t.max_insertions};
  } else if (t.kind == "addsent") {
    j["sentence"] = t.sentence;
  } else if (t.kind == "bias") {
    j["phrase"] = t.words.at(0);
  } else if (t.kind == "lwp") {
    j["words"] = t.words;
    j["combination"] = t.combination;
  }
  return j;
}

json attack_json(const attack::AttackRun& run, const attack::AttackSpec& a) {
  const auto kind = attack::attack_method(a.method).poisoning;
  const bool is_import = kind == attack::Poisoning::Import;
  const auto& d = run;
  json j = {{"method", a.method},
            {"trigger", is_import ? json({{"kind", "import"}, {"poisoned_train", a.poisoned_train},
                                          {"triggered_test", a.triggered_test}})
                                  : trigger_json(run.trigger)},
            {"target_label", a.target},
            {"poison_rate", is_import ? json(nullptr) : json(a.poison_rate)},
            {"side", a.side},
            {"num_poisoned", is_import ? json(nullptr) : json(d.pr.poisoned.size())},
            {"num_eligible", is_import ? json(nullptr) : json(d.pr.eligible)},
            {"num_train", d.pr.data.examples.size()},
            {"clean_test_accuracy", run.result.clean_test_accuracy},
            {"asr", run.result.asr},
            {"num_clean_test", run.result.num_clean_test},
            {"num_triggered_test", run.result.num_triggered_test},
            {"train", train_json(run.train)}};
  if (kind == attack::Poisoning::Embedding) {
    j["trigger_rows"] = run.trigger_rows;
    j["before"] = {{"train", run.clean_stage ? train_json(*run.clean_stage) : json(nullptr)},
                   {"clean_test_accuracy", run.before_accuracy},
                   {"asr", run.before_asr}};
  }
  if (!is_import) j["poisoned_indices"] = d.pr.poisoned;
  return j;
}

namespace {

json attack_manifest(const attack::AttackRun& run, const attack::AttackSpec& a) {
  util::Manifest man("attack", util::options_json(a, attack::attack_fields()));
  for (auto& [role, path] : std::vector<std::pair<std::string, std::string>>{
           {"pretrained", a.pretrained}, {"clean_model", a.clean_model}, {"train", a.train}, {"dev", a.dev},
           {"test", a.test}, {"poisoned_train", a.poisoned_train}, {"triggered_test", a.triggered_test}})
    if (!path.empty()) man.add_input(role, path);
  const auto& t = run.opt;
  man.set("training", {{"epochs", t.epochs}, {"lr", t.lr}, {"batch_size", t.batch_size}, {"weight_decay", t.weight_decay}});
  man.set("result", {{"clean_test_accuracy", run.result.clean_test_accuracy}, {"asr", run.result.asr}});
  man.set("clean_test_eval", eval_json(run.clean_eval, run.model.config.id2label));
  return man.to_json();
}

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

}  // namespace

void save_attack(attack::AttackRun& run, const attack::AttackSpec& spec, const std::string& out, bool overwrite) {
  fs::path tmpdir = fs::temp_directory_path() / fmt::format("finepurify-attack-{}", ::getpid());
  fs::create_directories(tmpdir);
  std::map<std::string, std::string> extra = {
      {"clean_test.tsv", tsv_string(run.ts.clean, tmpdir, "clean_test.tsv")},
      {"triggered_test.tsv", tsv_string(run.ts.triggered, tmpdir, "triggered_test.tsv")},
      {"poisoned_train.tsv", tsv_string(run.pr.data, tmpdir, "poisoned_train.tsv")},
      {"attack.json", attack_json(run, spec).dump(2) + "\n"},
      {"manifest.json", attack_manifest(run, spec).dump(2) + "\n"}};
  fs::remove_all(tmpdir);
  model::save_classifier(*run.model.model, out, run.model_dir, extra, overwrite, attack::attack_inputs(spec));
}

attack::AttackResult load_attack_result(const std::string& folder) {
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

void save_finetune(train::FinetuneRun& run, const train::FinetuneSpec& s, const std::string& out, bool overwrite) {
  util::Manifest man("finetune", util::options_json(s, train::finetune_fields()));
  man.set("num_labels", run.model.config.num_labels());
  man.add_input("model", s.model);
  man.add_input("train", s.train);
  if (!s.dev.empty()) man.add_input("dev", s.dev);
  man.set("result", train_json(run.train));
  if (run.dev_eval) man.set("dev_eval", eval_json(*run.dev_eval, run.model.config.id2label));
  model::save_classifier(*run.model.model, out, s.model, {{"manifest.json", man.to_json().dump(2) + "\n"}}, overwrite,
                         {s.model, s.train, s.dev});
}

}  // namespace finepurify::report
