// Indicators and exact linear-time top-k selection with deterministic tie-breaking.
#include "finepurify/purify/select.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "finepurify/error.hpp"
#include "finepurify/util/reduce.hpp"

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

bool uses_fisher(Indicator i) { return i == Indicator::FisherRatio || i == Indicator::InverseFisher; }

namespace {

/// scale x mean of F over `names` (the smallest positive float when that is 0: avoids 0/0).
double scaled_mean(const std::map<std::string, torch::Tensor>& fisher, const std::vector<std::string>& names,
                   double scale, int64_t* count = nullptr) {
  double sum = 0;
  int64_t d = 0;
  for (auto& n : names) {
    sum += util::sum_float64(fisher.at(n));
    d += fisher.at(n).numel();
  }
  if (count) *count = d;
  const double eps = scale * (d ? sum / d : 0.0);
  return eps > 0 ? eps : std::numeric_limits<float>::min();
}

/// Elements per parallel work item in the passes below (at::parallel_for over the --threads pool).
constexpr int64_t kGrain = int64_t{1} << 18;

/// r of n elements in one pass with no temporaries, the same arithmetic as the formulas written with
/// tensor operations: delta = w_FT - w_Pre in float32; delta^2 / (F + eps) and 1 / (F + eps) in
/// float64, rounded to float32; magnitude delta * delta in float32. Then clamped into finite
/// non-negative floats: NaN and negatives -> 0, +inf -> FLT_MAX (huge ratios saturate; ties are then
/// broken by order), which kth_largest's bit-pattern ordering relies on.
void fill_indicator(Indicator ind, const float* ft, const float* pre, const float* f, double eps, float* out, int64_t n) {
  auto clamp = [](float v) { return v > 0 ? std::min(v, FLT_MAX) : 0.0f; };
  at::parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) {
    switch (ind) {
      case Indicator::FisherRatio:
        for (int64_t i = b; i < e; ++i) {
          const double d = ft[i] - pre[i];
          out[i] = clamp(static_cast<float>(d * d / (static_cast<double>(f[i]) + eps)));
        }
        break;
      case Indicator::Magnitude:
        for (int64_t i = b; i < e; ++i) {
          const float d = ft[i] - pre[i];
          out[i] = clamp(d * d);
        }
        break;
      case Indicator::InverseFisher:
        for (int64_t i = b; i < e; ++i) out[i] = clamp(static_cast<float>(1.0 / (static_cast<double>(f[i]) + eps)));
        break;
      case Indicator::Random: throw Error(ErrorKind::Internal, "fill_indicator: the random indicator is drawn, not computed");
    }
  });
}

/// A contiguous run of one tensor's elements: the unit of the parallel passes.
struct Chunk {
  const uint32_t* bits;
  int64_t n;
};

std::vector<Chunk> chunks_of(const std::vector<torch::Tensor>& values) {
  std::vector<Chunk> c;
  for (auto& v : values) {
    const auto* p = reinterpret_cast<const uint32_t*>(v.data_ptr<float>());
    for (int64_t s = 0; s < v.numel(); s += kGrain) c.push_back({p + s, std::min(kGrain, v.numel() - s)});
  }
  return c;
}

