// Minimal dependency-free SVG charts for experiment reports: line/scatter charts of (x, y) series
// and grouped bar charts. Output is a complete standalone <svg> document: axes fitted to the data
// unless a range is given, the legend beside the plot and inside the image (its margin sized to the
// longest name), one colour per series (after the palette's 10, dashed lines and square markers).
#pragma once
#include <optional>
#include <string>
#include <vector>

namespace finepurify::report {

struct Series {
  std::string name;
  std::vector<double> x, y;
  std::vector<std::string> labels;  ///< optional per-point annotation (e.g. the knob value)
  /// Palette slot (series_color); -1: the series' position. A fixed slot keeps one colour per
  /// method across the plots of a report.
  int slot = -1;
};

struct ChartOptions {
  std::string title, x_label, y_label;
  /// Unset: fitted to the data (a little padding, rounded to the tick step).
  std::optional<double> x_min, x_max, y_min, y_max;
  int width = 640, height = 380;
};

/// Lines through each series' points (in the given order) with markers.
std::string line_chart(const std::vector<Series>& series, const ChartOptions& opt);

/// Grouped bars: categories along x, one bar per series in each category (series.y[i] = value of category i).
std::string bar_chart(const std::vector<std::string>& categories, const std::vector<Series>& series,
                      const ChartOptions& opt);

/// Layer names of the per-layer reports ("embeddings", "0", "1", ..., "-2" for the rest) in plot
/// order: the embeddings first, then by number, then any other name (ties by name).
std::vector<std::string> layer_order(std::vector<std::string> layers);
/// A layer's axis label: "emb", "L3", "other" (for "-2").
std::string layer_label(const std::string& layer);

/// The i-th series' colour (distinct for every i below palette_size()).
const char* series_color(std::size_t i);
std::size_t palette_size();

/// Escapes &, <, >, " for XML text and attributes.
std::string xml_escape(const std::string& s);

}  // namespace finepurify::report
