// BERT WordPiece tokenizer, a C++ port of transformers' BertTokenizer (BasicTokenizer +
// WordpieceTokenizer) with the documented fast-tokenizer differences selectable by Compat.
#include "text/tokenizer_impl.hpp"
#include "text/unicode.hpp"

namespace finepurify::text::detail {

namespace {

bool is_cjk(char32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
         (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

bool is_bert_punct(char32_t cp) {
  if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
      (cp >= 123 && cp <= 126))
    return true;
  if (cp < 0x80) return false;
  return uni::is_punct_cat(uni::category(cp, false));
}

}  // namespace

std::vector<int64_t> WordPieceTokenizer::tokenize_ids(const std::string& text) const {
  std::vector<int64_t> ids;
  std::u32string cps;
  uni::decode_utf8(text, cps);

  if (opt.do_lower_case) {
    // PreTrainedTokenizer.tokenize lower-cases everything but the special tokens, one character
    // at a time (so no final-sigma context), before splitting on the special tokens.
    std::u32string low;
    low.reserve(cps.size() + 4);
    for (std::size_t i = 0; i < cps.size();) {
      if (!specials.empty()) {
        int k = specials.match_at(cps, i);
        if (k >= 0) {
          const auto& c = specials.contents()[static_cast<std::size_t>(k)];
          low.append(c);
          i += c.size();
          continue;
        }
      }
      uni::append_lower(low, cps[i]);
      ++i;
    }
    cps.swap(low);
  }

  std::vector<Segment> segs;
  specials.split(cps, segs);
  Scratch s;
  ids.reserve(cps.size() / 3 + 4);
  for (const auto& seg : segs) {
    if (seg.token_index >= 0) {
      ids.push_back(seg.special_id);
    } else if (seg.end > seg.begin) {
      basic_segment(cps.data() + seg.begin, seg.end - seg.begin, s, ids);
    }
  }
  return ids;
}

namespace {
/// BERT's _clean_text + _tokenize_chinese_chars of `p` into `buf`.
void clean_text(const char32_t* p, std::size_t n, const WordPieceOptions& opt, bool slow, std::u32string& buf) {
  buf.clear();
  for (std::size_t i = 0; i < n; ++i) {
    char32_t cp = p[i];
    if (opt.clean_text) {
      if (cp == 0 || cp == 0xFFFD) continue;
      if (cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r') {
        buf.push_back(U' ');
        continue;
      }
      if (cp >= 0x20 && cp < 0x7F) {
        buf.push_back(cp);
        continue;
      }
      // Slow: Python 3.11 (Unicode 14) deletes every category C*, unassigned (Cn) included.
      // Fast: Cc, Cf, Co (and Cs) are deleted, unassigned characters are kept.
      uni::Cat cat = uni::category(cp, slow);
      if (cat == uni::Cat::Cc || cat == uni::Cat::Cf || cat == uni::Cat::Co ||
          cat == uni::Cat::Cs || (slow && cat == uni::Cat::Cn))
        continue;
      if (cat == uni::Cat::Zs) {
        buf.push_back(U' ');
        continue;
      }
    }
    if (opt.tokenize_chinese_chars && cp >= 0x3400 && is_cjk(cp)) {
      buf.push_back(U' ');
      buf.push_back(cp);
      buf.push_back(U' ');
      continue;
    }
    buf.push_back(cp);
  }
}
}  // namespace

void WordPieceTokenizer::basic_segment(const char32_t* p, std::size_t n, Scratch& s,
                                       std::vector<int64_t>& ids) const {
  auto& buf = s.buf;
  clean_text(p, n, opt, compat == Compat::Slow, buf);
  uni::nfc_inplace(buf);
  const std::size_t m = buf.size();
  std::size_t i = 0;
  while (i < m) {
    while (i < m && uni::is_python_space(buf[i])) ++i;
    if (i >= m) break;
    std::size_t j = i;
    while (j < m && !uni::is_python_space(buf[j])) ++j;
    basic_token(buf.data() + i, j - i, s, ids);
    i = j;
  }
}

void WordPieceTokenizer::basic_token(const char32_t* tok, std::size_t len, Scratch& s, std::vector<int64_t>& ids) const {
  // never_split: a whitespace-separated token equal to a special token stays whole.
  if (!specials.empty()) {
    const auto& cs = specials.contents();
    for (std::size_t k = 0; k < cs.size(); ++k)
      if (cs[k].size() == len && std::char_traits<char32_t>::compare(cs[k].data(), tok, len) == 0) {
        ids.push_back(specials.tokens()[k].id);
        return;
      }
  }
  const bool strip = opt.do_lower_case ? opt.strip_accents.value_or(true) : opt.strip_accents.value_or(false);
  if (strip) {
    bool need = false;
    for (std::size_t k = 0; k < len; ++k)
      if (tok[k] >= 0xC0) { need = true; break; }
    if (need) {
      s.tmp.clear();
      uni::append_nfd(tok, len, s.tmp);
      std::size_t w = 0;
      for (char32_t c : s.tmp)
        if (c < 0x300 || uni::category(c, false) != uni::Cat::Mn) s.tmp[w++] = c;
      s.tmp.resize(w);
      tok = s.tmp.data();
      len = s.tmp.size();
    }
  }
  // _run_split_on_punc, then WordPiece on each piece.
  std::size_t start = 0;
  for (std::size_t k = 0; k < len; ++k) {
    if (is_bert_punct(tok[k])) {
      if (k > start) word_piece(tok + start, k - start, s, ids);
      word_piece(tok + k, 1, s, ids);
      start = k + 1;
    }
  }
  if (len > start) word_piece(tok + start, len - start, s, ids);
}

void WordPieceTokenizer::word_piece(const char32_t* p, std::size_t n, Scratch& s,
                                    std::vector<int64_t>& ids) const {
  if (n > static_cast<std::size_t>(opt.max_input_chars_per_word)) {
    ids.push_back(unk_id);
    return;
  }
  auto& word = s.word;
  auto& off = s.offsets;
  word.clear();
  off.clear();
  for (std::size_t k = 0; k < n; ++k) {
    off.push_back(word.size());
    uni::append_utf8(word, p[k]);
  }
  off.push_back(word.size());

  const std::size_t before = ids.size();
  const std::size_t max_bytes = vocab.max_token_bytes();
  const std::string& prefix = opt.continuing_prefix;
  std::size_t start = 0;
  while (start < n) {
    std::string_view base;
    std::size_t pre = 0;
    if (start == 0) {
      base = std::string_view(word);
    } else {
      s.cand.assign(prefix);
      s.cand.append(word, off[start], std::string::npos);
      base = std::string_view(s.cand);
      pre = prefix.size();
    }
    std::size_t end = n;
    int64_t found = -1;
    while (end > start) {
      const std::size_t bytes = pre + off[end] - off[start];
      if (bytes <= max_bytes) {
        auto id = vocab.find(base.substr(0, bytes));
        if (id) {
          found = *id;
          break;
        }
      }
      --end;
    }
    if (found < 0) {
      ids.resize(before);
      ids.push_back(unk_id);
      return;
    }
    ids.push_back(found);
    start = end;
  }
}

}  // namespace finepurify::text::detail