/// compute_indicators; with `consume` (== fisher) each r is written over its F where F is a float32
/// CPU contiguous tensor, and `consume` is cleared at the end.
std::map<std::string, torch::Tensor> indicators(const Alignment& a, const std::map<std::string, torch::Tensor>& ft,
                                                const std::map<std::string, torch::Tensor>* fisher,
                                                const IndicatorOptions& opt, double* epsilon_out,
                                                std::map<std::string, torch::Tensor>* consume) {
  const bool needs_fisher = uses_fisher(opt.indicator);
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
    const auto ftn = ft.at(n).to(torch::kCPU, torch::kFloat32).contiguous();
    const auto pre = a.pre_of(n).to(torch::kCPU, torch::kFloat32).contiguous();
    if (ftn.sizes() != pre.sizes())
      throw Error(ErrorKind::Internal, fmt::format("compute_indicators: {} has shape {} in w_FT, {} in w_Pre", n,
                                                   fmt::join(ftn.sizes(), "x"), fmt::join(pre.sizes(), "x")));
    if (opt.indicator == Indicator::Random) {
      r[n] = at::rand(ftn.sizes(), gen, torch::kFloat32);
      continue;
    }
    torch::Tensor f;
    if (needs_fisher) {
      f = fisher->at(n).to(torch::kCPU, torch::kFloat32).contiguous();
      if (f.sizes() != ftn.sizes())
        throw Error(ErrorKind::Internal, fmt::format("compute_indicators: {} has shape {} in the Fisher, {} in w_FT", n,
                                                     fmt::join(f.sizes(), "x"), fmt::join(ftn.sizes(), "x")));
    }
    // fill_indicator reads element i before writing it, so r may overwrite F in place
    const bool over_f = consume && f.defined() && f.data_ptr() == fisher->at(n).data_ptr();
    auto v = over_f ? f : torch::empty(ftn.sizes(), torch::kFloat32);
    fill_indicator(opt.indicator, ftn.data_ptr<float>(), pre.data_ptr<float>(), needs_fisher ? f.data_ptr<float>() : nullptr,
                   needs_fisher ? eps.at(n) : 0.0, v.data_ptr<float>(), v.numel());
    r[n] = v;
  }
  if (consume) consume->clear();
  return r;
}

}  // namespace

std::map<std::string, torch::Tensor> compute_indicators(const Alignment& a, const std::map<std::string, torch::Tensor>& ft,
                                                        const std::map<std::string, torch::Tensor>* fisher,
                                                        const IndicatorOptions& opt, double* epsilon_out) {
  return indicators(a, ft, fisher, opt, epsilon_out, nullptr);
}

std::map<std::string, torch::Tensor> compute_indicators_in_place(const Alignment& a,
                                                                 const std::map<std::string, torch::Tensor>& ft,
                                                                 std::map<std::string, torch::Tensor>& fisher,
                                                                 const IndicatorOptions& opt, double* epsilon_out) {
  if (!uses_fisher(opt.indicator))
    throw Error(ErrorKind::Internal, "compute_indicators_in_place: the indicator does not use the Fisher");
  return indicators(a, ft, &fisher, opt, epsilon_out, &fisher);
}

