// Throughput of a model shape on random inputs (see throughput.hpp).
#include "finepurify/train/throughput.hpp"

#include <algorithm>
#include <chrono>

namespace finepurify::train {

double forward_flops_per_token(const model::ModelConfig& c, int64_t T) {
  const double H = c.hidden_size, I = c.intermediate_size;
  return c.num_hidden_layers * (8 * H * H + 4 * H * I + 4.0 * T * H) + 2 * H * H;
}

Throughput measure_throughput(model::SequenceClassifierImpl& m, int64_t batch, int64_t seq_len, int steps,
                              torch::Device dev) {
  const auto& c = m.config;
  Throughput r;
  r.batch = batch;
  r.tokens = std::min(seq_len, c.max_position_embeddings);
  const int64_t B = r.batch, T = r.tokens;
  auto ids = torch::randint(5, c.vocab_size, {B, T}, torch::kLong).to(dev);
  auto types = torch::zeros({B, T}, torch::kLong).to(dev);
  auto mask = torch::ones({B, T}, torch::kLong).to(dev);
  auto labels = torch::randint(0, 2, {B}, torch::kLong).to(dev);
  r.forward_flops = forward_flops_per_token(c, T) * B * T;
  auto time_steps = [&](bool train) {
    torch::optim::AdamW opt(m.parameters(), torch::optim::AdamWOptions(1e-5));
    auto one = [&]() {
      if (train) {
        m.train();
        opt.zero_grad();
        auto loss = torch::cross_entropy_loss(m.forward(ids, types, mask).logits, labels);
        loss.backward();
        opt.step();
      } else {
        c10::InferenceMode im;  // as train::evaluate
        m.eval();
        m.forward(ids, types, mask);
      }
    };
    one();  // warm-up
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < steps; ++i) one();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / steps;
  };
  r.inference_seconds = time_steps(false);
  r.train_seconds = time_steps(true);
  return r;
}

}  // namespace finepurify::train
