// End to end through the CLI on SST-2: pre-trained vs from-scratch fine-tuning, eval/predict/tokenize, bad inputs.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fp_test.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// One epoch is 217 steps of 32 (~2.5 min per run on 2 cores); --steps keeps the test at ~3 minutes
// and still separates pre-trained from scratch clearly.
constexpr int kSteps = 120;

std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

struct Env {
  fs::path tmp, data, base, pre, scratch;
  double pre_acc = -1, scratch_acc = -1;
};

Env& env() {
  static Env e;
  return e;
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream is(s);
  for (std::string l; std::getline(is, l);)
    if (!l.empty()) out.push_back(l);
  return out;
}

/// Runs `finepurify finetune` and returns the dev accuracy recorded in the saved manifest.
double finetune(const fs::path& out, bool scratch) {
  auto& e = env();
  std::string cmd = fp_test::cli_path() + " -q finetune --model " + q(e.base) + " --train " + q(e.data / "train.tsv") +
                    " --dev " + q(e.data / "dev.tsv") + " --out " + q(out) +
                    " --epochs 1 --max-length 64 --batch-size 32 --lr 1e-4 --seed 1 --steps " + std::to_string(kSteps) +
                    (scratch ? " --from-scratch" : "");
  std::string output;
  const int rc = fp_test::run_command(cmd, &output);
  EXPECT_EQ(rc, 0) << cmd << "\n" << output;
  if (rc != 0) return -1;
  EXPECT_NE(output.find("dev accuracy:"), std::string::npos) << output;
  for (auto f : {"model.safetensors", "config.json", "vocab.txt", "manifest.json"})
    EXPECT_TRUE(fs::exists(out / f)) << out / f;
  auto man = json::parse(fp_test::read_file(out / "manifest.json"));
  EXPECT_EQ(man["result"]["steps"], kSteps);
  auto cfg = json::parse(fp_test::read_file(out / "config.json"));
  EXPECT_EQ(cfg["architectures"], json::array({"BertForSequenceClassification"}));
  EXPECT_EQ(cfg["id2label"].size(), 2u);
  return man["dev_eval"]["accuracy"].get<double>();
}

class FinetuneSst2 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fp_test::have_shared()) return;
    auto& e = env();
    e.tmp = fp_test::temp_dir("e2e-sst2");
    e.data = fp_test::shared_dir() / "data" / "sst2";
    e.base = fp_test::shared_dir() / "models" / "bert-L4-H256-uncased-mlm";
    e.pre = e.tmp / "pre";
    e.scratch = e.tmp / "scratch";
    e.pre_acc = finetune(e.pre, false);
    e.scratch_acc = finetune(e.scratch, true);
    std::printf("SST-2 dev accuracy after %d steps: pre-trained %.2f%%, from scratch %.2f%%\n", kSteps,
                100 * e.pre_acc, 100 * e.scratch_acc);
  }
  void SetUp() override {
    if (!fp_test::have_shared()) GTEST_SKIP() << "shared/ not available";
    ASSERT_GE(env().pre_acc, 0) << "fine-tuning failed";
  }
};

TEST_F(FinetuneSst2, PretrainedBeatsScratch) {
  auto& e = env();
  ASSERT_GE(e.scratch_acc, 0);
  EXPECT_GT(e.pre_acc, e.scratch_acc + 0.05);
  EXPECT_GT(e.pre_acc, 0.6);
}

TEST_F(FinetuneSst2, EvalReproducesManifest) {
  auto& e = env();
  auto out = e.tmp / "eval.json";
  std::string cmd = fp_test::cli_path() + " -q eval --model " + q(e.pre) + " --data " + q(e.data / "dev.tsv") +
                    " --max-length 64 --json > " + q(out);
  std::string log;
  ASSERT_EQ(fp_test::run_command(cmd, &log), 0) << cmd << "\n" << log;
  auto got = json::parse(fp_test::read_file(out));
  auto man = json::parse(fp_test::read_file(e.pre / "manifest.json"));
  EXPECT_EQ(got["n"], 872);
  EXPECT_EQ(got["accuracy"].get<double>(), man["dev_eval"]["accuracy"].get<double>());  // exact
  EXPECT_EQ(got["confusion"], man["dev_eval"]["confusion"]);
  EXPECT_EQ(got["accuracy"].get<double>(), e.pre_acc);
  std::printf("eval --json on the saved folder: accuracy %.6f (manifest %.6f)\n", got["accuracy"].get<double>(),
              man["dev_eval"]["accuracy"].get<double>());
}

