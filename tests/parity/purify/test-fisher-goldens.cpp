// Parity of the per-example diagonal Fisher with the reference (transformers) goldens.
#include <gtest/gtest.h>

#include "finepurify/io/safetensors.hpp"
#include "finepurify/model/loader.hpp"
#include "finepurify/purify/fisher.hpp"
#include "fp_test.hpp"

using namespace finepurify;

class FisherGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(FisherGolden, MatchesReference) {
  if (!fp_test::have_shared()) GTEST_SKIP() << "no ../shared";
  auto dir = fp_test::shared_dir() / "goldens" / "models" / GetParam();
  model::LoadOptions lo;
  lo.allow_missing_head = false;
  auto lm = model::load_classifier(dir.string(), lo);
  io::SafetensorsFile g((dir / "golden.safetensors").string());
  auto ids = g.tensor("input_ids"), types = g.tensor("token_type_ids"), mask = g.tensor("attention_mask"),
       labels = g.tensor("labels");
  // Rebuild the unpadded examples from the padded batch.
  train::TokenizedSet s;
  s.pad_id = lm.config.pad_token_id;
  for (int64_t b = 0; b < ids.size(0); ++b) {
    text::Encoding e;
    for (int64_t t = 0; t < ids.size(1); ++t) {
      if (mask[b][t].item<int64_t>() == 0) continue;
      e.input_ids.push_back(ids[b][t].item<int64_t>());
      e.token_type_ids.push_back(types[b][t].item<int64_t>());
      e.attention_mask.push_back(1);
    }
    s.encodings.push_back(e);
    s.labels.push_back(labels[b].item<int64_t>());
  }
  auto fisher = purify::diagonal_fisher(*lm.model, s, torch::kCPU, {0, false});
  double F = 0;
  for (auto& [n, t] : fisher) F = std::max(F, g.tensor("fisher." + n).abs().max().item<double>());
  double worst = 0;
  for (auto& [n, got] : fisher) {
    auto want = g.tensor("fisher." + n);
    double err = (got - want).abs().max().item<double>();
    double tol = 1e-3 * want.abs().max().item<double>() + 1e-6 * F;
    EXPECT_LE(err, tol) << n;
    worst = std::max(worst, err / (want.abs().max().item<double>() + 1e-30));
  }
  std::cout << GetParam() << ": " << fisher.size() << " Fisher tensors, worst relative error " << worst << "\n";
}

INSTANTIATE_TEST_SUITE_P(Goldens, FisherGolden,
                         ::testing::Values("bert-h32-2cls", "bert-h48-3cls", "roberta-h32-2cls", "roberta-h48-3cls"));
