// `finepurify bench`: fine-tuning and inference throughput (examples/s, tokens/s, GFLOP/s) next to
// the measured matrix-product peak of the same machine, for a model folder or a preset shape.
#include <chrono>

#include <fmt/format.h>

#include "commands.hpp"
#include "finepurify/error.hpp"
#include "finepurify/util/memory.hpp"
#include "finepurify/util/runtime.hpp"

namespace fp_cli {

using namespace finepurify;

namespace {
struct BenchArgs {
  std::string model;
  std::string preset = "";
  int64_t batch_size = 32, seq_len = 64;
  int steps = 5;
};

/// Forward FLOPs per token (matrix products only): per layer 8H^2 (Q,K,V,O) + 4HI (FFN) + 4TH (attention).
double forward_flops_per_token(const model::ModelConfig& c, int64_t T) {
  const double H = c.hidden_size, I = c.intermediate_size;
  return c.num_hidden_layers * (8 * H * H + 4 * H * I + 4.0 * T * H) + 2 * H * H;
}
}  // namespace

void register_bench(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  auto* cmd = app.add_subcommand("bench", "Print training/inference throughput and GFLOP/s vs the machine's matmul peak");
  cmd->add_option("--model", a->model, "HF model folder or name (weights loaded)")->transform(model_folder());
  cmd->add_option("--preset", a->preset, "random-weight shape instead: bert-base | bert-mini")
      ->check(CLI::IsMember({"bert-base", "bert-mini"}));
  cmd->add_option("--batch-size", a->batch_size, "batch size")->capture_default_str();
  cmd->add_option("--seq-len", a->seq_len, "tokens per example")->capture_default_str();
  cmd->add_option("--steps", a->steps, "timed steps")->capture_default_str();
  cmd->callback([a]() {
    auto dev = globals().dev();
    model::SequenceClassifier m{nullptr};
    std::string name;
    if (!a->model.empty()) {
      model::LoadOptions lo;
      lo.num_labels = 2;
      lo.device = dev;
      m = model::load_classifier(a->model, lo).model;
      name = a->model;
    } else {
      model::ModelConfig c;
      if (a->preset == "bert-mini") {
        c.hidden_size = 256; c.num_hidden_layers = 4; c.num_attention_heads = 4; c.intermediate_size = 1024;
      }
      m = model::make_random_classifier(c, 0, dev);
      name = a->preset.empty() ? "bert-base" : a->preset;
    }
    const auto& c = m->config;
    int64_t params = 0;
    for (auto& p : m->parameters()) params += p.numel();
    const int64_t B = a->batch_size, T = std::min(a->seq_len, c.max_position_embeddings);
    auto ids = torch::randint(5, c.vocab_size, {B, T}, torch::kLong).to(dev);
    auto types = torch::zeros({B, T}, torch::kLong).to(dev);
    auto mask = torch::ones({B, T}, torch::kLong).to(dev);
    auto labels = torch::randint(0, 2, {B}, torch::kLong).to(dev);
    double peak = util::measure_matmul_gflops(1024, 5);
    const double fwd = forward_flops_per_token(c, T) * B * T;

    auto time_steps = [&](bool train) {
      torch::optim::AdamW opt(m->parameters(), torch::optim::AdamWOptions(1e-5));
      auto one = [&]() {
        if (train) {
          m->train();
          opt.zero_grad();
          auto loss = torch::cross_entropy_loss(m->forward(ids, types, mask).logits, labels);
          loss.backward();
          opt.step();
        } else {
          torch::NoGradGuard ng;
          m->eval();
          m->forward(ids, types, mask);
        }
      };
      one();  // warm-up
      auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < a->steps; ++i) one();
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / a->steps;
    };
    double t_inf = time_steps(false);
    double t_train = time_steps(true);
    std::cout << fmt::format("model: {} ({:.1f}M parameters), batch {}x{} tokens, {} threads, device {}\n", name,
                             params / 1e6, B, T, torch::get_num_threads(), dev.str());
    std::cout << fmt::format("matmul peak (1024x1024 float32): {:.1f} GFLOP/s\n", peak);
    std::cout << fmt::format("inference: {:.1f} examples/s, {:.0f} tokens/s, {:.1f} GFLOP/s ({:.0f}% of peak)\n",
                             B / t_inf, B * T / t_inf, fwd / t_inf / 1e9, 100 * fwd / t_inf / 1e9 / peak);
    std::cout << fmt::format("fine-tuning: {:.1f} examples/s, {:.0f} tokens/s, {:.1f} GFLOP/s ({:.0f}% of peak), {:.3f} s/step\n",
                             B / t_train, B * T / t_train, 3 * fwd / t_train / 1e9, 100 * 3 * fwd / t_train / 1e9 / peak,
                             t_train);
    std::cout << fmt::format("peak resident memory: {:.2f} GiB\n", util::peak_rss_bytes() / 1073741824.0);
  });
}

}  // namespace fp_cli
