// `finepurify demo` on a tiny generated world (fp_test::write_tiny_world): every output is written
// and agrees with the reports it summarises, the equivalent commands it prints reproduce its attack
// and purify bit for bit, and bad input is refused by name before any work.
#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "fp_tiny.hpp"

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

int run(const std::string& args, std::string* out = nullptr) {
  std::string o;
  const int rc = fp_test::run_command(fp_test::cli_path() + " " + args, &o);
  if (out) *out = o;
  return rc;
}

json read_json(const fs::path& p) { return json::parse(fp_test::read_file(p)); }

/// A printed command with our binary in place of "finepurify" and its --out replaced by `out`.
std::string rerun_at(const std::string& command, const fs::path& out) {
  const std::string bin = "finepurify ";
  EXPECT_EQ(command.rfind(bin, 0), 0u) << command;
  const auto at = command.rfind(" --out ");
  EXPECT_NE(at, std::string::npos) << command;
  return "-q " + command.substr(bin.size(), at - bin.size()) + " --out " + out.string();
}

const std::string kSmall = " --attacker-rows 60 --clean-rows 24 --clean-dev-rows 10 --test-rows 30 --attack-epochs 1 --seed 3";

}  // namespace

TEST(CliDemo, WritesEveryOutputAndItsCommandsReproduceIt) {
  const auto dir = fp_test::temp_dir("cli-demo"), data = dir / "world";
  const auto pre = fp_test::write_tiny_world(data);
  const auto out = dir / "demo";
  std::string o;
  ASSERT_EQ(run("demo --model " + pre.string() + " --data " + data.string() + " --out " + out.string() + kSmall, &o), 0) << o;
  // Said before it starts: the estimate; then each stage, then the table.
  const auto est = o.find("demo: " + pre.string()), s1 = o.find("demo [1/3] attack"), s3 = o.find("demo [3/3] purify"),
             table = o.find("| suspect (BadWord 'cf') |");
  ASSERT_NE(est, std::string::npos) << o;
  EXPECT_NE(o.find("about "), std::string::npos);
  ASSERT_NE(s1, std::string::npos) << o;
  ASSERT_NE(s3, std::string::npos) << o;
  ASSERT_NE(table, std::string::npos) << o;
  EXPECT_LT(est, s1);
  EXPECT_LT(s1, s3);
  EXPECT_LT(s3, table);

  for (const char* f : {"demo.json", "demo.md", "demo.html", "scan.md", "scan.json", "scan.html", "suspect/model.safetensors",
                        "suspect/attack.json", "suspect/triggered_test.tsv", "purified/model.safetensors",
                        "purified/purify_report.json", "purified/purify_report.html",
                        "data/demo/clean-seed3.tsv", "data/demo/clean_dev.tsv"})
    EXPECT_TRUE(fs::exists(out / f)) << f;
  const auto demo = read_json(out / "demo.json");
  const auto rep = read_json(out / "purified/purify_report.json");
  // demo.json summarises the purify report (the same numbers, not recomputed elsewhere).
  EXPECT_EQ(demo["chosen_rho"], rep["chosen_rho"]);
  EXPECT_EQ(demo["purified"]["asr"], rep["purified"]["asr"]);
  EXPECT_EQ(demo["suspect"]["asr"], rep["suspect"]["asr"]);
  EXPECT_EQ(demo["purified"]["flip_rate"], rep["purified"]["flip_rate"]);
  for (const char* m : {"suspect", "purified"})
    for (const char* k : {"clean_accuracy", "asr", "flip_rate"}) {
      if (demo[m][k].is_null() && std::string(k) == "flip_rate") continue;  // no clean negative predicted right
      EXPECT_GE(demo[m][k].get<double>(), 0.0) << m << " " << k;
      EXPECT_LE(demo[m][k].get<double>(), 1.0) << m << " " << k;
    }
  EXPECT_EQ(demo["trigger"], "cf");
  ASSERT_EQ(demo["stage_seconds"].size(), 3u);
  EXPECT_EQ(demo["manifest"]["options"]["seed"], 3);
  EXPECT_EQ(demo["manifest"]["options"]["clean_rows"], 24);
  ASSERT_EQ(demo["commands"].size(), 3u);
  EXPECT_NE(fp_test::read_file(out / "demo.md").find("| purified (rho "), std::string::npos);

  // The printed attack and purify commands are the demo's runs: same weights, same report numbers.
  const auto attack2 = dir / "attack2", purified2 = dir / "purified2";
  ASSERT_EQ(run(rerun_at(demo["commands"][0], attack2), &o), 0) << o;
  EXPECT_EQ(fp_test::read_file(attack2 / "model.safetensors"), fp_test::read_file(out / "suspect/model.safetensors"));
  ASSERT_EQ(run(rerun_at(demo["commands"][2], purified2), &o), 0) << o;
  const auto rep2 = read_json(purified2 / "purify_report.json");
  EXPECT_EQ(rep2["chosen_rho"], rep["chosen_rho"]);
  EXPECT_EQ(rep2["purified"], rep["purified"]);
  EXPECT_EQ(rep2["evaluated"].size(), rep["evaluated"].size());
  EXPECT_EQ(fp_test::read_file(purified2 / "model.safetensors"), fp_test::read_file(out / "purified/model.safetensors"));
  // The scan command runs as printed.
  ASSERT_EQ(run("-q " + std::string(demo["commands"][1]).substr(std::string("finepurify ").size()), &o), 0) << o;
}

