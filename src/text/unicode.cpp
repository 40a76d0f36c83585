// Unicode helpers of the text layer: UTF-8 coding, utf8proc categories with Python-3.11 fix-ups, NFC/NFD.
#include "text/unicode.hpp"

#include <utf8proc.h>

#include <algorithm>
#include <iterator>

namespace finepurify::text::uni {

namespace {

// Code points assigned in Unicode 15.0 (utf8proc 2.8) that Python 3.11's unicodedata (Unicode
// 14.0) still reports as "Cn". Generated once by comparing the two tables over all code points;
// every other code point has the same general category in both.
constexpr char32_t kNewInUnicode15[][2] = {
    {0xCF3, 0xCF3},     {0xECE, 0xECE},     {0x10EFD, 0x10EFF}, {0x1123F, 0x11241},
    {0x11B00, 0x11B09}, {0x11F00, 0x11F10}, {0x11F12, 0x11F3A}, {0x11F3E, 0x11F59},
    {0x1342F, 0x1342F}, {0x13439, 0x13455}, {0x1B132, 0x1B132}, {0x1B155, 0x1B155},
    {0x1D2C0, 0x1D2D3}, {0x1DF25, 0x1DF2A}, {0x1E030, 0x1E06D}, {0x1E08F, 0x1E08F},
    {0x1E4D0, 0x1E4F9}, {0x1F6DC, 0x1F6DC}, {0x1F774, 0x1F776}, {0x1F77B, 0x1F77F},
    {0x1F7D9, 0x1F7D9}, {0x1FA75, 0x1FA77}, {0x1FA87, 0x1FA88}, {0x1FAAD, 0x1FAAF},
    {0x1FABB, 0x1FABD}, {0x1FABF, 0x1FABF}, {0x1FACE, 0x1FACF}, {0x1FADA, 0x1FADB},
    {0x1FAE8, 0x1FAE8}, {0x1FAF7, 0x1FAF8}, {0x2B739, 0x2B739}, {0x31350, 0x323AF},
};

}  // namespace

bool new_after_unicode14(char32_t cp) {
  if (cp < 0xCF3) return false;
  auto it = std::upper_bound(std::begin(kNewInUnicode15), std::end(kNewInUnicode15), cp,
                             [](char32_t v, const char32_t(&r)[2]) { return v < r[0]; });
  if (it == std::begin(kNewInUnicode15)) return false;
  --it;
  return cp >= (*it)[0] && cp <= (*it)[1];
}

Cat category(char32_t cp, bool python14) {
  if (cp < 0x80) {
    // Fast path for ASCII (same in every Unicode version).
    if (cp < 0x20 || cp == 0x7F) return Cat::Cc;
    if (cp == ' ') return Cat::Zs;
    if (cp >= '0' && cp <= '9') return Cat::Nd;
    if (cp >= 'A' && cp <= 'Z') return Cat::Lu;
    if (cp >= 'a' && cp <= 'z') return Cat::Ll;
  }
  if (cp > 0x10FFFF) return Cat::Cn;
  if (python14 && new_after_unicode14(cp)) return Cat::Cn;
  return static_cast<Cat>(utf8proc_category(static_cast<utf8proc_int32_t>(cp)));
}

bool is_python_space(char32_t cp) {
  if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F);
  if (cp < 0x85) return false;
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

bool is_white_space(char32_t cp) {
  if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
  if (cp < 0x85) return false;
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

void append_lower(std::u32string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back((cp >= 'A' && cp <= 'Z') ? cp + 32 : cp);
  } else if (cp == 0x130) {  // the only unconditional multi-character lower-case mapping
    out.push_back(U'i');
    out.push_back(0x307);
  } else {
    out.push_back(static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))));
  }
}

