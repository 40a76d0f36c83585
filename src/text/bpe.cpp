// RoBERTa / GPT-2 byte-level BPE tokenizer: the GPT-2 pre-tokenisation regex written by hand over
// utf8proc categories, the byte -> unicode alphabet, rank-ordered merges with a per-word cache.
#include <climits>

#include "text/tokenizer_impl.hpp"
#include "text/unicode.hpp"

namespace finepurify::text::detail {

namespace {

enum CharClass : uint8_t { kLetter, kNumber, kSpace, kOther };

inline CharClass char_class(char32_t cp) {
  if (cp < 0x80) {
    if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return kLetter;
    if (cp >= '0' && cp <= '9') return kNumber;
    if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return kSpace;
    return kOther;
  }
  if (uni::is_white_space(cp)) return kSpace;
  uni::Cat c = uni::category(cp, false);
  if (uni::is_letter(c)) return kLetter;
  if (uni::is_number(c)) return kNumber;
  return kOther;
}

constexpr std::size_t kCacheLimit = 1u << 20;

}  // namespace

BpeTokenizer::BpeTokenizer() {
  // GPT-2 bytes_to_unicode(): printable bytes map to themselves, the rest to U+0100 upwards.
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    char32_t cp = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
    byte_str_[b].clear();
    uni::append_utf8(byte_str_[b], cp);
    intern(byte_str_[b]);
  }
}

int32_t BpeTokenizer::intern(const std::string& s) {
  auto it = sym_ids_.find(s);
  if (it != sym_ids_.end()) return it->second;
  int32_t id = static_cast<int32_t>(sym_strs_.size());
  sym_strs_.push_back(s);
  sym_ids_.emplace(s, id);
  return id;
}

void BpeTokenizer::add_merge(const std::string& a, const std::string& b) {
  int32_t ia = intern(a);
  int32_t ib = intern(b);
  int32_t r = intern(a + b);
  uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(ia)) << 32) | static_cast<uint32_t>(ib);
  // dict(zip(merges, range(len(merges)))): a repeated merge keeps its last rank.
  merges_[key] = BpeMerge{n_merges_++, r};
}

void BpeTokenizer::finish_model() {
  sym_vocab_.assign(sym_strs_.size(), unk_id);
  for (std::size_t i = 0; i < sym_strs_.size(); ++i) {
    auto id = vocab.find(sym_strs_[i]);
    if (id) sym_vocab_[i] = *id;
  }
  std::lock_guard<std::mutex> lock(cache_mu_);
  cache_.clear();
}

void BpeTokenizer::bpe_word(const std::string& bytes, std::vector<int64_t>& ids) const {
  {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(bytes);
    if (it != cache_.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> syms;
  syms.reserve(bytes.size());
  for (unsigned char b : bytes) syms.push_back(static_cast<int32_t>(b));  // byte b is symbol b
  std::vector<int32_t> next;
  next.reserve(bytes.size());
  while (syms.size() > 1) {
    int32_t best_rank = INT32_MAX;
    int32_t a = -1, b = -1, result = -1;
    for (std::size_t i = 0; i + 1 < syms.size(); ++i) {
      uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(syms[i])) << 32) |
                     static_cast<uint32_t>(syms[i + 1]);
      auto it = merges_.find(key);
      if (it != merges_.end() && it->second.rank < best_rank) {
        best_rank = it->second.rank;
        a = syms[i];
        b = syms[i + 1];
        result = it->second.result;
      }
    }
    if (result < 0) break;
    next.clear();
    for (std::size_t i = 0; i < syms.size();) {
      if (i + 1 < syms.size() && syms[i] == a && syms[i + 1] == b) {
        next.push_back(result);
        i += 2;
      } else {
        next.push_back(syms[i]);
        ++i;
      }
    }
    syms.swap(next);
  }
  std::vector<int64_t> out;
  out.reserve(syms.size());
  // A piece outside the vocabulary becomes the unknown token, or is dropped when there is none
  // (as the tokenizers crate's BPE with unk_token None); never id -1.
  for (int32_t s : syms)
    if (const int64_t id = sym_vocab_[static_cast<std::size_t>(s)]; id >= 0) out.push_back(id);
  ids.insert(ids.end(), out.begin(), out.end());
  std::lock_guard<std::mutex> lock(cache_mu_);
  if (cache_.size() >= kCacheLimit) cache_.clear();
  cache_.emplace(bytes, std::move(out));
}

void BpeTokenizer::pretokenize_and_encode(const char32_t* p, std::size_t n,
                                          std::vector<int64_t>& ids) const {
  // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  std::vector<uint8_t> cls(n);
  for (std::size_t i = 0; i < n; ++i) cls[i] = char_class(p[i]);
  std::string bytes;
  std::size_t i = 0;
  while (i < n) {
    const char32_t c = p[i];
    std::size_t end = i;
    if (c == U'\'' && i + 1 < n) {
      const char32_t d = p[i + 1];
      if (d == U's' || d == U't' || d == U'm' || d == U'd') {
        end = i + 2;
      } else if (i + 2 < n && ((d == U'r' && p[i + 2] == U'e') || (d == U'v' && p[i + 2] == U'e') ||
                               (d == U'l' && p[i + 2] == U'l'))) {
        end = i + 3;
      }
    }
    if (end == i) {
      if (c == U' ' && i + 1 < n && cls[i + 1] != kSpace) {
        const uint8_t k = cls[i + 1];
        end = i + 2;
        while (end < n && cls[end] == k) ++end;
      } else if (cls[i] != kSpace) {
        const uint8_t k = cls[i];
        end = i + 1;
        while (end < n && cls[end] == k) ++end;
      } else {
        std::size_t e = i + 1;
        while (e < n && cls[e] == kSpace) ++e;
        if (e == n) end = n;                 // \s+(?!\S) at the end
        else if (e - i >= 2) end = e - 1;    // \s+(?!\S) leaves the last space to the next word
        else end = i + 1;                    // \s+
      }
    }
    uni::encode_utf8(p + i, end - i, bytes);
    bpe_word(bytes, ids);
    i = end;
  }
}

std::vector<int64_t> BpeTokenizer::tokenize_ids(const std::string& text) const {
  std::vector<int64_t> ids;
  std::u32string cps;
  uni::decode_utf8(text, cps);
  if (add_prefix_space && !cps.empty() && !uni::is_python_space(cps[0])) cps.insert(cps.begin(), U' ');
  std::vector<Segment> segs;
  specials.split(cps, segs);
  ids.reserve(cps.size() / 3 + 4);
  for (const auto& seg : segs) {
    if (seg.token_index >= 0) ids.push_back(seg.special_id);
    else if (seg.end > seg.begin) pretokenize_and_encode(cps.data() + seg.begin, seg.end - seg.begin, ids);
  }
  return ids;
}

}  // namespace finepurify::text::detail
