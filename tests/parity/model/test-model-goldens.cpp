// Parity of the BERT/RoBERTa classifiers with Hugging Face goldens: logits, hidden states, pooler, loss, grads.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "finepurify/error.hpp"
#include "finepurify/io/safetensors.hpp"
#include "finepurify/model/bert.hpp"
#include "finepurify/model/loader.hpp"
#include "fp_test.hpp"

namespace fs = std::filesystem;
using namespace finepurify;

namespace {

fs::path model_dir(const std::string& name) { return fp_test::shared_dir() / "goldens" / "models" / name; }

/// Largest value of (|got - want| - atol - rtol|want|) relative excess; returns max|got-want| and
/// records whether every element passed.
struct Cmp {
  double max_abs = 0;  ///< max |got - want|
  double max_ratio = 0;  ///< max |got - want| / (atol + rtol |want|): passes when <= 1
};

Cmp compare_elementwise(const torch::Tensor& got_in, const torch::Tensor& want_in, double atol, double rtol) {
  auto got = got_in.detach().to(torch::kDouble), want = want_in.detach().to(torch::kDouble);
  EXPECT_EQ(got.sizes(), want.sizes());
  if (got.sizes() != want.sizes()) return {1e30, 1e30};
  auto diff = (got - want).abs();
  auto bound = atol + rtol * want.abs();
  Cmp c;
  c.max_abs = diff.numel() ? diff.max().item<double>() : 0.0;
  c.max_ratio = diff.numel() ? (diff / bound).max().item<double>() : 0.0;
  return c;
}

struct Batch {
  torch::Tensor ids, types, mask, labels;
};

Batch read_batch(const io::SafetensorsFile& g) {
  return {g.tensor("input_ids"), g.tensor("token_type_ids"), g.tensor("attention_mask"),
          g.view().contains("labels") ? g.tensor("labels") : torch::Tensor()};
}

void check_hidden_states(model::SequenceClassifierImpl& m, const io::SafetensorsFile& g, const Batch& b,
                         const std::string& tag, double* worst_abs, double* worst_ratio) {
  torch::NoGradGuard ng;
  model::ForwardOptions fo;
  fo.output_hidden_states = true;
  auto out = m.forward(b.ids, b.types, b.mask, fo);
  const auto L = m.config.num_hidden_layers;
  ASSERT_EQ(static_cast<int64_t>(out.hidden_states.size()), L + 1) << tag;
  for (int64_t l = 0; l <= L; ++l) {
    const std::string key = "hidden_states." + std::to_string(l);
    ASSERT_TRUE(g.view().contains(key)) << tag << " " << key;
    auto c = compare_elementwise(out.hidden_states[l], g.tensor(key), 1e-4, 1e-4);
    EXPECT_LE(c.max_ratio, 1.0) << tag << " " << key << " max|d| " << c.max_abs;
    *worst_abs = std::max(*worst_abs, c.max_abs);
    *worst_ratio = std::max(*worst_ratio, c.max_ratio);
  }
}

class ClassifierGoldens : public ::testing::TestWithParam<std::string> {};

TEST_P(ClassifierGoldens, MatchesTransformers) {
  if (!fp_test::have_shared()) GTEST_SKIP() << "shared/ not available";
  const std::string name = GetParam();
  const auto dir = model_dir(name);
  model::LoadOptions lo;
  lo.allow_missing_head = false;
  auto lm = model::load_classifier(dir.string(), lo);
  auto& m = *lm.model;
  EXPECT_TRUE(lm.report.initialised.empty());
  EXPECT_TRUE(lm.report.unused.empty()) << lm.report.summary();
  m.eval();

  io::SafetensorsFile g((dir / "golden.safetensors").string());
  auto b = read_batch(g);
  ASSERT_TRUE(b.labels.defined());
  const int64_t B = b.ids.size(0);

  // Position ids are computed by the model; they must equal the informational ones stored.
  EXPECT_TRUE(torch::equal(m.base->embeddings->position_ids(b.ids), g.tensor("position_ids"))) << name;

  double hid_abs = 0, hid_ratio = 0;
  check_hidden_states(m, g, b, name, &hid_abs, &hid_ratio);

  // Forward with grad: logits, pooler, loss, grads of every parameter (eval mode).
  m.zero_grad();
  model::ForwardOptions fo;
  auto out = m.forward(b.ids, b.types, b.mask, fo);
  auto lg = compare_elementwise(out.logits, g.tensor("logits"), 1e-5, 1e-4);
  EXPECT_LE(lg.max_ratio, 1.0) << name << " logits max|d| " << lg.max_abs;

  double pool_abs = 0;
  if (!m.config.is_roberta()) {
    ASSERT_TRUE(out.pooler_output.defined());
    auto pc = compare_elementwise(out.pooler_output, g.tensor("pooler_output"), 1e-4, 1e-4);
    EXPECT_LE(pc.max_ratio, 1.0) << name << " pooler_output max|d| " << pc.max_abs;
    pool_abs = pc.max_abs;
  }

  auto loss = torch::cross_entropy_loss(out.logits, b.labels);
  auto lc = compare_elementwise(loss.reshape({1}), g.tensor("loss"), 1e-6, 1e-5);
  EXPECT_LE(lc.max_ratio, 1.0) << name << " loss max|d| " << lc.max_abs;
  loss.backward();

  // grads: per tensor max|d| <= 1e-4 max|want| + 1e-6 G
  double G = 0;
  for (const auto& t : g.view().tensors())
    if (t.name.rfind("grad.", 0) == 0) G = std::max(G, g.tensor(t.name).abs().max().item<double>());
  ASSERT_GT(G, 0.0);
  double grad_worst_ratio = 0, grad_worst_abs = 0;
  std::string grad_worst_name;
  int64_t n_grads = 0;
  std::set<std::string> params;
  for (auto& p : m.named_parameters()) {
    params.insert(p.key());
    const std::string key = "grad." + p.key();
    ASSERT_TRUE(g.view().contains(key)) << name << ": no golden " << key;
    auto want = g.tensor(key).to(torch::kDouble);
    ASSERT_TRUE(p.value().grad().defined()) << name << ": no grad for " << p.key();
    auto got = p.value().grad().detach().to(torch::kDouble);
    ASSERT_EQ(got.sizes(), want.sizes()) << key;
    const double d = (got - want).abs().max().item<double>();
    const double bound = 1e-4 * want.abs().max().item<double>() + 1e-6 * G;
    EXPECT_LE(d, bound) << name << " " << key;
    if (d / bound > grad_worst_ratio) {
      grad_worst_ratio = d / bound;
      grad_worst_name = p.key();
      grad_worst_abs = d;
    }
    ++n_grads;
  }
  // and the golden has no grad the model lacks (every named_parameter covered both ways)
  for (const auto& t : g.view().tensors())
    if (t.name.rfind("grad.", 0) == 0) EXPECT_TRUE(params.count(t.name.substr(5))) << name << ": extra " << t.name;

  // the pad row of the word embedding gets exactly zero gradient (padding_idx)
  auto wgrad = m.word_embedding_weight().grad();
  EXPECT_EQ(wgrad[m.config.pad_token_id].abs().max().item<double>(), 0.0) << name;

  // per-example loss: each example alone, without its pad columns
  double pel_abs = 0, pel_ratio = 0;
  {
    torch::NoGradGuard ng;
    auto want = g.tensor("per_example_loss");
    for (int64_t i = 0; i < B; ++i) {
      const int64_t len = b.mask[i].sum().item<int64_t>();
      auto sl = [&](const torch::Tensor& t) { return t.slice(0, i, i + 1).slice(1, 0, len); };
      auto lo1 = m.forward(sl(b.ids), sl(b.types), sl(b.mask)).logits;
      auto li = torch::cross_entropy_loss(lo1, b.labels.slice(0, i, i + 1));
      auto c = compare_elementwise(li.reshape({1}), want.slice(0, i, i + 1), 1e-6, 1e-5);
      EXPECT_LE(c.max_ratio, 1.0) << name << " per_example_loss[" << i << "] max|d| " << c.max_abs;
      pel_abs = std::max(pel_abs, c.max_abs);
      pel_ratio = std::max(pel_ratio, c.max_ratio);
    }
  }

  std::printf(
      "[%s] max|d|: logits %.3g (%.3g of tol), hidden %.3g (%.3g of tol), pooler %.3g, loss %.3g (%.3g of tol), "
      "per-example loss %.3g (%.3g of tol), grads over %lld tensors: worst %s |d| %.3g = %.3g of tol (G %.3g)\n",
      name.c_str(), lg.max_abs, lg.max_ratio, hid_abs, hid_ratio, pool_abs, lc.max_abs, lc.max_ratio, pel_abs,
      pel_ratio, static_cast<long long>(n_grads), grad_worst_name.c_str(), grad_worst_abs, grad_worst_ratio, G);
}

INSTANTIATE_TEST_SUITE_P(Models, ClassifierGoldens,
                         ::testing::Values("bert-h32-2cls", "bert-h48-3cls", "roberta-h32-2cls", "roberta-h48-3cls"),
                         [](const ::testing::TestParamInfo<std::string>& i) {
                           std::string s = i.param;
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

TEST(BaseGoldens, MlmCheckpointHiddenStatesAndFreshHead) {
  if (!fp_test::have_shared()) GTEST_SKIP() << "shared/ not available";
  const auto dir = model_dir("bert-mlm-base");
  model::LoadOptions lo;
  lo.num_labels = 2;
  auto lm = model::load_classifier(dir.string(), lo);
  const std::vector<std::string> want_init = {"bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight",
                                              "classifier.bias"};
  auto got_init = lm.report.initialised;
  auto sorted_want = want_init;
  std::sort(got_init.begin(), got_init.end());
  std::sort(sorted_want.begin(), sorted_want.end());
  EXPECT_EQ(got_init, sorted_want) << lm.report.summary();
  EXPECT_TRUE(lm.report.unused.empty()) << lm.report.summary();
  // the MLM head tensors are reported as ignored, not as unused
  int cls = 0;
  for (auto& n : lm.report.ignored) cls += n.rfind("cls.", 0) == 0;
  EXPECT_EQ(cls, 5) << lm.report.summary();
  // fresh head follows HF's init: biases zero, weights N(0, initializer_range)
  auto& m = *lm.model;
  EXPECT_EQ(m.classifier->bias.abs().max().item<double>(), 0.0);
  EXPECT_EQ(m.base->pooler_dense->bias.abs().max().item<double>(), 0.0);
  const double sd = m.base->pooler_dense->weight.std().item<double>();
  EXPECT_NEAR(sd, lm.config.initializer_range, 0.3 * lm.config.initializer_range);

  m.eval();
  io::SafetensorsFile g((dir / "golden.safetensors").string());
  auto b = read_batch(g);
  EXPECT_TRUE(torch::equal(m.base->embeddings->position_ids(b.ids), g.tensor("position_ids")));
  double hid_abs = 0, hid_ratio = 0;
  check_hidden_states(m, g, b, "bert-mlm-base", &hid_abs, &hid_ratio);
  std::printf("[bert-mlm-base] hidden states max|d| %.3g (%.3g of tol); initialised: %s\n", hid_abs, hid_ratio,
              lm.report.summary().c_str());

  // the same seed gives the same fresh head; another seed another one
  auto lm2 = model::load_classifier(dir.string(), lo);
  EXPECT_TRUE(torch::equal(lm2.model->classifier->weight, m.classifier->weight));
  lo.seed = 7;
  auto lm3 = model::load_classifier(dir.string(), lo);
  EXPECT_FALSE(torch::equal(lm3.model->classifier->weight, m.classifier->weight));
  // encoder weights are the checkpoint's whatever the seed
  EXPECT_TRUE(torch::equal(lm3.model->word_embedding_weight(), m.word_embedding_weight()));
}

TEST(BaseGoldens, MissingHeadRefusedWhenNotAllowed) {
  if (!fp_test::have_shared()) GTEST_SKIP() << "shared/ not available";
  model::LoadOptions lo;
  lo.allow_missing_head = false;
  try {
    model::load_classifier(model_dir("bert-mlm-base").string(), lo);
    FAIL() << "a base checkpoint loaded as a trained classifier";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::CheckpointMismatch) << e.what();
    EXPECT_NE(std::string(e.what()).find("bert.pooler.dense.weight"), std::string::npos) << e.what();
  }
}

}  // namespace
