// Unit tests of trigger-candidate unlearning: the inserted copies (positions, segments, lengths,
// labels, determinism), candidate ranking from a diagnosis, and purify training on the copies.
#include <gtest/gtest.h>

#include <set>

#include "finepurify/error.hpp"
#include "finepurify/model/loader.hpp"
#include "finepurify/purify/purify.hpp"
#include "finepurify/purify/unlearn.hpp"
#include "fp_tiny.hpp"

using namespace finepurify;

TEST(Unlearn, CopiesInsertOnlyCandidatesInsideTheText) {
  auto data = fp_test::tiny_data(50, 11);
  for (auto& e : data.encodings) e.input_ids.back() = 3;  // a stand-in final special token
  const std::vector<int64_t> cand = {1, 4};                // ids tiny_data never produces
  auto aug = purify::insert_tokens(data, cand, 3, 0, 7);
  ASSERT_EQ(aug.size(), data.size());
  EXPECT_EQ(aug.labels, data.labels);
  std::set<int> inserted_counts;
  for (int64_t i = 0; i < data.size(); ++i) {
    const auto& o = data.encodings[i];
    const auto& c = aug.encodings[i];
    const int added = static_cast<int>(c.input_ids.size() - o.input_ids.size());
    inserted_counts.insert(added);
    EXPECT_GE(added, 1);
    EXPECT_LE(added, 3);
    EXPECT_EQ(c.input_ids.front(), o.input_ids.front());  // first and last tokens stay in place
    EXPECT_EQ(c.input_ids.back(), o.input_ids.back());
    EXPECT_EQ(c.token_type_ids.size(), c.input_ids.size());
    EXPECT_EQ(c.attention_mask, std::vector<int64_t>(c.input_ids.size(), 1));
    // Removing the candidate ids gives back the original sequence; segments stay non-decreasing.
    std::vector<int64_t> rest, rest_types;
    for (std::size_t t = 0; t < c.input_ids.size(); ++t)
      if (c.input_ids[t] != 1 && c.input_ids[t] != 4) { rest.push_back(c.input_ids[t]); rest_types.push_back(c.token_type_ids[t]); }
    EXPECT_EQ(rest, o.input_ids);
    EXPECT_EQ(rest_types, o.token_type_ids);
    for (std::size_t t = 1; t < c.token_type_ids.size(); ++t) EXPECT_GE(c.token_type_ids[t], c.token_type_ids[t - 1]);
  }
  EXPECT_EQ(inserted_counts, (std::set<int>{1, 2, 3}));  // 50 draws of U{1..3} hit every count
  // Deterministic for a seed, different for another.
  auto again = purify::insert_tokens(data, cand, 3, 0, 7);
  auto other = purify::insert_tokens(data, cand, 3, 0, 8);
  bool same = true, differs = false;
  for (int64_t i = 0; i < data.size(); ++i) {
    same = same && again.encodings[i].input_ids == aug.encodings[i].input_ids;
    differs = differs || other.encodings[i].input_ids != aug.encodings[i].input_ids;
  }
  EXPECT_TRUE(same);
  EXPECT_TRUE(differs);
}

TEST(Unlearn, MaxLengthIsNeverExceeded) {
  auto data = fp_test::tiny_data(40, 12);  // lengths 3..8
  auto aug = purify::insert_tokens(data, {1}, 3, 5, 3);
  int replaced = 0;
  for (int64_t i = 0; i < data.size(); ++i) {
    const auto& o = data.encodings[i];
    const auto& c = aug.encodings[i];
    EXPECT_LE(c.input_ids.size(), std::max<std::size_t>(5, o.input_ids.size()));
    EXPECT_NE(std::find(c.input_ids.begin(), c.input_ids.end(), 1), c.input_ids.end());
    if (o.input_ids.size() >= 5) {
      EXPECT_EQ(c.input_ids.size(), o.input_ids.size());  // full rows: a token replaced, not inserted
      EXPECT_EQ(c.input_ids.front(), o.input_ids.front());
      EXPECT_EQ(c.input_ids.back(), o.input_ids.back());
      ++replaced;
    }
  }
  EXPECT_GT(replaced, 0);
}

