// Standalone SVG line and bar charts (no plotting library on the machines we target).
#include "finepurify/report/svg.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

namespace finepurify::report {

namespace {
// Twenty colours that stay apart (Tableau 10, then ten darker or brighter ones); series past ten
// also get dashed lines and square markers.
const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                         "#bcbd22", "#17becf", "#393b79", "#ad494a", "#637939", "#e6550d", "#7b4173", "#3182bd",
                         "#31a354", "#843c39", "#636363", "#b5cf6b"};
constexpr std::size_t kPalette = sizeof(kColors) / sizeof(kColors[0]);
constexpr int kLeft = 60, kTop = 36, kBottom = 48;
constexpr double kCharWidth = 6.6;  // an upper bound of an 11 px sans-serif glyph's advance

/// A range with the tick step: [lo, hi] widened to whole steps of 1, 2 or 5 x 10^k, about 5 ticks.
struct Axis {
  double lo = 0, hi = 1, step = 0.2;
};

Axis nice_axis(double lo, double hi) {
  if (!(hi > lo)) {  // one value (or none): a unit-wide window around it
    const double c = std::isfinite(lo) ? lo : 0;
    lo = c - 0.5;
    hi = c + 0.5;
  }
  const double raw = (hi - lo) / 5, mag = std::pow(10, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  return {std::floor(lo / step + 1e-9) * step, std::ceil(hi / step - 1e-9) * step, step};
}

/// The axis of `values` (padded by 3% each side), or the given range.
Axis fit(const std::vector<double>& values, std::optional<double> lo, std::optional<double> hi) {
  double a = std::numeric_limits<double>::infinity(), b = -a;
  for (double v : values)
    if (std::isfinite(v)) a = std::min(a, v), b = std::max(b, v);
  if (!std::isfinite(a)) a = b = 0;
  const double pad = 0.03 * (b - a);
  Axis ax = nice_axis(lo ? *lo : a - pad, hi ? *hi : b + pad);
  if (lo) ax.lo = *lo;
  if (hi) ax.hi = *hi;
  return ax;
}

struct Frame {
  const ChartOptions& o;
  Axis x, y;
  int right;  // margin holding the legend
  double px(double v) const {
    const double w = o.width - kLeft - right;
    return kLeft + (x.hi > x.lo ? (v - x.lo) / (x.hi - x.lo) : 0.5) * w;
  }
  double py(double v) const {
    const double h = o.height - kTop - kBottom;
    return o.height - kBottom - (y.hi > y.lo ? (v - y.lo) / (y.hi - y.lo) : 0.5) * h;
  }
};

int legend_margin(const std::vector<Series>& series) {
  std::size_t longest = 0;
  for (auto& s : series) longest = std::max(longest, s.name.size());
  return static_cast<int>(12 + 14 + kCharWidth * longest + 12);
}

std::string header(const ChartOptions& o, int height) {
  return fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"{0}\" height=\"{1}\" fill=\"white\"/>\n"
      "<text x=\"{2}\" y=\"20\" font-size=\"13\" font-weight=\"bold\">{3}</text>\n",
      o.width, height, kLeft, xml_escape(o.title));
}

std::string tick_label(double v, double step) {
  const int decimals = step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step) - 1e-9));
  return fmt::format("{:.{}f}", std::abs(v) < step * 1e-6 ? 0.0 : v, decimals);
}

std::string axes(const Frame& f, bool numeric_x) {
  const auto& o = f.o;
  std::string s;
  const double x0 = f.px(f.x.lo), x1 = f.px(f.x.hi), y0 = f.py(f.y.lo), y1 = f.py(f.y.hi);
  s += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"none\" stroke=\"#444\"/>\n",
                   x0, y1, x1 - x0, y0 - y1);
  for (double v = f.y.lo; v <= f.y.hi + f.y.step * 1e-6; v += f.y.step) {
    const double y = f.py(v);
    s += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>\n", x0, y, x1, y);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", x0 - 4, y + 4, tick_label(v, f.y.step));
  }
  if (numeric_x)
    for (double v = f.x.lo; v <= f.x.hi + f.x.step * 1e-6; v += f.x.step) {
      const double x = f.px(v);
      s += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>\n", x, y0, x, y1);
      s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n", x, y0 + 14, tick_label(v, f.x.step));
    }
  s += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", (x0 + x1) / 2, o.height - 10,
                   xml_escape(o.x_label));
  s += fmt::format("<text transform=\"translate(16,{:.1f}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
                   (y0 + y1) / 2, xml_escape(o.y_label));
  return s;
}

/// The palette slot of series i.
std::size_t slot_of(const std::vector<Series>& series, std::size_t i) {
  return series[i].slot >= 0 ? static_cast<std::size_t>(series[i].slot) : i;
}

std::string marker(double x, double y, std::size_t i, const std::string& title) {
  const char* c = series_color(i);
  if (i < 10)
    return fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3.5\" fill=\"{}\"><title>{}</title></circle>\n", x, y, c, title);
  return fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"7\" height=\"7\" fill=\"{}\"><title>{}</title></rect>\n", x - 3.5,
                     y - 3.5, c, title);
}

