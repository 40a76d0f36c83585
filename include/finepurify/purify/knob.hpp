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
/// (pool-adjacent-violators), the largest value whose fitted accuracy is within budget.
enum class KnobRule { Largest, Prefix, Isotonic };
const util::EnumTable<KnobRule>& enum_table(KnobRule);

struct KnobPoint {
  double knob = 0;
  double dev_accuracy = 0;  ///< in [0, 1]
};

/// The budget check every rule applies: accuracy >= suspect_dev - budget_points / 100 (accuracies in [0, 1]).
bool within_budget(double dev_accuracy, double suspect_dev, double budget_points);

/// Index of the chosen point in `points` (sorted by knob, ascending), or -1 when none qualifies.
int64_t choose_knob(const std::vector<KnobPoint>& points, double suspect_dev, double budget_points, KnobRule rule);

/// The non-increasing least-squares fit of `y` (equal weights).
std::vector<double> isotonic_non_increasing(const std::vector<double>& y);

}  // namespace finepurify::purify
