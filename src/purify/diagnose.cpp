// Diagnosis: Fisher at the chosen point, the indicator, and its typed summary (see diagnose.hpp).
#include "finepurify/purify/diagnose.hpp"

#include <algorithm>
#include <chrono>
#include <numeric>

#include <fmt/format.h>

#include "finepurify/error.hpp"
#include "finepurify/model/loader.hpp"
#include "finepurify/util/memory.hpp"
#include "finepurify/util/reduce.hpp"
#include "finepurify/util/runtime.hpp"

namespace finepurify::purify {

const util::EnumTable<FisherAt>& enum_table(FisherAt) {
  static const util::EnumTable<FisherAt> t{"Fisher point",
                                           {{FisherAt::FT, "ft", "at the suspect's weights w_FT"},
                                            {FisherAt::Pre, "pre", "at the pre-trained weights w_Pre"},
                                            {FisherAt::Mean, "mean", "at (w_FT + w_Pre) / 2"}}};
  return t;
}

namespace {

/// Overwrite aligned parameters with a blend of w_FT and w_Pre: w = (1 - t) w_FT + t w_Pre.
void blend_aligned(model::SequenceClassifierImpl& m, const Alignment& a, const std::map<std::string, torch::Tensor>& ft,
                   double t) {
  torch::NoGradGuard ng;
  auto params = m.named_parameters();
  for (auto& n : a.aligned) {
    auto& p = params[n];
    p.copy_((ft.at(n) * (1 - t) + a.pre_of(n) * t).to(p.device()));
  }
}

/// Distribution of log10(r) over all dimensions, from a seeded sample of at most 1M values (drawn as
/// positions in the tensors laid end to end, gathered tensor by tensor: no concatenated copy).
void quantiles_log10(const std::vector<torch::Tensor>& vals, DiagnosisSummary& s) {
  int64_t total = 0;
  for (auto& v : vals) total += v.numel();
  torch::Tensor flat;
  if (total > 1000000) {
    auto gen = at::detail::createCPUGenerator(7);
    auto pos = std::get<0>(at::randint(total, {1000000}, gen, torch::kLong).sort());
    std::vector<torch::Tensor> parts;
    int64_t offset = 0;
    for (auto& v : vals) {
      const int64_t b = torch::searchsorted(pos, torch::tensor(offset)).item<int64_t>();
      const int64_t e = torch::searchsorted(pos, torch::tensor(offset + v.numel())).item<int64_t>();
      if (e > b) parts.push_back(v.reshape(-1).index_select(0, pos.slice(0, b, e) - offset));
      offset += v.numel();
    }
    flat = torch::cat(parts);
  } else {
    std::vector<torch::Tensor> f;
    for (auto& v : vals) f.push_back(v.reshape(-1));
    flat = torch::cat(f);
  }
  auto lg = torch::log10(flat.to(torch::kFloat64) + 1e-300);
  for (double p : {0.0, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0})
    s.distribution_log10.push_back({p, torch::quantile(lg, p).item<double>()});
  s.distribution_sampled = std::min<int64_t>(total, 1000000);
}

int64_t fisher_count(const DiagnoseOptions& opt, const train::TokenizedSet& clean) {
  return opt.fisher_examples > 0 ? std::min(opt.fisher_examples, clean.size()) : clean.size();
}

bool needs_fisher(const DiagnoseOptions& opt) { return uses_fisher(opt.indicator.indicator); }

/// " (peak resident memory 1.23 GiB)" from a stage's sampler, or "" when unknown.
std::string peak_text(util::RssSampler& rss) {
  const int64_t b = rss.peak();
  return b > 0 ? fmt::format(" (peak resident memory {:.2f} GiB)", b / 1073741824.0) : "";
}

/// Fisher (at the chosen point) when the indicator needs one; the weights end as w_FT.
void fisher_if_needed(model::SequenceClassifierImpl& m, Diagnosis& d, const train::TokenizedSet& clean,
                      const DiagnoseOptions& opt, torch::Device device) {
  if (!needs_fisher(opt)) return;
  if (opt.fisher_at != FisherAt::FT) blend_aligned(m, d.alignment, d.ft, opt.fisher_at == FisherAt::Pre ? 1.0 : 0.5);
  FisherOptions fo;
  fo.max_examples = opt.fisher_examples;
  util::RssSampler rss;
  auto t0 = std::chrono::steady_clock::now();
  d.fisher = diagonal_fisher(m, clean, device, fo);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  util::log(fmt::format("Fisher at w_{} on {} clean examples in {:.1f}s{}", util::name_of(opt.fisher_at),
                        fisher_count(opt, clean), s, peak_text(rss)));
  if (opt.fisher_at != FisherAt::FT) model::restore(m, d.ft);
}

/// What the summaries need of F, taken before the indicator is written over it.
struct FisherFigures {
  std::map<std::string, double> mean;  ///< per aligned tensor
  torch::Tensor word_rows;             ///< row sums of the word-embedding matrix's F (undefined without)
};

FisherFigures fisher_figures(const Diagnosis& d, const std::string& word) {
  FisherFigures f;
  if (d.fisher.empty()) return f;
  for (auto& n : d.alignment.aligned) f.mean[n] = d.fisher.at(n).mean().item<double>();
  if (d.fisher.count(word)) f.word_rows = d.fisher.at(word).sum(1);
  return f;
}

/// w_Pre - w_FT's L2 norm, per tensor or (dim 1) per row, on the CPU.
torch::Tensor drift_norm(const Diagnosis& d, const std::string& n, std::optional<int64_t> dim = std::nullopt) {
  auto delta = d.ft.at(n).to(torch::kCPU) - d.alignment.pre_of(n);
  return dim ? delta.norm(2, {*dim}) : delta.norm();
}

/// Per-tensor and per-layer indicator mass and the distribution; returns the total mass.
double summarise_tensors(const model::SequenceClassifierImpl& m, Diagnosis& d, const FisherFigures& ff) {
  const auto& a = d.alignment;
  auto& s = d.summary;
  std::map<int, double> layer_mass;
  double total_mass = 0;
  std::vector<torch::Tensor> vals;
  for (auto& n : a.aligned) {
    const auto& r = d.r.at(n);
    vals.push_back(r);
    const double mass = util::sum_float64(r);
    total_mass += mass;
    layer_mass[model::layer_of(n, m.config.num_hidden_layers)] += mass;
    TensorStat t{n, r.numel(), mass, r.max().item<double>(), drift_norm(d, n).item<double>(), {}};
    if (ff.mean.count(n)) t.fisher_mean = ff.mean.at(n);
    s.per_tensor.push_back(t);
  }
  for (auto& [l, mass] : layer_mass) s.per_layer.push_back({l, total_mass > 0 ? mass / total_mass : 0});
  for (auto& [n, why] : a.unaligned) s.unaligned.emplace_back(n, why);
  quantiles_log10(vals, s);
  return total_mass;
}

/// The behavioural check of the most suspicious rows (probe.hpp), most flipping first.
ProbeReport probe_rows(model::SequenceClassifierImpl& m, const torch::Tensor& row_mass, const torch::Tensor& drift,
                       double total_mass, const train::TokenizedSet& clean, const text::Tokenizer& tok,
                       const DiagnoseOptions& opt, torch::Device device) {
  const auto ids = probe_candidates(row_mass, drift, opt.probe_tokens, tok);
  util::log(fmt::format("token probe: inserting each of {} candidate tokens into {} clean examples", ids.size(),
                        opt.probe_examples > 0 ? std::min(opt.probe_examples, clean.size()) : clean.size()));
  auto probes = probe_tokens(m, clean, ids, opt.probe_examples, opt.indicator.seed, device);
  std::vector<std::size_t> order(probes.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t x, std::size_t y) { return probes[x].flip_rate > probes[y].flip_rate; });
  ProbeReport rep;
  rep.candidates = static_cast<int64_t>(ids.size());
  rep.per_ranking = opt.probe_tokens;
  rep.examples = probes.empty() ? 0 : probes[0].tested;
  rep.min_flip = opt.probe_min_flip;
  for (std::size_t i = 0; i < order.size(); ++i) {
    const auto& p = probes[order[i]];
    rep.flagged += p.flip_rate >= opt.probe_min_flip;
    rep.tokens.push_back({static_cast<int64_t>(i + 1), p, tok.id_to_token(p.id), drift[p.id].item<double>(),
                          total_mass > 0 ? row_mass[p.id].item<double>() / total_mass : 0});
  }
  util::log(fmt::format("token probe: {} of {} candidates flip >= {:.0f}% of predictions{}", rep.flagged, ids.size(),
                        100 * opt.probe_min_flip,
                        rep.tokens.empty() ? "" : fmt::format(" (top: {} {:.1f}%)", rep.tokens[0].token,
                                                              100 * rep.tokens[0].probe.flip_rate)));
  return rep;
}

/// The most suspicious vocabulary rows by indicator mass, and the optional probe of them.
void summarise_tokens(model::SequenceClassifierImpl& m, Diagnosis& d, double total_mass, const FisherFigures& ff,
                      const train::TokenizedSet& clean, const text::Tokenizer& tok, const DiagnoseOptions& opt,
                      torch::Device device) {
  const auto word = m.word_embedding_name();
  if (!d.r.count(word)) return;
  auto row_mass = util::row_sums_float64(d.r.at(word));
  auto drift = drift_norm(d, word, 1);
  const auto k = std::min<int64_t>(opt.top_tokens, row_mass.numel());
  auto tk = row_mass.topk(k);
  auto vals = std::get<0>(tk), idx = std::get<1>(tk);
  const auto& frow = ff.word_rows;
  for (int64_t i = 0; i < k; ++i) {
    const int64_t id = idx[i].item<int64_t>();
    const double mass = vals[i].item<double>();
    TokenRank t{i + 1, id, tok.id_to_token(id), mass, total_mass > 0 ? mass / total_mass : 0, drift[id].item<double>(), {}};
    if (frow.defined()) t.fisher_row_sum = frow[id].item<double>();
    d.summary.top_tokens.push_back(t);
  }
  if (opt.probe_tokens > 0) d.summary.token_probe = probe_rows(m, row_mass, drift, total_mass, clean, tok, opt, device);
}

}  // namespace