std::string legend(const std::vector<Series>& series, const ChartOptions& o, int right) {
  std::string s;
  for (std::size_t i = 0; i < series.size(); ++i) {
    const double y = kTop + 10 + 16.0 * i, x = o.width - right + 12;
    s += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"10\" height=\"10\" fill=\"{}\"/>\n", x, y - 9,
                     series_color(slot_of(series, i)));
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\">{}</text>\n", x + 14, y, xml_escape(series[i].name));
  }
  return s;
}

/// Tall enough for the plot and for every legend row.
int image_height(const ChartOptions& o, std::size_t n_series) {
  return std::max<int>(o.height, kTop + 10 + 16 * static_cast<int>(n_series) + 8);
}
}  // namespace

std::vector<std::string> layer_order(std::vector<std::string> layers) {
  auto key = [](const std::string& l) {
    if (l == "embeddings") return -1000;
    try { return std::stoi(l); } catch (...) { return 1000; }
  };
  std::sort(layers.begin(), layers.end(), [&](const std::string& a, const std::string& b) {
    return std::make_pair(key(a), a) < std::make_pair(key(b), b);
  });
  return layers;
}

std::string layer_label(const std::string& l) { return l == "embeddings" ? "emb" : (l == "-2" ? "other" : "L" + l); }

const char* series_color(std::size_t i) { return kColors[i % kPalette]; }
std::size_t palette_size() { return kPalette; }

std::string xml_escape(const std::string& s) {
  std::string r;
  for (char c : s) {
    switch (c) {
      case '&': r += "&amp;"; break;
      case '<': r += "&lt;"; break;
      case '>': r += "&gt;"; break;
      case '"': r += "&quot;"; break;
      default: r += c;
    }
  }
  return r;
}

std::string line_chart(const std::vector<Series>& series, const ChartOptions& opt) {
  std::vector<double> xs, ys;
  for (auto& se : series) {
    xs.insert(xs.end(), se.x.begin(), se.x.end());
    ys.insert(ys.end(), se.y.begin(), se.y.end());
  }
  ChartOptions o = opt;
  o.height = image_height(opt, series.size());
  const int right = legend_margin(series);
  o.width = std::max(opt.width, kLeft + 320 + right);
  Frame f{o, fit(xs, opt.x_min, opt.x_max), fit(ys, opt.y_min, opt.y_max), right};
  std::string s = header(o, o.height) + axes(f, true);
  for (std::size_t i = 0; i < series.size(); ++i) {
    const auto& se = series[i];
    const std::size_t slot = slot_of(series, i);
    const char* c = series_color(slot);
    std::string pts;
    for (std::size_t k = 0; k < se.x.size() && k < se.y.size(); ++k)
      pts += fmt::format("{:.1f},{:.1f} ", f.px(se.x[k]), f.py(se.y[k]));
    if (se.x.size() > 1)
      s += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"{}/>\n", pts, c,
                       slot < 10 ? "" : " stroke-dasharray=\"5,3\"");
    for (std::size_t k = 0; k < se.x.size() && k < se.y.size(); ++k) {
      s += marker(f.px(se.x[k]), f.py(se.y[k]), slot,
                  xml_escape(se.name) + (k < se.labels.size() ? " " + xml_escape(se.labels[k]) : ""));
      if (k < se.labels.size() && !se.labels[k].empty())
        s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"9\" fill=\"{}\">{}</text>\n", f.px(se.x[k]) + 4,
                         f.py(se.y[k]) - 4, c, xml_escape(se.labels[k]));
    }
  }
  return s + legend(series, o, right) + "</svg>\n";
}

std::string bar_chart(const std::vector<std::string>& categories, const std::vector<Series>& series,
                      const ChartOptions& opt) {
  ChartOptions o = opt;
  o.height = image_height(opt, series.size());
  std::vector<double> ys = {0};
  for (auto& se : series) ys.insert(ys.end(), se.y.begin(), se.y.end());
  const int right = legend_margin(series);
  o.width = std::max(opt.width, kLeft + 320 + right);
  Axis x{0, std::max<double>(1, categories.size()), 1};
  Frame f{o, x, fit(ys, opt.y_min ? opt.y_min : std::optional<double>(0), opt.y_max), right};
  std::string s = header(o, o.height) + axes(f, false);
  const double slot = (f.px(1) - f.px(0)), bw = slot * 0.8 / std::max<std::size_t>(1, series.size());
  for (std::size_t c = 0; c < categories.size(); ++c) {
    s += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", f.px(c + 0.5),
                     o.height - kBottom + 14, xml_escape(categories[c]));
    for (std::size_t i = 0; i < series.size(); ++i) {
      if (c >= series[i].y.size()) continue;
      const double v = std::clamp(series[i].y[c], f.y.lo, f.y.hi);
      const double xl = f.px(c) + slot * 0.1 + bw * i, y = f.py(v);
      s += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"{}\"><title>{} {}: {:g}</title></rect>\n",
                       xl, y, bw, f.py(f.y.lo) - y, series_color(slot_of(series, i)), xml_escape(series[i].name),
                       xml_escape(categories[c]), series[i].y[c]);
    }
  }
  return s + legend(series, o, right) + "</svg>\n";
}

}  // namespace finepurify::report
