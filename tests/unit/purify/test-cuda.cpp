// CUDA against CPU on tiny generated models: logits, gradients, the batched per-example Fisher, clean
// fine-tuning (fused AdamW) and a whole purify give the same numbers on both devices. Every test skips
// where libtorch sees no CUDA device (CI, the development machines); scripts/gpu-check.sh runs them on
// the GPU machine. Dropout is off throughout: CPU and CUDA draw from different generators.
#include <gtest/gtest.h>

#include <cstdlib>
#include <numeric>

#include <torch/torch.h>

#include "finepurify/model/loader.hpp"
#include "finepurify/purify/fisher.hpp"
#include "finepurify/purify/purify.hpp"
#include "finepurify/train/trainer.hpp"
#include "fp_tiny.hpp"

using namespace finepurify;

namespace {

// FINEPURIFY_EXPECT_CUDA=1 (scripts/gpu-check.sh) turns a missing device into a failure: a build that
// did not link libtorch's CUDA backend would otherwise pass by skipping everything.
#define SKIP_WITHOUT_CUDA()                                                                          \
  if (!torch::cuda::is_available()) {                                                                \
    if (std::getenv("FINEPURIFY_EXPECT_CUDA")) FAIL() << "FINEPURIFY_EXPECT_CUDA is set, but libtorch sees no CUDA device"; \
    GTEST_SKIP() << "no CUDA device visible to libtorch";                                            \
  }

model::ModelConfig no_dropout(model::ModelConfig c) {
  c.hidden_dropout_prob = 0;
  c.attention_probs_dropout_prob = 0;
  c.classifier_dropout = 0.0;
  return c;
}

/// max |a - b| over max |a| (both moved to the CPU in float64).
double rel_diff(const torch::Tensor& a, const torch::Tensor& b) {
  auto x = a.detach().to(torch::kCPU, torch::kFloat64), y = b.detach().to(torch::kCPU, torch::kFloat64);
  return (x - y).abs().max().item<double>() / (x.abs().max().item<double>() + 1e-30);
}

/// Per parameter: the share of elements that differ by more than `tol` x the tensor's largest value.
void expect_same_parameters(model::SequenceClassifierImpl& cpu, model::SequenceClassifierImpl& cuda, double tol,
                            double max_mismatch_share) {
  auto a = cpu.named_parameters(), b = cuda.named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (auto& p : a) {
    auto x = p.value().detach().to(torch::kFloat64), y = b[p.key()].detach().cpu().to(torch::kFloat64);
    EXPECT_TRUE(b[p.key()].is_cuda()) << p.key();
    const double scale = x.abs().max().item<double>() + 1e-30;
    const double share = ((x - y).abs() > tol * scale).to(torch::kFloat64).mean().item<double>();
    EXPECT_LE(share, max_mismatch_share) << p.key() << ": " << share << " of its elements differ by more than "
                                         << tol << " of its scale";
  }
}

}  // namespace

TEST(Cuda, LogitsAndGradientsEqualTheCpu) {
  SKIP_WITHOUT_CUDA();
  const torch::Device gpu(torch::kCUDA);
  for (bool roberta : {false, true}) {
    auto c = no_dropout(roberta ? fp_test::tiny_roberta_config() : fp_test::tiny_config());
    auto data = fp_test::tiny_data(9, 5);
    if (roberta)
      for (auto& e : data.encodings) std::fill(e.token_type_ids.begin(), e.token_type_ids.end(), 0);
    data.pad_id = c.pad_token_id;
    auto m_cpu = model::make_random_classifier(c, 7, torch::kCPU), m_gpu = model::make_random_classifier(c, 7, gpu);
    std::vector<int64_t> all(data.size());
    std::iota(all.begin(), all.end(), 0);
    auto run = [&](model::SequenceClassifierImpl& m, torch::Device d) {
      m.train();  // dropout is 0: the training path without randomness
      m.zero_grad();
      auto b = train::collate(data, all, d);  // padded: the masked attention path
      auto logits = m.forward(b.input_ids, b.token_type_ids, b.attention_mask).logits;
      torch::cross_entropy_loss(logits, b.labels).backward();
      return logits;
    };
    auto l_cpu = run(*m_cpu, torch::kCPU), l_gpu = run(*m_gpu, gpu);
    ASSERT_TRUE(l_gpu.is_cuda());
    EXPECT_LE(rel_diff(l_cpu, l_gpu), 1e-5) << (roberta ? "roberta" : "bert") << " logits";
    auto g_cpu = m_cpu->named_parameters(), g_gpu = m_gpu->named_parameters();
    for (auto& p : g_cpu) {
      if (!p.value().grad().defined()) continue;
      EXPECT_LE(rel_diff(p.value().grad(), g_gpu[p.key()].grad()), 1e-4) << p.key() << " gradient";
    }
  }
}

