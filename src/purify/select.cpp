// Indicators and exact linear-time top-k selection with deterministic tie-breaking.
#include "finepurify/purify/select.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "finepurify/error.hpp"

namespace finepurify::purify {

const util::EnumTable<Indicator>& enum_table(Indicator) {
  static const util::EnumTable<Indicator> t{
      "indicator",
      {{Indicator::FisherRatio, "fisher-ratio", "delta^2 / (F + eps): drift the clean task does not need"},
       {Indicator::Magnitude, "magnitude", "delta^2: largest drift"},
       {Indicator::Random, "random", "uniform: Fine-mixing's random choice"},
       {Indicator::InverseFisher, "inverse-fisher", "1 / (F + eps): least needed by the clean task"}}};
  return t;
}

const util::EnumTable<Scope>& enum_table(Scope) {
  static const util::EnumTable<Scope> t{
      "scope", {{Scope::Global, "global", "top rho of all aligned dimensions"}, {Scope::Tensor, "tensor", "top rho of each tensor"}}};
  return t;
}

const util::EnumTable<WordEmbedding>& enum_table(WordEmbedding) {
  static const util::EnumTable<WordEmbedding> t{
      "word-embedding policy",
      {{WordEmbedding::Rank, "rank", "ranked with the other tensors"},
       {WordEmbedding::Keep, "keep", "never reset (rho applies to the other tensors; see --neutralize-tokens)"}}};
  return t;
}

const util::EnumTable<EpsilonBasis>& enum_table(EpsilonBasis) {
  static const util::EnumTable<EpsilonBasis> t{
      "epsilon basis",
      {{EpsilonBasis::Global, "global", "eps = scale x mean Fisher of all aligned dimensions"},
       {EpsilonBasis::Tensor, "tensor", "eps = scale x mean Fisher of each tensor"}}};
  return t;
}

namespace {

/// scale x mean of F over `names` (the smallest positive float when that is 0: avoids 0/0).
double scaled_mean(const std::map<std::string, torch::Tensor>& fisher, const std::vector<std::string>& names,
                   double scale, int64_t* count = nullptr) {
  double sum = 0;
  int64_t d = 0;
  for (auto& n : names) {
    sum += fisher.at(n).sum(torch::kFloat64).item<double>();
    d += fisher.at(n).numel();
  }
  if (count) *count = d;
  const double eps = scale * (d ? sum / d : 0.0);
  return eps > 0 ? eps : std::numeric_limits<float>::min();
}

}  // namespace

std::map<std::string, torch::Tensor> compute_indicators(const Alignment& a, const std::map<std::string, torch::Tensor>& ft,
                                                        const std::map<std::string, torch::Tensor>* fisher,
                                                        const IndicatorOptions& opt, double* epsilon_out) {
  const bool needs_fisher = opt.indicator == Indicator::FisherRatio || opt.indicator == Indicator::InverseFisher;
  if (needs_fisher && !fisher) throw Error(ErrorKind::InvalidArgument, "indicator needs the Fisher information");
  std::map<std::string, double> eps;
  if (needs_fisher) {
    if (opt.epsilon_basis == EpsilonBasis::Global) {
      const double e = scaled_mean(*fisher, a.aligned, opt.epsilon_scale);
      for (auto& n : a.aligned) eps[n] = e;
      if (epsilon_out) *epsilon_out = e;
    } else {
      double weighted = 0;
      int64_t total = 0;
      for (auto& n : a.aligned) {
        int64_t d = 0;
        eps[n] = scaled_mean(*fisher, {n}, opt.epsilon_scale, &d);
        weighted += eps[n] * d;
        total += d;
      }
      if (epsilon_out) *epsilon_out = total ? weighted / total : 0.0;
    }
  } else if (epsilon_out) {
    *epsilon_out = 0;
  }
  auto gen = at::detail::createCPUGenerator(opt.seed);
  std::map<std::string, torch::Tensor> r;
  for (auto& n : a.aligned) {
    torch::Tensor v;
    auto delta = ft.at(n).to(torch::kCPU, torch::kFloat32) - a.pre.at(n);
    switch (opt.indicator) {
      case Indicator::FisherRatio:
        v = (delta.to(torch::kFloat64).square() / (fisher->at(n).to(torch::kFloat64) + eps.at(n))).to(torch::kFloat32);
        break;
      case Indicator::Magnitude: v = delta.square(); break;
      case Indicator::Random: v = at::rand(delta.sizes(), gen, torch::kFloat32); break;
      case Indicator::InverseFisher: v = (1.0 / (fisher->at(n).to(torch::kFloat64) + eps.at(n))).to(torch::kFloat32); break;
    }
    // Clamp into finite non-negative floats (huge ratios saturate at FLT_MAX, ties then by order).
    v = torch::nan_to_num(v, 0.0, std::numeric_limits<float>::max(), 0.0).clamp_min(0.0);
    r[n] = v.contiguous();
  }
  return r;
}

Threshold kth_largest(const std::vector<torch::Tensor>& values, int64_t k) {
  int64_t total = 0;
  for (auto& v : values) {
    // read through raw host pointers below: a CUDA or strided tensor here is a caller's bug
    if (!v.is_cpu() || !v.is_contiguous() || v.scalar_type() != torch::kFloat32)
      throw Error(ErrorKind::Internal, "kth_largest: needs contiguous float32 CPU tensors");
    total += v.numel();
  }
  if (k < 1 || k > total) throw Error(ErrorKind::Internal, fmt::format("kth_largest: k={} outside [1, {}]", k, total));
  // Non-negative floats order like their uint32 bit patterns. Radix select from the top byte down:
  // `prefix` holds the decided high bits; `need` is the rank still to find among matching elements.
  uint32_t prefix = 0;
  int64_t need = k, above = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    std::vector<int64_t> hist(256, 0);
    const uint32_t high_mask = shift == 24 ? 0u : ~((1u << (shift + 8)) - 1u);
    for (auto& v : values) {
      const auto* p = reinterpret_cast<const uint32_t*>(v.data_ptr<float>());
      const int64_t n = v.numel();
      for (int64_t i = 0; i < n; ++i) {
        uint32_t b = p[i];
        if ((b & high_mask) == prefix) ++hist[(b >> shift) & 255u];
      }
    }
    int bin = 255;
    for (; bin >= 0; --bin) {
      if (hist[bin] >= need) break;
      need -= hist[bin];
      above += hist[bin];
    }
    prefix |= static_cast<uint32_t>(bin) << shift;
  }
  Threshold t;
  std::memcpy(&t.value, &prefix, sizeof(float));
  t.above = above;
  return t;
}

