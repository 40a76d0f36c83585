// Trigger-candidate unlearning copies of a clean set (see unlearn.hpp).
#include "finepurify/purify/unlearn.hpp"

#include <random>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "finepurify/error.hpp"
#include "finepurify/util/random.hpp"

namespace finepurify::purify {

std::vector<int64_t> candidate_tokens(const DiagnosisSummary& summary, int64_t k) {
  std::vector<int64_t> ids;
  if (summary.token_probe) {  // behaviourally checked: only tokens that flip predictions
    const auto& p = *summary.token_probe;
    for (auto& t : p.tokens) {
      if (static_cast<int64_t>(ids.size()) >= k || t.probe.flip_rate < p.min_flip) break;
      ids.push_back(t.probe.id);
    }
    return ids;
  }
  for (auto& t : summary.top_tokens) {
    if (static_cast<int64_t>(ids.size()) >= k) break;
    ids.push_back(t.id);
  }
  return ids;
}

train::TokenizedSet insert_tokens(const train::TokenizedSet& s, const std::vector<int64_t>& token_ids,
                                  int max_insertions, int max_length, uint64_t seed) {
  if (token_ids.empty()) throw Error(ErrorKind::InvalidArgument, "unlearning: no candidate tokens");
  if (max_insertions < 1) throw Error(ErrorKind::InvalidArgument, "unlearning: max_insertions must be >= 1");
  std::mt19937_64 rng(seed);
  auto below = [&](uint64_t n) { return util::uniform_below(rng, n); };
  train::TokenizedSet out;
  out.pad_id = s.pad_id;
  out.labels = s.labels;
  out.encodings.reserve(s.encodings.size());
  for (const auto& e : s.encodings) {
    text::Encoding c = e;
    const int k = 1 + static_cast<int>(below(static_cast<uint64_t>(max_insertions)));
    for (int i = 0; i < k; ++i) {
      const int64_t id = token_ids[below(token_ids.size())];
      const int64_t n = static_cast<int64_t>(c.input_ids.size());
      if (n < 2) break;  // no inner slot (should not happen: [CLS] ... [SEP])
      if (max_length > 0 && n >= max_length) {
        if (n < 3) break;
        const int64_t pos = 1 + static_cast<int64_t>(below(static_cast<uint64_t>(n - 2)));  // inner token
        c.input_ids[pos] = id;
        continue;
      }
      const int64_t pos = 1 + static_cast<int64_t>(below(static_cast<uint64_t>(n - 1)));  // before index 1..n-1
      c.input_ids.insert(c.input_ids.begin() + pos, id);
      c.token_type_ids.insert(c.token_type_ids.begin() + pos, c.token_type_ids[pos]);
      c.attention_mask.insert(c.attention_mask.begin() + pos, 1);
    }
    out.encodings.push_back(std::move(c));
  }
  return out;
}

train::TokenizedSet with_unlearning_copies(const train::TokenizedSet& s, const std::vector<int64_t>& token_ids,
                                           int max_insertions, int max_length, uint64_t seed) {
  auto aug = insert_tokens(s, token_ids, max_insertions, max_length, seed);
  train::TokenizedSet out = s;
  out.encodings.insert(out.encodings.end(), aug.encodings.begin(), aug.encodings.end());
  out.labels.insert(out.labels.end(), aug.labels.begin(), aug.labels.end());
  return out;
}

std::optional<int64_t> unknown_token_id(const text::Tokenizer& tok) {
  for (const char* t : {"[UNK]", "<unk>"})
    if (auto id = tok.token_to_id(t)) return id;
  return std::nullopt;
}

const util::EnumTable<NeutralizeTo>& enum_table(NeutralizeTo) {
  static const util::EnumTable<NeutralizeTo> t{
      "neutralised row",
      {{NeutralizeTo::Unknown, "unk", "the pre-trained unknown-token row"},
       {NeutralizeTo::Pretrained, "pretrained", "the token's own pre-trained row"}}};
  return t;
}

void neutralize_rows(model::SequenceClassifierImpl& m, const std::vector<int64_t>& ids, const torch::Tensor& replacement) {
  torch::NoGradGuard ng;
  auto& w = m.word_embedding_weight();
  const int64_t V = w.size(0), H = w.size(1), n = static_cast<int64_t>(ids.size());
  const bool one = replacement.dim() == 1 && replacement.size(0) == H;
  const bool each = replacement.dim() == 2 && replacement.size(0) == n && replacement.size(1) == H;
  if (!one && !each)
    throw Error(ErrorKind::InvalidArgument,
                fmt::format("neutralise: replacement has shape [{}], expected [{}] or [{}, {}]",
                            fmt::join(replacement.sizes(), ", "), H, n, H));
  auto rows = replacement.to(w.device(), w.scalar_type());
  for (int64_t i = 0; i < n; ++i) {
    const auto id = ids[i];
    if (id < 0 || id >= V)
      throw Error(ErrorKind::InvalidArgument, fmt::format("neutralise: token id {} outside the vocabulary [0, {})", id, V));
    w[id].copy_(one ? rows : rows[i]);
  }
}

}  // namespace finepurify::purify