Diagnosis diagnose(model::SequenceClassifierImpl& m, const std::string& pretrained_folder,
                   const train::TokenizedSet& clean_train, const text::Tokenizer& tok, const DiagnoseOptions& opt,
                   torch::Device device) {
  Diagnosis d;
  // Memory: w_Pre is never held whole (the alignment checks it, then each use reads one tensor),
  // d.ft shares the model's storage, and the indicator is written over F: a scan holds the model and
  // the Fisher's accumulators, then the model and F (or r), not six model-sized copies (docs/perf.md).
  const bool blend = needs_fisher(opt) && opt.fisher_at != FisherAt::FT;
  d.alignment = align_with_pretrained(m, pretrained_folder, /*load_values=*/false);
  auto& a = d.alignment;
  util::log(fmt::format("aligned {} tensors ({} dimensions) with {}; {} without counterpart", a.aligned.size(),
                        a.dims, pretrained_folder, a.unaligned.size()));
  d.ft = blend ? model::snapshot(m) : model::weights(m);  // blending overwrites the model's own
  util::release_free_memory();  // the alignment's reads
  fisher_if_needed(m, d, clean_train, opt, device);
  util::release_free_memory();  // the Fisher's activations and float64 accumulators
  util::RssSampler rss;
  const auto ff = fisher_figures(d, m.word_embedding_name());
  const auto t0 = std::chrono::steady_clock::now();
  if (opt.keep_fisher || d.fisher.empty())
    d.r = compute_indicators(a, d.ft, d.fisher.empty() ? nullptr : &d.fisher, opt.indicator, &d.epsilon);
  else
    d.r = compute_indicators_in_place(a, d.ft, d.fisher, opt.indicator, &d.epsilon);
  util::log(fmt::format("indicator on {} dimensions in {:.2f}s{}", a.dims,
                        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                        peak_text(rss)));
  auto& s = d.summary;
  s.indicator = opt.indicator.indicator;
  s.epsilon = d.epsilon;
  s.epsilon_scale = opt.indicator.epsilon_scale;
  s.epsilon_basis = opt.indicator.epsilon_basis;
  s.fisher_at = opt.fisher_at;
  s.fisher_examples = needs_fisher(opt) ? fisher_count(opt, clean_train) : 0;
  s.aligned_tensors = static_cast<int64_t>(a.aligned.size());
  s.aligned_dimensions = a.dims;
  const double total_mass = summarise_tensors(m, d, ff);
  summarise_tokens(m, d, total_mass, ff, clean_train, tok, opt, device);
  return d;
}

Selection selection_of(const std::map<std::string, torch::Tensor>& masks, int64_t num_layers) {
  Selection s;
  for (auto& [n, mk] : masks) {
    const int64_t c = mk.sum().item<int64_t>();
    if (c == 0) continue;
    s.per_tensor[n] = c;
    s.per_layer[model::layer_of(n, num_layers)] += c;
    s.reset_dimensions += c;
  }
  return s;
}

void reset_to_pretrained(model::SequenceClassifierImpl& m, const Alignment& a,
                         const std::map<std::string, torch::Tensor>& masks) {
  torch::NoGradGuard ng;
  auto params = m.named_parameters();
  for (auto& [n, mk] : masks) {
    auto& p = params[n];
    auto pre = a.pre_of(n).to(p.device());
    p.copy_(torch::where(mk.to(p.device()), pre, p));
  }
}

}  // namespace finepurify::purify
