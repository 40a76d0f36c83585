// Tokenisation of datasets and padded batch construction.
#include "finepurify/train/data.hpp"

#include <algorithm>
#include <numeric>
#include <random>

#include "finepurify/error.hpp"

namespace finepurify::train {

int64_t TokenizedSet::num_tokens() const {
  int64_t t = 0;
  for (auto& e : encodings) t += static_cast<int64_t>(e.input_ids.size());
  return t;
}

TokenizedSet tokenize(const text::Tokenizer& tok, const text::Dataset& data, int max_length) {
  TokenizedSet s;
  s.pad_id = tok.pad_id();
  s.encodings.reserve(data.examples.size());
  s.labels.reserve(data.examples.size());
  for (const auto& ex : data.examples) {
    s.encodings.push_back(tok.encode(ex.text_a, ex.text_b, max_length));
    s.labels.push_back(ex.label);
  }
  return s;
}

TokenizedSet subset(const TokenizedSet& s, const std::vector<int64_t>& idx) {
  TokenizedSet out;
  out.pad_id = s.pad_id;
  for (auto i : idx) {
    out.encodings.push_back(s.encodings.at(i));
    out.labels.push_back(s.labels.at(i));
  }
  return out;
}

Batch collate(const TokenizedSet& s, const std::vector<int64_t>& idx, torch::Device device) {
  const int64_t B = static_cast<int64_t>(idx.size());
  int64_t T = 0;
  for (auto i : idx) T = std::max<int64_t>(T, s.encodings[i].input_ids.size());
  auto ids = torch::full({B, T}, s.pad_id, torch::kLong);
  auto types = torch::zeros({B, T}, torch::kLong);
  auto mask = torch::zeros({B, T}, torch::kLong);
  auto labels = torch::empty({B}, torch::kLong);
  auto pi = ids.accessor<int64_t, 2>(), pt = types.accessor<int64_t, 2>(), pm = mask.accessor<int64_t, 2>();
  auto pl = labels.accessor<int64_t, 1>();
  Batch b;
  for (int64_t r = 0; r < B; ++r) {
    const auto& e = s.encodings[idx[r]];
    for (std::size_t t = 0; t < e.input_ids.size(); ++t) {
      pi[r][t] = e.input_ids[t];
      pt[r][t] = e.token_type_ids[t];
      pm[r][t] = e.attention_mask[t];
    }
    pl[r] = s.labels[idx[r]];
    b.num_tokens += static_cast<int64_t>(e.input_ids.size());
  }
  b.input_ids = ids.to(device);
  b.token_type_ids = types.to(device);
  b.attention_mask = mask.to(device);
  b.labels = labels.to(device);
  return b;
}

namespace {
/// Consecutive slices of `order`, batch_size rows each (the last one shorter).
std::vector<std::vector<int64_t>> cut_into_batches(const std::vector<int64_t>& order, int64_t batch_size) {
  const auto n = static_cast<int64_t>(order.size());
  std::vector<std::vector<int64_t>> out;
  for (int64_t i = 0; i < n; i += batch_size)
    out.emplace_back(order.begin() + i, order.begin() + std::min(n, i + batch_size));
  return out;
}
}  // namespace

std::vector<std::vector<int64_t>> make_batches(int64_t n, int64_t batch_size, bool shuffle, uint64_t seed) {
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  if (shuffle) {
    std::mt19937_64 rng(seed);
    std::shuffle(order.begin(), order.end(), rng);
  }
  return cut_into_batches(order, batch_size);
}

std::vector<std::vector<int64_t>> length_sorted_batches(const TokenizedSet& s, int64_t batch_size) {
  std::vector<int64_t> order(s.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return s.encodings[a].input_ids.size() < s.encodings[b].input_ids.size();
  });
  return cut_into_batches(order, batch_size);
}

std::vector<std::vector<int64_t>> length_grouped_batches(const TokenizedSet& s, int64_t batch_size, int64_t window,
                                                         uint64_t seed) {
  if (window <= 1) return make_batches(s.size(), batch_size, true, seed);
  std::vector<int64_t> order(s.size());
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(order.begin(), order.end(), rng);
  const int64_t span = batch_size * window;
  for (int64_t i = 0; i < s.size(); i += span)
    std::stable_sort(order.begin() + i, order.begin() + std::min(s.size(), i + span), [&](int64_t a, int64_t b) {
      return s.encodings[a].input_ids.size() > s.encodings[b].input_ids.size();
    });
  auto out = cut_into_batches(order, batch_size);
  std::shuffle(out.begin(), out.end(), rng);
  return out;
}

text::Dataset read_task_data(const std::string& path, const model::ModelConfig& c, bool require_labels,
                             const std::string& text_column, const std::string& pair_column,
                             const std::string& label_column) {
  text::ReadOptions ro;
  ro.require_labels = require_labels;
  ro.text_column = text_column;
  ro.text_pair_column = pair_column;
  ro.label_column = label_column;
  bool generic = true;
  for (std::size_t i = 0; i < c.id2label.size(); ++i) {
    generic &= c.id2label[i] == "LABEL_" + std::to_string(i);
    ro.label2id[c.id2label[i]] = static_cast<int64_t>(i);
  }
  if (generic) ro.label2id.clear();
  auto d = text::read_dataset(path, ro);
  if (d.examples.empty()) throw Error(ErrorKind::DataInvalid, path + ": no examples");
  return d;
}

}  // namespace finepurify::train