TEST(Unlearn, RejectsEmptyCandidatesAndBadCounts) {
  auto data = fp_test::tiny_data(4, 1);
  EXPECT_THROW(purify::insert_tokens(data, {}, 3, 0, 1), Error);
  EXPECT_THROW(purify::insert_tokens(data, {1}, 0, 0, 1), Error);
  auto both = purify::with_unlearning_copies(data, {1}, 1, 0, 1);
  ASSERT_EQ(both.size(), 8);
  for (int64_t i = 0; i < 4; ++i) {
    EXPECT_EQ(both.encodings[i].input_ids, data.encodings[i].input_ids);
    EXPECT_EQ(both.labels[4 + i], data.labels[i]);
    EXPECT_EQ(both.encodings[4 + i].input_ids.size(), data.encodings[i].input_ids.size() + 1);
  }
}

TEST(Unlearn, CandidatesFollowTheScanRanking) {
  purify::DiagnosisSummary s;
  for (int64_t id : {9, 3, 17}) s.top_tokens.push_back({static_cast<int64_t>(s.top_tokens.size() + 1), id, "t", 1, 0.1, 1, {}});
  EXPECT_EQ(purify::candidate_tokens(s, 2), (std::vector<int64_t>{9, 3}));
  EXPECT_EQ(purify::candidate_tokens(s, 10), (std::vector<int64_t>{9, 3, 17}));
  EXPECT_TRUE(purify::candidate_tokens(purify::DiagnosisSummary{}, 3).empty());
}

TEST(Unlearn, PurifyTrainsOnTheCopiesAndReportsTheCandidates) {
  auto pair = fp_test::make_tiny_pair("unlearn");
  fp_test::TinyTokenizer tok;
  auto data = fp_test::tiny_data(24, 5);
  auto dev = fp_test::tiny_data(8, 6);
  purify::PurifyOptions o;
  o.train.epochs = 1;
  o.train.batch_size = 8;
  o.reset_fraction = 0.1;
  o.unlearn_tokens = 3;
  o.diagnose.indicator.indicator = purify::Indicator::Magnitude;  // candidates still come from fisher-ratio
  auto run = [&](int64_t unlearn) {
    model::LoadOptions lo;
    auto lm = model::load_classifier(pair.ft_dir, lo);
    auto oo = o;
    oo.unlearn_tokens = unlearn;
    auto res = purify::purify(*lm.model, pair.pre_dir, data, dev, tok, oo, torch::kCPU);
    return std::make_pair(res, model::snapshot(*lm.model));
  };
  auto [with, w_with] = run(3);
  auto [without, w_without] = run(0);
  ASSERT_TRUE(with.unlearning.has_value());
  EXPECT_EQ(with.unlearning->tokens.size(), 3u);
  EXPECT_EQ(with.unlearning->train_examples, 48);
  EXPECT_FALSE(without.unlearning.has_value());
  EXPECT_EQ(with.diagnosis.indicator, purify::Indicator::FisherRatio);  // the candidates' ranking
  EXPECT_EQ(with.diagnosis.reset_indicator, purify::Indicator::Magnitude);
  // Same reset (magnitude selection either way), different fine-tuning data: different weights.
  EXPECT_EQ(with.evaluated[0].reset_dims, without.evaluated[0].reset_dims);
  double diff = 0;
  for (auto& [n, t] : w_with) diff += (t - w_without.at(n)).abs().sum().item<double>();
  EXPECT_GT(diff, 0);
}

