// Standalone SVG line and bar charts (no plotting library on the machines we target).
#include "finepurify/report/svg.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace finepurify::report {

namespace {
const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};
constexpr int kLeft = 60, kRight = 170, kTop = 36, kBottom = 48;

struct Frame {
  ChartOptions o;
  double px(double x) const {
    double w = o.width - kLeft - kRight;
    return kLeft + (o.x_max > o.x_min ? (x - o.x_min) / (o.x_max - o.x_min) : 0.5) * w;
  }
  double py(double y) const {
    double h = o.height - kTop - kBottom;
    return o.height - kBottom - (o.y_max > o.y_min ? (y - o.y_min) / (o.y_max - o.y_min) : 0.5) * h;
  }
};

std::string header(const ChartOptions& o) {
  return fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"{0}\" height=\"{1}\" fill=\"white\"/>\n"
      "<text x=\"{2}\" y=\"20\" font-size=\"13\" font-weight=\"bold\">{3}</text>\n",
      o.width, o.height, kLeft, xml_escape(o.title));
}

std::string axes(const Frame& f, bool numeric_x) {
  const auto& o = f.o;
  std::string s;
  double x0 = f.px(o.x_min), x1 = f.px(o.x_max), y0 = f.py(o.y_min), y1 = f.py(o.y_max);
  s += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"none\" stroke=\"#444\"/>\n",
                   x0, y1, x1 - x0, y0 - y1);
  for (int i = 0; i <= 5; ++i) {
    double yv = o.y_min + (o.y_max - o.y_min) * i / 5.0, y = f.py(yv);
    s += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>\n", x0, y, x1, y);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{:g}</text>\n", x0 - 4, y + 4, yv);
    if (numeric_x) {
      double xv = o.x_min + (o.x_max - o.x_min) * i / 5.0, x = f.px(xv);
      s += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>\n", x, y0, x, y1);
      s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{:g}</text>\n", x, y0 + 14, xv);
    }
  }
  s += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", (x0 + x1) / 2, o.height - 10,
                   xml_escape(o.x_label));
  s += fmt::format("<text transform=\"translate(16,{:.1f}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
                   (y0 + y1) / 2, xml_escape(o.y_label));
  return s;
}

std::string legend(const std::vector<Series>& series, const ChartOptions& o) {
  std::string s;
  for (std::size_t i = 0; i < series.size(); ++i) {
    double y = kTop + 10 + 16.0 * i, x = o.width - kRight + 12;
    s += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"10\" height=\"10\" fill=\"{}\"/>\n", x, y - 9,
                     kColors[i % 8]);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\">{}</text>\n", x + 14, y, xml_escape(series[i].name));
  }
  return s;
}
}  // namespace

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
  Frame f{opt};
  std::string s = header(opt) + axes(f, true);
  for (std::size_t i = 0; i < series.size(); ++i) {
    const auto& se = series[i];
    const char* c = kColors[i % 8];
    std::string pts;
    for (std::size_t k = 0; k < se.x.size() && k < se.y.size(); ++k)
      pts += fmt::format("{:.1f},{:.1f} ", f.px(se.x[k]), f.py(se.y[k]));
    if (se.x.size() > 1)
      s += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"/>\n", pts, c);
    for (std::size_t k = 0; k < se.x.size() && k < se.y.size(); ++k) {
      s += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3.5\" fill=\"{}\"><title>{}{}</title></circle>\n",
                       f.px(se.x[k]), f.py(se.y[k]), c, xml_escape(se.name),
                       k < se.labels.size() ? " " + xml_escape(se.labels[k]) : "");
      if (k < se.labels.size() && !se.labels[k].empty())
        s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"9\" fill=\"{}\">{}</text>\n", f.px(se.x[k]) + 4,
                         f.py(se.y[k]) - 4, c, xml_escape(se.labels[k]));
    }
  }
  return s + legend(series, opt) + "</svg>\n";
}

std::string bar_chart(const std::vector<std::string>& categories, const std::vector<Series>& series,
                      const ChartOptions& opt) {
  auto o = opt;
  o.x_min = 0;
  o.x_max = std::max<double>(1, categories.size());
  Frame f{o};
  std::string s = header(o) + axes(f, false);
  const double slot = (f.px(1) - f.px(0)), bw = slot * 0.8 / std::max<std::size_t>(1, series.size());
  for (std::size_t c = 0; c < categories.size(); ++c) {
    s += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", f.px(c + 0.5),
                     o.height - kBottom + 14, xml_escape(categories[c]));
    for (std::size_t i = 0; i < series.size(); ++i) {
      if (c >= series[i].y.size()) continue;
      double v = std::clamp(series[i].y[c], o.y_min, o.y_max);
      double x = f.px(c) + slot * 0.1 + bw * i, y = f.py(v);
      s += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"{}\"><title>{} {}: {:g}</title></rect>\n",
                       x, y, bw, f.py(o.y_min) - y, kColors[i % 8], xml_escape(series[i].name),
                       xml_escape(categories[c]), series[i].y[c]);
    }
  }
  return s + legend(series, o) + "</svg>\n";
}

}  // namespace finepurify::report
