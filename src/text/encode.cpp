// Shared tokenizer machinery: vocabulary lookup, special-token splitting, longest_first truncation
// (slow and fast variants) and the final [CLS] A [SEP] (B [SEP]) assembly.
#include <algorithm>

#include "text/tokenizer_impl.hpp"
#include "text/unicode.hpp"

namespace finepurify::text::detail {

void Vocab::add(std::string token, int64_t id) { pending_.emplace_back(std::move(token), id); }

void Vocab::finish() {
  int64_t max_id = -1;
  for (const auto& [t, id] : pending_) max_id = std::max(max_id, id);
  by_id_.assign(static_cast<std::size_t>(max_id + 1), std::string());
  has_.assign(by_id_.size(), 0);
  for (auto& [t, id] : pending_) {
    by_id_[static_cast<std::size_t>(id)] = std::move(t);
    has_[static_cast<std::size_t>(id)] = 1;
  }
  pending_.clear();
  pending_.shrink_to_fit();
  map_.clear();
  map_.reserve(by_id_.size() * 2);
  // Later ids win for duplicate tokens (vocab.txt: `vocab[token] = index` line by line).
  for (std::size_t i = 0; i < by_id_.size(); ++i) {
    if (!has_[i]) continue;
    map_[std::string_view(by_id_[i])] = static_cast<int64_t>(i);
    max_bytes_ = std::max(max_bytes_, by_id_[i].size());
  }
}

void SpecialSplitter::set(const std::vector<SpecialToken>& tokens) {
  tokens_.clear();
  contents_.clear();
  first_chars_.clear();
  for (const auto& t : tokens) {
    if (t.content.empty()) continue;
    std::u32string c;
    uni::decode_utf8(t.content, c);
    tokens_.push_back(t);
    if (first_chars_.find(c[0]) == std::u32string::npos) first_chars_.push_back(c[0]);
    contents_.push_back(std::move(c));
  }
}

int SpecialSplitter::match_at(const std::u32string& text, std::size_t pos) const {
  int best = -1;
  std::size_t best_len = 0;
  for (std::size_t k = 0; k < contents_.size(); ++k) {
    const auto& c = contents_[k];
    if (c.size() > best_len && text.compare(pos, c.size(), c) == 0) {
      best = static_cast<int>(k);
      best_len = c.size();
    }
  }
  return best;
}

void SpecialSplitter::split(const std::u32string& text, std::vector<Segment>& out) const {
  out.clear();
  std::size_t seg_begin = 0;
  if (!contents_.empty()) {
    for (std::size_t i = 0; i < text.size();) {
      if (first_chars_.find(text[i]) == std::u32string::npos) {
        ++i;
        continue;
      }
      int k = match_at(text, i);
      if (k < 0) {
        ++i;
        continue;
      }
      if (i > seg_begin) out.push_back({seg_begin, i, -1});
      const auto& tok = tokens_[static_cast<std::size_t>(k)];
      out.push_back({i, i + contents_[static_cast<std::size_t>(k)].size(), tok.id, k});
      i += contents_[static_cast<std::size_t>(k)].size();
      seg_begin = i;
    }
  }
  if (text.size() > seg_begin) out.push_back({seg_begin, text.size(), -1});
  if (contents_.empty()) return;
  // lstrip / rstrip of the neighbours, as PreTrainedTokenizer.tokenize does (Python str.strip).
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (out[i].token_index < 0) continue;
    const auto& tok = tokens_[static_cast<std::size_t>(out[i].token_index)];
    if (tok.rstrip && i + 1 < out.size() && out[i + 1].token_index < 0) {
      auto& r = out[i + 1];
      while (r.begin < r.end && uni::is_python_space(text[r.begin])) ++r.begin;
    }
    if (tok.lstrip && i > 0 && out[i - 1].token_index < 0) {
      auto& l = out[i - 1];
      while (l.end > l.begin && uni::is_python_space(text[l.end - 1])) --l.end;
    }
  }
}

