// End to end on real data: plant a word-trigger backdoor ("cf", 10% of SST-2 training examples
// relabelled positive) in the shared small BERT with `finepurify attack`, then check that `scan`
// ranks the trigger among its top suspicious tokens, that `purify --max-acc-drop 3` keeps the
// clean accuracy budget and does not raise the attack success rate, and that the same with
// `--neutralize-tokens 10` removes the trigger's effect: ASR falls to within 10 points of the
// purified model's own error on the clean negatives, test accuracy within the knob rule's budget of
// the suspect's (plus two standard errors of the dev-to-test comparison).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "fp_test.hpp"

using nlohmann::json;
namespace fs = std::filesystem;

namespace {
std::vector<std::string> lines_of(const fs::path& p) {
  std::ifstream f(p);
  std::vector<std::string> out;
  std::string l;
  while (std::getline(f, l)) out.push_back(l);
  return out;
}
int run(const std::string& args, std::string* out = nullptr) {
  std::string o;
  int rc = fp_test::run_command(fp_test::cli_path() + " " + args, &o);
  if (out) *out = o;
  if (rc != 0) std::cerr << o;
  return rc;
}
json read_json(const fs::path& p) { return json::parse(fp_test::read_file(p)); }
}  // namespace

TEST(BackdoorSst2, ScanFindsTriggerAndPurifyKeepsBudget) {
  if (!fp_test::have_shared()) GTEST_SKIP() << "no ../shared";
  const auto shared = fp_test::shared_dir();
  const std::string model = (shared / "models/bert-L4-H256-uncased-mlm").string();
  const auto data = shared / "data/sst2";
  auto dir = fp_test::temp_dir("backdoor");
  const auto attack = dir / "attack";
  ASSERT_EQ(run("-q attack --method badword --triggers cf --pretrained " + model + " --train " + (data / "train.tsv").string() +
                " --dev " + (data / "dev.tsv").string() + " --test " + (data / "test.tsv").string() +
                " --target-label 1 --poison-rate 0.1 --epochs 2 --lr 1e-4 --max-length 64 --seed 1 --out " +
                attack.string()), 0);
  auto aj = read_json(attack / "attack.json");
  std::cout << "attack: " << aj.dump() << "\n";

  // The defender's clean set: 1,000 training rows the attacker did not poison (identical in both files).
  auto orig = lines_of(data / "train.tsv"), poisoned = lines_of(attack / "poisoned_train.tsv");
  ASSERT_EQ(orig.size(), poisoned.size());
  std::ofstream clean(dir / "clean.tsv");
  clean << orig[0] << "\n";
  int n = 0;
  for (std::size_t i = 1; i < orig.size() && n < 1000; ++i)
    if (orig[i] == poisoned[i]) { clean << orig[i] << "\n"; ++n; }
  clean.close();
  ASSERT_EQ(n, 1000);

  std::string out;
  ASSERT_EQ(run("-q scan --pretrained " + model + " --suspect " + attack.string() + " --clean " +
                (dir / "clean.tsv").string() + " --max-length 64 --json", &out), 0);
  auto scan = json::parse(out.substr(out.find('{')));
  int rank = 0;
  for (auto& t : scan["top_tokens"])
    if (t["token"] == "cf" && rank == 0) rank = t["rank"].get<int>();
  std::cout << "scan: trigger 'cf' rank " << rank << "\n";
  EXPECT_GE(rank, 1);
  EXPECT_LE(rank, 10);
  // The behavioural check (on by default in scan): inserting `cf` flips the suspect's predictions.
  ASSERT_TRUE(scan.contains("token_probe"));
  const auto& probed = scan["token_probe"]["tokens"];
  ASSERT_FALSE(probed.empty());
  std::cout << "scan probe: " << probed[0].dump() << " next " << (probed.size() > 1 ? probed[1].dump() : "-") << "\n";
  EXPECT_EQ(probed[0]["token"], "cf");
  EXPECT_GE(probed[0]["flip_rate"].get<double>(), 0.8);
  EXPECT_EQ(probed[0]["flip_to"], 1);

  const auto purified = dir / "purified";
  ASSERT_EQ(run("-q purify --pretrained " + model + " --suspect " + attack.string() + " --clean " +
                (dir / "clean.tsv").string() + " --max-acc-drop 3 --max-length 64 --attack-test " +
                (attack / "triggered_test.tsv").string() + " --target-label 1 --out " + purified.string()), 0);
  auto rep = read_json(purified / "purify_report.json");
  std::cout << "purify: rho " << rep["chosen_rho"] << " suspect " << rep["suspect"].dump() << " purified "
            << rep["purified"].dump() << "\n";
  for (auto& p : rep["evaluated"]) std::cout << "  " << p.dump() << "\n";
  // The default knob rule (tolerant): the budget line is the suspect's clean-dev accuracy less 3
  // points less half a standard error over the clean-dev rows, and the kept point is not below it.
  const auto line_of = [](const json& r) {
    const double p = r["suspect"]["clean_dev_accuracy"].get<double>();
    return p - 0.03 - 0.5 * std::sqrt(p * (1 - p) / r["clean_dev_examples"].get<double>());
  };
  EXPECT_EQ(rep["knob_rule"], "tolerant");
  EXPECT_NEAR(rep["budget_line_accuracy"].get<double>(), line_of(rep), 1e-9);
  EXPECT_GE(rep["purified"]["clean_dev_accuracy"].get<double>(), line_of(rep) - 1e-9);
  // Only a no-harm check, and it can only be that on this toy model: the default (ε = mean F, ρ per
  // tensor; issue 13) finds almost no ρ within the 3-point budget here (measured 2026-12-03: suspect
  // clean-dev 89.5% on 200 rows, line 85.4%; ρ 0.005 86.0%, ρ 0.01 85.0%, ρ 0.1 74.0%), so it keeps
  // ρ 0.005 and the ASR stays at 100% (the old default, ε = 1e-8 · mean F, global, also removed
  // nothing: 912/912; with the `largest` rule it kept ρ 0).
  // The 4-layer model (74.7% test accuracy) has no accuracy to spare; the real model does
  // (docs/results/real-small). The neutralise run below is the one that removes the trigger here.
  EXPECT_LE(rep["purified"]["asr"].get<double>(), rep["suspect"]["asr"].get<double>() + 0.005);
  // The purified folder is a complete HF folder that finepurify loads back with the same test ACC/ASR.
  ASSERT_EQ(run("-q eval --json --model " + purified.string() + " --data " + (attack / "clean_test.tsv").string() +
                " --attack-test " + (attack / "triggered_test.tsv").string() + " --target-label 1 --max-length 64", &out), 0);
  auto ev = json::parse(out.substr(out.find('{')));
  std::cout << "purified test: accuracy " << ev["accuracy"] << " ASR " << ev["asr"] << "\n";
  EXPECT_TRUE(fs::exists(purified / "purify_report.md"));
  EXPECT_TRUE(fs::exists(purified / "vocab.txt"));

  // The extension: neutralise the embedding rows of the suspicious tokens that flip predictions
  // (behavioural check over the 50 top rows by indicator mass and by drift), then the clean fine-tuning.
  ASSERT_EQ(run("-q eval --json --model " + attack.string() + " --data " + (attack / "clean_test.tsv").string() +
                " --max-length 64", &out), 0);
  const double suspect_test = json::parse(out.substr(out.find('{')))["accuracy"].get<double>();
  const auto neutral = dir / "neutralized";
  ASSERT_EQ(run("-q purify --pretrained " + model + " --suspect " + attack.string() + " --clean " +
                (dir / "clean.tsv").string() + " --max-acc-drop 3 --max-length 64 --neutralize-tokens 10 --probe-tokens 50 --attack-test " +
                (attack / "triggered_test.tsv").string() + " --target-label 1 --out " + neutral.string()), 0);
  auto nrep = read_json(neutral / "purify_report.json");
  std::cout << "neutralized: rho " << nrep["chosen_rho"] << " tokens " << nrep["neutralized"]["tokens"].dump()
            << " purified " << nrep["purified"].dump() << "\n";
  ASSERT_TRUE(nrep["neutralized"].is_object());
  ASSERT_FALSE(nrep["neutralized"]["tokens"].empty());
  EXPECT_EQ(nrep["neutralized"]["tokens"][0], "cf");
  EXPECT_LE(nrep["neutralized"]["tokens"].size(), 3u);  // only tokens that flip predictions, not the whole top 10
  EXPECT_GE(nrep["purified"]["clean_dev_accuracy"].get<double>(), line_of(nrep) - 1e-9);
  // Test accuracy, ASR, and the error on the clean negatives (the triggered set's sources).
  {
    auto rows = lines_of(attack / "clean_test.tsv");
    std::ofstream neg(dir / "clean_neg.tsv");
    neg << rows[0] << "\n";
    for (std::size_t i = 1; i < rows.size(); ++i)
      if (rows[i].rfind("0\t", 0) == 0) neg << rows[i] << "\n";
  }
  ASSERT_EQ(run("-q eval --json --model " + neutral.string() + " --data " + (attack / "clean_test.tsv").string() +
                " --attack-test " + (attack / "triggered_test.tsv").string() + " --target-label 1 --max-length 64", &out), 0);
  auto nev = json::parse(out.substr(out.find('{')));
  ASSERT_EQ(run("-q eval --json --model " + neutral.string() + " --data " + (dir / "clean_neg.tsv").string() +
                " --max-length 64", &out), 0);
  const double neg_error = 1.0 - json::parse(out.substr(out.find('{')))["accuracy"].get<double>();
  std::cout << "neutralized test: accuracy " << nev["accuracy"] << " (suspect " << suspect_test << ") ASR " << nev["asr"]
            << " error on clean negatives " << neg_error << "\n";
  // The knob rule lets the clean-dev accuracy fall to its line (3 points and half a standard error of
  // the suspect's dev accuracy below it). The test rows measure the same fall with their own error,
  // and the dev rows' error enters through the choice of ρ: the test accuracy may fall as far plus two
  // standard errors of that comparison (binomial, the suspect's accuracy on the 200 dev rows and on the
  // 1,821 test rows; one is about 2.6 points here), no further. A bound on one dropout draw broke twice on a new
  // dropout stream alone (2026-12-07: test 70.6% against 70.8%, dev drop 3.5 points within its 4.2).
  const double dev_p = nrep["suspect"]["clean_dev_accuracy"].get<double>();
  const double allowed_drop = dev_p - line_of(nrep);
  const double n_test = nev["n"].get<double>();  // the test rows eval scored
  const double se = std::sqrt(dev_p * (1 - dev_p) / nrep["clean_dev_examples"].get<double>() +
                              suspect_test * (1 - suspect_test) / n_test);
  std::cout << "neutralized: test drop " << suspect_test - nev["accuracy"].get<double>() << " allowed " << allowed_drop
            << " + 2 x " << se << "\n";
  EXPECT_GE(nev["accuracy"].get<double>(), suspect_test - allowed_drop - 2 * se);
  EXPECT_LE(nev["asr"].get<double>(), neg_error + 0.10);
  EXPECT_LE(nev["asr"].get<double>(), 0.5);
}
