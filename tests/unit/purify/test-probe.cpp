// Unit tests of the behavioural trigger check: a planted token flips a tiny model's predictions and
// an ordinary one does not; candidates come from both rankings without special tokens; purify's
// candidate list keeps only the tokens that passed the check.
#include <gtest/gtest.h>

#include "finepurify/error.hpp"
#include "finepurify/model/loader.hpp"
#include "finepurify/purify/probe.hpp"
#include "finepurify/purify/purify.hpp"
#include "finepurify/purify/unlearn.hpp"
#include "finepurify/train/trainer.hpp"
#include "fp_tiny.hpp"

using namespace finepurify;

namespace {
/// A tiny model that learned "token 4 present -> class 1, otherwise class 0", and clean examples.
struct Backdoored {
  model::SequenceClassifier m{nullptr};
  train::TokenizedSet clean;
};
Backdoored backdoored() {
  Backdoored b;
  b.m = model::make_random_classifier(fp_test::tiny_config(), 3);
  b.clean = fp_test::tiny_data(60, 21);
  for (auto& l : b.clean.labels) l = 0;
  auto poisoned = purify::insert_tokens(b.clean, {4}, 1, 0, 5);
  for (auto& l : poisoned.labels) l = 1;
  auto train = b.clean;
  train.encodings.insert(train.encodings.end(), poisoned.encodings.begin(), poisoned.encodings.end());
  train.labels.insert(train.labels.end(), poisoned.labels.begin(), poisoned.labels.end());
  train::TrainOptions to;
  to.epochs = 15;
  to.lr = 3e-3;
  to.batch_size = 8;
  to.keep_best = false;
  to.seed = 1;
  train::fine_tune(*b.m, train, nullptr, to, torch::kCPU);
  return b;
}

struct SpecialTokenizer : fp_test::TinyTokenizer {
  std::vector<int64_t> special_ids() const override { return {0, 2, 3}; }  // [PAD] [CLS] [SEP]
};
}  // namespace

TEST(TokenProbe, APlantedTokenFlipsPredictionsAnOrdinaryOneDoesNot) {
  auto b = backdoored();
  auto probes = purify::probe_tokens(*b.m, b.clean, {7, 4, 30}, 40, 9, torch::kCPU);
  ASSERT_EQ(probes.size(), 3u);
  EXPECT_EQ(probes[1].id, 4);  // results in the order asked
  EXPECT_EQ(probes[1].tested, 40);
  EXPECT_GE(probes[1].flip_rate, 0.9);
  EXPECT_EQ(probes[1].flip_to, 1);
  EXPECT_LE(probes[0].flip_rate, 0.25);
  EXPECT_LE(probes[2].flip_rate, 0.25);
  // Deterministic for a seed; max_examples 0 = all examples.
  auto again = purify::probe_tokens(*b.m, b.clean, {7, 4, 30}, 40, 9, torch::kCPU);
  for (int i = 0; i < 3; ++i) EXPECT_DOUBLE_EQ(again[i].flip_rate, probes[i].flip_rate);
  EXPECT_EQ(purify::probe_tokens(*b.m, b.clean, {4}, 0, 9, torch::kCPU)[0].tested, 60);
  EXPECT_THROW(purify::probe_tokens(*b.m, b.clean, {40}, 10, 9, torch::kCPU), Error);
  EXPECT_THROW(purify::probe_tokens(*b.m, train::TokenizedSet{}, {4}, 10, 9, torch::kCPU), Error);
}

TEST(TokenProbe, CandidatesFromBothRankingsWithoutSpecialTokens) {
  SpecialTokenizer tok;
  auto mass = torch::zeros({40}, torch::kFloat64), drift = torch::zeros({40}, torch::kFloat64);
  // mass ranking: 2 ([CLS]) > 11 > 12 > 13; drift ranking: 12 > 3 ([SEP]) > 20 > 21
  mass[2] = 9; mass[11] = 8; mass[12] = 7; mass[13] = 6;
  drift[12] = 5; drift[3] = 4; drift[20] = 3; drift[21] = 2;
  EXPECT_EQ(purify::probe_candidates(mass, drift, 2, tok), (std::vector<int64_t>{11, 12, 20}));
  EXPECT_EQ(purify::probe_candidates(mass, drift, 3, tok), (std::vector<int64_t>{11, 12, 13, 20, 21}));
}

TEST(TokenProbe, PurifyCandidatesAreOnlyTheTokensThatFlip) {
  purify::DiagnosisSummary s;
  s.top_tokens = {{1, 9, "a", 1, 0.5, 1, {}}, {2, 3, "b", 1, 0.5, 1, {}}};
  purify::ProbeReport p;
  p.min_flip = 0.5;
  for (auto [id, flip] : std::vector<std::pair<int64_t, double>>{{17, 0.98}, {5, 0.6}, {9, 0.2}})
    p.tokens.push_back({0, {id, flip, 1, 10}, "t", 0, 0});
  s.token_probe = p;
  EXPECT_EQ(purify::candidate_tokens(s, 10), (std::vector<int64_t>{17, 5}));
  EXPECT_EQ(purify::candidate_tokens(s, 1), (std::vector<int64_t>{17}));
  s.token_probe->min_flip = 0.99;
  EXPECT_TRUE(purify::candidate_tokens(s, 10).empty());  // none passed: nothing, not the unchecked ranking
}

TEST(TokenProbe, DiagnoseReportsTheCheckedTokensRankedByFlips) {
  auto pair = fp_test::make_tiny_pair("probe");
  fp_test::TinyTokenizer tok;
  model::LoadOptions lo;
  auto lm = model::load_classifier(pair.ft_dir, lo);
  purify::DiagnoseOptions o;
  o.probe_tokens = 5;
  o.probe_examples = 12;
  auto d = purify::diagnose(*lm.model, pair.pre_dir, fp_test::tiny_data(20, 4), tok, o, torch::kCPU);
  ASSERT_TRUE(d.summary.token_probe.has_value());
  const auto& p = *d.summary.token_probe;
  EXPECT_EQ(p.examples, 12);
  EXPECT_GE(p.candidates, 5);
  EXPECT_LE(p.candidates, 10);
  ASSERT_EQ(static_cast<int64_t>(p.tokens.size()), p.candidates);
  for (std::size_t i = 1; i < p.tokens.size(); ++i) EXPECT_GE(p.tokens[i - 1].probe.flip_rate, p.tokens[i].probe.flip_rate);
  o.probe_tokens = 0;
  lm = model::load_classifier(pair.ft_dir, lo);
  EXPECT_FALSE(purify::diagnose(*lm.model, pair.pre_dir, fp_test::tiny_data(20, 4), tok, o, torch::kCPU)
                   .summary.token_probe.has_value());
}