void append_nfd(const char32_t* p, std::size_t n, std::u32string& out) {
  const std::size_t start = out.size();
  utf8proc_int32_t buf[32];
  int boundclass = 0;
  bool any_mark = false;
  for (std::size_t i = 0; i < n; ++i) {
    char32_t cp = p[i];
    if (cp < 0xC0) {
      out.push_back(cp);
      continue;
    }
    utf8proc_ssize_t k = utf8proc_decompose_char(static_cast<utf8proc_int32_t>(cp), buf, 32,
                                                 UTF8PROC_DECOMPOSE, &boundclass);
    if (k <= 0 || k > 32) {
      out.push_back(cp);
      continue;
    }
    for (utf8proc_ssize_t j = 0; j < k; ++j) out.push_back(static_cast<char32_t>(buf[j]));
    any_mark = true;
  }
  if (!any_mark) return;
  // Canonical ordering (as utf8proc_decompose does it).
  std::size_t pos = start;
  while (pos + 1 < out.size()) {
    auto c1 = utf8proc_get_property(static_cast<utf8proc_int32_t>(out[pos]))->combining_class;
    auto c2 = utf8proc_get_property(static_cast<utf8proc_int32_t>(out[pos + 1]))->combining_class;
    if (c1 > c2 && c2 > 0) {
      std::swap(out[pos], out[pos + 1]);
      if (pos > start) --pos; else ++pos;
    } else {
      ++pos;
    }
  }
}

void nfc_inplace(std::u32string& s) {
  bool need = false;
  for (char32_t c : s) {
    if (c >= 0x300) { need = true; break; }
  }
  if (!need) return;
  std::u32string d;
  d.reserve(s.size() + 8);
  append_nfd(s.data(), s.size(), d);
  static_assert(sizeof(char32_t) == sizeof(utf8proc_int32_t));
  utf8proc_ssize_t n = utf8proc_normalize_utf32(reinterpret_cast<utf8proc_int32_t*>(d.data()),
                                                static_cast<utf8proc_ssize_t>(d.size()),
                                                UTF8PROC_COMPOSE);
  if (n < 0) return;
  d.resize(static_cast<std::size_t>(n));
  s.swap(d);
}

namespace {
/// Decodes the well-formed UTF-8 sequence starting at p[i] (ASCII included): returns its length
/// and sets `cp`, or returns 0 for an invalid or truncated sequence.
int decode_one(const unsigned char* p, std::size_t n, std::size_t i, char32_t& cp) {
  unsigned char c = p[i];
  if (c < 0x80) { cp = c; return 1; }
  int len = 0;
  if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
  else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
  else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
  if (len == 0 || i + len > n) return 0;
  for (int k = 1; k < len; ++k) {
    if ((p[i + k] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (p[i + k] & 0x3F);
  }
  if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
    return 0;
  return len;
}
}  // namespace

namespace {
/// Walks `s` by code points: on(cp) for each valid one, bad(offset) for each invalid byte (skipped;
/// bad returns false to stop the walk). Returns false when stopped.
template <class On, class Bad>
bool walk_utf8(std::string_view s, On on, Bad bad) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    char32_t cp = 0;
    const int len = decode_one(p, n, i, cp);
    if (len == 0) {
      if (!bad(i)) return false;
      ++i;
      continue;
    }
    on(cp);
    i += len;
  }
  return true;
}
}  // namespace

void decode_utf8(std::string_view s, std::u32string& out) {
  out.clear();
  out.reserve(s.size());
  // An invalid byte becomes U+FFFD; decoding resynchronises at the next byte.
  walk_utf8(s, [&](char32_t cp) { out.push_back(cp); }, [&](std::size_t) { out.push_back(0xFFFD); return true; });
}

bool valid_utf8(std::string_view s, std::size_t* bad_offset) {
  return walk_utf8(s, [](char32_t) {}, [&](std::size_t i) {
    if (bad_offset) *bad_offset = i;
    return false;
  });
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

void encode_utf8(const char32_t* p, std::size_t n, std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < n; ++i) append_utf8(out, p[i]);
}

}  // namespace finepurify::text::uni