void truncate_longest_first(std::vector<int64_t>& a, std::vector<int64_t>* b, int max_length,
                            int n_special, Compat compat) {
  if (max_length <= 0) return;
  const std::size_t total = a.size() + (b ? b->size() : 0) + static_cast<std::size_t>(n_special);
  if (total <= static_cast<std::size_t>(max_length)) return;
  const std::size_t to_remove = total - static_cast<std::size_t>(max_length);
  if (compat == Compat::Slow) {
    if (!b) {
      // transformers' truncate_sequences: only when the sequence is strictly longer than the cut,
      // otherwise it logs an error and returns the input unchanged.
      if (a.size() > to_remove) a.resize(a.size() - to_remove);
      return;
    }
    // One token at a time from the longer sequence, from the second when equally long.
    std::size_t na = a.size(), nb = b->size();
    for (std::size_t i = 0; i < to_remove; ++i) {
      if (na > nb) --na;
      else if (nb > 0) --nb;
    }
    a.resize(na);
    b->resize(nb);
    return;
  }
  // Fast (tokenizers' truncate_encodings, LongestFirst) on the budget without specials.
  const std::size_t budget =
      max_length > n_special ? static_cast<std::size_t>(max_length - n_special) : 0;
  if (!b) {
    if (a.size() > budget) a.resize(budget);
    return;
  }
  std::size_t n1 = a.size(), n2 = b->size();
  bool swap = false;
  if (n1 > n2) {
    swap = true;
    std::swap(n1, n2);
  }
  if (n1 > budget) n2 = n1;
  else n2 = std::max(n1, budget - n1);
  if (n1 + n2 > budget) {
    n1 = budget / 2;
    n2 = n1 + budget % 2;
  }
  if (swap) std::swap(n1, n2);
  if (a.size() > n1) a.resize(n1);
  if (b->size() > n2) b->resize(n2);
}

Encoding TokenizerBase::encode(const std::string& text, const std::optional<std::string>& text_pair,
                               int max_length) const {
  // transformers' fast path treats a falsy text_pair ("") as absent; the slow one encodes it.
  const bool pair = text_pair.has_value() && !(compat == Compat::Fast && text_pair->empty());
  std::vector<int64_t> a = tokenize_ids(text);
  std::vector<int64_t> b;
  if (pair) b = tokenize_ids(*text_pair);
  const int n_special = post.num_special(pair);
  truncate_longest_first(a, pair ? &b : nullptr, max_length, n_special, compat);

  Encoding e;
  const std::size_t n = a.size() + b.size() + static_cast<std::size_t>(n_special);
  e.input_ids.reserve(n);
  e.token_type_ids.reserve(n);
  e.input_ids.push_back(post.cls_id);
  e.input_ids.insert(e.input_ids.end(), a.begin(), a.end());
  e.input_ids.push_back(post.sep_id);
  e.token_type_ids.assign(e.input_ids.size(), 0);
  if (pair) {
    const int64_t t = post.pair_types ? 1 : 0;
    if (post.double_sep) {
      e.input_ids.push_back(post.sep_id);
      e.token_type_ids.push_back(0);
    }
    e.input_ids.insert(e.input_ids.end(), b.begin(), b.end());
    e.input_ids.push_back(post.sep_id);
    e.token_type_ids.resize(e.input_ids.size(), t);
  }
  e.attention_mask.assign(e.input_ids.size(), 1);
  return e;
}

std::string TokenizerBase::id_to_token(int64_t id) const {
  const std::string* t = vocab.token(id);
  if (t) return *t;
  for (const auto& s : specials.tokens())
    if (s.id == id) return s.content;
  return std::string();
}

std::optional<int64_t> TokenizerBase::token_to_id(const std::string& token) const {
  for (const auto& s : specials.tokens())
    if (s.content == token) return s.id;
  return vocab.find(token);
}

std::vector<int64_t> TokenizerBase::special_ids() const {
  std::vector<int64_t> ids;
  for (const auto& s : specials.tokens()) ids.push_back(s.id);
  return ids;
}

int64_t TokenizerBase::vocab_size() const {
  int64_t n = vocab.size();
  for (const auto& s : specials.tokens()) n = std::max(n, s.id + 1);
  return n;
}

}  // namespace finepurify::text::detail
