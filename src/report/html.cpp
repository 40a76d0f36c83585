// HTML pages of the Markdown reports (see html.hpp): cmark-gfm with its table extension, safe mode.
#include "finepurify/report/html.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>
#include <sstream>

#include <cmark-gfm-core-extensions.h>
#include <cmark-gfm-extension_api.h>
#include <cmark-gfm.h>
#include <fmt/format.h>

#include "finepurify/error.hpp"
#include "finepurify/report/svg.hpp"

namespace finepurify::report {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr const char* kStyle = R"(
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1100px; margin: 24px auto;
       padding: 0 16px; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: 6px; }
h2 { border-bottom: 1px solid #eee; padding-bottom: 4px; margin-top: 32px; }
table { border-collapse: collapse; margin: 12px 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; }
th { background: #f3f3f3; }
tr:nth-child(even) td { background: #fafafa; }
code { background: #f3f3f3; padding: 1px 4px; border-radius: 3px; font-size: 90%; }
pre { background: #f6f6f6; padding: 10px; overflow-x: auto; }
pre code { background: none; padding: 0; }
figure { margin: 16px 0; }
figcaption { font-size: 13px; color: #555; }
svg { max-width: 100%; height: auto; }
.note { color: #a33; font-size: 13px; }
)";

/// Markdown to HTML through cmark-gfm (tables, strikethrough, autolinks); raw HTML is not let through.
std::string render_markdown(const std::string& md) {
  cmark_gfm_core_extensions_ensure_registered();
  std::unique_ptr<cmark_parser, decltype(&cmark_parser_free)> parser(cmark_parser_new(CMARK_OPT_DEFAULT), cmark_parser_free);
  for (const char* name : {"table", "strikethrough"})
    if (auto* ext = cmark_find_syntax_extension(name)) cmark_parser_attach_syntax_extension(parser.get(), ext);
  cmark_parser_feed(parser.get(), md.data(), md.size());
  std::unique_ptr<cmark_node, decltype(&cmark_node_free)> doc(cmark_parser_finish(parser.get()), cmark_node_free);
  char* html = cmark_render_html(doc.get(), CMARK_OPT_DEFAULT, cmark_parser_get_syntax_extensions(parser.get()));
  std::string out = html ? html : "";
  free(html);
  return out;
}

/// The SVG file at `src` under `base_dir`, or "" when `src` is not a plain relative .svg path inside it.
std::string read_local_svg(const std::string& base_dir, const std::string& src) {
  if (src.empty() || src.front() == '/' || src.find("..") != std::string::npos || src.find(':') != std::string::npos ||
      src.size() < 4 || src.substr(src.size() - 4) != ".svg")
    return "";
  std::ifstream f(fs::path(base_dir) / src, std::ios::binary);
  if (!f) return "";
  std::stringstream ss;
  ss << f.rdbuf();
  std::string svg = ss.str();
  const auto at = svg.find("<svg");
  return at == std::string::npos ? "" : svg.substr(at);
}

/// Every <img> becomes its inlined SVG (or a note): nothing on the page is fetched when it is viewed.
std::string inline_images(const std::string& html, const std::string& base_dir) {
  static const std::regex img("<img src=\"([^\"]*)\" alt=\"([^\"]*)\"[^>]*>");
  std::string out;
  auto last = html.cbegin();
  for (auto it = std::sregex_iterator(html.begin(), html.end(), img); it != std::sregex_iterator(); ++it) {
    const auto& m = *it;
    out.append(last, m[0].first);
    const std::string svg = read_local_svg(base_dir, m[1]);
    out += svg.empty() ? "<span class=\"note\">[image " + m[1].str() + " not inlined]</span>"
                       : "<figure>" + svg + "<figcaption>" + m[2].str() + "</figcaption></figure>";
    last = m[0].second;
  }
  out.append(last, html.cend());
  return out;
}

double num(const json& j, const char* key, double fallback = -1) {
  return j.contains(key) && j[key].is_number() ? j[key].get<double>() : fallback;
}

ChartOptions chart(std::string title, std::string x_label, std::string y_label) {
  ChartOptions o;
  o.title = std::move(title);
  o.x_label = std::move(x_label);
  o.y_label = std::move(y_label);
  return o;
}

}  // namespace

std::string html_path_for(const std::string& path) {
  fs::path p(path);
  return p.replace_extension(".html").string();
}

std::string html_page(const std::string& title, const std::string& markdown, const std::string& base_dir,
                      const std::vector<Figure>& figures) {
  std::string body = inline_images(render_markdown(markdown), base_dir);
  if (!figures.empty()) {
    std::string figs = "<h2>Plots</h2>\n";
    for (auto& f : figures) figs += "<figure>" + f.svg + "<figcaption>" + xml_escape(f.caption) + "</figcaption></figure>\n";
    const auto at = body.find("<h2");
    body.insert(at == std::string::npos ? body.size() : at, figs);
  }
  return "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
         "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>" +
         xml_escape(title) + "</title>\n<style>" + kStyle + "</style>\n</head>\n<body>\n" + body + "</body>\n</html>\n";
}

std::vector<Figure> diagnosis_figures(const json& d) {
  std::vector<Figure> out;
  if (d.contains("per_layer") && d["per_layer"].is_array() && !d["per_layer"].empty()) {
    std::vector<std::string> cats;
    Series s{"indicator mass", {}, {}, {}};
    for (auto& l : d["per_layer"]) {
      cats.push_back(layer_label(l.value("layer", "?")));
      s.y.push_back(100 * num(l, "indicator_share", 0));
    }
    auto o = chart("Where the indicator mass sits", "layer", "share of indicator mass (%)");
    out.push_back({"Share of the indicator's mass per layer (emb = embeddings).", bar_chart(cats, {s}, o)});
  }
  if (d.contains("token_probe") && d["token_probe"].is_object() && !d["token_probe"]["tokens"].empty()) {
    const auto& p = d["token_probe"];
    std::vector<std::string> cats;
    Series s{"flip rate", {}, {}, {}}, thr{"flag threshold", {}, {}, {}};
    const double min_flip = 100 * num(p, "min_flip", 0.9);
    for (auto& t : p["tokens"]) {
      if (cats.size() == 12) break;
      cats.push_back(t.value("token", "?"));
      s.y.push_back(100 * num(t, "flip_rate", 0));
      thr.y.push_back(min_flip);
    }
    auto o = chart("Behavioural probe: predictions flipped by inserting the token", "token", "flip rate (%)");
    o.y_min = 0;
    o.y_max = 100;
    out.push_back({fmt::format("The {} most flipping candidate tokens; a token at or above {:.0f}% is flagged as a trigger.",
                               cats.size(), min_flip),
                   bar_chart(cats, {s, thr}, o)});
  }
  return out;
}

std::vector<Figure> purify_figures(const json& r) {
  std::vector<Figure> out;
  const std::string knob = r.value("method", "fine-purifying") == "fine-pruning" ? "pruned fraction" : "rho";
  if (r.contains("evaluated") && r["evaluated"].is_array() && !r["evaluated"].empty()) {
    auto pts = r["evaluated"];
    std::vector<json> sorted(pts.begin(), pts.end());
    std::sort(sorted.begin(), sorted.end(), [](const json& a, const json& b) { return num(a, "rho") < num(b, "rho"); });
    Series dev{"clean-dev ACC", {}, {}, {}}, asr{"ASR", {}, {}, {}}, flip{"flip rate", {}, {}, {}}, test{"test ACC", {}, {}, {}};
    for (auto& p : sorted) {
      const double x = num(p, "rho", 0);
      auto add = [&](Series& s, const char* key) {
        if (num(p, key) >= 0) s.x.push_back(x), s.y.push_back(100 * num(p, key));
      };
      add(dev, "clean_dev_accuracy");
      add(asr, "asr");
      add(flip, "flip_rate");
      add(test, "test_accuracy");
    }
    std::vector<Series> series;
    for (auto* s : {&dev, &test, &asr, &flip})
      if (!s->x.empty()) series.push_back(*s);
    if (num(r, "max_acc_drop_points") >= 0 && r.contains("suspect") && !dev.x.empty()) {
      const double floor = 100 * num(r["suspect"], "clean_dev_accuracy", 0) - num(r, "max_acc_drop_points");
      series.push_back({"budget (suspect dev - budget)", {dev.x.front(), dev.x.back()}, {floor, floor}, {}});
    }
    auto o = chart("Every evaluated point", knob, "%");
    o.y_min = 0;
    o.y_max = 100;
    out.push_back({fmt::format("Each evaluated {} (chosen: {}). ASR and test accuracy are measurements only; the choice "
                               "uses clean-dev accuracy and the budget.",
                               knob, num(r, "chosen_rho", 0)),
                   line_chart(series, o)});
    Series trade{"evaluated points", {}, {}, {}};
    for (auto& p : sorted)
      if (num(p, "test_accuracy") >= 0 && num(p, "asr") >= 0) {
        trade.x.push_back(100 * num(p, "test_accuracy"));
        trade.y.push_back(100 * num(p, "asr"));
        trade.labels.push_back(fmt::format("{:g}", num(p, "rho", 0)));
      }
    if (!trade.x.empty()) {
      std::vector<Series> s = {trade};
      if (r.contains("suspect") && num(r["suspect"], "asr") >= 0 && num(r["suspect"], "test_accuracy") >= 0)
        s.push_back({"suspect", {100 * num(r["suspect"], "test_accuracy")}, {100 * num(r["suspect"], "asr")}, {}});
      auto t = chart("ASR against clean test accuracy", "clean test ACC (%)", "ASR (%)");
      t.y_min = 0;
      t.y_max = 100;
      out.push_back({"Each point labelled with its " + knob + "; lower right is better.", line_chart(s, t)});
    }
  }
  if (r.contains("selection") && r["selection"].contains("per_layer") && !r["selection"]["per_layer"].empty()) {
    std::vector<std::string> layers;
    for (auto& [k, v] : r["selection"]["per_layer"].items()) layers.push_back(k);
    std::vector<std::string> cats;
    Series s{"reset dimensions", {}, {}, {}};
    for (auto& k : layer_order(layers)) {
      cats.push_back(layer_label(k));
      s.y.push_back(r["selection"]["per_layer"][k].get<double>());
    }
    auto o = chart("Reset dimensions per layer (chosen point)", "layer", "dimensions");
    out.push_back({"Where the chosen reset sits (emb = embeddings).", bar_chart(cats, {s}, o)});
  }
  if (r.contains("diagnosis"))
    for (auto& f : diagnosis_figures(r["diagnosis"])) out.push_back(f);
  return out;
}

}  // namespace finepurify::report
