// Behavioural check of trigger candidates: prediction flips when a token is inserted (see probe.hpp).
#include "finepurify/purify/probe.hpp"

#include <algorithm>
#include <numeric>
#include <random>
#include <set>

#include <fmt/format.h>

#include "finepurify/error.hpp"
#include "finepurify/purify/unlearn.hpp"
#include "finepurify/train/trainer.hpp"
#include "finepurify/util/runtime.hpp"

namespace finepurify::purify {

std::vector<TokenProbe> probe_tokens(model::SequenceClassifierImpl& m, const train::TokenizedSet& examples,
                                     const std::vector<int64_t>& ids, int64_t max_examples, uint64_t seed,
                                     torch::Device device) {
  if (examples.size() == 0) throw Error(ErrorKind::InvalidArgument, "token probe: no clean examples");
  const int64_t V = m.config.vocab_size;
  for (auto id : ids)
    if (id < 0 || id >= V)
      throw Error(ErrorKind::InvalidArgument, fmt::format("token probe: token id {} outside the vocabulary ({})", id, V));
  // A seeded sample of the clean examples (the clean file may be sorted by label).
  std::vector<int64_t> order(examples.size());
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(seed));
  if (max_examples > 0 && max_examples < static_cast<int64_t>(order.size())) order.resize(max_examples);
  train::TokenizedSet base;
  base.pad_id = examples.pad_id;
  for (auto i : order) {
    base.encodings.push_back(examples.encodings[i]);
    base.labels.push_back(examples.labels[i]);
  }
  const int64_t n = base.size();
  const auto before = train::evaluate(m, base, device).predictions;
  const int64_t C = m.config.num_labels();
  std::vector<int64_t> not_c(C, 0);
  for (auto p : before)
    for (int64_t c = 0; c < C; ++c) not_c[c] += p != c;

  std::vector<TokenProbe> out;
  out.reserve(ids.size());
  util::Progress prog("token probe", static_cast<int64_t>(ids.size()));
  for (std::size_t t = 0; t < ids.size(); ++t) {
    // Same positions for every token (same seed): only the token differs between probes.
    auto with = insert_tokens(base, {ids[t]}, 1, static_cast<int>(m.config.max_position_embeddings), seed ^ 0x70726f6265ULL);
    const auto after = train::evaluate(m, with, device).predictions;
    std::vector<int64_t> to_c(C, 0);
    for (int64_t i = 0; i < n; ++i)
      if (after[i] != before[i] && after[i] >= 0 && after[i] < C) to_c[after[i]] += 1;
    TokenProbe p;
    p.id = ids[t];
    p.tested = n;
    for (int64_t c = 0; c < C; ++c) {
      const double r = not_c[c] > 0 ? static_cast<double>(to_c[c]) / static_cast<double>(not_c[c]) : 0.0;
      if (p.flip_to < 0 || r > p.flip_rate) { p.flip_rate = r; p.flip_to = c; }
    }
    out.push_back(p);
    prog.step(1);
  }
  return out;
}

std::vector<int64_t> probe_candidates(const torch::Tensor& row_mass, const torch::Tensor& row_drift, int64_t k,
                                      const text::Tokenizer& tok) {
  const auto sids = tok.special_ids();
  const std::set<int64_t> special(sids.begin(), sids.end());
  std::vector<int64_t> out;
  std::set<int64_t> seen;
  for (const auto* v : {&row_mass, &row_drift}) {
    const int64_t want = std::min<int64_t>(k + static_cast<int64_t>(special.size()), v->numel());
    auto idx = std::get<1>(v->to(torch::kFloat64).topk(want));
    int64_t taken = 0;
    for (int64_t i = 0; i < want && taken < k; ++i) {
      const int64_t id = idx[i].item<int64_t>();
      if (special.count(id)) continue;
      ++taken;
      if (seen.insert(id).second) out.push_back(id);
    }
  }
  return out;
}

}  // namespace finepurify::purify
