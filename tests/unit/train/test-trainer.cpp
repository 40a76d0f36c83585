// Unit tests of fine_tune / evaluate on a tiny model and a synthetic task (label = token "a" occurs).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "finepurify/error.hpp"
#include "finepurify/model/bert.hpp"
#include "finepurify/model/config.hpp"
#include "finepurify/model/loader.hpp"
#include "finepurify/train/data.hpp"
#include "finepurify/train/trainer.hpp"
#include "fp_test.hpp"

using nlohmann::json;
using namespace finepurify;

namespace {

constexpr int64_t kCls = 2, kSep = 3, kA = 5;  // [PAD]=0, [CLS]=2, [SEP]=3, "a"=5

model::ModelConfig tiny_config(int num_labels = 2) {
  json j = {{"model_type", "bert"},          {"vocab_size", 50},       {"hidden_size", 16},
            {"num_hidden_layers", 2},        {"num_attention_heads", 2}, {"intermediate_size", 32},
            {"max_position_embeddings", 32}, {"initializer_range", 0.02}, {"num_labels", num_labels}};
  return model::config_from_json(j, "tiny");
}

text::Encoding encoding(const std::vector<int64_t>& body) {
  text::Encoding e;
  e.input_ids.push_back(kCls);
  e.input_ids.insert(e.input_ids.end(), body.begin(), body.end());
  e.input_ids.push_back(kSep);
  e.token_type_ids.assign(e.input_ids.size(), 0);
  e.attention_mask.assign(e.input_ids.size(), 1);
  return e;
}

/// n examples of 2..9 random tokens from 6..49; half of them get an "a" at a random place -> label 1.
train::TokenizedSet toy_set(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> len(2, 9), tok(6, 49);
  train::TokenizedSet s;
  s.pad_id = 0;
  for (int64_t i = 0; i < n; ++i) {
    std::vector<int64_t> body(len(rng));
    for (auto& t : body) t = tok(rng);
    const bool has_a = i % 2 == 0;
    if (has_a) body[rng() % body.size()] = kA;
    s.encodings.push_back(encoding(body));
    s.labels.push_back(has_a ? 1 : 0);
  }
  return s;
}

train::TrainOptions toy_options() {
  train::TrainOptions o;
  o.epochs = 6;
  o.batch_size = 16;
  o.lr = 3e-3;
  o.warmup_ratio = 0.1;
  o.seed = 3;
  o.label = "toy";
  return o;
}

bool same_weights(model::SequenceClassifierImpl& a, model::SequenceClassifierImpl& b) {
  auto sa = model::snapshot(a), sb = model::snapshot(b);
  if (sa.size() != sb.size()) return false;
  for (auto& [n, t] : sa)
    if (!torch::equal(t, sb.at(n))) return false;
  return true;
}

TEST(Trainer, LearnsToyTaskQuickly) {
  auto tr = toy_set(384, 1), dev = toy_set(200, 2);
  auto m = model::make_random_classifier(tiny_config(), 7);
  const double before = train::evaluate(*m, dev, torch::kCPU).accuracy;
  auto t0 = std::chrono::steady_clock::now();
  auto res = train::fine_tune(*m, tr, &dev, toy_options(), torch::kCPU);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto ev = train::evaluate(*m, dev, torch::kCPU);
  std::printf("toy task: dev accuracy %.3f before, %.3f after (%lld steps, %.2f s, best epoch %d)\n", before,
              ev.accuracy, static_cast<long long>(res.steps), secs, res.best_epoch);
  EXPECT_GT(ev.accuracy, 0.9);
  EXPECT_EQ(res.steps, 6 * (384 / 16));
  EXPECT_EQ(res.epochs.size(), 6u);
  EXPECT_DOUBLE_EQ(ev.accuracy, res.best_dev_accuracy);
  EXPECT_FALSE(m->is_training());  // left in eval mode
  for (auto& p : m->parameters()) EXPECT_TRUE(p.requires_grad());
}

TEST(Trainer, SameSeedGivesBitIdenticalWeights) {
  auto tr = toy_set(96, 1), dev = toy_set(32, 2);
  auto opt = toy_options();
  opt.epochs = 2;
  auto a = model::make_random_classifier(tiny_config(), 7);
  auto b = model::make_random_classifier(tiny_config(), 7);
  ASSERT_TRUE(same_weights(*a, *b));
  train::fine_tune(*a, tr, &dev, opt, torch::kCPU);
  train::fine_tune(*b, tr, &dev, opt, torch::kCPU);
  EXPECT_TRUE(same_weights(*a, *b));
  auto c = model::make_random_classifier(tiny_config(), 7);
  opt.seed = 4;
  train::fine_tune(*c, tr, &dev, opt, torch::kCPU);
  EXPECT_FALSE(same_weights(*a, *c));
}

TEST(Trainer, MaxStepsStopsEarly) {
  auto tr = toy_set(96, 1);
  auto opt = toy_options();
  opt.max_steps = 7;  // 6 steps per epoch -> 2 epochs, the second cut short
  auto m = model::make_random_classifier(tiny_config(), 7);
  auto res = train::fine_tune(*m, tr, nullptr, opt, torch::kCPU);
  EXPECT_EQ(res.steps, 7);
  EXPECT_EQ(res.epochs.size(), 2u);
}

TEST(Trainer, KeepBestRestoresBestEpoch) {
  auto tr = toy_set(384, 1), dev = toy_set(200, 2);
  const int64_t steps_per_epoch = 384 / 16;
  // Train normally for 3 epochs, then on flipped labels: dev accuracy collapses after epoch 3.
  auto make_opt = [&](bool keep_best, int64_t* calls) {
    auto o = toy_options();
    o.keep_best = keep_best;
    o.loss_fn = [calls, steps_per_epoch](model::SequenceClassifierImpl& m, const train::Batch& b) {
      const bool flip = (*calls)++ >= 3 * steps_per_epoch;
      auto logits = m.forward(b.input_ids, b.token_type_ids, b.attention_mask).logits;
      return torch::cross_entropy_loss(logits, flip ? 1 - b.labels : b.labels);
    };
    return o;
  };
  int64_t calls = 0;
  auto m = model::make_random_classifier(tiny_config(), 7);
  auto res = train::fine_tune(*m, tr, &dev, make_opt(true, &calls), torch::kCPU);
  ASSERT_EQ(res.epochs.size(), 6u);
  std::printf("keep_best: dev accuracy per epoch:");
  for (auto& e : res.epochs) std::printf(" %.3f", e.dev_accuracy);
  std::printf(" -> best epoch %d\n", res.best_epoch);
  ASSERT_LE(res.best_epoch, 4);
  EXPECT_LT(res.epochs.back().dev_accuracy, res.best_dev_accuracy);
  EXPECT_DOUBLE_EQ(res.epochs[res.best_epoch - 1].dev_accuracy, res.best_dev_accuracy);
  EXPECT_DOUBLE_EQ(train::evaluate(*m, dev, torch::kCPU).accuracy, res.best_dev_accuracy);

  calls = 0;
  auto m2 = model::make_random_classifier(tiny_config(), 7);
  auto res2 = train::fine_tune(*m2, tr, &dev, make_opt(false, &calls), torch::kCPU);
  EXPECT_DOUBLE_EQ(train::evaluate(*m2, dev, torch::kCPU).accuracy, res2.epochs.back().dev_accuracy);
}

TEST(Trainer, WeightDecayGrouping) {
  EXPECT_TRUE(model::is_no_decay("bert.encoder.layer.0.attention.output.LayerNorm.weight"));
  EXPECT_TRUE(model::is_no_decay("bert.encoder.layer.0.attention.output.LayerNorm.bias"));
  EXPECT_TRUE(model::is_no_decay("bert.embeddings.LayerNorm.weight"));
  EXPECT_TRUE(model::is_no_decay("bert.encoder.layer.1.attention.self.query.bias"));
  EXPECT_TRUE(model::is_no_decay("classifier.bias"));
  EXPECT_TRUE(model::is_no_decay("classifier.out_proj.bias"));
  EXPECT_FALSE(model::is_no_decay("classifier.weight"));
  EXPECT_FALSE(model::is_no_decay("classifier.out_proj.weight"));
  EXPECT_FALSE(model::is_no_decay("bert.embeddings.word_embeddings.weight"));
  EXPECT_FALSE(model::is_no_decay("roberta.embeddings.position_embeddings.weight"));
  EXPECT_FALSE(model::is_no_decay("bert.encoder.layer.0.intermediate.dense.weight"));
  EXPECT_FALSE(model::is_no_decay("bert.pooler.dense.weight"));

  // Functional: with zero gradients AdamW only applies decoupled decay, so after one step
  // decayed tensors are scaled by (1 - lr * wd) and biases / LayerNorm weights are unchanged.
  auto m = model::make_random_classifier(tiny_config(), 7);
  auto before = model::snapshot(*m);
  auto opt = toy_options();
  opt.max_steps = 1;
  opt.warmup_ratio = 0;
  opt.lr = 0.1;
  opt.weight_decay = 0.5;
  opt.loss_fn = [](model::SequenceClassifierImpl& mm, const train::Batch& b) {
    auto logits = mm.forward(b.input_ids, b.token_type_ids, b.attention_mask).logits;
    torch::Tensor z = logits.sum() * 0.0;
    for (auto& p : mm.parameters()) z = z + p.sum() * 0.0;
    return z;
  };
  train::fine_tune(*m, toy_set(16, 1), nullptr, opt, torch::kCPU);
  auto after = model::snapshot(*m);
  int decayed = 0, kept = 0;
  for (auto& [n, t] : before) {
    if (model::is_no_decay(n)) {
      EXPECT_TRUE(torch::equal(after.at(n), t)) << n;
      ++kept;
    } else {
      EXPECT_TRUE(torch::allclose(after.at(n), t * 0.95, 1e-6, 1e-9)) << n;
      ++decayed;
    }
  }
  // per layer: q/k/v biases, 2 dense biases of the outputs, intermediate bias, 2 LayerNorms (weight+bias) = 10;
  // plus the embeddings' LayerNorm (2), the pooler and classifier biases (2)
  EXPECT_EQ(kept, 2 * 10 + 2 + 2);
  EXPECT_GT(decayed, 0);
}

TEST(Trainer, TrainableFilterFreezesOthers) {
  auto m = model::make_random_classifier(tiny_config(), 7);
  auto before = model::snapshot(*m);
  auto opt = toy_options();
  opt.epochs = 1;
  opt.trainable = [](const std::string& n) { return n.rfind("classifier.", 0) == 0; };
  train::fine_tune(*m, toy_set(64, 1), nullptr, opt, torch::kCPU);
  auto after = model::snapshot(*m);
  for (auto& [n, t] : before) {
    if (n.rfind("classifier.", 0) == 0) EXPECT_FALSE(torch::equal(after.at(n), t)) << n;
    else EXPECT_TRUE(torch::equal(after.at(n), t)) << n;
  }
}

TEST(Trainer, RejectsBadInputs) {
  auto m = model::make_random_classifier(tiny_config(), 7);
  train::TokenizedSet empty;
  EXPECT_THROW(train::fine_tune(*m, empty, nullptr, toy_options(), torch::kCPU), Error);
  auto bad = toy_set(8, 1);
  bad.labels[3] = 2;  // 2 labels only
  try {
    train::fine_tune(*m, bad, nullptr, toy_options(), torch::kCPU);
    ADD_FAILURE() << "out-of-range label accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::DataInvalid);
  }
}

/// A 3-class model whose prediction is the class of the first token: ids 10, 11, 12 -> 0, 1, 2.
/// Every encoder matrix is zero, so each layer passes its input through (LayerNorm of a normalised
/// vector); the word embedding of 10 + c is a one-hot at dimension c; pooler = identity.
model::SequenceClassifier first_token_model() {
  auto m = model::make_random_classifier(tiny_config(3), 1);
  torch::NoGradGuard ng;
  for (auto& p : m->named_parameters()) {
    if (p.key().find("LayerNorm.weight") != std::string::npos) p.value().fill_(1.0);
    else p.value().zero_();
  }
  auto& w = m->word_embedding_weight();
  for (int c = 0; c < 3; ++c) w[10 + c][c] = 1.0;
  m->base->pooler_dense->weight.copy_(torch::eye(16));
  m->classifier->weight.zero_();
  for (int c = 0; c < 3; ++c) m->classifier->weight[c][c] = 1.0;
  return m;
}

TEST(Evaluate, ConfusionPrecisionRecallF1OnHandMadeCase) {
  auto m = first_token_model();
  // (true label, predicted class) pairs:
  const std::vector<std::pair<int64_t, int64_t>> cases = {{0, 0}, {0, 0}, {0, 1}, {1, 1}, {1, 1}, {1, 1},
                                                          {1, 2}, {2, 2}, {2, 0}, {2, 0}};
  train::TokenizedSet s;
  for (auto& [y, p] : cases) {
    text::Encoding e;
    e.input_ids = {10 + p, 20, 21};
    if (y == 1) e.input_ids.push_back(22);  // different lengths -> padding inside batches
    e.token_type_ids.assign(e.input_ids.size(), 0);
    e.attention_mask.assign(e.input_ids.size(), 1);
    s.encodings.push_back(e);
    s.labels.push_back(y);
  }
  auto r = train::evaluate(*m, s, torch::kCPU, 4);
  std::vector<int64_t> want_pred;
  for (auto& c : cases) want_pred.push_back(c.second);
  ASSERT_EQ(r.predictions, want_pred);
  EXPECT_EQ(r.n, 10);
  EXPECT_DOUBLE_EQ(r.accuracy, 0.6);
  EXPECT_EQ(r.confusion, (std::vector<std::vector<int64_t>>{{2, 1, 0}, {0, 3, 1}, {2, 0, 1}}));
  // class 0: P 2/4 R 2/3; class 1: P 3/4 R 3/4; class 2: P 1/2 R 1/3
  const std::vector<double> P = {0.5, 0.75, 0.5}, R = {2.0 / 3, 0.75, 1.0 / 3};
  double macro = 0;
  for (int c = 0; c < 3; ++c) {
    EXPECT_NEAR(r.precision[c], P[c], 1e-12) << c;
    EXPECT_NEAR(r.recall[c], R[c], 1e-12) << c;
    const double f = 2 * P[c] * R[c] / (P[c] + R[c]);
    EXPECT_NEAR(r.f1[c], f, 1e-12) << c;
    macro += f / 3;
  }
  EXPECT_NEAR(r.macro_f1, macro, 1e-12);
  ASSERT_EQ(r.logits.sizes(), (torch::IntArrayRef{10, 3}));
  for (int64_t i = 0; i < 10; ++i) EXPECT_EQ(r.logits[i].argmax().item<int64_t>(), want_pred[i]);
  EXPECT_EQ(r.confusion[2][0], 2);

  // batch size does not change the outcome (dataset order is kept)
  auto r1 = train::evaluate(*m, s, torch::kCPU, 1);
  EXPECT_EQ(r1.predictions, r.predictions);
  EXPECT_TRUE(torch::allclose(r1.logits, r.logits, 1e-5, 1e-6));

  // a class never predicted and never true: precision/recall/F1 0, no division by zero
  train::TokenizedSet only0 = train::subset(s, {0, 1});
  auto r0 = train::evaluate(*m, only0, torch::kCPU);
  EXPECT_DOUBLE_EQ(r0.accuracy, 1.0);
  EXPECT_DOUBLE_EQ(r0.precision[2], 0.0);
  EXPECT_DOUBLE_EQ(r0.recall[2], 0.0);
  EXPECT_DOUBLE_EQ(r0.f1[2], 0.0);

  // unlabelled rows (-1) are predicted but not scored
  auto unl = s;
  unl.labels.assign(unl.labels.size(), -1);
  auto ru = train::evaluate(*m, unl, torch::kCPU);
  EXPECT_EQ(ru.predictions, want_pred);
  EXPECT_EQ(ru.confusion[0][0] + ru.confusion[1][1] + ru.confusion[2][2], 0);
}

TEST(Evaluate, AttackSuccessRate) {
  // target 1: rows with true label 1 do not count; 2 of the 4 others are predicted 1
  EXPECT_DOUBLE_EQ(train::attack_success_rate({1, 1, 0, 1, 0, 1}, {0, 1, 0, 2, 0, 1}, 1), 0.5);
  EXPECT_DOUBLE_EQ(train::attack_success_rate({1, 1}, {0, 0}, 1), 1.0);
  EXPECT_DOUBLE_EQ(train::attack_success_rate({0, 0}, {0, 0}, 1), 0.0);
  EXPECT_DOUBLE_EQ(train::attack_success_rate({1, 1}, {1, 1}, 1), -1.0);  // nothing to attack
  EXPECT_DOUBLE_EQ(train::attack_success_rate({1, 1, 0}, {-1, 0, 0}, 1), 0.5);  // unlabelled rows do not count
}

TEST(Evaluate, FlipRateLeavesOutTheModelsOwnErrors) {
  // clean rows: labels 0 1 2 0 -1 0, target 1 -> triggered rows come from rows 0, 2, 3, 5
  const std::vector<int64_t> labels = {0, 1, 2, 0, -1, 0};
  const auto src = train::non_target_rows(labels, 1);
  EXPECT_EQ(src, (std::vector<int64_t>{0, 2, 3, 5}));
  // clean predictions: row 0 right, row 2 wrong (predicted 1), row 3 right, row 5 right
  const std::vector<int64_t> clean_pred = {0, 1, 1, 0, 0, 0};
  // triggered: row 0 -> 1 (flip), row 2 -> 1 (already wrong: left out), row 3 -> 0, row 5 -> 1 (flip)
  const std::vector<int64_t> trig_pred = {1, 1, 0, 1};
  EXPECT_DOUBLE_EQ(train::flip_rate(clean_pred, labels, trig_pred, src, 1), 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(train::attack_success_rate(trig_pred, {0, 2, 0, 0}, 1), 0.75);  // the ASR counts row 2 too
  EXPECT_DOUBLE_EQ(train::flip_rate({1, 1, 1, 1, 1, 1}, labels, trig_pred, src, 1), -1.0);  // no row right
  EXPECT_THROW(train::flip_rate(clean_pred, labels, {1, 1}, src, 1), Error);                 // sizes differ
  EXPECT_THROW(train::flip_rate(clean_pred, labels, {1}, {9}, 1), Error);                    // source outside
}

TEST(Data, CollatePadsRightAndBatchesCoverAll) {
  auto s = toy_set(10, 5);
  s.pad_id = 0;
  auto b = train::collate(s, {0, 1, 2}, torch::kCPU);
  int64_t T = 0;
  for (int i = 0; i < 3; ++i) T = std::max<int64_t>(T, s.encodings[i].input_ids.size());
  ASSERT_EQ(b.input_ids.sizes(), (torch::IntArrayRef{3, T}));
  for (int i = 0; i < 3; ++i) {
    const int64_t len = s.encodings[i].input_ids.size();
    EXPECT_EQ(b.attention_mask[i].sum().item<int64_t>(), len);
    if (len < T) EXPECT_EQ(b.input_ids[i][len].item<int64_t>(), 0);
  }
  auto batches = train::make_batches(10, 4, true, 1);
  ASSERT_EQ(batches.size(), 3u);
  std::vector<int64_t> all;
  for (auto& bb : batches) all.insert(all.end(), bb.begin(), bb.end());
  std::sort(all.begin(), all.end());
  for (int64_t i = 0; i < 10; ++i) EXPECT_EQ(all[i], i);
  EXPECT_EQ(train::make_batches(10, 4, true, 1), batches);
}

/// Padded tokens of a batching: sum over batches of (batch size x longest row).
int64_t padded_tokens(const train::TokenizedSet& s, const std::vector<std::vector<int64_t>>& batches) {
  int64_t total = 0;
  for (auto& b : batches) {
    size_t longest = 0;
    for (auto i : b) longest = std::max(longest, s.encodings[i].input_ids.size());
    total += static_cast<int64_t>(longest * b.size());
  }
  return total;
}

TEST(Data, LengthGroupedBatchesCoverEveryRowOnceWithLessPadding) {
  const auto s = toy_set(203, 7);
  const auto grouped = train::length_grouped_batches(s, 8, 5, 3);
  ASSERT_EQ(grouped.size(), 26u);  // ceil(203 / 8)
  std::vector<int64_t> all;
  for (auto& b : grouped) {
    EXPECT_LE(b.size(), 8u);
    all.insert(all.end(), b.begin(), b.end());
  }
  std::sort(all.begin(), all.end());
  ASSERT_EQ(all.size(), 203u);
  for (int64_t i = 0; i < 203; ++i) EXPECT_EQ(all[i], i);
  EXPECT_EQ(train::length_grouped_batches(s, 8, 5, 3), grouped);  // deterministic in the seed
  EXPECT_NE(train::length_grouped_batches(s, 8, 5, 4), grouped);  // and shuffled by it
  const auto plain = train::make_batches(s.size(), 8, true, 3);
  EXPECT_EQ(train::length_grouped_batches(s, 8, 1, 3), plain);  // window 1: plain shuffled batches
  EXPECT_LT(padded_tokens(s, grouped), padded_tokens(s, plain) * 9 / 10);
}

}  // namespace
