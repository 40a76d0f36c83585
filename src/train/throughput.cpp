// Throughput of a model on fixed batches, random or real (see throughput.hpp).
#include "finepurify/train/throughput.hpp"

#include <algorithm>
#include <chrono>

#include <fmt/format.h>

#include "finepurify/error.hpp"
#include "finepurify/train/optimizer.hpp"
#include "finepurify/util/runtime.hpp"

namespace finepurify::train {

double forward_flops_per_token(const model::ModelConfig& c, int64_t T) {
  const double H = c.hidden_size, I = c.intermediate_size;
  return c.num_hidden_layers * (8 * H * H + 4 * H * I + 4.0 * T * H) + 2 * H * H;
}

std::vector<Batch> consecutive_batches(const TokenizedSet& data, int64_t batch, int64_t pad_to, torch::Device dev) {
  if (batch < 1) throw Error(ErrorKind::InvalidArgument, "bench: batch size must be >= 1");
  if (data.size() < batch)
    throw Error(ErrorKind::InvalidArgument,
                fmt::format("bench: {} rows of data, fewer than one batch of {}", data.size(), batch));
  std::vector<Batch> out;
  for (int64_t s = 0; s + batch <= data.size(); s += batch) {
    std::vector<int64_t> idx(batch);
    for (int64_t i = 0; i < batch; ++i) idx[i] = s + i;
    auto b = collate(data, idx, torch::kCPU);
    const int64_t T = b.input_ids.size(1);
    if (pad_to > T) {  // right-padding to a fixed length: pad id, type 0, mask 0
      b.input_ids = torch::constant_pad_nd(b.input_ids, {0, pad_to - T}, data.pad_id);
      b.token_type_ids = torch::constant_pad_nd(b.token_type_ids, {0, pad_to - T}, 0);
      b.attention_mask = torch::constant_pad_nd(b.attention_mask, {0, pad_to - T}, 0);
    }
    for (auto* t : {&b.input_ids, &b.token_type_ids, &b.attention_mask, &b.labels}) *t = t->to(dev);
    out.push_back(std::move(b));
  }
  return out;
}

Throughput measure_throughput(model::SequenceClassifierImpl& m, const std::vector<Batch>& batches, int steps,
                              torch::Device dev) {
  if (batches.empty() || steps < 1) throw Error(ErrorKind::InvalidArgument, "bench: no batches or no steps to time");
  const auto& c = m.config;
  Throughput r;
  r.batch = batches[0].input_ids.size(0);
  for (int i = 0; i < steps; ++i) {
    const auto& b = batches[i % batches.size()];
    const int64_t B = b.input_ids.size(0), T = b.input_ids.size(1);
    r.tokens = std::max(r.tokens, T);
    r.forward_flops += forward_flops_per_token(c, T) * B * T / steps;
    r.mean_padded_tokens += static_cast<double>(T) / steps;
  }
  m.to(dev);
  auto time_steps = [&](bool train) {
    FusedAdamW opt;  // as train::fine_tune
    opt.add_group(m.parameters(), 0.01);
    auto one = [&](const Batch& b) {
      if (train) {
        m.train();
        opt.zero_grad();
        auto loss = torch::cross_entropy_loss(m.forward(b.input_ids, b.token_type_ids, b.attention_mask).logits,
                                              b.labels.remainder(c.num_labels()));
        loss.backward();
        opt.step(1e-5);
      } else {
        c10::InferenceMode im;  // as train::evaluate
        m.eval();
        m.forward(b.input_ids, b.token_type_ids, b.attention_mask);
      }
    };
    one(batches[0]);  // warm-up
    util::synchronize(dev);
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < steps; ++i) one(batches[i % batches.size()]);
    util::synchronize(dev);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / steps;
  };
  r.inference_seconds = time_steps(false);
  r.train_seconds = time_steps(true);
  return r;
}

Throughput measure_throughput(model::SequenceClassifierImpl& m, int64_t batch, int64_t seq_len, int steps,
                              torch::Device dev) {
  const auto& c = m.config;
  const int64_t B = batch, T = std::min(seq_len, c.max_position_embeddings);
  Batch b;
  b.input_ids = torch::randint(5, c.vocab_size, {B, T}, torch::kLong).to(dev);
  b.token_type_ids = torch::zeros({B, T}, torch::kLong).to(dev);
  b.attention_mask = torch::ones({B, T}, torch::kLong).to(dev);
  b.labels = torch::randint(0, 2, {B}, torch::kLong).to(dev);
  b.num_tokens = B * T;
  return measure_throughput(m, {b}, steps, dev);
}

}  // namespace finepurify::train
