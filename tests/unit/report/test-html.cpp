// The HTML reports: Markdown tables rendered, local SVG plots inlined and nothing else fetched, raw
// HTML from report text (an attacker's token) escaped, the purify plots built from the report JSON,
// and the page rendered by headless Chromium (Debian's `chromium`) without console messages, its
// screenshot the size asked for. Chromium absent: those checks are skipped (./setup.sh installs it).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <regex>

#include <nlohmann/json.hpp>

#include "finepurify/report/html.hpp"
#include "finepurify/report/purify_report.hpp"
#include "finepurify/report/svg.hpp"
#include "fp_test.hpp"

using namespace finepurify;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

int count(const std::string& s, const std::string& what) {
  int n = 0;
  for (auto at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

/// A purify_report.json of the shape purify_json writes (three points, a probe, a selection).
json sample_report() {
  json r = {{"method", "fine-purifying"}, {"chosen_rho", 0.05}, {"knob_rule", "largest"}, {"max_acc_drop_points", 3.0},
            {"scope", "tensor"}, {"word_embedding", "rank"}, {"clean_train_examples", 800}, {"clean_dev_examples", 300},
            {"suspect", {{"clean_dev_accuracy", 0.86}, {"asr", 1.0}, {"flip_rate", 1.0}, {"test_accuracy", 0.857}}},
            {"purified", {{"clean_dev_accuracy", 0.84}, {"asr", 0.14}, {"flip_rate", 0.02}, {"test_accuracy", 0.84}}},
            {"fine_tuning", {{"epochs", 3}, {"lr", 5e-5}, {"batch_size", 16}}}};
  r["evaluated"] = json::array();
  for (double rho : {0.01, 0.05, 0.3})
    r["evaluated"].push_back({{"rho", rho}, {"reset_dimensions", static_cast<int64_t>(rho * 1e6)},
                              {"clean_dev_accuracy", 0.85 - rho / 3}, {"within_budget", rho < 0.1}, {"asr", 0.5 - rho},
                              {"flip_rate", 0.3 - rho}, {"test_accuracy", 0.85 - rho / 2}, {"seconds", 30}});
  r["selection"] = {{"reset_dimensions", 50000}, {"per_layer", {{"embeddings", 30000}, {"0", 10000}, {"1", 10000}}},
                    {"per_tensor", {{"bert.embeddings.word_embeddings.weight", 30000}}}};
  r["diagnosis"] = {{"indicator", "fisher-ratio"}, {"epsilon", 1e-6}, {"epsilon_scale", 1.0}, {"epsilon_basis", "tensor"},
                    {"fisher_at", "ft"}, {"fisher_examples", 800}, {"aligned_tensors", 3}, {"aligned_dimensions", 1000000},
                    {"unaligned", json::array()}, {"distribution_log10", json::array()},
                    {"per_layer", {{{"layer", "embeddings"}, {"indicator_share", 0.5}}, {{"layer", "0"}, {"indicator_share", 0.5}}}},
                    {"per_tensor", json::array()},
                    {"top_tokens", {{{"rank", 1}, {"id", 7}, {"token", "<script>alert(1)</script>"}, {"indicator_mass", 1.0},
                                     {"share", 0.1}, {"drift_l2", 0.2}}}},
                    {"token_probe", {{"candidates", 2}, {"per_ranking", 1}, {"examples", 100}, {"flagged", 1}, {"min_flip", 0.9},
                                     {"tokens", {{{"rank", 1}, {"id", 7}, {"token", "cf"}, {"flip_rate", 1.0}, {"flip_to", 1},
                                                  {"tested", 100}, {"drift_l2", 0.1}, {"indicator_share", 0.01}},
                                                 {{"rank", 2}, {"id", 8}, {"token", "<img src=x onerror=alert(1)>"},
                                                  {"flip_rate", 0.2}, {"flip_to", 1}, {"tested", 100}, {"drift_l2", 0.1},
                                                  {"indicator_share", 0.01}}}}}}};
  return r;
}

std::string find_chromium() {
  for (const char* c : {"chromium", "chromium-browser", "google-chrome"}) {
    const std::string cmd = std::string("command -v ") + c + " >/dev/null 2>&1";
    if (std::system(cmd.c_str()) == 0) return c;
  }
  return "";
}

struct Rendered {
  int rc = -1;
  std::string dom, log;
  std::vector<std::string> console;  ///< console messages the page produced
};

/// Loads `page` in headless Chromium: the DOM after load, the log, the console messages, and a
/// screenshot at `png` (width x height).
Rendered render(const std::string& chromium, const fs::path& page, const fs::path& png, int width, int height) {
  const std::string flags = " --headless --no-sandbox --disable-gpu --disable-extensions --no-first-run "
                            "--enable-logging=stderr --v=0 --window-size=" + std::to_string(width) + "," + std::to_string(height);
  Rendered r;
  const fs::path out = page.string() + ".dom", log = page.string() + ".log";
  r.rc = std::system(("timeout 120 " + chromium + flags + " --dump-dom file://" + page.string() + " > " + out.string() +
                      " 2> " + log.string()).c_str());
  r.dom = fp_test::read_file(out);
  r.log = fp_test::read_file(log);
  const int rc2 = std::system(("timeout 120 " + chromium + flags + " --screenshot=" + png.string() + " file://" +
                               page.string() + " >> " + log.string() + " 2>&1").c_str());
  if (r.rc == 0) r.rc = rc2;
  r.log = fp_test::read_file(log);
  std::regex console(":CONSOLE[^\\]]*\\] (.*)");
  for (auto it = std::sregex_iterator(r.log.begin(), r.log.end(), console); it != std::sregex_iterator(); ++it)
    r.console.push_back((*it)[1]);
  return r;
}

/// Width and height from a PNG's IHDR.
std::pair<int, int> png_size(const std::string& png) {
  if (png.size() < 24 || png.compare(1, 3, "PNG") != 0) return {0, 0};
  auto be32 = [&](std::size_t at) {
    return (static_cast<unsigned char>(png[at]) << 24) | (static_cast<unsigned char>(png[at + 1]) << 16) |
           (static_cast<unsigned char>(png[at + 2]) << 8) | static_cast<unsigned char>(png[at + 3]);
  };
  return {static_cast<int>(be32(16)), static_cast<int>(be32(20))};
}

}  // namespace

TEST(HtmlPage, RendersTablesInlinesLocalSvgOnlyAndEscapesRawHtml) {
  const auto dir = fp_test::temp_dir("html");
  fs::create_directories(dir / "plots");
  fp_test::write_file(dir / "plots/a.svg", "<?xml version=\"1.0\"?>\n" + report::bar_chart({"x"}, {{"s", {}, {1}, {}}}, {}));
  fp_test::write_file(dir / "secret.svg", "<svg id=\"secret\"></svg>");
  const std::string md =
      "# Title\n\n| token | share |\n|---|---|\n| <script>alert(1)</script> | 1 |\n\n"
      "<img src=x onerror=alert(2)>\n\n![local](plots/a.svg)\n![up](plots/../secret.svg)\n![abs](/etc/x.svg)\n"
      "![remote](http://example.com/x.svg)\n![png](plots/a.png)\n\n## Next\n";
  const auto html = report::html_page("t <b>", md, dir.string(), {{"a caption", "<svg id=\"fig\"></svg>"}});
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(html.find("<table>"), std::string::npos);
  EXPECT_NE(html.find("<th>token</th>"), std::string::npos) << html;
  EXPECT_EQ(html.find("<script"), std::string::npos) << html;
  EXPECT_EQ(html.find("onerror"), std::string::npos) << html;
  EXPECT_NE(html.find("<title>t &lt;b&gt;</title>"), std::string::npos);
  // Only the local plot is inlined (without its XML prolog); every other image is a note, never a link.
  EXPECT_EQ(count(html, "<svg"), 2) << html;  // the plot and the figure
  EXPECT_EQ(html.find("id=\"secret\""), std::string::npos) << html;
  EXPECT_EQ(html.find("<?xml"), std::string::npos);
  EXPECT_EQ(html.find("<img"), std::string::npos) << html;
  EXPECT_EQ(html.find("src="), std::string::npos) << html;
  EXPECT_EQ(count(html, "not inlined]"), 4) << html;
  // The figures come before the first level-2 heading.
  EXPECT_LT(html.find("id=\"fig\""), html.find("<h2>Next</h2>"));
  EXPECT_EQ(report::html_path_for("out/scan.md"), "out/scan.html");
  EXPECT_EQ(report::html_path_for("scan"), "scan.html");
}

TEST(HtmlPage, PurifyReportHasEveryPlotAndEscapesTokens) {
  const auto r = sample_report();
  const auto figs = report::purify_figures(r);
  // Knob points, ASR vs test ACC, per-layer reset, indicator per layer, probe.
  ASSERT_EQ(figs.size(), 5u);
  EXPECT_NE(figs[0].svg.find("budget"), std::string::npos);
  EXPECT_EQ(count(figs[0].svg, "<circle"), 3 * 4 + 2);  // 3 points x 4 measures + the budget line's 2 ends
  const auto html = report::purify_html(r);
  EXPECT_EQ(count(html, "<svg"), 5);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<img"), std::string::npos);
  EXPECT_NE(html.find("&lt;img src=x onerror=alert(1)&gt;"), std::string::npos) << "the probe token, escaped in its plot";
  // A report without measurements (no ASR / test set) still renders its dev-accuracy plot.
  auto bare = r;
  for (auto& p : bare["evaluated"]) p.erase("asr"), p.erase("test_accuracy"), p.erase("flip_rate");
  bare["diagnosis"].erase("token_probe");
  EXPECT_EQ(report::purify_figures(bare).size(), 3u);
}

TEST(HtmlPage, RendersInHeadlessChromiumWithoutConsoleMessages) {
  const auto chromium = find_chromium();
  if (chromium.empty()) GTEST_SKIP() << "no chromium on PATH (./setup.sh installs Debian's)";
  const auto dir = fp_test::temp_dir("html-chromium");
  const auto page = dir / "purify_report.html";
  fp_test::write_file(page, report::purify_html(sample_report()));
  const auto r = render(chromium, page, dir / "shot.png", 1200, 2400);
  ASSERT_EQ(r.rc, 0) << r.log;
  EXPECT_TRUE(r.console.empty()) << r.console.front();
  EXPECT_EQ(count(r.dom, "<svg"), 5) << "every plot is in the rendered DOM";
  EXPECT_NE(r.dom.find("<table>"), std::string::npos);
  const auto png = fp_test::read_file(dir / "shot.png");
  EXPECT_EQ(png_size(png), std::make_pair(1200, 2400));
  EXPECT_GT(png.size(), 20000u) << "a blank page compresses to a few KB";

  // The check itself: a page that writes to the console is caught.
  const auto bad = dir / "bad.html";
  fp_test::write_file(bad, "<!DOCTYPE html><html><body><script>console.error('boom')</script></body></html>");
  const auto b = render(chromium, bad, dir / "bad.png", 400, 300);
  ASSERT_FALSE(b.console.empty()) << b.log;  // once per Chromium run (the DOM dump and the screenshot)
  for (const auto& m : b.console) EXPECT_NE(m.find("boom"), std::string::npos) << m;
}
