// Unit tests of Fine-purifying's core on tiny generated models: Fisher vs brute force, exact and
// deterministic top-k selection, rho = 0 / rho = 1 resets, head untouched, indicators.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <limits>
#include <random>

#include "finepurify/error.hpp"
#include "finepurify/io/checkpoint.hpp"
#include "finepurify/io/safetensors.hpp"
#include "finepurify/model/loader.hpp"
#include "finepurify/purify/purify.hpp"
#include "fp_tiny.hpp"

using namespace finepurify;

using fp_test::tiny_config;
using fp_test::tiny_roberta_config;
using fp_test::tiny_data;
using Pair = fp_test::TinyPair;
static Pair make_pair() { return fp_test::make_tiny_pair(); }

TEST(Fisher, EqualsBruteForcePerExampleGradients) {
  auto m = model::make_random_classifier(tiny_config(), 3);
  auto data = tiny_data(7, 11);
  data.encodings[3].input_ids[2] = 0;  // a literal pad token inside an example: its row gets no gradient
  auto fisher = purify::diagonal_fisher(*m, data, torch::kCPU, {0, false});
  std::map<std::string, torch::Tensor> brute;
  for (auto& p : m->named_parameters()) brute[p.key()] = torch::zeros(p.value().sizes(), torch::kFloat64);
  m->eval();
  for (int64_t n = 0; n < data.size(); ++n) {
    m->zero_grad();
    auto b = train::collate(data, {n}, torch::kCPU);
    auto loss = torch::cross_entropy_loss(m->forward(b.input_ids, b.token_type_ids, b.attention_mask).logits, b.labels);
    loss.backward();
    for (auto& p : m->named_parameters()) brute[p.key()] += p.value().grad().to(torch::kFloat64).square();
  }
  ASSERT_EQ(fisher.size(), brute.size());
  for (auto& [name, f] : fisher) {
    auto want = (brute[name] / data.size()).to(torch::kFloat32);
    double scale = want.abs().max().item<double>() + 1e-12;
    double err = (f - want).abs().max().item<double>();
    EXPECT_LE(err, 1e-5 * scale + 1e-12) << name;
  }
  // the pad row is exactly zero, and so are rows of tokens never seen
  auto w = fisher.at("bert.embeddings.word_embeddings.weight");
  EXPECT_EQ(w[0].abs().sum().item<double>(), 0.0);
  EXPECT_EQ(w[1].abs().sum().item<double>(), 0.0);
  EXPECT_GT(w[2].abs().sum().item<double>(), 0.0);
}

// The batched path (per-example gradients formed from recorded activations, padded batches) equals
// the per-example reference loop, for BERT and for RoBERTa (position ids from the padding, a
// padding_idx on the position embeddings, one token type), with tokens repeated inside an example.
TEST(Fisher, BatchedEqualsThePerExampleLoop) {
  for (bool roberta : {false, true}) {
    auto c = roberta ? tiny_roberta_config() : tiny_config();
    auto m = model::make_random_classifier(c, 4);
    auto data = tiny_data(45, 17);
    for (auto& e : data.encodings) {
      if (roberta) std::fill(e.token_type_ids.begin(), e.token_type_ids.end(), 0);
      e.input_ids.back() = e.input_ids[1];  // a row used twice by one example
    }
    data.pad_id = c.pad_token_id;
    purify::FisherOptions ref_opt{0, false, 1};
    auto ref = purify::diagonal_fisher(*m, data, torch::kCPU, ref_opt);
    // 45 = 9 x 5: padded batches; 45 = 40 + 5: a batch whose float32 sums join the float64 ones at 32
    for (const int64_t bs : {5, 40}) {
      purify::FisherOptions batch_opt{0, false, bs};
      auto got = purify::diagonal_fisher(*m, data, torch::kCPU, batch_opt);
      ASSERT_EQ(ref.size(), got.size());
      // The attention key bias has an exactly zero gradient in exact arithmetic (softmax ignores a
      // constant added to every score): both sides hold rounding noise there, checked against the
      // scale of the whole Fisher instead.
      double scale = 0;
      for (auto& [name, r] : ref) scale = std::max(scale, r.abs().max().item<double>());
      double worst = 0;
      for (auto& [name, r] : ref) {
        auto g = got.at(name);
        ASSERT_EQ(g.sizes(), r.sizes()) << name;
        const double rn = r.to(torch::kFloat64).norm().item<double>();
        if (r.abs().max().item<double>() <= 1e-9 * scale) {
          EXPECT_LE((g - r).abs().max().item<double>(), 1e-9 * scale) << name;
          continue;
        }
        const double rel = (g.to(torch::kFloat64) - r.to(torch::kFloat64)).norm().item<double>() / rn;
        worst = std::max(worst, rel);
        EXPECT_LE(rel, 1e-6) << (roberta ? "roberta " : "bert ") << name;
      }
      std::cout << (roberta ? "roberta" : "bert") << " batch " << bs << ": worst relative difference " << worst << "\n";
    }
  }
}

