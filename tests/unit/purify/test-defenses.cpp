// Unit tests of the baseline defenses on tiny generated models: fine-pruning masks and their
// persistence through fine-tuning, knob 0 = plain fine-tuning, finetune / reinit single points,
// E-PUR row choice, the grid sweep, the binary search's returned weights.
#include <gtest/gtest.h>

#include "finepurify/error.hpp"
#include "finepurify/model/loader.hpp"
#include "finepurify/purify/purify.hpp"
#include "fp_tiny.hpp"

using namespace finepurify;

namespace {
purify::PurifyOptions tiny_options(purify::Defense d) {
  purify::PurifyOptions o;
  o.method = d;
  o.train.epochs = 1;
  o.train.batch_size = 8;
  return o;
}
const std::string kIn0 = "bert.encoder.layer.0.intermediate.dense.weight";
}  // namespace

TEST(Defenses, NamesRoundTripAndKnobs) {
  const auto& table = purify::enum_table(purify::Defense{});
  EXPECT_EQ(table.entries.size(), 6u);
  for (auto& n : table.names()) EXPECT_EQ(util::name_of(util::parse_enum<purify::Defense>(n)), n);
  EXPECT_THROW(util::parse_enum<purify::Defense>("prune"), Error);
  EXPECT_FALSE(purify::defense_has_knob(purify::Defense::FineTune));
  EXPECT_FALSE(purify::defense_has_knob(purify::Defense::Reinit));
  EXPECT_TRUE(purify::defense_has_knob(purify::Defense::FinePruning));
}

TEST(FinePruning, MasksPruneExactFractionOfLeastActiveNeurons) {
  auto m = model::make_random_classifier(fp_test::tiny_config(), 3);
  auto data = fp_test::tiny_data(12, 5);
  auto act = purify::ffn_mean_activations(*m, data, torch::kCPU);
  ASSERT_EQ(act.size(), 2u);
  ASSERT_EQ(act[0].numel(), 32);
  auto masks = purify::pruning_masks(*m, act, 0.25);
  ASSERT_EQ(masks.size(), 6u);  // 2 layers x (in weight, in bias, out weight)
  for (int l = 0; l < 2; ++l) {
    auto b = masks.at("bert.encoder.layer." + std::to_string(l) + ".intermediate.dense.bias");
    EXPECT_EQ(b.sum().item<int64_t>(), 8);  // round(0.25 * 32)
    // Every pruned neuron is at most as active as every kept one.
    auto a = act[l];
    EXPECT_LE(a.masked_select(b).max().item<float>(), a.masked_select(b.logical_not()).min().item<float>());
    auto out = masks.at("bert.encoder.layer." + std::to_string(l) + ".output.dense.weight");
    EXPECT_TRUE(torch::equal(out[0], b));  // columns of the output projection
  }
  EXPECT_EQ(purify::pruning_masks(*m, act, 0.0).at(kIn0).sum().item<int64_t>(), 0);
  EXPECT_THROW(purify::pruning_masks(*m, act, 1.5), Error);
}

TEST(FinePruning, PrunedWeightsStayZeroThroughFineTuning) {
  auto p = fp_test::make_tiny_pair("defend");
  auto [tr, dv] = purify::split_clean(fp_test::tiny_data(40, 9), 0.25, 1);
  auto masks = purify::pruning_masks(*p.ft, purify::ffn_mean_activations(*p.ft, tr, torch::kCPU), 0.5);
  fp_test::TinyTokenizer tok;
  auto o = tiny_options(purify::Defense::FinePruning);
  o.reset_fraction = 0.5;
  auto res = purify::purify(*p.ft, p.pre_dir, tr, dv, tok, o, torch::kCPU);
  ASSERT_EQ(res.evaluated.size(), 1u);
  EXPECT_EQ(res.evaluated[0].reset_dims, 2 * (16 * 16 + 16 + 16 * 16));  // 16 neurons x (row + bias + column) x 2 layers
  auto params = p.ft->named_parameters();
  for (auto& [n, mk] : masks) {
    EXPECT_EQ(params[n].masked_select(mk).abs().max().item<float>(), 0.f) << n;
    EXPECT_GT(params[n].masked_select(mk.logical_not()).abs().max().item<float>(), 0.f) << n;
  }
}

TEST(FinePruning, KnobZeroIsPlainFineTuning) {
  auto a = fp_test::make_tiny_pair("defend-a"), b = fp_test::make_tiny_pair("defend-b");
  auto [tr, dv] = purify::split_clean(fp_test::tiny_data(40, 9), 0.25, 1);
  fp_test::TinyTokenizer tok;
  auto o = tiny_options(purify::Defense::FinePruning);
  o.reset_fraction = 0.0;
  purify::purify(*a.ft, a.pre_dir, tr, dv, tok, o, torch::kCPU);
  auto f = tiny_options(purify::Defense::FineTune);
  auto res = purify::purify(*b.ft, b.pre_dir, tr, dv, tok, f, torch::kCPU);
  EXPECT_EQ(res.chosen_rho, 0.0);
  EXPECT_EQ(res.evaluated.at(0).reset_dims, 0);
  auto pa = a.ft->named_parameters(), pb = b.ft->named_parameters();
  for (auto& q : pa) EXPECT_TRUE(torch::equal(q.value(), pb[q.key()])) << q.key();
}

