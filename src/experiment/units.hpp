// Unit bookkeeping of the experiment runner (private to src/experiment): results.jsonl with
// resume (torn lines and interrupted units dropped), unit ids that fingerprint their settings
// (rows from earlier settings are replaced), and the ETA model of the progress lines.
#pragma once
#include <chrono>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace finepurify::experiment {

/// "dataset/seedN/attack/defense": a unit's name, the same under any settings.
std::string unit_key(const std::string& dataset, uint64_t seed, const std::string& attack, const std::string& defense);
/// name + "@" + a fingerprint of every setting the unit's rows depend on.
std::string unit_id(const std::string& name, const nlohmann::json& settings);
/// Hash of a model folder's config and weights (cache keys).
std::string hash_of_folder(const std::string& folder);

class ResultStore {
 public:
  /// Reads `path` (if any): unreadable lines are dropped and, with `resume`, the rows of units not all
  /// of whose rows made it to disk (those units rerun); the file is rewritten without them.
  ResultStore(std::string path, bool resume);
  const std::vector<nlohmann::json>& rows() const { return rows_; }
  bool done(const std::string& id) const { return done_.count(id) > 0; }
  /// Whether the unit has rows under any settings (for the ETA only).
  bool has_rows(const std::string& name) const;
  /// Appends a unit's rows (each gets "unit" and "unit_size"), replacing rows of the same unit name
  /// made under other settings.
  void add(const std::string& id, std::vector<nlohmann::json> rows);

 private:
  void rewrite(std::vector<nlohmann::json> rows);
  std::string path_;
  std::vector<nlohmann::json> rows_;
  std::set<std::string> done_, done_names_;
};

/// Cost model for the ETA: one attack ~ 3 units, one defense point ~ 1, fine-purifying's Fisher ~ 1.
struct Eta {
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  double done_cost = 0, total_cost = 0;
  static constexpr double kModel = 3;
  static double defense_cost(const std::string& method, std::size_t grid_size);
  double elapsed() const;
  /// "[experiment 12% | 3m elapsed | ETA 20m] what"
  std::string line(const std::string& what) const;
};

}  // namespace finepurify::experiment
