// Markdown rendering of purify and scan reports.
#include "finepurify/report/purify_report.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace finepurify::report {

using nlohmann::json;

namespace {
std::string pct(const json& v) { return v.is_number() ? fmt::format("{:.2f}%", 100 * v.get<double>()) : "–"; }
std::string escape(std::string s) {
  std::string out;
  for (char c : s) {
    if (c == '|' || c == '`') out += '\\';
    out += c;
  }
  return out;
}
}  // namespace

std::string diagnosis_markdown(const json& d, int top_tensors) {
  std::string md;
  const bool per_tensor = d.value("epsilon_basis", "global") == "tensor";
  md += fmt::format("Indicator `{}` (epsilon = {:.3g} = {:g} x mean Fisher{}), Fisher at `w_{}` on {} clean examples; "
                    "{} aligned tensors, {} dimensions.\n\n",
                    d.value("indicator", "?"), d.value("epsilon", 0.0), d.value("epsilon_scale", 0.0),
                    per_tensor ? " of each tensor, size-weighted mean shown" : "", d.value("fisher_at", "?"),
                    d.value("fisher_examples", 0), d.value("aligned_tensors", 0),
                    d.value("aligned_dimensions", 0));
  md += "### Top suspicious tokens (indicator mass of their word-embedding rows)\n\n"
        "A word-trigger backdoor shows up here: a rare token whose row drifted far although clean data "
        "barely uses it (Fisher row sum near 0).\n\n"
        "| rank | token | id | share of indicator mass | row drift (L2) | Fisher row sum |\n|---|---|---|---|---|---|\n";
  for (auto& t : d["top_tokens"])
    md += fmt::format("| {} | `{}` | {} | {:.4f} | {:.4g} | {} |\n", t["rank"].get<int>(), escape(t["token"]),
                      t["id"].get<int64_t>(), t["share"].get<double>(), t["drift_l2"].get<double>(),
                      t.contains("fisher_row_sum") ? fmt::format("{:.3g}", t["fisher_row_sum"].get<double>()) : "–");
  if (d.contains("token_probe") && d["token_probe"].is_object()) {
    const auto& p = d["token_probe"];
    md += fmt::format("\n### Behavioural check: prediction flips when a token is inserted\n\n"
                      "Each of {} candidates (the {} largest rows by indicator mass and by row drift) inserted once "
                      "into {} clean examples; flip = largest share of examples not predicted class c that the "
                      "insertion turns into c. A word trigger flips nearly all; ordinary words few. **{} token(s) "
                      "flip >= {:.0f}%.**\n\n| rank | token | id | flip | to class | row drift (L2) | share of indicator mass |\n"
                      "|---|---|---|---|---|---|---|\n",
                      p["candidates"].get<int64_t>(), p["per_ranking"].get<int64_t>(), p["examples"].get<int64_t>(),
                      p["flagged"].get<int64_t>(), 100 * p["min_flip"].get<double>());
    int shown = 0;
    for (auto& t : p["tokens"]) {
      if (shown >= 10 && t["flip_rate"].get<double>() < p["min_flip"].get<double>()) break;
      ++shown;
      md += fmt::format("| {} | `{}` | {} | {:.1f}% | {} | {:.4g} | {:.4f} |\n", t["rank"].get<int>(), escape(t["token"]),
                        t["id"].get<int64_t>(), 100 * t["flip_rate"].get<double>(), t["flip_to"].get<int64_t>(),
                        t["drift_l2"].get<double>(), t["indicator_share"].get<double>());
    }
  }
  md += "\n### Where the indicator mass sits (per layer)\n\n| layer | share |\n|---|---|\n";
  for (auto& l : d["per_layer"])
    md += fmt::format("| {} | {:.4f} |\n", l["layer"].get<std::string>(), l["indicator_share"].get<double>());
  auto tensors = d["per_tensor"];
  std::vector<json> tv(tensors.begin(), tensors.end());
  std::sort(tv.begin(), tv.end(), [](const json& a, const json& b) {
    return a["indicator_mass"].get<double>() > b["indicator_mass"].get<double>();
  });
  md += fmt::format("\n### Top {} tensors by indicator mass\n\n| tensor | dims | indicator mass | max | drift (L2) |\n|---|---|---|---|---|\n",
                    std::min<int>(top_tensors, tv.size()));
  for (int i = 0; i < top_tensors && i < static_cast<int>(tv.size()); ++i)
    md += fmt::format("| `{}` | {} | {:.4g} | {:.4g} | {:.4g} |\n", tv[i]["name"].get<std::string>(),
                      tv[i]["numel"].get<int64_t>(), tv[i]["indicator_mass"].get<double>(),
                      tv[i]["indicator_max"].get<double>(), tv[i]["drift_l2"].get<double>());
  md += "\n### Indicator distribution (log10 r)\n\n| quantile | log10 r |\n|---|---|\n";
  for (auto it = d["distribution_log10"].begin(); it != d["distribution_log10"].end(); ++it)
    if (it.key() != "sampled") md += fmt::format("| {} | {:.3f} |\n", it.key(), it.value().get<double>());
  if (!d["unaligned"].empty()) {
    md += "\n### Tensors without a pre-trained counterpart (never reset unless --reinit-head)\n\n";
    for (auto& u : d["unaligned"])
      md += fmt::format("- `{}`: {}\n", u["name"].get<std::string>(), u["reason"].get<std::string>());
  }
  return md;
}