TEST(Neutralize, SetsExactlyTheGivenRows) {
  auto m = model::make_random_classifier(fp_test::tiny_config(), 4);
  auto before = m->word_embedding_weight().detach().clone();
  auto row = torch::arange(16, torch::kFloat32);
  purify::neutralize_rows(*m, {3, 7}, row);
  auto after = m->word_embedding_weight().detach();
  for (int64_t i = 0; i < after.size(0); ++i) {
    if (i == 3 || i == 7) EXPECT_TRUE(after[i].equal(row)) << i;
    else EXPECT_TRUE(after[i].equal(before[i])) << i;
  }
  EXPECT_THROW(purify::neutralize_rows(*m, {40}, row), Error);
  EXPECT_THROW(purify::neutralize_rows(*m, {1}, torch::zeros({15})), Error);
  // one row per id
  auto rows = torch::stack({torch::full({16}, 1.f), torch::full({16}, 2.f)});
  purify::neutralize_rows(*m, {5, 9}, rows);
  EXPECT_TRUE(m->word_embedding_weight()[5].equal(rows[0]));
  EXPECT_TRUE(m->word_embedding_weight()[9].equal(rows[1]));
  EXPECT_THROW(purify::neutralize_rows(*m, {5, 9, 10}, rows), Error);
}

TEST(Neutralize, PurifyNeutralizesTheTopSuspiciousRowsWithTheMeanPretrainedRow) {
  auto pair = fp_test::make_tiny_pair("neutralize");
  fp_test::TinyTokenizer tok;  // no [UNK]: the mean pre-trained row is the replacement
  auto data = fp_test::tiny_data(16, 5);
  auto dev = fp_test::tiny_data(8, 6);
  purify::PurifyOptions o;
  o.train.epochs = 1;
  o.train.batch_size = 8;
  o.train.lr = 1e-12;        // fine-tuning leaves the rows (practically) where the neutralisation put them
  o.train.weight_decay = 0;
  o.reset_fraction = 0.0;
  o.neutralize_tokens = 2;
  o.diagnose.indicator.epsilon_scale = 1e-8;  // the unused rows (F = 0) first, as checked at the end
  model::LoadOptions lo;
  auto lm = model::load_classifier(pair.ft_dir, lo);
  auto res = purify::purify(*lm.model, pair.pre_dir, data, dev, tok, o, torch::kCPU);
  ASSERT_TRUE(res.neutralized.has_value());
  ASSERT_EQ(res.neutralized->tokens.size(), 2u);
  auto ids = purify::candidate_tokens(res.diagnosis, 2);
  ASSERT_EQ(ids.size(), 2u);
  auto pre = model::load_classifier(pair.pre_dir, lo);
  auto mean_row = pre.model->word_embedding_weight().detach().mean(0);
  auto w = lm.model->word_embedding_weight().detach();
  for (auto id : ids) EXPECT_TRUE(torch::allclose(w[id], mean_row, 1e-5, 1e-6)) << id;
  // --neutralize-to pretrained: each row back to its own pre-trained value
  o.neutralize_to = purify::NeutralizeTo::Pretrained;
  auto lm2 = model::load_classifier(pair.ft_dir, lo);
  auto res2 = purify::purify(*lm2.model, pair.pre_dir, data, dev, tok, o, torch::kCPU);
  ASSERT_TRUE(res2.neutralized.has_value());
  EXPECT_EQ(res2.neutralized->tokens, res.neutralized->tokens);
  auto pre_w = pre.model->word_embedding_weight().detach();
  auto w2 = lm2.model->word_embedding_weight().detach();
  for (auto id : ids) {
    EXPECT_TRUE(torch::allclose(w2[id], pre_w[id], 1e-5, 1e-6)) << id;
    EXPECT_FALSE(torch::allclose(w2[id], mean_row, 1e-3, 1e-3)) << id;
  }
  // Rows the clean data never uses (clean Fisher 0, drift > 0) top the fisher-ratio ranking.
  std::set<int64_t> used;
  for (auto& e : data.encodings) used.insert(e.input_ids.begin(), e.input_ids.end());
  for (auto id : ids) EXPECT_EQ(used.count(id), 0u) << id;
}
