// Purify and scan reports: the typed results of src/purify as JSON (purify_report.json, scan
// --json, experiment rows) and Markdown, and the output folder of a defense run.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "finepurify/purify/defense.hpp"

namespace finepurify::report {

nlohmann::json diagnosis_json(const purify::DiagnosisSummary& d);
nlohmann::json selection_json(const purify::Selection& s);
/// Everything for purify_report.json; `dev_note` says how the clean dev part was chosen.
nlohmann::json purify_json(const purify::PurifyResult& r, const std::string& dev_note = "");

/// Markdown for a `scan` diagnosis (diagnosis_json's form).
std::string diagnosis_markdown(const nlohmann::json& diagnosis, int top_tensors = 15);
/// Markdown for a purify_report.json.
std::string purify_markdown(const nlohmann::json& report);

/// The self-contained HTML page of a purify_report.json (its Markdown and plots; report/html.hpp).
std::string purify_html(const nlohmann::json& report);
/// A scan's Markdown page ("# finepurify scan" + diagnosis_markdown).
std::string diagnosis_page_markdown(const nlohmann::json& diagnosis);
/// The HTML page of a scan diagnosis (diagnosis_json's form) with its plots.
std::string diagnosis_html(const nlohmann::json& diagnosis);

/// Writes a scan's diagnosis to `path` by its extension (.json, .html, else Markdown) and, unless
/// it is .html, the HTML page beside it (html_path_for); refuses to write over `inputs`.
void save_diagnosis(const nlohmann::json& diagnosis, const std::string& path, const std::vector<std::string>& inputs);

/// The run's manifest: `command`, every option of `spec` (defense_fields), the inputs' hashes.
nlohmann::json defense_manifest(const purify::DefenseSpec& spec, const std::string& command);

/// Writes the purified model as an HF folder at `out` (atomically; never over an input) with
/// manifest.json, purify_report.json, purify_report.md and purify_report.html.
void save_defense(purify::DefenseRun& run, const purify::DefenseSpec& spec, const std::string& command,
                  const std::string& out, bool overwrite);

}  // namespace finepurify::report
