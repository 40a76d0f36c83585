// Unit bookkeeping of the experiment runner: results file, unit ids, ETA (see units.hpp).
#include "units.hpp"

#include <filesystem>
#include <fstream>
#include <map>

#include <fmt/format.h>

#include "finepurify/error.hpp"
#include "finepurify/io/checkpoint.hpp"
#include "finepurify/util/manifest.hpp"
#include "finepurify/util/runtime.hpp"

namespace finepurify::experiment {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string name_of(const std::string& unit) { return unit.substr(0, unit.find('@')); }

std::vector<json> read_rows(const std::string& path, bool* torn) {
  std::vector<json> rows;
  std::ifstream f(path);
  std::string line;
  int64_t n = 0;
  *torn = false;
  while (std::getline(f, line)) {
    ++n;
    if (line.empty()) continue;
    try {
      rows.push_back(json::parse(line));
    } catch (const json::exception&) {
      // A run killed mid-write leaves a partial last line: drop it (its unit reruns).
      util::log(fmt::format("{}:{}: unreadable result line dropped (interrupted run?)", path, n));
      *torn = true;
    }
  }
  return rows;
}

std::string fmt_seconds(double s) {
  if (s < 90) return fmt::format("{:.0f}s", s);
  if (s < 5400) return fmt::format("{:.0f}m", s / 60);
  return fmt::format("{:.1f}h", s / 3600);
}

}  // namespace

std::string unit_key(const std::string& ds, uint64_t seed, const std::string& attack, const std::string& defense) {
  return fmt::format("{}/seed{}/{}/{}", ds, seed, attack, defense);
}

std::string unit_id(const std::string& name, const json& settings) {
  return name + "@" + util::sha256_string(settings.dump()).substr(0, 12);
}

std::string hash_of_folder(const std::string& folder) {
  std::string h;
  for (auto name : {"config.json", "model.safetensors", "model.safetensors.index.json"}) {
    auto p = fs::path(folder) / name;
    if (fs::exists(p)) h += util::sha256_file(p.string());
  }
  return util::sha256_string(h);
}

ResultStore::ResultStore(std::string path, bool resume) : path_(std::move(path)) {
  bool torn = false;
  auto rows = read_rows(path_, &torn);
  if (torn) rewrite(rows);  // later appends start on a fresh line
  rows_ = rows;
  if (!resume) return;
  // A unit is done when all its rows made it to disk; an interrupted unit's partial rows are dropped.
  std::map<std::string, int64_t> seen;
  for (auto& r : rows) seen[r.value("unit", std::string())] += 1;
  std::vector<json> complete;
  for (auto& r : rows) {
    const auto u = r.value("unit", std::string());
    const int64_t size = r.contains("unit_size") ? r["unit_size"].get<int64_t>() : seen[u];
    if (seen[u] == size) {
      done_.insert(u);
      done_names_.insert(name_of(u));
      complete.push_back(r);
    }
  }
  if (complete.size() != rows.size()) {
    util::log(fmt::format("{}: {} rows of interrupted units dropped; those units rerun", path_, rows.size() - complete.size()));
    rewrite(complete);
  }
  rows_ = std::move(complete);
}

bool ResultStore::has_rows(const std::string& name) const { return done_names_.count(name) > 0; }

void ResultStore::rewrite(std::vector<json> rows) {
  std::string good;
  for (auto& r : rows) good += r.dump() + "\n";
  io::write_text_atomic(path_, good);
  rows_ = std::move(rows);
}

void ResultStore::add(const std::string& id, std::vector<json> rows) {
  for (auto& r : rows) {
    r["unit"] = id;
    r["unit_size"] = rows.size();
  }
  const std::string name = name_of(id);
  std::vector<json> kept;
  for (auto& r : rows_) {
    const auto u = r.value("unit", std::string());
    if (name_of(u) != name || u == id) kept.push_back(r);
  }
  if (kept.size() != rows_.size()) {
    util::log(fmt::format("{}: {} rows of {} came from earlier settings; replaced", path_, rows_.size() - kept.size(), name));
    rewrite(kept);
  }
  std::ofstream f(path_, std::ios::app);
  if (!f) throw Error(ErrorKind::Io, "cannot append to " + path_);
  for (auto& r : rows) f << r.dump() << "\n";
  f.flush();
  rows_.insert(rows_.end(), rows.begin(), rows.end());
  done_.insert(id);
  done_names_.insert(name);
}

double Eta::defense_cost(const std::string& method, std::size_t grid_size) {
  return std::max<double>(1, grid_size) + (method == "fine-purifying" ? 1 : 0);
}

double Eta::elapsed() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); }

std::string Eta::line(const std::string& what) const {
  const double e = elapsed();
  const std::string eta = done_cost > 0 ? fmt_seconds(e / done_cost * (total_cost - done_cost)) : "?";
  return fmt::format("[experiment {:.0f}% | {} elapsed | ETA {}] {}", total_cost > 0 ? 100 * done_cost / total_cost : 0,
                     fmt_seconds(e), eta, what);
}

}  // namespace finepurify::experiment