TEST(Fisher, BatchSizeZeroIsRefused) {
  auto m = model::make_random_classifier(tiny_config(), 3);
  EXPECT_THROW(purify::diagonal_fisher(*m, tiny_data(3, 1), torch::kCPU, {0, false, 0}), Error);
}

TEST(Fisher, IsNotTheSquareOfTheBatchGradient) {
  auto m = model::make_random_classifier(tiny_config(), 3);
  auto data = tiny_data(6, 5);
  auto fisher = purify::diagonal_fisher(*m, data, torch::kCPU, {0, false});
  m->eval();
  m->zero_grad();
  // mean gradient over examples, squared: never larger than the mean of squares (Jensen), usually smaller
  for (int64_t n = 0; n < data.size(); ++n) {
    auto b = train::collate(data, {n}, torch::kCPU);
    (torch::cross_entropy_loss(m->forward(b.input_ids, b.token_type_ids, b.attention_mask).logits, b.labels) /
     data.size()).backward();
  }
  auto g = m->named_parameters()["bert.encoder.layer.0.intermediate.dense.weight"].grad();
  auto f = fisher.at("bert.encoder.layer.0.intermediate.dense.weight");
  EXPECT_TRUE((g.square() <= f + 1e-7).all().item<bool>());
  EXPECT_GT(f.sum().item<double>(), 1.5 * g.square().sum().item<double>());
}