std::map<std::string, torch::Tensor> select_top(const std::vector<std::string>& order,
                                                const std::map<std::string, torch::Tensor>& r, double rho, Scope scope) {
  if (!(rho >= 0 && rho <= 1)) throw Error(ErrorKind::InvalidArgument, fmt::format("reset fraction {} outside [0, 1]", rho));
  std::map<std::string, torch::Tensor> masks;
  auto select_group = [&](const std::vector<std::string>& names) {
    int64_t d = 0;
    std::vector<torch::Tensor> vals;
    for (auto& n : names) { d += r.at(n).numel(); vals.push_back(r.at(n)); }
    const int64_t k = static_cast<int64_t>(std::llround(rho * static_cast<double>(d)));
    if (k == 0) {
      for (auto& n : names) masks[n] = torch::zeros(r.at(n).sizes(), torch::kBool);
      return;
    }
    auto th = kth_largest(vals, k);
    int64_t ties_left = k - th.above;  // how many elements equal to the threshold to take
    for (auto& n : names) {
      const auto& v = r.at(n);
      auto mask = v.gt(th.value);
      auto eq = v.eq(th.value).view(-1);
      int64_t n_eq = eq.sum().item<int64_t>();
      if (n_eq > 0 && ties_left > 0) {
        auto flat = mask.view(-1);
        if (n_eq <= ties_left) {
          flat.logical_or_(eq);
          ties_left -= n_eq;
        } else {  // take the first ties_left equal elements in flat order
          auto idx = eq.nonzero().view(-1).slice(0, 0, ties_left);
          flat.index_fill_(0, idx, true);
          ties_left = 0;
        }
      }
      masks[n] = mask;
    }
  };
  if (scope == Scope::Global) {
    select_group(order);
  } else {
    for (auto& n : order) select_group({n});
  }
  return masks;
}

std::map<std::string, torch::Tensor> select_reset(const std::vector<std::string>& order,
                                                  const std::map<std::string, torch::Tensor>& r, double rho,
                                                  Scope scope, WordEmbedding policy, const std::string& word) {
  const bool keep = policy == WordEmbedding::Keep && std::find(order.begin(), order.end(), word) != order.end();
  if (!keep) return select_top(order, r, rho, scope);
  std::vector<std::string> rest;
  for (auto& n : order)
    if (n != word) rest.push_back(n);
  auto masks = rest.empty() ? std::map<std::string, torch::Tensor>{} : select_top(rest, r, rho, scope);
  masks[word] = torch::zeros(r.at(word).sizes(), torch::kBool);
  return masks;
}

int64_t count_selected(const std::map<std::string, torch::Tensor>& masks) {
  int64_t c = 0;
  for (auto& [n, m] : masks) c += m.sum().item<int64_t>();
  return c;
}

}  // namespace finepurify::purify