TEST(Cuda, BatchedFisherEqualsTheCpu) {
  SKIP_WITHOUT_CUDA();
  const torch::Device gpu(torch::kCUDA);
  auto c = no_dropout(fp_test::tiny_config());
  auto data = fp_test::tiny_data(13, 17);
  auto m_cpu = model::make_random_classifier(c, 4, torch::kCPU), m_gpu = model::make_random_classifier(c, 4, gpu);
  purify::FisherOptions o{0, false, 5};  // 13 = 5 + 5 + 3: padded batches
  auto f_cpu = purify::diagonal_fisher(*m_cpu, data, torch::kCPU, o);
  auto f_gpu = purify::diagonal_fisher(*m_gpu, data, gpu, o);
  ASSERT_EQ(f_cpu.size(), f_gpu.size());
  double scale = 0;
  for (auto& [name, f] : f_cpu) scale = std::max(scale, f.abs().max().item<double>());
  for (auto& [name, f] : f_cpu) {
    ASSERT_TRUE(f_gpu.count(name)) << name;
    auto diff = (f.to(torch::kFloat64) - f_gpu.at(name).cpu().to(torch::kFloat64)).abs().max().item<double>();
    // relative to the tensor, or to the whole Fisher for tensors that are rounding noise (attention key bias)
    EXPECT_LE(diff, 1e-4 * std::max(f.abs().max().item<double>(), 1e-6 * scale)) << name;
  }
}

TEST(Cuda, FineTuningWithFusedAdamWEqualsTheCpu) {
  SKIP_WITHOUT_CUDA();
  const torch::Device gpu(torch::kCUDA);
  auto c = no_dropout(fp_test::tiny_config());
  auto tr = fp_test::tiny_data(48, 3), dv = fp_test::tiny_data(16, 4);
  auto m_cpu = model::make_random_classifier(c, 2, torch::kCPU), m_gpu = model::make_random_classifier(c, 2, gpu);
  auto o = train::train_options(2, 1e-3, 8);
  auto r_cpu = train::fine_tune(*m_cpu, tr, &dv, o, torch::kCPU);
  auto r_gpu = train::fine_tune(*m_gpu, tr, &dv, o, gpu);
  ASSERT_EQ(r_cpu.epochs.size(), r_gpu.epochs.size());
  for (size_t e = 0; e < r_cpu.epochs.size(); ++e)
    EXPECT_NEAR(r_cpu.epochs[e].train_loss, r_gpu.epochs[e].train_loss, 1e-4) << "epoch " << e;
  // at most one of the 16 dev rows may sit close enough to the decision boundary to flip
  EXPECT_NEAR(train::evaluate(*m_cpu, dv, torch::kCPU).accuracy, train::evaluate(*m_gpu, dv, gpu).accuracy, 1.5 / 16);
  expect_same_parameters(*m_cpu, *m_gpu, 1e-3, 0.0);
}

TEST(Cuda, PurifyEqualsTheCpu) {
  SKIP_WITHOUT_CUDA();
  const torch::Device gpu(torch::kCUDA);
  using fp_test::temp_dir;
  auto c = no_dropout(fp_test::tiny_config());
  auto dir = temp_dir("cuda-purify");
  auto pre = model::make_random_classifier(c, 1);
  model::save_classifier(*pre, (dir / "pre").string(), "");
  auto make_ft = [&](torch::Device d) {
    auto m = model::make_random_classifier(c, 1);
    torch::NoGradGuard ng;
    torch::manual_seed(2);
    for (auto& t : m->parameters()) t.add_(torch::randn(t.sizes()) * 0.05);
    m->to(d);
    return m;
  };
  auto data = fp_test::tiny_data(40, 9);
  auto [tr, dv] = purify::split_clean(data, 0.25, 1);
  fp_test::TinyTokenizer tok;
  purify::PurifyOptions o;
  o.max_acc_drop = 5;
  o.grid = {0.05, 0.2, 0.5};
  o.sweep = true;
  o.train.epochs = 1;
  o.train.batch_size = 8;
  auto ft_cpu = make_ft(torch::kCPU), ft_gpu = make_ft(gpu);
  auto r_cpu = purify::purify(*ft_cpu, (dir / "pre").string(), tr, dv, tok, o, torch::kCPU);
  auto r_gpu = purify::purify(*ft_gpu, (dir / "pre").string(), tr, dv, tok, o, gpu);
  ASSERT_EQ(r_cpu.evaluated.size(), r_gpu.evaluated.size());
  for (size_t i = 0; i < r_cpu.evaluated.size(); ++i) {
    EXPECT_EQ(r_cpu.evaluated[i].reset_dims, r_gpu.evaluated[i].reset_dims) << "point " << i;
    EXPECT_NEAR(r_cpu.evaluated[i].dev_accuracy, r_gpu.evaluated[i].dev_accuracy, 1.5 / dv.size()) << "point " << i;
  }
  // A near-tie in the ranking may put a handful of dimensions on the other side of the cut: allow 0.5%.
  expect_same_parameters(*ft_cpu, *ft_gpu, 1e-3, 0.005);
}