TEST(Select, KthLargestMatchesSort) {
  torch::manual_seed(0);
  std::vector<torch::Tensor> vals = {torch::rand({100}), torch::rand({7, 13}) * 3, torch::zeros({5}),
                                     torch::full({4}, 0.5f)};
  std::vector<float> all;
  for (auto& v : vals) {
    auto c = v.contiguous().view(-1);
    all.insert(all.end(), c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  }
  std::sort(all.rbegin(), all.rend());
  for (int64_t k : {1, 2, 17, 50, 100, 150, 199, 200, static_cast<int>(all.size())}) {
    auto t = purify::kth_largest(vals, k);
    EXPECT_EQ(t.value, all[k - 1]) << k;
    EXPECT_EQ(t.above, std::count_if(all.begin(), all.end(), [&](float x) { return x > all[k - 1]; })) << k;
  }
  EXPECT_THROW(purify::kth_largest(vals, 0), Error);
}

// Both paths of the radix selection (histogram levels only; histograms then the gathered
// candidates; candidates at once) against a sort, with many ties and zeros.
TEST(Select, KthLargestHistogramAndGatherPathsMatchSort) {
  torch::manual_seed(1);
  std::vector<torch::Tensor> vals = {torch::randint(0, 40, {3000}).to(torch::kFloat32) * 0.25f,
                                     torch::rand({50, 41}).square() * 1e-20f, torch::zeros({300}),
                                     torch::full({7}, std::numeric_limits<float>::max())};
  std::vector<float> all;
  for (auto& v : vals) all.insert(all.end(), v.data_ptr<float>(), v.data_ptr<float>() + v.numel());
  std::sort(all.rbegin(), all.rend());
  for (int64_t gather : {int64_t{0}, int64_t{50}, int64_t{1} << 22})
    for (int64_t k : {1, 7, 8, 100, 1234, 3000, 3001, 5000, 5300, static_cast<int>(all.size())}) {
      auto t = purify::kth_largest(vals, k, gather);
      EXPECT_EQ(t.value, all[k - 1]) << k << " gather " << gather;
      EXPECT_EQ(t.above, std::count_if(all.begin(), all.end(), [&](float x) { return x > all[k - 1]; }))
          << k << " gather " << gather;
    }
}

// Selection across the parallel chunks (tensors longer than one work item) equals the first k of a
// stable descending sort: ties in (tensor order, flat index) order.
TEST(Select, GlobalSelectionEqualsAStableSort) {
  torch::manual_seed(2);
  std::map<std::string, torch::Tensor> r = {{"a", torch::randint(0, 5, {700000}).to(torch::kFloat32)},
                                            {"b", torch::randint(0, 5, {300001}).to(torch::kFloat32)},
                                            {"c", torch::rand({1000})}};
  std::vector<std::string> order = {"c", "a", "b"};
  std::vector<torch::Tensor> flat;
  for (auto& n : order) flat.push_back(r[n].view(-1));
  auto all = torch::cat(flat);
  auto idx = std::get<1>(all.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  for (double rho : {0.001, 0.3, 0.61, 1.0}) {
    const int64_t k = std::llround(rho * all.numel());
    auto want = torch::zeros({all.numel()}, torch::kBool);
    want.index_fill_(0, idx.slice(0, 0, k), true);
    auto got = purify::select_top(order, r, rho, purify::Scope::Global);
    std::vector<torch::Tensor> got_flat;
    for (auto& n : order) got_flat.push_back(got[n].view(-1));
    EXPECT_TRUE(torch::equal(torch::cat(got_flat), want)) << rho;
  }
}

TEST(Select, ExactCountDeterministicTies) {
  std::map<std::string, torch::Tensor> r = {{"a", torch::tensor({1.f, 2.f, 2.f, 0.f})},
                                            {"b", torch::tensor({2.f, 2.f, 5.f})}};
  std::vector<std::string> order = {"a", "b"};
  // 7 dims, rho = 3/7 -> k = 3: 5 and the first two 2's in (tensor order, index) order
  auto m = purify::select_top(order, r, 3.0 / 7.0, purify::Scope::Global);
  EXPECT_TRUE(torch::equal(m["a"], torch::tensor({false, true, true, false})));
  EXPECT_TRUE(torch::equal(m["b"], torch::tensor({false, false, true})));
  for (double rho : {0.0, 0.1, 0.5, 0.9, 1.0}) {
    auto m1 = purify::select_top(order, r, rho, purify::Scope::Global);
    auto m2 = purify::select_top(order, r, rho, purify::Scope::Global);
    EXPECT_EQ(purify::count_selected(m1), std::llround(rho * 7));
    for (auto& n : order) EXPECT_TRUE(torch::equal(m1[n], m2[n]));
  }
  // per-tensor scope: round(rho * size) inside every tensor
  auto mt = purify::select_top(order, r, 0.5, purify::Scope::Tensor);
  EXPECT_EQ(mt["a"].sum().item<int64_t>(), 2);
  EXPECT_EQ(mt["b"].sum().item<int64_t>(), 2);
  EXPECT_THROW(purify::select_top(order, r, 1.5, purify::Scope::Global), Error);
}

TEST(Select, WordEmbeddingKeptOutOfTheRanking) {
  // "w" holds the largest values: ranked, it takes the whole budget; kept, the budget goes to "a" and "b".
  std::map<std::string, torch::Tensor> r = {{"w", torch::tensor({9.f, 8.f, 7.f, 6.f})},
                                            {"a", torch::tensor({1.f, 2.f, 0.f, 3.f})},
                                            {"b", torch::tensor({4.f, 0.5f})}};
  std::vector<std::string> order = {"w", "a", "b"};
  auto ranked = purify::select_reset(order, r, 0.4, purify::Scope::Global, purify::WordEmbedding::Rank, "w");
  EXPECT_EQ(ranked["w"].sum().item<int64_t>(), 4);
  auto kept = purify::select_reset(order, r, 0.5, purify::Scope::Global, purify::WordEmbedding::Keep, "w");
  EXPECT_EQ(kept["w"].sum().item<int64_t>(), 0);  // never reset
  // d = 6 without "w": k = 3 -> 4, 3, 2
  EXPECT_TRUE(torch::equal(kept["a"], torch::tensor({false, true, false, true})));
  EXPECT_TRUE(torch::equal(kept["b"], torch::tensor({true, false})));
  auto kept_t = purify::select_reset(order, r, 0.5, purify::Scope::Tensor, purify::WordEmbedding::Keep, "w");
  EXPECT_EQ(kept_t["w"].sum().item<int64_t>(), 0);
  EXPECT_EQ(kept_t["a"].sum().item<int64_t>(), 2);
  EXPECT_EQ(kept_t["b"].sum().item<int64_t>(), 1);
  // a name outside the order is not special
  auto other = purify::select_reset(order, r, 0.4, purify::Scope::Global, purify::WordEmbedding::Keep, "x");
  EXPECT_EQ(other["w"].sum().item<int64_t>(), 4);
}

TEST(Purify, RhoZeroKeepsWeightsRhoOneGivesPretrainedHeadUntouched) {
  auto p = make_pair();
  auto a = purify::align_with_pretrained(*p.ft, p.pre_dir);
  // classifier and pooler exist in the saved "pre-trained" classifier too, so everything aligns here;
  // use a base checkpoint instead: drop the head by aligning against a copy without it.
  EXPECT_EQ(a.unaligned.size(), 0u);
  auto ft = model::snapshot(*p.ft);
  purify::IndicatorOptions iopt;
  iopt.indicator = purify::Indicator::Magnitude;
  auto r = purify::compute_indicators(a, ft, nullptr, iopt);
  auto m0 = purify::select_top(a.aligned, r, 0.0, purify::Scope::Global);
  purify::reset_to_pretrained(*p.ft, a, m0);
  for (auto& q : p.ft->named_parameters()) EXPECT_TRUE(torch::equal(q.value(), ft[q.key()])) << q.key();
  auto m1 = purify::select_top(a.aligned, r, 1.0, purify::Scope::Global);
  purify::reset_to_pretrained(*p.ft, a, m1);
  for (auto& n : a.aligned) EXPECT_TRUE(torch::equal(p.ft->named_parameters()[n], a.pre[n])) << n;
}

TEST(Purify, HeadWithoutCounterpartIsNeverReset) {
  auto p = make_pair();
  // A base checkpoint: only the encoder tensors (no pooler, no classifier), keys without prefix.
  auto dir = fp_test::temp_dir("base");
  std::vector<std::pair<std::string, torch::Tensor>> enc;
  auto pre = model::make_random_classifier(tiny_config(), 1);
  for (auto& q : pre->named_parameters())
    if (q.key().find("pooler") == std::string::npos && q.key().rfind("classifier", 0) != 0)
      enc.emplace_back(q.key().substr(5), q.value().detach());
  io::write_safetensors((dir / "model.safetensors").string(), enc);
  io::write_text_atomic((dir / "config.json").string(),
                        model::classifier_config_json(tiny_config()).dump());
  auto a = purify::align_with_pretrained(*p.ft, dir.string());
  EXPECT_EQ(a.unaligned.size(), 4u);
  EXPECT_TRUE(a.unaligned.count("classifier.weight"));
  EXPECT_TRUE(a.unaligned.count("bert.pooler.dense.bias"));
  auto ft = model::snapshot(*p.ft);
  purify::IndicatorOptions iopt;
  iopt.indicator = purify::Indicator::Random;
  auto r = purify::compute_indicators(a, ft, nullptr, iopt);
  purify::reset_to_pretrained(*p.ft, a, purify::select_top(a.aligned, r, 1.0, purify::Scope::Global));
  auto now = p.ft->named_parameters();
  EXPECT_TRUE(torch::equal(now["classifier.weight"], ft["classifier.weight"]));
  EXPECT_TRUE(torch::equal(now["bert.pooler.dense.weight"], ft["bert.pooler.dense.weight"]));
  EXPECT_TRUE(torch::equal(now["bert.encoder.layer.1.output.dense.weight"], a.pre["bert.encoder.layer.1.output.dense.weight"]));
}

TEST(Indicators, FormulasAndEpsilon) {
  purify::Alignment a;
  a.aligned = {"w"};
  a.pre["w"] = torch::tensor({0.f, 0.f, 0.f});
  std::map<std::string, torch::Tensor> ft = {{"w", torch::tensor({1.f, 2.f, 0.f})}};
  std::map<std::string, torch::Tensor> f = {{"w", torch::tensor({1.f, 0.f, 2.f})}};
  purify::IndicatorOptions o;
  o.epsilon_scale = 1.0;  // eps = mean(F) = 1
  double eps = 0;
  auto r = purify::compute_indicators(a, ft, &f, o, &eps);
  EXPECT_DOUBLE_EQ(eps, 1.0);
  EXPECT_TRUE(torch::allclose(r["w"], torch::tensor({0.5f, 4.f, 0.f})));
  o.indicator = purify::Indicator::InverseFisher;
  EXPECT_TRUE(torch::allclose(purify::compute_indicators(a, ft, &f, o)["w"], torch::tensor({0.5f, 1.f, 1.f / 3})));
  o.indicator = purify::Indicator::Magnitude;
  EXPECT_TRUE(torch::allclose(purify::compute_indicators(a, ft, nullptr, o)["w"], torch::tensor({1.f, 4.f, 0.f})));
  o.indicator = purify::Indicator::FisherRatio;
  EXPECT_THROW(purify::compute_indicators(a, ft, nullptr, o), Error);
  EXPECT_THROW(util::parse_enum<purify::Indicator>("nope"), Error);
  EXPECT_EQ(util::parse_enum<purify::Indicator>("inverse-fisher"), purify::Indicator::InverseFisher);
}

// The one-pass indicator equals the formula written with tensor operations bit for bit (delta in
// float32, the ratio in float64, rounded), special values included: F = 0, NaN, inf.
TEST(Indicators, OnePassEqualsTheTensorFormula) {
  torch::manual_seed(3);
  purify::Alignment a;
  a.aligned = {"w"};
  const int64_t n = 600001;  // more than one parallel work item
  a.pre["w"] = torch::randn({n});
  auto ftw = a.pre["w"] + torch::randn({n}) * 1e-3;
  auto fw = torch::rand({n}).square() * 1e-4;
  fw.slice(0, 0, 1000).zero_();
  ftw[5] = std::numeric_limits<float>::quiet_NaN();
  ftw[6] = std::numeric_limits<float>::infinity();
  std::map<std::string, torch::Tensor> ft = {{"w", ftw}}, f = {{"w", fw}};
  for (auto ind : {purify::Indicator::FisherRatio, purify::Indicator::Magnitude, purify::Indicator::InverseFisher}) {
    purify::IndicatorOptions o;
    o.indicator = ind;
    o.epsilon_scale = 0.5;
    double eps = 0;
    auto got = purify::compute_indicators(a, ft, &f, o, &eps)["w"];
    auto delta = ftw - a.pre["w"];
    torch::Tensor want;
    if (ind == purify::Indicator::FisherRatio)
      want = (delta.to(torch::kFloat64).square() / (fw.to(torch::kFloat64) + eps)).to(torch::kFloat32);
    else if (ind == purify::Indicator::Magnitude)
      want = delta.square();
    else
      want = (1.0 / (fw.to(torch::kFloat64) + eps)).to(torch::kFloat32);
    want = torch::nan_to_num(want, 0.0, std::numeric_limits<float>::max(), 0.0).clamp_min(0.0);
    EXPECT_TRUE(torch::equal(got, want)) << util::name_of(ind);
    if (ind != purify::Indicator::InverseFisher) {  // NaN -> 0, inf -> the largest float
      EXPECT_EQ(got[5].item<float>(), 0.0f);
      EXPECT_EQ(got[6].item<float>(), std::numeric_limits<float>::max());
    }
  }
}

TEST(Indicators, EpsilonRelativeToEachTensor) {
  // Two tensors whose Fisher differs by 100x: with the global basis eps = 0.5 * mean over all 4
  // dimensions (0.5 * 50.5 = 25.25); with the tensor basis each tensor gets 0.5 x its own mean.
  purify::Alignment a;
  a.aligned = {"small", "big"};
  a.pre["small"] = torch::zeros({2});
  a.pre["big"] = torch::zeros({2});
  std::map<std::string, torch::Tensor> ft = {{"small", torch::tensor({1.f, 1.f})}, {"big", torch::tensor({1.f, 1.f})}};
  std::map<std::string, torch::Tensor> f = {{"small", torch::tensor({0.f, 2.f})}, {"big", torch::tensor({100.f, 100.f})}};
  purify::IndicatorOptions o;
  o.epsilon_scale = 0.5;
  double eps = 0;
  auto g = purify::compute_indicators(a, ft, &f, o, &eps);
  EXPECT_DOUBLE_EQ(eps, 25.25);
  EXPECT_TRUE(torch::allclose(g["small"], torch::tensor({1 / 25.25f, 1 / 27.25f})));
  o.epsilon_basis = purify::EpsilonBasis::Tensor;  // small: eps 0.5, big: eps 50
  auto t = purify::compute_indicators(a, ft, &f, o, &eps);
  EXPECT_DOUBLE_EQ(eps, (0.5 * 2 + 50.0 * 2) / 4);  // size-weighted mean of the per-tensor eps
  EXPECT_TRUE(torch::allclose(t["small"], torch::tensor({1 / 0.5f, 1 / 2.5f})));
  EXPECT_TRUE(torch::allclose(t["big"], torch::tensor({1 / 150.f, 1 / 150.f})));
  // An all-zero tensor still gets a positive eps (no 0/0).
  f["small"] = torch::zeros({2});
  auto z = purify::compute_indicators(a, ft, &f, o);
  EXPECT_TRUE(torch::isfinite(z["small"]).all().item<bool>());
  EXPECT_EQ(util::parse_enum<purify::EpsilonBasis>("tensor"), purify::EpsilonBasis::Tensor);
}

TEST(Purify, FixedRhoRunsEndToEndOnTinyModel) {
  auto p = make_pair();
  auto data = tiny_data(40, 9);
  auto [tr, dv] = purify::split_clean(data, 0.25, 1);
  EXPECT_EQ(dv.size(), 10);
  EXPECT_EQ(tr.size(), 30);
  fp_test::TinyTokenizer tok;
  purify::PurifyOptions o;
  o.reset_fraction = 0.1;
  o.train.epochs = 1;
  o.train.batch_size = 8;
  // The default scope (per tensor): round(rho * size) in every aligned tensor.
  auto sizes = p.ft->named_parameters();
  auto tensor_res = purify::purify(*p.ft, p.pre_dir, tr, dv, tok, o, torch::kCPU);
  ASSERT_FALSE(tensor_res.selection.per_tensor.empty());
  for (auto& [name, count] : tensor_res.selection.per_tensor)
    EXPECT_EQ(count, std::llround(0.1 * static_cast<double>(sizes[name].numel()))) << name;
  o.scope = purify::Scope::Global;
  auto res = purify::purify(*p.ft, p.pre_dir, tr, dv, tok, o, torch::kCPU);
  ASSERT_EQ(res.evaluated.size(), 1u);
  int64_t d = 0;
  for (auto& q : p.ft->parameters()) d += q.numel();
  EXPECT_EQ(res.evaluated[0].reset_dims, std::llround(0.1 * d));
  EXPECT_EQ(res.diagnosis.top_tokens.size(), 20u);
  o.reset_fraction.reset();
  EXPECT_THROW(purify::purify(*p.ft, p.pre_dir, tr, dv, tok, o, torch::kCPU), Error);  // needs rho or budget
}

TEST(Knob, RulesOnANonMonotoneCurve) {
  using purify::KnobRule;
  // suspect 0.80, budget 3 points -> threshold 0.77; 0.3 fails, 0.5 recovers by luck
  std::vector<purify::KnobPoint> pts = {{0.05, 0.81}, {0.1, 0.79}, {0.3, 0.74}, {0.5, 0.78}, {0.9, 0.60}};
  EXPECT_EQ(purify::choose_knob(pts, 0.80, 3, KnobRule::Largest, 300), 3);
  EXPECT_EQ(purify::choose_knob(pts, 0.80, 3, KnobRule::Prefix, 300), 1);
  // isotonic fit: 0.81, 0.79, 0.76, 0.76, 0.60 -> the pooled pair falls under 0.77
  EXPECT_EQ(purify::choose_knob(pts, 0.80, 3, KnobRule::Isotonic, 300), 1);
  EXPECT_EQ(purify::choose_knob(pts, 0.80, 5, KnobRule::Isotonic, 300), 3);  // threshold 0.75
  EXPECT_EQ(purify::choose_knob(pts, 0.90, 1, KnobRule::Largest, 300), -1);  // none within budget
  EXPECT_EQ(purify::choose_knob({}, 0.80, 3, KnobRule::Prefix, 300), -1);
  EXPECT_THROW(purify::choose_knob({{0.5, 0.8}, {0.1, 0.8}}, 0.8, 3, KnobRule::Largest, 300), Error);  // unsorted
  auto fit = purify::isotonic_non_increasing({0.81, 0.79, 0.74, 0.78, 0.60});
  ASSERT_EQ(fit.size(), 5u);
  EXPECT_DOUBLE_EQ(fit[2], 0.76);
  EXPECT_DOUBLE_EQ(fit[3], 0.76);
  for (std::size_t i = 1; i < fit.size(); ++i) EXPECT_LE(fit[i], fit[i - 1]);
  EXPECT_EQ(util::parse_enum<KnobRule>("isotonic"), KnobRule::Isotonic);
}

TEST(Knob, TolerantRuleLowersTheLineByHalfAStandardError) {
  using purify::KnobRule;
  // suspect 0.80 on 400 rows: se = sqrt(0.8 * 0.2 / 400) = 0.02, half of it 0.01 -> line 0.77 - 0.01
  EXPECT_NEAR(purify::budget_line(0.80, 3, KnobRule::Tolerant, 400), 0.76, 1e-12);
  EXPECT_NEAR(purify::budget_line(0.80, 3, KnobRule::Largest, 400), 0.77, 1e-12);
  EXPECT_NEAR(purify::budget_line(0.80, 3, KnobRule::Tolerant, 1600), 0.765, 1e-12);  // shrinks with more rows
  std::vector<purify::KnobPoint> pts = {{0.1, 0.79}, {0.3, 0.765}, {0.5, 0.755}};
  EXPECT_EQ(purify::choose_knob(pts, 0.80, 3, KnobRule::Largest, 400), 0);
  EXPECT_EQ(purify::choose_knob(pts, 0.80, 3, KnobRule::Tolerant, 400), 1);   // 0.765 >= 0.76
  EXPECT_EQ(purify::choose_knob(pts, 0.80, 3, KnobRule::Tolerant, 1600), 1);  // 0.755 < 0.765
  EXPECT_EQ(purify::choose_knob(pts, 0.80, 3, KnobRule::Tolerant, 100), 2);   // line 0.75
  EXPECT_THROW(purify::choose_knob(pts, 0.80, 3, KnobRule::Tolerant, 0), Error);  // needs the row count
  EXPECT_EQ(purify::choose_knob(pts, 0.80, 3, KnobRule::Largest, 0), 0);         // the others do not
  EXPECT_EQ(util::parse_enum<KnobRule>("tolerant"), KnobRule::Tolerant);
  EXPECT_EQ(purify::PurifyOptions{}.knob_rule, KnobRule::Tolerant);  // the shipped default
}

// The indicator written over F's storage equals the one computed into new tensors, bit for bit; F is
// consumed (the map ends empty, each r is F's own buffer); an indicator without F is refused.
TEST(Indicators, InPlaceEqualsTheCopy) {
  torch::manual_seed(4);
  purify::Alignment a;
  a.aligned = {"u", "v"};
  a.pre["u"] = torch::randn({300, 7});
  a.pre["v"] = torch::randn({11});
  std::map<std::string, torch::Tensor> ft, f;
  for (auto& n : a.aligned) {
    ft[n] = a.pre[n] + torch::randn(a.pre[n].sizes()) * 1e-2;
    f[n] = torch::rand(a.pre[n].sizes()).square() * 1e-3;
  }
  f["head"] = torch::rand({3});  // unaligned: dropped with the rest of F
  for (auto ind : {purify::Indicator::FisherRatio, purify::Indicator::InverseFisher}) {
    for (auto basis : {purify::EpsilonBasis::Global, purify::EpsilonBasis::Tensor}) {
      purify::IndicatorOptions o;
      o.indicator = ind;
      o.epsilon_basis = basis;
      double eps_copy = 0, eps_in_place = 0;
      auto want = purify::compute_indicators(a, ft, &f, o, &eps_copy);
      std::map<std::string, torch::Tensor> consumed;
      for (auto& [n, t] : f) consumed[n] = t.clone();
      const void* u_storage = consumed["u"].data_ptr();
      auto got = purify::compute_indicators_in_place(a, ft, consumed, o, &eps_in_place);
      EXPECT_TRUE(consumed.empty());
      EXPECT_EQ(eps_in_place, eps_copy);
      EXPECT_EQ(got["u"].data_ptr(), u_storage);
      ASSERT_EQ(got.size(), want.size());
      for (auto& [n, r] : want) EXPECT_TRUE(torch::equal(got.at(n), r)) << n << " " << util::name_of(ind);
    }
  }
  purify::IndicatorOptions mag;
  mag.indicator = purify::Indicator::Magnitude;
  auto f2 = f;
  EXPECT_THROW(purify::compute_indicators_in_place(a, ft, f2, mag), Error);
}

// Alignment without the values keeps nothing of w_Pre but reads the same tensors later, one at a
// time; a tensor that changed shape, became non-finite or vanished since is refused then.
TEST(Alignment, ValuesReadLaterAreTheSameAndCheckedAgain) {
  auto p = make_pair();
  auto eager = purify::align_with_pretrained(*p.ft, p.pre_dir);
  auto lazy = purify::align_with_pretrained(*p.ft, p.pre_dir, /*load_values=*/false);
  EXPECT_TRUE(lazy.pre.empty());
  EXPECT_EQ(lazy.aligned, eager.aligned);
  EXPECT_EQ(lazy.dims, eager.dims);
  int64_t dims = 0;
  for (auto& n : eager.aligned) {
    EXPECT_TRUE(torch::equal(lazy.pre_of(n), eager.pre.at(n))) << n;
    dims += eager.pre.at(n).numel();
  }
  EXPECT_EQ(eager.dims, dims);
  EXPECT_TRUE(lazy.pre.empty());  // pre_of keeps nothing

  // The file replaced after the alignment: each change is caught when w_Pre is read again.
  const auto file = (std::filesystem::path(p.pre_dir) / "model.safetensors").string();
  const std::string victim = "bert.encoder.layer.0.attention.self.query.weight";
  const auto& ck = lazy.source.at(victim).tensor;
  auto rewrite = [&](const std::function<void(std::vector<std::pair<std::string, torch::Tensor>>&)>& change) {
    io::CheckpointReader r(p.pre_dir);
    std::vector<std::pair<std::string, torch::Tensor>> all;
    for (auto& n : r.names()) all.emplace_back(n, r.tensor(n));
    change(all);
    io::write_safetensors(file, all);
  };
  auto expect_mismatch = [&](const char* what) {
    try {
      lazy.pre_of(victim);
      ADD_FAILURE() << what << ": no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::CheckpointMismatch) << what;
      EXPECT_NE(std::string(e.what()).find(ck), std::string::npos) << what << ": " << e.what();
    }
    EXPECT_TRUE(torch::equal(eager.pre_of(victim), eager.pre.at(victim))) << what;  // loaded values stay
  };
  rewrite([&](auto& all) {
    for (auto& [n, t] : all)
      if (n == ck) t = t.slice(0, 0, t.size(0) - 1).clone();
  });
  expect_mismatch("shape");
  rewrite([&](auto& all) {
    for (auto& [n, t] : all)
      if (n == ck) t = torch::full({static_cast<int64_t>(lazy.source.at(victim).shape[0]),
                                    static_cast<int64_t>(lazy.source.at(victim).shape[1])},
                                   std::numeric_limits<float>::quiet_NaN());
  });
  expect_mismatch("NaN");
  rewrite([&](auto& all) { std::erase_if(all, [&](auto& kv) { return kv.first == ck; }); });
  expect_mismatch("gone");
}

// The diagnosis with the indicator written over F equals the one that keeps F (every summary figure
// and every r); its w_FT is the model's own storage, not a copy.
TEST(Diagnose, IndicatorOverTheFisherGivesTheSameDiagnosis) {
  auto pair = fp_test::make_tiny_pair("lean");
  fp_test::TinyTokenizer tok;
  model::LoadOptions lo;
  auto lm = model::load_classifier(pair.ft_dir, lo);
  purify::DiagnoseOptions o;
  const auto data = tiny_data(24, 6);
  auto lean = purify::diagnose(*lm.model, pair.pre_dir, data, tok, o, torch::kCPU);
  o.keep_fisher = true;
  auto kept = purify::diagnose(*lm.model, pair.pre_dir, data, tok, o, torch::kCPU);
  EXPECT_TRUE(lean.fisher.empty());
  EXPECT_EQ(kept.fisher.size(), lm.model->named_parameters().size());
  EXPECT_EQ(lean.epsilon, kept.epsilon);
  ASSERT_EQ(lean.r.size(), kept.r.size());
  for (auto& [n, r] : kept.r) EXPECT_TRUE(torch::equal(lean.r.at(n), r)) << n;
  const auto &a = lean.summary, &b = kept.summary;
  EXPECT_EQ(a.fisher_examples, 24);
  EXPECT_EQ(a.fisher_examples, b.fisher_examples);
  EXPECT_EQ(a.aligned_dimensions, b.aligned_dimensions);
  ASSERT_EQ(a.per_tensor.size(), b.per_tensor.size());
  for (std::size_t i = 0; i < a.per_tensor.size(); ++i) {
    const auto &x = a.per_tensor[i], &y = b.per_tensor[i];
    EXPECT_EQ(x.name, y.name);
    EXPECT_EQ(x.indicator_mass, y.indicator_mass) << x.name;
    EXPECT_EQ(x.indicator_max, y.indicator_max) << x.name;
    EXPECT_EQ(x.drift_l2, y.drift_l2) << x.name;
    ASSERT_TRUE(x.fisher_mean && y.fisher_mean) << x.name;
    EXPECT_EQ(*x.fisher_mean, *y.fisher_mean) << x.name;
    EXPECT_NEAR(*y.fisher_mean, kept.fisher.at(y.name).mean().item<double>(), 1e-12) << y.name;
  }
  ASSERT_EQ(a.top_tokens.size(), b.top_tokens.size());
  for (std::size_t i = 0; i < a.top_tokens.size(); ++i) {
    EXPECT_EQ(a.top_tokens[i].id, b.top_tokens[i].id);
    EXPECT_EQ(a.top_tokens[i].fisher_row_sum, b.top_tokens[i].fisher_row_sum);
  }
  ASSERT_EQ(a.distribution_log10.size(), b.distribution_log10.size());
  for (std::size_t i = 0; i < a.distribution_log10.size(); ++i)
    EXPECT_EQ(a.distribution_log10[i].log10_value, b.distribution_log10[i].log10_value);
  auto params = lm.model->named_parameters();
  for (auto& [n, w] : lean.ft) EXPECT_EQ(w.data_ptr(), params[n].data_ptr()) << n;
}