std::string purify_markdown(const json& r) {
  std::string md = "# Fine-purifying report\n\n";
  md += fmt::format("- chosen reset fraction rho = **{}** ({} dimensions reset){}\n", r["chosen_rho"].get<double>(),
                    r["selection"]["reset_dimensions"].get<int64_t>(),
                    r["max_acc_drop_points"].is_number()
                        ? fmt::format(", chosen by the `{}` rule under the clean-dev accuracy budget of {} points{}",
                                      r.value("knob_rule", "largest"), r["max_acc_drop_points"].get<double>(),
                                      r.value("budget_line_accuracy", json()).is_number()
                                          ? fmt::format(" (kept: clean-dev accuracy >= {})", pct(r["budget_line_accuracy"]))
                                          : std::string())
                        : " (fixed by --reset-fraction)");
  md += fmt::format("- clean-dev accuracy: suspect {} -> purified {}\n", pct(r["suspect"]["clean_dev_accuracy"]),
                    pct(r["purified"]["clean_dev_accuracy"]));
  if (r["suspect"]["asr"].is_number())
    md += fmt::format("- attack success rate (triggered test set given with --attack-test; not used for any choice): "
                      "suspect {} -> purified {}\n", pct(r["suspect"]["asr"]), pct(r["purified"]["asr"]));
  if (r["suspect"].value("flip_rate", json()).is_number())
    md += fmt::format("- flip rate (triggered rows whose clean row the model gets right, predicted as the target): "
                      "suspect {} -> purified {}\n", pct(r["suspect"]["flip_rate"]), pct(r["purified"]["flip_rate"]));
  if (r["suspect"].value("test_accuracy", json()).is_number())
    md += fmt::format("- clean test accuracy (--test; not used for any choice): suspect {} -> purified {}\n",
                      pct(r["suspect"]["test_accuracy"]), pct(r["purified"]["test_accuracy"]));
  md += fmt::format("- clean data: {} examples for Fisher and fine-tuning, {} for selection{}\n",
                    r["clean_train_examples"].get<int64_t>(), r["clean_dev_examples"].get<int64_t>(),
                    r.value("clean_dev_note", ""));
  md += fmt::format("- scope `{}`, word embedding `{}`, fine-tuning after reset: {} epochs, lr {}, batch {}\n",
                    r["scope"].get<std::string>(), r.value("word_embedding", "rank"), r["fine_tuning"]["epochs"].get<int>(), r["fine_tuning"]["lr"].get<double>(),
                    r["fine_tuning"]["batch_size"].get<int64_t>());
  auto token_list = [](const json& toks) {
    std::string s;
    for (auto& t : toks) s += (s.empty() ? "`" : ", `") + escape(t.get<std::string>()) + "`";
    return s;
  };
  if (r.contains("neutralized") && r["neutralized"].is_object())
    md += fmt::format("- extension `--neutralize-tokens`: the embedding rows of {} set to the {} before fine-tuning\n",
                      token_list(r["neutralized"]["tokens"]), r["neutralized"]["replacement"].get<std::string>());
  if (r.contains("unlearning") && r["unlearning"].is_object())
    md += fmt::format("- extension `--unlearn-tokens`: fine-tuning on {} examples, the clean ones plus copies with 1-{} of {} "
                      "inserted (true labels)\n",
                      r["unlearning"]["train_examples"].get<int64_t>(), r["unlearning"]["max_insertions"].get<int>(),
                      token_list(r["unlearning"]["tokens"]));
  md += "\n";
  md += "## Evaluated reset fractions\n\n| rho | reset dims | clean-dev ACC | within budget | ASR | flip rate | test ACC | "
        "seconds |\n|---|---|---|---|---|---|---|---|\n";
  for (auto& p : r["evaluated"])
    md += fmt::format("| {} | {} | {} | {} | {} | {} | {} | {:.0f} |\n", p["rho"].get<double>(),
                      p["reset_dimensions"].get<int64_t>(), pct(p["clean_dev_accuracy"]),
                      p["within_budget"].get<bool>() ? "yes" : "no", pct(p.value("asr", json())),
                      pct(p.value("flip_rate", json())), pct(p.value("test_accuracy", json())), p["seconds"].get<double>());
  md += "\n## Reset dimensions per layer\n\n| layer | dimensions |\n|---|---|\n";
  for (auto it = r["selection"]["per_layer"].begin(); it != r["selection"]["per_layer"].end(); ++it)
    md += fmt::format("| {} | {} |\n", it.key(), it.value().get<int64_t>());
  md += "\n## Reset dimensions per tensor\n\n| tensor | dimensions |\n|---|---|\n";
  for (auto it = r["selection"]["per_tensor"].begin(); it != r["selection"]["per_tensor"].end(); ++it)
    md += fmt::format("| `{}` | {} |\n", it.key(), it.value().get<int64_t>());
  md += "\n## Diagnosis\n\n" + diagnosis_markdown(r["diagnosis"]);
  return md;
}

}  // namespace finepurify::report
