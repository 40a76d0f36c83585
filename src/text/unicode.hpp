// Unicode helpers of the text layer (internal): UTF-8 <-> code points, categories via utf8proc
// with the Unicode-14 fix-ups that mimic Python 3.11, NFC/NFD, Python-style lower-casing.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace finepurify::text::uni {

/// Decodes UTF-8; every byte that does not start a valid sequence becomes U+FFFD.
void decode_utf8(std::string_view s, std::u32string& out);
/// Appends the UTF-8 encoding of `cp` to `out`.
void append_utf8(std::string& out, char32_t cp);
void encode_utf8(const char32_t* p, std::size_t n, std::string& out);
/// True when `s` is well-formed UTF-8 (no overlongs, surrogates or values above U+10FFFF).
bool valid_utf8(std::string_view s, std::size_t* bad_offset = nullptr);

/// Two-letter general category as Python's unicodedata of Unicode 15 (utf8proc) would give it.
/// `python14` = true maps code points assigned after Unicode 14.0 to "Cn" (Python 3.11).
enum class Cat : uint8_t { Cn, Lu, Ll, Lt, Lm, Lo, Mn, Mc, Me, Nd, Nl, No, Pc, Pd, Ps, Pe, Pi, Pf,
                           Po, Sm, Sc, Sk, So, Zs, Zl, Zp, Cc, Cf, Cs, Co };
Cat category(char32_t cp, bool python14);
/// Assigned in utf8proc's Unicode 15 but not in Python 3.11's Unicode 14.0.
bool new_after_unicode14(char32_t cp);

inline bool is_letter(Cat c) { return c >= Cat::Lu && c <= Cat::Lo; }
inline bool is_number(Cat c) { return c >= Cat::Nd && c <= Cat::No; }
inline bool is_punct_cat(Cat c) { return c >= Cat::Pc && c <= Cat::Po; }
inline bool is_other_cat(Cat c) { return c == Cat::Cn || c >= Cat::Cc; }

/// Python's str.isspace() (bidi WS/B/S or Zs): used by str.split() / str.strip().
bool is_python_space(char32_t cp);
/// Unicode White_Space property (what the `regex` module's \s matches).
bool is_white_space(char32_t cp);

/// Python str.lower() of a single character, appended to out (U+0130 gives two code points).
void append_lower(std::u32string& out, char32_t cp);

/// Canonical decomposition with canonical ordering (NFD) of [p, p+n), appended to out.
void append_nfd(const char32_t* p, std::size_t n, std::u32string& out);
/// NFC of s in place.
void nfc_inplace(std::u32string& s);

}  // namespace finepurify::text::uni
