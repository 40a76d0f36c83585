// Diagonal empirical Fisher: batched per-example squared gradients (the default) and the
// per-example reference loop they are checked against.
#include "finepurify/purify/fisher.hpp"

#include <algorithm>
#include <chrono>
#include <functional>
#include <numeric>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "finepurify/error.hpp"
#include "finepurify/util/runtime.hpp"

namespace finepurify::purify {

namespace {

void check_labels(const model::SequenceClassifierImpl& m, const train::TokenizedSet& data, int64_t N) {
  for (int64_t n = 0; n < N; ++n)
    if (data.labels[n] < 0 || data.labels[n] >= m.config.num_labels())
      throw Error(ErrorKind::DataInvalid, fmt::format("Fisher: example {} has label {} outside [0, {})", n,
                                                      data.labels[n], m.config.num_labels()));
}

/// float64 accumulators, one per parameter, on the parameter's device. The word-embedding matrix's
/// holds only `word_rows` (sorted vocabulary ids; all rows when undefined): every other row's
/// Fisher is exactly 0, and on a real model the matrix is a fifth (bert-base) to half (MiniLM) of
/// all parameters.
std::map<std::string, torch::Tensor> zeros_like_params(model::SequenceClassifierImpl& m, const torch::Tensor& word_rows) {
  std::map<std::string, torch::Tensor> acc;
  const auto word = m.word_embedding_name();
  for (auto& p : m.named_parameters()) {
    auto sizes = p.value().sizes().vec();
    if (p.key() == word && word_rows.defined()) sizes[0] = word_rows.size(0);
    acc[p.key()] = torch::zeros(sizes, p.value().options().dtype(torch::kFloat64));
  }
  return acc;
}

/// F = acc / N in float32 on the CPU; the word-embedding rows in `word_rows` (if defined) scattered
/// into a zero matrix of `vocab` rows.
std::map<std::string, torch::Tensor> finish(std::map<std::string, torch::Tensor>& acc, int64_t N,
                                            const std::string& word, const torch::Tensor& word_rows, int64_t vocab) {
  std::map<std::string, torch::Tensor> out;
  for (auto& [k, v] : acc) {
    auto f = (v / static_cast<double>(N)).to(torch::kFloat32).to(torch::kCPU);
    if (k == word && word_rows.defined()) {
      auto full = torch::zeros({vocab, f.size(1)}, f.options());
      full.index_copy_(0, word_rows.to(torch::kCPU), f);
      f = full;
    }
    out[k] = f;
    v = torch::Tensor();  // each float64 accumulator goes as its float32 copy arrives (peak +1x, not +2x)
  }
  return out;
}

/// The sorted distinct token ids of the first N examples and the padding id (collation pads with it).
torch::Tensor used_rows(const train::TokenizedSet& data, int64_t N, int64_t pad, torch::Device device) {
  std::vector<int64_t> ids{pad};
  for (int64_t n = 0; n < N; ++n)
    ids.insert(ids.end(), data.encodings[n].input_ids.begin(), data.encodings[n].input_ids.end());
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return torch::tensor(ids, torch::kInt64).to(device);
}

/// One unpadded forward/backward per example (the reference).
void per_example(model::SequenceClassifierImpl& m, const train::TokenizedSet& data, int64_t N, torch::Device device,
                 std::map<std::string, torch::Tensor>& acc, util::Progress& progress) {
  const std::string word_name = m.word_embedding_name();
  const int64_t pad = m.config.pad_token_id;
  auto word = m.word_embedding_weight();
  std::vector<std::string> names;
  std::vector<torch::Tensor> params;
  for (auto& p : m.named_parameters()) {
    if (p.key() == word_name) continue;
    names.push_back(p.key());
    params.push_back(p.value());
  }
  auto& word_acc = acc[word_name];
  for (int64_t n = 0; n < N; ++n) {
    auto b = train::collate(data, {n}, device);  // one example, no padding
    auto ids = b.input_ids.view({-1});
    auto uniq_inv = torch::_unique2(ids, /*sorted=*/true, /*return_inverse=*/true);
    auto uniq = std::get<0>(uniq_inv), inverse = std::get<1>(uniq_inv);
    auto rows = word.detach().index_select(0, uniq).requires_grad_(true);  // (U, H)
    auto embeds = rows.index_select(0, inverse).unsqueeze(0);              // (1, T, H)
    model::ForwardOptions fo;
    fo.inputs_embeds = embeds;
    auto logits = m.forward(b.input_ids, b.token_type_ids, b.attention_mask, fo).logits;
    auto loss = torch::cross_entropy_loss(logits, b.labels);
    std::vector<torch::Tensor> inputs = params;
    inputs.push_back(rows);
    auto grads = torch::autograd::grad({loss}, inputs, {}, /*retain_graph=*/false, /*create_graph=*/false,
                                       /*allow_unused=*/true);
    for (std::size_t i = 0; i < params.size(); ++i)
      if (grads[i].defined()) acc[names[i]].add_(grads[i].to(torch::kFloat64).square());
    auto row_sq = grads.back().to(torch::kFloat64).square();
    row_sq.masked_fill_(uniq.eq(pad).unsqueeze(1), 0.0);  // padding_idx row gets no gradient (as nn.Embedding)
    word_acc.index_add_(0, uniq, row_sq);
    progress.step(1);
  }
}

/// acc += sum_n (per-example rows)^2 for an embedding: g (B, T, H) at the looked-up vectors, ids (B, T).
/// Rows an example uses twice get the sum of their gradients first (the example's gradient of that row).
void add_embedding(torch::Tensor& acc, const torch::Tensor& g, const torch::Tensor& ids, std::optional<int64_t> pad) {
  const int64_t B = ids.size(0), T = ids.size(1), H = g.size(2), V = acc.size(0);
  auto key = (torch::arange(B, ids.options()).unsqueeze(1) * V + ids).view({-1});  // example x row
  auto uniq_inv = torch::_unique2(key, /*sorted=*/true, /*return_inverse=*/true);
  auto uniq = std::get<0>(uniq_inv), inverse = std::get<1>(uniq_inv);
  auto per = torch::zeros({uniq.size(0), H}, g.options().dtype(torch::kFloat64));
  per.index_add_(0, inverse, g.reshape({B * T, H}).to(torch::kFloat64));
  auto row = uniq.remainder(V);
  auto sq = per.square();
  if (pad) sq.masked_fill_(row.eq(*pad).unsqueeze(1), 0.0);  // padding_idx gets no gradient (as nn.Embedding)
  acc.index_add_(0, row, sq);
}

/// acc += sum_n per_n^2 for per-example gradients `per` (B, ...) of a parameter shaped like acc.
void add_squares(torch::Tensor& acc, const torch::Tensor& per) { acc.add_(per.to(torch::kFloat64).square().sum(0)); }

/// acc += sum_n (sum_t a_nt ⊗ b_nt)^2 with a (B, T, out), b (B, T, in).
void add_outer(torch::Tensor& acc, const torch::Tensor& a, const torch::Tensor& b) {
  // Squares of <= 32 examples are summed in float32 (relative error <= 31 u = 1.8e-6 in the worst
  // case, 3.3e-7 measured on MiniLM-shaped gradients), then added to the float64 accumulator. A
  // float64-typed reduction over the examples is not vectorised: it cost ~60x the float32 sum
  // (bench/fisher-reduction.py) and was most of the batched Fisher's time.
  constexpr int64_t kFloat32Group = 32;
  const int64_t B = a.size(0), out = a.size(2), in = b.size(2);
  if (a.size(1) == 1) {
    // One position per example (the head, the last layer's first-position rows): (a_n ⊗ b_n)² =
    // a_n² ⊗ b_n², so the sum over the examples is one product, (a²)ᵀ b², with no per-example tensor.
    for (int64_t s = 0; s < B; s += kFloat32Group) {
      const int64_t e = std::min(B, s + kFloat32Group);
      acc.add_(torch::mm(a.slice(0, s, e).select(1, 0).square().t(), b.slice(0, s, e).select(1, 0).square()));
    }
    return;
  }
  // The per-example gradients are formed a few at a time, at most 2^20 floats (4 MB), so that squaring
  // and summing them reads the cache rather than memory; their squares go into a float32 buffer, which
  // joins the accumulator every <= 32 examples.
  const int64_t chunk =
      std::clamp<int64_t>((int64_t{1} << 20) / std::max<int64_t>(1, out * in), 1, kFloat32Group);
  torch::Tensor buf;  // (out, in) float32
  int64_t in_buf = 0;
  for (int64_t s = 0; s < B; s += chunk) {
    const int64_t e = std::min(B, s + chunk);
    auto G = torch::bmm(a.slice(0, s, e).transpose(1, 2), b.slice(0, s, e));  // (c, out, in)
    if (!buf.defined()) buf = torch::zeros({out, in}, G.options());
    if (e - s == 1)
      buf.addcmul_(G[0], G[0]);
    else
      buf.add_(G.square_().sum(0));
    in_buf += e - s;
    if (e == B || in_buf + chunk > kFloat32Group) {
      acc.add_(buf);
      buf.zero_();
      in_buf = 0;
    }
  }
}

/// The batched path; the word-embedding accumulator holds the rows `word_rows` only (zeros_like_params).
void batched(model::SequenceClassifierImpl& m, const train::TokenizedSet& data, int64_t N, int64_t batch_size,
             torch::Device device, std::map<std::string, torch::Tensor>& acc, const torch::Tensor& word_rows,
             util::Progress& progress) {
  std::map<const torch::nn::Module*, std::string> prefix;  // module -> its name ("bert.encoder.layer.0.attention.self.query")
  for (auto& item : m.named_modules("", /*include_self=*/false)) prefix[item.value().get()] = item.key();
  auto& emb = *m.base->embeddings;
  const std::string ep = m.config.base_prefix() + "embeddings.";
  std::set<std::string> covered;
  // the padding row's place among word_rows (which holds every id used, the padding id included)
  std::optional<int64_t> pad_slot;
  if (auto pad = emb.word_embeddings->options.padding_idx())
    pad_slot = torch::searchsorted(word_rows, torch::tensor({*pad}, word_rows.options())).item<int64_t>();
  auto add = [&](const std::string& name, const std::function<void(torch::Tensor&)>& f) {
    auto it = acc.find(name);
    if (it == acc.end()) throw Error(ErrorKind::Internal, "batched Fisher: no parameter " + name);
    f(it->second);
    covered.insert(name);
  };
  const auto subset = train::subset(data, [&] {
    std::vector<int64_t> idx(N);
    std::iota(idx.begin(), idx.end(), 0);
    return idx;
  }());
  for (const auto& idx : train::length_sorted_batches(subset, batch_size)) {
    auto b = train::collate(subset, idx, device);
    model::ActivationTape tape;
    torch::Tensor loss;
    {
      model::ActivationTape::Scope scope(tape);
      auto logits = m.forward(b.input_ids, b.token_type_ids, b.attention_mask).logits;
      // The sum of the examples' losses: its gradient at each example's activations is that example's own.
      loss = torch::nn::functional::cross_entropy(
          logits, b.labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    }
    // Each Linear's and LayerNorm's output gradient is used by a hook the moment the backward pass
    // reaches it and then freed with the pass: the gradients of every layer are never held at once
    // (asking autograd::grad for all of them kept them all until it returned).
    for (auto& l : tape.linears) {
      l.y.register_hook([&, lp = &l](torch::Tensor gy) {
        const auto& name = prefix.at(lp->module);
        auto x = lp->x.detach();
        if (x.dim() == 2) {  // the head: one position per example
          x = x.unsqueeze(1);
          gy = gy.unsqueeze(1);
        }
        add(name + ".weight", [&](torch::Tensor& a) { add_outer(a, gy, x); });
        if (lp->module->bias.defined()) add(name + ".bias", [&](torch::Tensor& a) { add_squares(a, gy.sum(1)); });
      });
    }
    for (auto& nrm : tape.norms) {
      nrm.y.register_hook([&, np = &nrm](const torch::Tensor& gy) {
        const auto& name = prefix.at(np->module);
        add(name + ".weight", [&](torch::Tensor& a) { add_squares(a, (gy * np->xhat).sum(1)); });
        add(name + ".bias", [&](torch::Tensor& a) { add_squares(a, gy.sum(1)); });
      });
    }
    auto gs = torch::autograd::grad({loss}, {tape.embedding_sum}, {}, /*retain_graph=*/false,
                                    /*create_graph=*/false, /*allow_unused=*/true)[0];
    if (gs.defined()) {
      add(ep + "word_embeddings.weight", [&](torch::Tensor& a) {
        // rows of the compact accumulator: each id's place among word_rows
        add_embedding(a, gs, torch::searchsorted(word_rows, tape.input_ids), pad_slot);
      });
      add(ep + "position_embeddings.weight", [&](torch::Tensor& a) { add_embedding(a, gs, tape.position_ids, emb.position_embeddings->options.padding_idx()); });
      add(ep + "token_type_embeddings.weight", [&](torch::Tensor& a) { add_embedding(a, gs, tape.token_type_ids, std::nullopt); });
    }
    progress.step(static_cast<int64_t>(idx.size()));
  }
  // Every parameter has a rule above; a new module type without one would silently get F = 0.
  for (auto& [name, a] : acc)
    if (!covered.count(name))
      throw Error(ErrorKind::Internal, "batched Fisher: parameter " + name + " is not covered (use batch_size 1)");
}

}  // namespace

std::map<std::string, torch::Tensor> diagonal_fisher(model::SequenceClassifierImpl& m, const train::TokenizedSet& data,
                                                     torch::Device device, const FisherOptions& opt) {
  const int64_t N = opt.max_examples > 0 ? std::min(opt.max_examples, data.size()) : data.size();
  if (N == 0) throw Error(ErrorKind::InvalidArgument, "Fisher: the clean set is empty");
  if (opt.batch_size < 1) throw Error(ErrorKind::InvalidArgument, "Fisher: batch_size must be >= 1");
  check_labels(m, data, N);
  m.to(device);
  const bool was_training = m.is_training();
  m.eval();  // dropout off
  // The per-example reference keeps a full word-embedding accumulator; the batched path only the rows used.
  const auto word_rows = opt.batch_size == 1 ? torch::Tensor() : used_rows(data, N, m.config.pad_token_id, device);
  auto acc = zeros_like_params(m, word_rows);
  util::Progress progress("fisher", N, opt.progress ? 5.0 : 1e18);
  if (opt.batch_size == 1)
    per_example(m, data, N, device, acc, progress);
  else
    batched(m, data, N, opt.batch_size, device, acc, word_rows, progress);
  if (was_training) m.train();
  return finish(acc, N, m.word_embedding_name(), word_rows, m.config.vocab_size);
}

double fisher_throughput(model::SequenceClassifierImpl& m, const train::TokenizedSet& data, int64_t batch_size,
                         torch::Device device) {
  auto d = data;
  for (auto& y : d.labels) y = ((y % m.config.num_labels()) + m.config.num_labels()) % m.config.num_labels();
  FisherOptions fo;
  fo.progress = false;
  fo.batch_size = batch_size;
  fo.max_examples = std::min(d.size(), batch_size);
  diagonal_fisher(m, d, device, fo);  // warm-up
  fo.max_examples = d.size();
  util::synchronize(device);
  const auto t0 = std::chrono::steady_clock::now();
  diagonal_fisher(m, d, device, fo);
  util::synchronize(device);
  return d.size() / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double fisher_throughput(model::SequenceClassifierImpl& m, int64_t n, int64_t tokens, int64_t batch_size,
                         torch::Device device) {
  train::TokenizedSet data;
  data.pad_id = m.config.pad_token_id;
  torch::manual_seed(0);
  auto ids = torch::randint(5, m.config.vocab_size, {n, tokens}, torch::kLong);
  for (int64_t i = 0; i < n; ++i) {
    text::Encoding e;
    auto row = ids[i];
    e.input_ids.assign(row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + tokens);
    e.token_type_ids.assign(tokens, 0);
    e.attention_mask.assign(tokens, 1);
    data.encodings.push_back(std::move(e));
    data.labels.push_back(i % m.config.num_labels());
  }
  return fisher_throughput(m, data, batch_size, device);
}

}  // namespace finepurify::purify
