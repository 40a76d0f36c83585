// Knob rules over evaluated grid points (clean-dev accuracy only).
#include "finepurify/purify/knob.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

#include "finepurify/error.hpp"

namespace finepurify::purify {

const util::EnumTable<KnobRule>& enum_table(KnobRule) {
  static const util::EnumTable<KnobRule> t{
      "knob rule",
      {{KnobRule::Largest, "largest", "largest grid value within budget"},
       {KnobRule::Prefix, "prefix", "last grid value before the first one over budget"},
       {KnobRule::Isotonic, "isotonic", "largest grid value whose non-increasing fit of dev accuracy is within budget"},
       {KnobRule::Tolerant, "tolerant",
        "largest grid value within budget less half a standard error of the suspect's dev accuracy"}}};
  return t;
}

std::vector<double> isotonic_non_increasing(const std::vector<double>& y) {
  std::vector<std::pair<double, int64_t>> blocks;  // (sum, count), means non-increasing
  for (double v : y) {
    blocks.emplace_back(v, 1);
    while (blocks.size() > 1) {
      auto& [s1, c1] = blocks[blocks.size() - 2];
      auto [s2, c2] = blocks.back();
      if (s1 / c1 >= s2 / c2) break;
      s1 += s2;
      c1 += c2;
      blocks.pop_back();
    }
  }
  std::vector<double> fit;
  for (auto [s, c] : blocks) fit.insert(fit.end(), c, s / c);
  return fit;
}

double budget_line(double suspect_dev, double budget_points, KnobRule rule, int64_t dev_rows) {
  double line = suspect_dev - budget_points / 100.0;
  if (rule == KnobRule::Tolerant) {
    if (dev_rows < 1) throw Error(ErrorKind::Internal, "budget_line: the tolerant rule needs the clean-dev row count");
    line -= 0.5 * std::sqrt(std::max(suspect_dev * (1 - suspect_dev), 0.0) / static_cast<double>(dev_rows));
  }
  return line;
}

bool within_budget(double dev_accuracy, double line) { return dev_accuracy >= line - 1e-12; }

int64_t choose_knob(const std::vector<KnobPoint>& points, double suspect_dev, double budget_points, KnobRule rule,
                    int64_t dev_rows) {
  for (std::size_t i = 1; i < points.size(); ++i)
    if (!(points[i - 1].knob < points[i].knob)) throw Error(ErrorKind::Internal, "choose_knob: points not sorted by knob");
  std::vector<double> acc;
  for (auto& p : points) acc.push_back(p.dev_accuracy);
  if (rule == KnobRule::Isotonic) acc = isotonic_non_increasing(acc);
  const double line = budget_line(suspect_dev, budget_points, rule, dev_rows);
  int64_t chosen = -1;
  for (std::size_t i = 0; i < acc.size(); ++i) {
    if (within_budget(acc[i], line))
      chosen = static_cast<int64_t>(i);
    else if (rule == KnobRule::Prefix)
      break;
  }
  return chosen;
}

}  // namespace finepurify::purify