Threshold kth_largest(const std::vector<torch::Tensor>& values, int64_t k, int64_t gather_at_most) {
  int64_t total = 0;
  for (auto& v : values) {
    // read through raw host pointers below: a CUDA or strided tensor here is a caller's bug
    if (!v.is_cpu() || !v.is_contiguous() || v.scalar_type() != torch::kFloat32)
      throw Error(ErrorKind::Internal, "kth_largest: needs contiguous float32 CPU tensors");
    total += v.numel();
  }
  if (k < 1 || k > total) throw Error(ErrorKind::Internal, fmt::format("kth_largest: k={} outside [1, {}]", k, total));
  // Non-negative floats order like their uint32 bit patterns. Radix select from the top bits down
  // (11, 11, then 10 bits): `prefix` holds the decided high bits, `need` the rank still to find among
  // the elements that match them, `above` how many elements are larger. Each level is one parallel
  // histogram pass (a histogram per chunk, summed); once few elements match the prefix they are
  // gathered (each chunk's count is in its histogram) and the rest is an nth_element on them, so a
  // typical selection reads the data twice.
  const auto chunks = chunks_of(values);
  const int64_t nc = static_cast<int64_t>(chunks.size());
  uint32_t prefix = 0, high_mask = 0;
  int64_t need = k, above = 0, matching = total;
  std::vector<int64_t> count(nc);  // elements matching the prefix in each chunk
  for (int64_t c = 0; c < nc; ++c) count[c] = chunks[c].n;
  for (const auto& [shift, width] : {std::pair{21, 11}, std::pair{10, 11}, std::pair{0, 10}}) {
    // Gather once few enough match: at most gather_at_most, and no more than a 16th of the data
    // unless that is small (an nth_element over most of a tensor costs more than one more pass).
    if (matching <= std::min(gather_at_most, std::max<int64_t>(int64_t{1} << 16, total / 16))) {
      std::vector<int64_t> offset(nc + 1, 0);
      for (int64_t c = 0; c < nc; ++c) offset[c + 1] = offset[c] + count[c];
      std::vector<uint32_t> cand(offset[nc]);
      at::parallel_for(0, nc, 1, [&](int64_t b, int64_t e) {
        for (int64_t c = b; c < e; ++c) {
          int64_t o = offset[c];
          for (int64_t i = 0; i < chunks[c].n; ++i)
            if ((chunks[c].bits[i] & high_mask) == prefix) cand[o++] = chunks[c].bits[i];
        }
      });
      std::nth_element(cand.begin(), cand.begin() + (need - 1), cand.end(), std::greater<>());
      const uint32_t kth = cand[need - 1];
      above += std::count_if(cand.begin(), cand.end(), [&](uint32_t x) { return x > kth; });
      Threshold t;
      std::memcpy(&t.value, &kth, sizeof(float));
      t.above = above;
      return t;
    }
    const int64_t bins = int64_t{1} << width;
    std::vector<int64_t> hist(nc * bins, 0);
    at::parallel_for(0, nc, 1, [&](int64_t b, int64_t e) {
      for (int64_t c = b; c < e; ++c) {
        int64_t* h = hist.data() + c * bins;
        const uint32_t* p = chunks[c].bits;
        const uint32_t low = static_cast<uint32_t>(bins - 1);
        if (high_mask == 0) {
          for (int64_t i = 0; i < chunks[c].n; ++i) ++h[(p[i] >> shift) & low];
        } else {
          for (int64_t i = 0; i < chunks[c].n; ++i)
            if ((p[i] & high_mask) == prefix) ++h[(p[i] >> shift) & low];
        }
      }
    });
    int64_t bin = bins - 1;
    for (; bin >= 0; --bin) {
      int64_t in_bin = 0;
      for (int64_t c = 0; c < nc; ++c) in_bin += hist[c * bins + bin];
      if (in_bin >= need) {
        matching = in_bin;
        break;
      }
      need -= in_bin;
      above += in_bin;
    }
    for (int64_t c = 0; c < nc; ++c) count[c] = hist[c * bins + bin];
    prefix |= static_cast<uint32_t>(bin) << shift;
    high_mask |= static_cast<uint32_t>(bins - 1) << shift;
  }
  Threshold t;  // all 32 bits decided by the histograms
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
    const auto th = kth_largest(vals, k);
    int64_t ties_left = k - th.above;  // how many elements equal to the threshold to take
    for (auto& n : names) {
      const auto& v = r.at(n);
      // One parallel pass: the mask of r > threshold, and how many elements equal it.
      auto mask = torch::empty(v.sizes(), torch::kBool);
      const float* p = v.data_ptr<float>();
      bool* m = mask.data_ptr<bool>();
      const float tv = th.value;
      const int64_t parts = (v.numel() + kGrain - 1) / kGrain;
      std::vector<int64_t> eq_in(parts, 0);
      at::parallel_for(0, parts, 1, [&](int64_t b, int64_t e) {
        for (int64_t c = b; c < e; ++c) {
          int64_t eqs = 0;
          for (int64_t i = c * kGrain, end = std::min(v.numel(), i + kGrain); i < end; ++i) {
            m[i] = p[i] > tv;
            eqs += p[i] == tv;
          }
          eq_in[c] = eqs;
        }
      });
      int64_t n_eq = 0;
      for (auto x : eq_in) n_eq += x;
      // The ties taken are the first ties_left equal elements in (tensor order, flat index) order.
      for (int64_t i = 0; i < v.numel() && n_eq > 0 && ties_left > 0; ++i)
        if (p[i] == tv) {
          m[i] = true;
          --ties_left;
          --n_eq;
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