TEST(Reinit, ResetsEveryAlignedDimension) {
  auto p = fp_test::make_tiny_pair("reinit");
  auto [tr, dv] = purify::split_clean(fp_test::tiny_data(40, 9), 0.25, 1);
  fp_test::TinyTokenizer tok;
  auto o = tiny_options(purify::Defense::Reinit);
  o.max_acc_drop = 3;  // ignored: reinit has one point
  auto res = purify::purify(*p.ft, p.pre_dir, tr, dv, tok, o, torch::kCPU);
  ASSERT_EQ(res.evaluated.size(), 1u);
  EXPECT_EQ(res.chosen_rho, 1.0);
  EXPECT_EQ(res.evaluated[0].reset_dims, res.diagnosis.aligned_dimensions);
}

TEST(Epur, PicksRowsWithLargeDriftAndFewCleanOccurrences) {
  auto pre = torch::zeros({10, 4});
  auto ft = pre.clone();
  ft[7].fill_(1.0);   // large drift, never in the clean set: the trigger-like row
  ft[9].fill_(0.3);   // larger drift than row 3 but frequent in clean data
  ft[3].fill_(0.1);   // small drift, absent
  train::TokenizedSet clean;
  for (int i = 0; i < 50; ++i) {
    text::Encoding e;
    e.input_ids = {2, 9, 9, 9, 5};
    e.token_type_ids = {0, 0, 0, 0, 0};
    e.attention_mask = {1, 1, 1, 1, 1};
    clean.encodings.push_back(e);
    clean.labels.push_back(0);
  }
  auto mask = purify::epur_mask(ft, pre, clean, 1);
  EXPECT_EQ(mask.sum().item<int64_t>(), 4);
  EXPECT_TRUE(mask[7].all().item<bool>());
  auto two = purify::epur_mask(ft, pre, clean, 2);
  EXPECT_TRUE(two[7].all().item<bool>());
  EXPECT_TRUE(two[3].all().item<bool>());  // 0.2 / log 2 > 0.6 / log 152 (row norms)
  EXPECT_FALSE(two[9].any().item<bool>());
}

TEST(Sweep, EvaluatesEveryGridValueAndPicksTheLargestWithinBudget) {
  auto p = fp_test::make_tiny_pair("sweep");
  auto [tr, dv] = purify::split_clean(fp_test::tiny_data(40, 9), 0.25, 1);
  fp_test::TinyTokenizer tok;
  auto o = tiny_options(purify::Defense::Magnitude);
  o.max_acc_drop = 100;  // every point within budget
  o.grid = {0.3, 0.1, 0.2};
  o.sweep = true;
  purify::Measurements ms;
  ms.test = &dv;  // every evaluated point gets a test accuracy (here on the dev part: equal by construction)
  auto res = purify::purify(*p.ft, p.pre_dir, tr, dv, tok, o, torch::kCPU, ms);
  ASSERT_EQ(res.evaluated.size(), 3u);
  for (auto& pt : res.evaluated) EXPECT_EQ(pt.measured.test_accuracy, pt.dev_accuracy);
  EXPECT_EQ(res.chosen_rho, 0.3);
  EXPECT_LT(res.evaluated[0].rho, res.evaluated[1].rho);  // sorted grid, every value evaluated
}

// The binary search keeps only the weights that can still be chosen (the last point within budget),
// and the model it returns is the chosen point's: equal to a run of that single point.
TEST(Search, ReturnsTheChosenPointsWeights) {
  auto p = fp_test::make_tiny_pair("search");
  auto [tr, dv] = purify::split_clean(fp_test::tiny_data(40, 9), 0.25, 1);
  fp_test::TinyTokenizer tok;
  const auto suspect = model::snapshot(*p.ft);
  auto o = tiny_options(purify::Defense::Magnitude);
  o.max_acc_drop = 100;  // every point within budget: the search climbs 0.2, 0.3, 0.4
  o.grid = {0.1, 0.2, 0.3, 0.4};
  auto res = purify::purify(*p.ft, p.pre_dir, tr, dv, tok, o, torch::kCPU);
  ASSERT_EQ(res.evaluated.size(), 3u);
  EXPECT_EQ(res.chosen_rho, 0.4);
  const auto searched = model::snapshot(*p.ft);
  model::restore(*p.ft, suspect);
  auto one = tiny_options(purify::Defense::Magnitude);
  one.reset_fraction = 0.4;
  purify::purify(*p.ft, p.pre_dir, tr, dv, tok, one, torch::kCPU);
  const auto single = model::snapshot(*p.ft);
  ASSERT_EQ(searched.size(), single.size());
  for (auto& [n, t] : single) EXPECT_TRUE(torch::equal(searched.at(n), t)) << n;
  // and it is not the suspect or an earlier point's weights
  EXPECT_FALSE(torch::equal(searched.at(kIn0), suspect.at(kIn0)));
}
