// The typed purify / scan results as JSON, and a defense run's output folder (see purify_report.hpp).
#include <algorithm>
#include <filesystem>

#include <fmt/format.h>

#include "finepurify/report/purify_report.hpp"

#include "finepurify/io/checkpoint.hpp"
#include "finepurify/report/html.hpp"
#include "finepurify/util/manifest.hpp"

namespace finepurify::report {

using nlohmann::json;

namespace {
json rate(double v) { return v < 0 ? json(nullptr) : json(v); }

/// The measurements of one model merged into `j` (null where a set was not given).
json with_measured(json j, const purify::Measured& m) {
  j["asr"] = rate(m.asr);
  j["flip_rate"] = rate(m.flip_rate);
  j["test_accuracy"] = rate(m.test_accuracy);
  return j;
}
std::string layer_name(int l) { return l < 0 ? "embeddings" : std::to_string(l); }

json probe_json(const purify::ProbeReport& p) {
  json tokens = json::array();
  for (auto& t : p.tokens)
    tokens.push_back({{"rank", t.rank}, {"id", t.probe.id}, {"token", t.token}, {"flip_rate", t.probe.flip_rate},
                      {"flip_to", t.probe.flip_to}, {"tested", t.probe.tested}, {"drift_l2", t.drift_l2},
                      {"indicator_share", t.indicator_share}});
  return {{"candidates", p.candidates}, {"per_ranking", p.per_ranking}, {"examples", p.examples},
          {"min_flip", p.min_flip}, {"flagged", p.flagged}, {"tokens", tokens}};
}

json tensors_json(const purify::DiagnosisSummary& d) {
  json tensors = json::array();
  for (auto& t : d.per_tensor) {
    json j = {{"name", t.name}, {"numel", t.numel}, {"indicator_mass", t.indicator_mass},
              {"indicator_max", t.indicator_max}, {"drift_l2", t.drift_l2}};
    if (t.fisher_mean) j["fisher_mean"] = *t.fisher_mean;
    tensors.push_back(j);
  }
  return tensors;
}

json tokens_json(const purify::DiagnosisSummary& d) {
  json top = json::array();
  for (auto& t : d.top_tokens) {
    json e = {{"rank", t.rank}, {"id", t.id}, {"token", t.token}, {"indicator_mass", t.indicator_mass},
              {"share", t.share}, {"drift_l2", t.drift_l2}};
    if (t.fisher_row_sum) e["fisher_row_sum"] = *t.fisher_row_sum;
    top.push_back(e);
  }
  return top;
}

json action_json(const std::optional<purify::TokenAction>& a, bool unlearning) {
  if (!a) return nullptr;
  if (unlearning) return {{"tokens", a->tokens}, {"max_insertions", a->max_insertions}, {"train_examples", a->train_examples}};
  return {{"tokens", a->tokens}, {"replacement", a->replacement}};
}
}  // namespace

json diagnosis_json(const purify::DiagnosisSummary& d) {
  json unaligned = json::array(), layers = json::array(), dist = json::object();
  for (auto& [n, why] : d.unaligned) unaligned.push_back({{"name", n}, {"reason", why}});
  for (auto& l : d.per_layer) layers.push_back({{"layer", layer_name(l.layer)}, {"indicator_share", l.share}});
  for (auto& q : d.distribution_log10) dist[fmt::format("p{}", q.p * 100)] = q.log10_value;
  dist["sampled"] = d.distribution_sampled;
  json j = {{"indicator", util::name_of(d.indicator)}, {"epsilon", d.epsilon}, {"epsilon_scale", d.epsilon_scale},
            {"epsilon_basis", util::name_of(d.epsilon_basis)},
            {"fisher_at", util::name_of(d.fisher_at)}, {"fisher_examples", d.fisher_examples},
            {"aligned_tensors", d.aligned_tensors}, {"aligned_dimensions", d.aligned_dimensions},
            {"unaligned", unaligned}, {"distribution_log10", dist}, {"per_layer", layers},
            {"per_tensor", tensors_json(d)}, {"top_tokens", tokens_json(d)}};
  if (d.token_probe) j["token_probe"] = probe_json(*d.token_probe);
  if (d.reset_indicator) j["reset_indicator"] = util::name_of(*d.reset_indicator);
  return j;
}

json selection_json(const purify::Selection& s) {
  json layers = json::object(), tensors = json::object();
  for (auto& [l, c] : s.per_layer) layers[layer_name(l)] = c;
  for (auto& [n, c] : s.per_tensor) tensors[n] = c;
  return {{"reset_dimensions", s.reset_dimensions}, {"per_layer", layers}, {"per_tensor", tensors}};
}

json purify_json(const purify::PurifyResult& r, const std::string& dev_note) {
  const auto& o = r.options;
  json pts = json::array();
  auto sorted = r.evaluated;
  std::sort(sorted.begin(), sorted.end(), [](auto& x, auto& y) { return x.rho < y.rho; });
  for (auto& p : sorted)
    pts.push_back(with_measured({{"rho", p.rho}, {"reset_dimensions", p.reset_dims}, {"clean_dev_accuracy", p.dev_accuracy},
                                 {"within_budget", p.within_budget}, {"seconds", p.seconds}},
                                p.measured));
  json j = {
      {"method", util::name_of(o.method)},
      {"epur", o.method == purify::Defense::FineMixing && o.epur ? json(o.epur_rows) : json(nullptr)},
      {"chosen_rho", r.chosen_rho},
      {"max_acc_drop_points", o.max_acc_drop ? json(*o.max_acc_drop) : json(nullptr)},
      {"knob_rule", util::name_of(o.knob_rule)},
      {"budget_line_accuracy", r.budget_line ? json(*r.budget_line) : json(nullptr)},
      {"scope", util::name_of(o.scope)},
      {"word_embedding", util::name_of(o.word_embedding)},
      {"reinit_head", o.reinit_head},
      {"unlearning", action_json(r.unlearning, true)},
      {"neutralized", action_json(r.neutralized, false)},
      {"suspect", with_measured({{"clean_dev_accuracy", r.suspect_dev_accuracy}}, r.suspect)},
      {"purified", with_measured({{"clean_dev_accuracy", r.purified_dev_accuracy}}, r.purified)},
      {"evaluated", pts},
      {"selection", selection_json(r.selection)},
      {"diagnosis", diagnosis_json(r.diagnosis)},
      {"clean_train_examples", r.clean_train_examples},
      {"clean_dev_examples", r.clean_dev_examples},
      {"fine_tuning", {{"epochs", o.train.epochs}, {"lr", o.train.lr}, {"batch_size", o.train.batch_size},
                       {"weight_decay", o.train.weight_decay}, {"warmup_ratio", o.train.warmup_ratio}}},
  };
  j["clean_dev_note"] = dev_note;
  return j;
}

json defense_manifest(const purify::DefenseSpec& spec, const std::string& command) {
  util::Manifest man(command, util::options_json(spec, purify::defense_fields()));
  for (auto& [role, path] : std::vector<std::pair<std::string, const std::string*>>{
           {"pretrained", &spec.pretrained}, {"suspect", &spec.suspect}, {"clean", &spec.clean},
           {"clean_dev", &spec.clean_dev}, {"attack_test", &spec.attack_test}, {"test", &spec.test}})
    if (!path->empty()) man.add_input(role, *path);
  return man.to_json();
}

std::string purify_html(const json& report) {
  return html_page(std::string(report.value("method", "fine-purifying")) + " report", purify_markdown(report), "",
                   purify_figures(report));
}

std::string diagnosis_page_markdown(const json& diagnosis) {
  return "# finepurify scan\n\n" + diagnosis_markdown(diagnosis);
}

std::string diagnosis_html(const json& diagnosis) {
  return html_page("finepurify scan", diagnosis_page_markdown(diagnosis), "", diagnosis_figures(diagnosis));
}

void save_diagnosis(const json& diagnosis, const std::string& path, const std::vector<std::string>& inputs) {
  const auto ext = std::filesystem::path(path).extension().string();
  const std::string html = diagnosis_html(diagnosis);
  const std::string text = ext == ".json" ? diagnosis.dump(2) + "\n" : ext == ".html" ? html : diagnosis_page_markdown(diagnosis);
  std::vector<std::pair<std::string, std::string>> files = {{path, text}};
  if (ext != ".html") files.emplace_back(html_path_for(path), html);
  for (auto& [p, content] : files) {
    model::check_output_not_input(p, inputs);
    std::filesystem::create_directories(std::filesystem::absolute(p).parent_path());
    io::write_text_atomic(p, content);
  }
}

void save_defense(purify::DefenseRun& run, const purify::DefenseSpec& spec, const std::string& command,
                  const std::string& out, bool overwrite) {
  const json rep = purify_json(run.result, run.dev_note);
  model::save_classifier(*run.model.model, out, spec.suspect,
                         {{"manifest.json", defense_manifest(spec, command).dump(2) + "\n"},
                          {"purify_report.json", rep.dump(2) + "\n"},
                          {"purify_report.md", purify_markdown(rep)},
                          {"purify_report.html", purify_html(rep)}},
                         overwrite, {spec.pretrained, spec.suspect, spec.clean, spec.clean_dev, spec.attack_test, spec.test});
}

}  // namespace finepurify::report
