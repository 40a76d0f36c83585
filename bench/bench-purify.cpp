// Benchmarks of Fine-purifying's stages (Google Benchmark): per-example Fisher, indicator +
// selection per million dimensions (global and per-tensor top 5%), a fine-tuning step, and the behavioural token probe (items =
// token insertions evaluated), for the small shared-model shape
// (bert-mini) and a bert-base shape (random weights). Peak resident memory is printed as a counter.
#include <benchmark/benchmark.h>

#include <random>

#include "finepurify/model/loader.hpp"
#include "finepurify/purify/probe.hpp"
#include "finepurify/purify/purify.hpp"
#include "finepurify/util/memory.hpp"
#include "finepurify/util/runtime.hpp"

using namespace finepurify;

namespace {

model::ModelConfig shape(int which) {
  model::ModelConfig c;  // bert-base defaults
  if (which == 0) {
    c.hidden_size = 256; c.num_hidden_layers = 4; c.num_attention_heads = 4; c.intermediate_size = 1024;
  }
  return c;
}
const char* shape_name(int which) { return which == 0 ? "bert-mini" : "bert-base"; }

train::TokenizedSet synthetic(int n, int len, int64_t vocab) {
  std::mt19937_64 rng(1);
  train::TokenizedSet s;
  for (int i = 0; i < n; ++i) {
    text::Encoding e;
    for (int t = 0; t < len; ++t) {
      e.input_ids.push_back(t == 0 ? 101 : 1000 + static_cast<int64_t>(rng() % (vocab - 1000)));
      e.token_type_ids.push_back(0);
      e.attention_mask.push_back(1);
    }
    s.encodings.push_back(e);
    s.labels.push_back(static_cast<int64_t>(rng() % 2));
  }
  return s;
}

void BM_FisherPerExample(benchmark::State& st) {
  auto m = model::make_random_classifier(shape(st.range(0)), 0);
  auto data = synthetic(8, static_cast<int>(st.range(1)), m->config.vocab_size);
  for (auto _ : st) benchmark::DoNotOptimize(purify::diagonal_fisher(*m, data, torch::kCPU, {0, false}));
  st.SetItemsProcessed(st.iterations() * data.size());
  st.SetLabel(shape_name(st.range(0)));
  st.counters["peak_rss_GiB"] = util::peak_rss_bytes() / 1073741824.0;
}

void BM_IndicatorAndSelect(benchmark::State& st) {
  // All aligned dimensions of the model shape, synthetic w_FT / w_Pre / Fisher.
  auto m = model::make_random_classifier(shape(st.range(0)), 0);
  purify::Alignment a;
  std::map<std::string, torch::Tensor> ft, fisher;
  int64_t d = 0;
  for (auto& p : m->named_parameters()) {
    a.aligned.push_back(p.key());
    a.pre[p.key()] = p.value().detach().clone();
    ft[p.key()] = p.value().detach() + torch::randn(p.value().sizes()) * 1e-3;
    fisher[p.key()] = torch::rand(p.value().sizes()) * 1e-4;
    d += p.value().numel();
  }
  purify::IndicatorOptions io;
  const auto scope = st.range(1) == 0 ? purify::Scope::Global : purify::Scope::Tensor;  // Tensor: purify's default
  for (auto _ : st) {
    auto r = purify::compute_indicators(a, ft, &fisher, io);
    auto masks = purify::select_top(a.aligned, r, 0.05, scope);
    benchmark::DoNotOptimize(masks);
  }
  st.SetItemsProcessed(st.iterations() * d);  // items/s = dimensions/s
  st.SetLabel(std::string(shape_name(st.range(0))) + " " + std::to_string(d / 1000000) + "M dims, " +
              (st.range(1) == 0 ? "global" : "per tensor"));
  st.counters["peak_rss_GiB"] = util::peak_rss_bytes() / 1073741824.0;
}

void BM_FineTuneStep(benchmark::State& st) {
  auto m = model::make_random_classifier(shape(st.range(0)), 0);
  auto data = synthetic(16, static_cast<int>(st.range(1)), m->config.vocab_size);
  train::TrainOptions o;
  o.epochs = 1;
  o.batch_size = 16;
  o.keep_best = false;
  o.label = "bench";
  for (auto _ : st) train::fine_tune(*m, data, nullptr, o, torch::kCPU);
  st.SetItemsProcessed(st.iterations() * data.size());
  st.SetLabel(shape_name(st.range(0)));
  st.counters["peak_rss_GiB"] = util::peak_rss_bytes() / 1073741824.0;
}

void BM_TokenProbe(benchmark::State& st) {
  // 8 candidate tokens x 32 clean examples = 256 insertions (plus the 32 unmodified predictions).
  auto m = model::make_random_classifier(shape(st.range(0)), 0);
  auto data = synthetic(32, static_cast<int>(st.range(1)), m->config.vocab_size);
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < 8; ++i) ids.push_back(2000 + 17 * i);
  for (auto _ : st) benchmark::DoNotOptimize(purify::probe_tokens(*m, data, ids, 0, 1, torch::kCPU));
  st.SetItemsProcessed(st.iterations() * static_cast<int64_t>(ids.size()) * data.size());
  st.SetLabel(shape_name(st.range(0)));
  st.counters["peak_rss_GiB"] = util::peak_rss_bytes() / 1073741824.0;
}

}  // namespace

BENCHMARK(BM_FisherPerExample)->Args({0, 64})->Args({1, 64})->Unit(benchmark::kMillisecond)->Iterations(2);
BENCHMARK(BM_IndicatorAndSelect)->Args({0, 0})->Args({1, 0})->Args({1, 1})->Unit(benchmark::kMillisecond)->Iterations(2);
BENCHMARK(BM_FineTuneStep)->Args({0, 64})->Args({1, 64})->Unit(benchmark::kMillisecond)->Iterations(2);
BENCHMARK(BM_TokenProbe)->Args({0, 64})->Args({1, 64})->Unit(benchmark::kMillisecond)->Iterations(2);
int main(int argc, char** argv) {
  util::set_quiet(true);  // no progress lines inside timed loops
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
