// Self-contained HTML reports: our Markdown reports rendered by cmark-gfm (GitHub tables) in safe
// mode (raw HTML in the text, such as a token from an attacker's vocabulary, is never passed
// through), local SVG plots inlined, figures built from the report JSON, one small stylesheet. No
// scripts and no external references: the file opens offline and can be mailed as it is.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace finepurify::report {

struct Figure {
  std::string caption;
  std::string svg;  ///< a complete <svg> element (report/svg.hpp)
};

/// One HTML page: `markdown` rendered, every image whose source is a relative `.svg` path inside
/// `base_dir` (no "..") replaced by the file's SVG, and `figures` placed before the first level-2
/// heading (or at the end). Images it cannot inline are dropped with a note, never linked.
std::string html_page(const std::string& title, const std::string& markdown, const std::string& base_dir = "",
                      const std::vector<Figure>& figures = {});

/// The plots of a purify_report.json: every evaluated knob point (clean-dev accuracy, ASR, flip
/// rate, test accuracy against rho, the budget line), ASR against test accuracy, the reset
/// dimensions per layer, then diagnosis_figures of its diagnosis.
std::vector<Figure> purify_figures(const nlohmann::json& report);
/// The plots of a diagnosis (scan): indicator mass per layer, the probe's flip rate per token.
std::vector<Figure> diagnosis_figures(const nlohmann::json& diagnosis);

/// `path` with its extension replaced by ".html" (or ".html" appended).
std::string html_path_for(const std::string& path);

}  // namespace finepurify::report
