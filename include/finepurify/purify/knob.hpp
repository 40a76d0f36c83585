// The knob rule: which evaluated grid point a defense keeps. It reads clean-dev accuracy only (never
// ASR or test data); the purifier's search and the experiment report both call choose_knob.
#pragma once
#include <cstdint>
#include <vector>

#include "finepurify/util/options.hpp"

namespace finepurify::purify {

/// largest: the largest grid value whose dev accuracy is within budget (the paper's rule);
/// prefix: walking up the grid, the last value before the first one over budget (an isolated lucky
/// point past a failure is not taken); isotonic: dev accuracies fitted non-increasing in the knob
/// (pool-adjacent-violators), the largest value whose fitted accuracy is within budget; tolerant:
/// the largest value whose dev accuracy is not below the budget line by more than half a standard
/// error of the suspect's dev accuracy, sqrt(p(1-p)/n) over the n clean-dev rows (about 1 point at
/// 300 rows, shrinking with more rows): a drop the dev set cannot tell from the budget is not held
/// against a point (chosen on dev rows in docs/results/real-dev, "Knob rule study").
enum class KnobRule { Largest, Prefix, Isotonic, Tolerant };
const util::EnumTable<KnobRule>& enum_table(KnobRule);

struct KnobPoint {
  double knob = 0;
  double dev_accuracy = 0;  ///< in [0, 1]
};

/// The lowest dev accuracy a point may have under `rule` (accuracies in [0, 1]): suspect_dev -
/// budget_points / 100, less the tolerant rule's half standard error over `dev_rows` rows.
double budget_line(double suspect_dev, double budget_points, KnobRule rule, int64_t dev_rows);
bool within_budget(double dev_accuracy, double line);

/// Index of the chosen point in `points` (sorted by knob, ascending), or -1 when none qualifies.
/// `dev_rows`: the clean-dev rows behind the accuracies (read by the tolerant rule only).
int64_t choose_knob(const std::vector<KnobPoint>& points, double suspect_dev, double budget_points, KnobRule rule,
                    int64_t dev_rows);

/// The non-increasing least-squares fit of `y` (equal weights).
std::vector<double> isotonic_non_increasing(const std::vector<double>& y);

}  // namespace finepurify::purify
