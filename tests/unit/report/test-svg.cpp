// The SVG charts: the legend stays inside the image whatever the names, every series has its own
// colour (or the palette slot it is given), axes fit the data unless a range is given, and every point
// lies inside the plot frame.
#include <gtest/gtest.h>

#include <regex>
#include <set>

#include "finepurify/report/svg.hpp"

using namespace finepurify::report;

namespace {

double attr(const std::string& svg, const std::string& name) {
  std::smatch m;
  EXPECT_TRUE(std::regex_search(svg, m, std::regex(name + "=\"([-0-9.]+)\""))) << name;
  return std::stod(m[1]);
}

/// (x, text) of every <text> element.
std::vector<std::pair<double, std::string>> texts(const std::string& svg) {
  std::vector<std::pair<double, std::string>> out;
  std::regex re("<text x=\"([-0-9.]+)\"[^>]*>([^<]*)</text>");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), re); it != std::sregex_iterator(); ++it)
    out.emplace_back(std::stod((*it)[1]), (*it)[2]);
  return out;
}

std::vector<Series> many_series(int n, const std::string& long_name) {
  std::vector<Series> s;
  for (int i = 0; i < n; ++i)
    s.push_back({i == 3 ? long_name : "series-" + std::to_string(i), {84.0 + 0.3 * i, 86.5, 88.0}, {10.0 + i, 50.0, 99.0}, {}});
  return s;
}

}  // namespace

TEST(Svg, LegendFitsInsideTheImage) {
  const std::string long_name = "magnitude-scope-tensor-with-a-much-longer-name-than-usual";
  for (int n : {1, 9, 24}) {
    const auto svg = line_chart(many_series(n, long_name), {"t", "x", "y"});
    const double width = attr(svg, "width"), height = attr(svg, "height");
    for (auto& [x, t] : texts(svg))
      if (t.rfind("series-", 0) == 0 || t == long_name) EXPECT_LE(x + 6.6 * t.size(), width) << t << " n=" << n;
    // Every legend row is inside the image's height.
    std::regex rect("<rect x=\"([-0-9.]+)\" y=\"([-0-9.]+)\" width=\"10\" height=\"10\"");
    int rows = 0;
    for (auto it = std::sregex_iterator(svg.begin(), svg.end(), rect); it != std::sregex_iterator(); ++it, ++rows)
      EXPECT_LE(std::stod((*it)[2]) + 10, height);
    EXPECT_EQ(rows, n);
  }
}

TEST(Svg, EverySeriesHasItsOwnColour) {
  const auto svg = line_chart(many_series(static_cast<int>(palette_size()), "x"), {"t", "x", "y"});
  std::set<std::string> legend;
  std::regex rect("width=\"10\" height=\"10\" fill=\"(#[0-9a-f]{6})\"");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), rect); it != std::sregex_iterator(); ++it) legend.insert((*it)[1]);
  EXPECT_EQ(legend.size(), palette_size());
  // Past the first ten colours the lines are dashed too.
  EXPECT_NE(svg.find("stroke-dasharray"), std::string::npos);
  EXPECT_EQ(line_chart(many_series(10, "x"), {"t", "x", "y"}).find("stroke-dasharray"), std::string::npos);
}

TEST(Svg, AxesFitTheDataAndPointsStayInTheFrame) {
  // ACC between 84 and 88.9: the x axis spans about that, not 0..100.
  std::vector<Series> s = {{"a", {84.2, 86.0, 88.9}, {12, 40, 97}, {"0.05", "0.1", "0.3"}}};
  ChartOptions o{"t", "ACC", "ASR"};
  o.y_min = 0;
  o.y_max = 100;
  const auto svg = line_chart(s, o);
  EXPECT_NE(svg.find(">100</text>"), std::string::npos);  // the given y range
  EXPECT_NE(svg.find(">84</text>"), std::string::npos) << svg;
  EXPECT_NE(svg.find(">89</text>"), std::string::npos) << svg;
  EXPECT_NE(svg.find(">85</text>"), std::string::npos) << svg;
  EXPECT_EQ(svg.find(">92</text>"), std::string::npos) << svg;  // the old 80..100 window (ticks 80, 84, ... 100) is gone
  // The frame, then every marker inside it.
  std::smatch m;
  ASSERT_TRUE(std::regex_search(svg, m, std::regex("<rect x=\"([-0-9.]+)\" y=\"([-0-9.]+)\" width=\"([-0-9.]+)\" height=\"([-0-9.]+)\" fill=\"none\"")));
  const double fx = std::stod(m[1]), fy = std::stod(m[2]), fw = std::stod(m[3]), fh = std::stod(m[4]);
  std::regex circle("<circle cx=\"([-0-9.]+)\" cy=\"([-0-9.]+)\"");
  int n = 0;
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), circle); it != std::sregex_iterator(); ++it, ++n) {
    const double cx = std::stod((*it)[1]), cy = std::stod((*it)[2]);
    EXPECT_GE(cx, fx);
    EXPECT_LE(cx, fx + fw);
    EXPECT_GE(cy, fy);
    EXPECT_LE(cy, fy + fh);
  }
  EXPECT_EQ(n, 3);
}

TEST(Svg, BarsStartAtZeroAndFitTheTallest) {
  const auto svg = bar_chart({"emb", "L0", "L1"}, {{"fp", {}, {12.5, 30, 57.5}, {}}}, {"t", "layer", "share"});
  EXPECT_NE(svg.find(">0</text>"), std::string::npos);
  EXPECT_NE(svg.find(">60</text>"), std::string::npos) << svg;
  EXPECT_EQ(svg.find(">100</text>"), std::string::npos) << svg;
}

TEST(Svg, AFixedSlotKeepsAMethodsColourWhateverItsPosition) {
  auto a = many_series(3, "x");
  a[0].slot = 5;  // e.g. the sixth defense of a config, the only one in this plot
  const auto svg = bar_chart({"emb", "L0", "L1"}, {a[0]}, {"t", "x", "y"});
  EXPECT_NE(svg.find(std::string("fill=\"") + series_color(5) + "\""), std::string::npos);
  EXPECT_EQ(svg.find(std::string("fill=\"") + series_color(0) + "\""), std::string::npos);
  const auto line = line_chart(a, {"t", "x", "y"});
  EXPECT_NE(line.find(std::string("stroke=\"") + series_color(5) + "\""), std::string::npos);
  EXPECT_NE(line.find(std::string("stroke=\"") + series_color(1) + "\""), std::string::npos);  // unslotted: by position
}

TEST(Svg, LayersInPlotOrder) {
  EXPECT_EQ(layer_order({"1", "pooler", "embeddings", "10", "2", "-2"}),
            (std::vector<std::string>{"embeddings", "-2", "1", "2", "10", "pooler"}));
  EXPECT_EQ(layer_label("embeddings"), "emb");
  EXPECT_EQ(layer_label("3"), "L3");
  EXPECT_EQ(layer_label("-2"), "other");
}
