// Minimal dependency-free SVG charts for experiment reports: line/scatter charts of (x, y) series
// and grouped bar charts. Output is a complete standalone <svg> document.
#pragma once
#include <string>
#include <vector>

namespace finepurify::report {

struct Series {
  std::string name;
  std::vector<double> x, y;
  std::vector<std::string> labels;  ///< optional per-point annotation (e.g. the knob value)
};

struct ChartOptions {
  std::string title, x_label, y_label;
  double x_min = 0, x_max = 100, y_min = 0, y_max = 100;
  int width = 600, height = 380;
};

/// Lines through each series' points (in the given order) with markers.
std::string line_chart(const std::vector<Series>& series, const ChartOptions& opt);

/// Grouped bars: categories along x, one bar per series in each category (series.y[i] = value of category i).
std::string bar_chart(const std::vector<std::string>& categories, const std::vector<Series>& series,
                      const ChartOptions& opt);

/// Escapes &, <, >, " for XML text and attributes.
std::string xml_escape(const std::string& s);

}  // namespace finepurify::report
