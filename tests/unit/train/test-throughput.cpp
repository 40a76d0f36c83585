// Unit tests of the benchmark's batches (train::consecutive_batches, measure_throughput on fixed
// batches) and of the model's two attention paths: a row alone (no padding, so no mask) gives the
// logits it gets padded inside a batch (masked); and the fused AdamW against torch::optim::AdamW.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "finepurify/error.hpp"
#include "finepurify/model/loader.hpp"
#include "finepurify/train/optimizer.hpp"
#include "finepurify/train/throughput.hpp"
#include "fp_tiny.hpp"

using namespace finepurify;

TEST(Throughput, ConsecutiveBatchesPadToTheLongestOrToTheGivenLength) {
  auto data = fp_test::tiny_data(7, 3);  // lengths 3..8
  auto batches = train::consecutive_batches(data, 3, 0, torch::kCPU);
  ASSERT_EQ(batches.size(), 2u);  // rows 0-2 and 3-5; row 6 (a partial batch) dropped
  for (std::size_t b = 0; b < batches.size(); ++b) {
    int64_t longest = 0;
    for (int64_t i = 0; i < 3; ++i) longest = std::max<int64_t>(longest, data.encodings[3 * b + i].input_ids.size());
    EXPECT_EQ(batches[b].input_ids.size(1), longest);
    for (int64_t i = 0; i < 3; ++i) {
      const auto& e = data.encodings[3 * b + i];
      EXPECT_EQ(batches[b].attention_mask[i].sum().item<int64_t>(), static_cast<int64_t>(e.input_ids.size()));
      EXPECT_EQ(batches[b].input_ids[i][0].item<int64_t>(), e.input_ids[0]);
      EXPECT_EQ(batches[b].labels[i].item<int64_t>(), data.labels[3 * b + i]);
    }
  }
  auto fixed = train::consecutive_batches(data, 3, 12, torch::kCPU);
  for (auto& b : fixed) {
    EXPECT_EQ(b.input_ids.size(1), 12);
    EXPECT_EQ(b.token_type_ids.size(1), 12);
    EXPECT_EQ(b.attention_mask.size(1), 12);
    EXPECT_EQ(b.input_ids.slice(1, 8).ne(data.pad_id).sum().item<int64_t>(), 0);  // rows are 3-8 long
    EXPECT_EQ(b.attention_mask.slice(1, 8).sum().item<int64_t>(), 0);
  }
  EXPECT_EQ(fixed[0].attention_mask.sum().item<int64_t>(), batches[0].attention_mask.sum().item<int64_t>());
  EXPECT_THROW(train::consecutive_batches(data, 8, 0, torch::kCPU), Error);  // fewer rows than one batch
}

TEST(Throughput, FixedBatchesCountTheirOwnPaddedLengths) {
  auto m = model::make_random_classifier(fp_test::tiny_config(), 1);
  auto batches = train::consecutive_batches(fp_test::tiny_data(6, 4), 3, 0, torch::kCPU);
  const double T0 = batches[0].input_ids.size(1), T1 = batches[1].input_ids.size(1);
  auto r = train::measure_throughput(*m, batches, 2, torch::kCPU);
  EXPECT_EQ(r.batch, 3);
  EXPECT_EQ(r.tokens, static_cast<int64_t>(std::max(T0, T1)));
  EXPECT_DOUBLE_EQ(r.mean_padded_tokens, (T0 + T1) / 2);
  const auto& c = m->config;
  EXPECT_NEAR(r.forward_flops,
              (train::forward_flops_per_token(c, T0) * 3 * T0 + train::forward_flops_per_token(c, T1) * 3 * T1) / 2,
              1e-6 * r.forward_flops);
  EXPECT_GT(r.inference_seconds, 0);
  EXPECT_GT(r.train_seconds, 0);
  EXPECT_THROW(train::measure_throughput(*m, {}, 2, torch::kCPU), Error);
}

TEST(Attention, UnmaskedRowAloneEqualsItsMaskedRowInAPaddedBatch) {
  for (bool roberta : {false, true}) {
    auto c = roberta ? fp_test::tiny_roberta_config() : fp_test::tiny_config();
    auto m = model::make_random_classifier(c, 5);
    m->eval();
    torch::NoGradGuard ng;
    auto data = fp_test::tiny_data(4, 9);
    data.pad_id = c.pad_token_id;
    if (roberta)
      for (auto& e : data.encodings) std::fill(e.token_type_ids.begin(), e.token_type_ids.end(), 0);
    auto batch = train::consecutive_batches(data, 4, 12, torch::kCPU)[0];  // every row padded: masked path
    auto together = m->forward(batch.input_ids, batch.token_type_ids, batch.attention_mask).logits;
    for (int64_t i = 0; i < 4; ++i) {
      auto one = train::collate(data, {i}, torch::kCPU);  // no padding: the mask-free path
      ASSERT_TRUE(one.attention_mask.all().item<bool>());
      auto alone = m->forward(one.input_ids, one.token_type_ids, one.attention_mask).logits;
      EXPECT_TRUE(torch::allclose(alone[0], together[i], 1e-5, 1e-6))
          << (roberta ? "roberta" : "bert") << " row " << i << ": " << alone << " vs " << together[i];
    }
  }
}

// The fused optimizer makes torch::optim::AdamW's updates: two groups (with and without weight
// decay), a changing learning rate, and a parameter without a gradient in some steps (left alone).
TEST(FusedAdamW, EqualsTorchAdamW) {
  torch::manual_seed(3);
  std::vector<torch::Tensor> a = {torch::randn({5, 4}), torch::randn({7})}, b = {torch::randn({3, 3})};
  auto clone = [](const std::vector<torch::Tensor>& v) {
    std::vector<torch::Tensor> out;
    for (auto& t : v) out.push_back(t.clone().set_requires_grad(true));
    return out;
  };
  auto fa = clone(a), fb = clone(b), ta = clone(a), tb = clone(b);
  train::FusedAdamW fused;
  fused.add_group(fa, 0.01);
  fused.add_group(fb, 0.0);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(ta, std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(1).weight_decay(0.01)));
  groups.emplace_back(tb, std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(1).weight_decay(0.0)));
  torch::optim::AdamW ref(groups, torch::optim::AdamWOptions(1));
  for (int step = 0; step < 6; ++step) {
    const double lr = 1e-2 * (step + 1);
    const bool use_b = step % 3 != 1;  // b gets no gradient in steps 1 and 4
    auto grads = std::vector<torch::Tensor>{torch::randn({5, 4}), torch::randn({7}), torch::randn({3, 3})};
    auto loss = [&](std::vector<torch::Tensor>& x, std::vector<torch::Tensor>& y) {
      auto l = (x[0] * grads[0]).sum() + (x[1] * x[1] * grads[1]).sum();
      if (use_b) l = l + (y[0].sin() * grads[2]).sum();
      return l;
    };
    fused.zero_grad();
    loss(fa, fb).backward();
    fused.step(lr);
    ref.zero_grad();
    for (auto& g : ref.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
    loss(ta, tb).backward();
    ref.step();
    for (std::size_t i = 0; i < fa.size(); ++i)
      EXPECT_TRUE(torch::allclose(fa[i], ta[i], 1e-6, 1e-7)) << "step " << step << " a" << i;
    EXPECT_TRUE(torch::allclose(fb[0], tb[0], 1e-6, 1e-7)) << "step " << step << " b";
  }
  EXPECT_FALSE(torch::allclose(fa[0], a[0])) << "nothing moved";
}