TEST(CliDemo, RefusesBadInputByNameBeforeAnyWork) {
  const auto dir = fp_test::temp_dir("cli-demo-bad"), data = dir / "world";
  const auto pre = fp_test::write_tiny_world(data);
  std::string o;
  // A data folder without test.tsv.
  fs::create_directories(dir / "nodata");
  fp_test::write_file(dir / "nodata/train.tsv", fp_test::read_file(data / "train.tsv"));
  fp_test::write_file(dir / "nodata/dev.tsv", fp_test::read_file(data / "dev.tsv"));
  EXPECT_EQ(run("demo --model " + pre.string() + " --data " + (dir / "nodata").string() + " --out " + (dir / "o1").string() + kSmall, &o), 3) << o;
  EXPECT_NE(o.find((dir / "nodata/test.tsv").string()), std::string::npos) << o;
  EXPECT_FALSE(fs::exists(dir / "o1"));
  // The output may not be an input.
  EXPECT_NE(run("demo --model " + pre.string() + " --data " + data.string() + " --out " + pre.string() + kSmall, &o), 0) << o;
  EXPECT_NE(o.find("error ["), std::string::npos) << o;
  EXPECT_TRUE(fs::exists(pre / "model.safetensors"));
  // More attacker + clean rows than the training file holds (90).
  EXPECT_NE(run("demo --model " + pre.string() + " --data " + data.string() + " --out " + (dir / "o2").string() +
                " --attacker-rows 80 --clean-rows 24", &o), 0) << o;
  EXPECT_NE(o.find("train.tsv"), std::string::npos) << o;
  EXPECT_NE(o.find("--clean-rows 24"), std::string::npos) << o;
  EXPECT_FALSE(fs::exists(dir / "o2"));
  // An existing folder that is not a demo's output is never written into.
  fs::create_directories(dir / "mine");
  fp_test::write_file(dir / "mine/notes.txt", "keep");
  EXPECT_EQ(run("demo --model " + pre.string() + " --data " + data.string() + " --out " + (dir / "mine").string() + kSmall, &o), 3) << o;
  EXPECT_NE(o.find("not a demo's output folder"), std::string::npos) << o;
  EXPECT_FALSE(fs::exists(dir / "mine/suspect"));
  // A trigger of two words.
  EXPECT_NE(run("demo --model " + pre.string() + " --data " + data.string() + " --out " + (dir / "o3").string() +
                " --trigger 'two words'", &o), 0) << o;
  EXPECT_NE(o.find("--trigger"), std::string::npos) << o;
}
