// Human-readable Markdown for purify/scan reports (the JSON holds the same facts).
#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace finepurify::report {

/// Markdown for a `scan` diagnosis (purify::Diagnosis::summary).
std::string diagnosis_markdown(const nlohmann::json& diagnosis, int top_tensors = 15);
/// Markdown for a purify_report.json.
std::string purify_markdown(const nlohmann::json& report);

}  // namespace finepurify::report