TEST_F(FinetuneSst2, PredictAndTokenizeWriteOneLinePerExample) {
  auto& e = env();
  auto dev_lines = lines_of(fp_test::read_file(e.data / "dev.tsv"));
  const std::size_t n = dev_lines.size() - 1;  // header
  ASSERT_EQ(n, 872u);

  auto pred = e.tmp / "pred.jsonl";
  std::string log;
  std::string cmd = fp_test::cli_path() + " -q predict --model " + q(e.pre) + " --data " + q(e.data / "dev.tsv") +
                    " --max-length 64 --output " + q(pred);
  ASSERT_EQ(fp_test::run_command(cmd, &log), 0) << cmd << "\n" << log;
  auto pl = lines_of(fp_test::read_file(pred));
  ASSERT_EQ(pl.size(), n);
  int64_t correct = 0;
  for (std::size_t i = 0; i < n; ++i) {
    auto j = json::parse(pl[i]);
    ASSERT_EQ(j["logits"].size(), 2u) << pl[i];
    const int64_t p = j["pred"];
    const auto lg = j["logits"].get<std::vector<double>>();
    EXPECT_EQ(p, lg[1] > lg[0] ? 1 : 0) << pl[i];
    correct += p == std::stoll(dev_lines[i + 1].substr(0, dev_lines[i + 1].find('\t')));
  }
  EXPECT_EQ(static_cast<double>(correct) / n, e.pre_acc);  // predictions in dataset order

  auto tok = e.tmp / "tok.jsonl";
  cmd = fp_test::cli_path() + " -q tokenize --model " + q(e.pre) + " --data " + q(e.data / "dev.tsv") +
        " --max-length 64 --output " + q(tok);
  ASSERT_EQ(fp_test::run_command(cmd, &log), 0) << cmd << "\n" << log;
  auto tl = lines_of(fp_test::read_file(tok));
  ASSERT_EQ(tl.size(), n);
  for (auto& l : tl) {
    auto j = json::parse(l);
    auto ids = j["input_ids"].get<std::vector<int64_t>>();
    ASSERT_GE(ids.size(), 2u);
    EXPECT_LE(ids.size(), 64u);
    EXPECT_EQ(ids.front(), 101);  // [CLS] of bert-base-uncased
    EXPECT_EQ(ids.back(), 102);   // [SEP]
    EXPECT_EQ(j["token_type_ids"].size(), ids.size());
    EXPECT_EQ(j["attention_mask"].size(), ids.size());
  }
}

TEST_F(FinetuneSst2, BadInputsFailNamingTheFile) {
  auto& e = env();
  // a TSV with a malformed row (no text column)
  auto bad = e.tmp / "bad-rows.tsv";
  fp_test::write_file(bad, "label\ttext\n1\ta fine movie\n0\n1\tanother one\n");
  std::string out;
  int rc = fp_test::run_command(fp_test::cli_path() + " -q eval --model " + q(e.pre) + " --data " + q(bad), &out);
  EXPECT_NE(rc, 0) << out;
  EXPECT_NE(out.find("bad-rows.tsv"), std::string::npos) << out;

  // a label the model does not have
  auto bad_label = e.tmp / "bad-label.tsv";
  fp_test::write_file(bad_label, "label\ttext\n1\ta fine movie\n7\tanother one\n");
  rc = fp_test::run_command(fp_test::cli_path() + " -q eval --model " + q(e.pre) + " --data " + q(bad_label), &out);
  EXPECT_NE(rc, 0) << out;

  // a model folder that does not exist
  auto missing = e.tmp / "no-such-model";
  rc = fp_test::run_command(
      fp_test::cli_path() + " -q eval --model " + q(missing) + " --data " + q(e.data / "dev.tsv"), &out);
  EXPECT_NE(rc, 0) << out;
  EXPECT_NE(out.find("no-such-model"), std::string::npos) << out;

  // a folder without config.json
  auto empty = e.tmp / "empty-model";
  fs::create_directories(empty);
  rc = fp_test::run_command(
      fp_test::cli_path() + " -q predict --model " + q(empty) + " --data " + q(e.data / "dev.tsv") + " --output " +
          q(e.tmp / "p.jsonl"),
      &out);
  EXPECT_NE(rc, 0) << out;
  EXPECT_NE(out.find("empty-model"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(e.tmp / "p.jsonl"));

  // a base checkpoint (no trained head) is refused by eval
  rc = fp_test::run_command(
      fp_test::cli_path() + " -q eval --model " + q(e.base) + " --data " + q(e.data / "dev.tsv"), &out);
  EXPECT_NE(rc, 0) << out;
  EXPECT_NE(out.find("bert-L4-H256-uncased-mlm"), std::string::npos) << out;
  EXPECT_NE(out.find("missing from the checkpoint"), std::string::npos) << out;

  // finetune refuses an existing non-empty --out and an --out inside the input model, before training
  auto small = e.tmp / "small.tsv";
  fp_test::write_file(small, "label\ttext\n1\ta fine movie\n0\ta dull one\n");
  rc = fp_test::run_command(fp_test::cli_path() + " -q finetune --model " + q(e.pre) + " --train " + q(small) +
                                " --out " + q(e.scratch) + " --steps 1",
                            &out);
  EXPECT_NE(rc, 0) << out;
  EXPECT_NE(out.find("already exists"), std::string::npos) << out;
  rc = fp_test::run_command(fp_test::cli_path() + " -q finetune --model " + q(e.pre) + " --train " + q(small) +
                                " --out " + q(e.pre / "sub") + " --steps 1",
                            &out);
  EXPECT_NE(rc, 0) << out;
  EXPECT_FALSE(fs::exists(e.pre / "sub"));
}

}  // namespace
