// `finepurify bench`: fine-tuning, inference and per-example Fisher throughput (examples/s, tokens/s,
// GFLOP/s) next to the measured matrix-product peak of the same machine, for a model folder or a
// preset shape, on random token ids or on consecutive batches of real rows (--data).
#include <numeric>

#include <fmt/format.h>

#include "commands.hpp"
#include "finepurify/model/linear.hpp"
#include "finepurify/model/loader.hpp"
#include "finepurify/purify/fisher.hpp"
#include "finepurify/text/tokenizer.hpp"
#include "finepurify/train/data.hpp"
#include "finepurify/train/throughput.hpp"
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
  std::string data;     ///< real rows instead of random ids
  bool pad_to_max = false;
};

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
  cmd->add_option("--data", a->data, "time consecutive batches of this file's first rows (needs --model for its "
                  "tokenizer; --seq-len is then the max length), padded per batch to its longest row")
      ->check(CLI::ExistingFile);
  cmd->add_flag("--pad-to-max", a->pad_to_max, "with --data: pad every batch to --seq-len tokens");
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
    int64_t params = 0;
    for (auto& p : m->parameters()) params += p.numel();
    if (!a->data.empty() && a->model.empty()) throw Error(ErrorKind::InvalidArgument, "bench: --data needs --model");
    if (a->pad_to_max && a->data.empty()) throw Error(ErrorKind::InvalidArgument, "bench: --pad-to-max needs --data");
    train::TokenizedSet rows;
    std::vector<train::Batch> batches;
    if (!a->data.empty()) {
      auto tok = text::load_model_tokenizer(a->model, m->config.model_type, m->config.vocab_size);
      rows = train::tokenize(*tok, train::read_task_data(a->data, m->config), static_cast<int>(a->seq_len));
      std::vector<int64_t> first(std::min<int64_t>(rows.size(), a->batch_size * a->steps));
      std::iota(first.begin(), first.end(), 0);
      rows = train::subset(rows, first);
      batches = train::consecutive_batches(rows, a->batch_size, a->pad_to_max ? a->seq_len : 0, dev);
    }
    // The peak: the faster of torch::matmul (MKL's sgemm) and the product the Linear layers use
    // (model::linear: oneDNN on the CPU), 2·1024³ flops each.
    const double peak_matmul = util::measure_matmul_gflops(1024, 5);
    const double peak_linear = util::measure_matmul_gflops(
        1024, 5, [](const torch::Tensor& a, const torch::Tensor& b) { return model::linear(a, b, {}); });
    const double peak = std::max(peak_matmul, peak_linear);
    const auto r = batches.empty() ? train::measure_throughput(*m, a->batch_size, a->seq_len, a->steps, dev)
                                   : train::measure_throughput(*m, batches, a->steps, dev);
    const int64_t B = r.batch, T = r.tokens;
    const double BT = B * r.mean_padded_tokens;  // tokens computed per batch, padding included
    const double fwd = r.forward_flops, t_inf = r.inference_seconds, t_train = r.train_seconds;
    std::cout << fmt::format("model: {} ({:.1f}M parameters), batch {}x{}{} tokens, {} threads, device {}\n", name,
                             params / 1e6, B, batches.empty() ? "" : "<=", T, torch::get_num_threads(), dev.str());
    if (!batches.empty())
      std::cout << fmt::format("data: the first {} rows of {} in {} batches, max length {}, padding {} ({:.1f} tokens "
                               "per row on average, {:.1f} after padding)\n",
                               rows.size(), a->data, batches.size(), a->seq_len,
                               a->pad_to_max ? "to the max length" : "to each batch's longest",
                               static_cast<double>(rows.num_tokens()) / rows.size(), r.mean_padded_tokens);
    std::cout << fmt::format("matmul peak (1024x1024 float32): {:.1f} GFLOP/s (torch::matmul {:.1f}, the Linear "
                             "layers' product {:.1f})\n", peak, peak_matmul, peak_linear);
    std::cout << fmt::format("inference: {:.1f} examples/s, {:.0f} tokens/s, {:.1f} GFLOP/s ({:.0f}% of peak)\n",
                             B / t_inf, BT / t_inf, fwd / t_inf / 1e9, 100 * fwd / t_inf / 1e9 / peak);
    std::cout << fmt::format("fine-tuning: {:.1f} examples/s, {:.0f} tokens/s, {:.1f} GFLOP/s ({:.0f}% of peak), {:.3f} s/step\n",
                             B / t_train, BT / t_train, 3 * fwd / t_train / 1e9, 100 * 3 * fwd / t_train / 1e9 / peak,
                             t_train);
    // The per-example Fisher, batched and as the per-example reference loop, on the same shape.
    // On real rows: all of them batched (length-sorted, as purify runs it), the first B one at a time.
    const double fb = batches.empty() ? purify::fisher_throughput(*m, 4 * B, T, B, dev)
                                      : purify::fisher_throughput(*m, rows, B, dev);
    std::vector<int64_t> first_batch(B);
    std::iota(first_batch.begin(), first_batch.end(), 0);
    const double f1 = batches.empty() ? purify::fisher_throughput(*m, B, T, 1, dev)
                                      : purify::fisher_throughput(*m, train::subset(rows, first_batch), 1, dev);
    std::cout << fmt::format("per-example Fisher, batched ({}): {:.1f} examples/s ({:.2f}x fine-tuning, {:.1f}x the "
                             "per-example loop)\n", B, fb, fb / (B / t_train), fb / f1);
    std::cout << fmt::format("per-example Fisher, one example per pass: {:.1f} examples/s ({:.2f}x fine-tuning)\n", f1,
                             f1 / (B / t_train));
    std::cout << fmt::format("peak resident memory: {:.2f} GiB\n", util::peak_rss_bytes() / 1073741824.0);
  });
}

}  // namespace fp_cli
