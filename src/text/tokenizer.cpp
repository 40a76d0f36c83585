// load_tokenizer(): reads a Hugging Face tokenizer folder (vocab.txt + tokenizer_config.json,
// vocab.json + merges.txt, or tokenizer.json alone) into a WordPiece or byte-level BPE tokenizer.
#include "finepurify/text/tokenizer.hpp"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "finepurify/error.hpp"
#include "text/tokenizer_impl.hpp"
#include "text/unicode.hpp"

namespace finepurify::text {

namespace fs = std::filesystem;
using nlohmann::json;
using detail::SpecialToken;

namespace {

[[noreturn]] void fail(const std::string& msg) { throw Error(ErrorKind::TokenizerInvalid, msg); }

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) fail(fmt::format("{}: cannot open tokenizer file", p.string()));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail(fmt::format("{}: read error", p.string()));
  return ss.str();
}

json read_json(const fs::path& p) {
  std::string s = read_file(p);
  try {
    return json::parse(s);
  } catch (const json::exception& e) {
    fail(fmt::format("{}: invalid JSON: {}", p.string(), e.what()));
  }
}

/// Splits file content into lines (\n, with a trailing \r dropped); 1-based numbers are index + 1.
std::vector<std::string_view> split_lines(const std::string& s) {
  std::vector<std::string_view> lines;
  std::size_t start = 0;
  while (start < s.size()) {
    std::size_t nl = s.find('\n', start);
    std::size_t end = nl == std::string::npos ? s.size() : nl;
    std::size_t e = end;
    if (e > start && s[e - 1] == '\r') --e;
    lines.emplace_back(s.data() + start, e - start);
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  return lines;
}

bool exists_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

/// A token given as "str" or {"content": "str", "lstrip": ...} (AddedToken).
std::optional<SpecialToken> token_spec(const json& v) {
  SpecialToken t;
  if (v.is_string()) {
    t.content = v.get<std::string>();
  } else if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    t.content = v["content"].get<std::string>();
    if (v.contains("lstrip") && v["lstrip"].is_boolean()) t.lstrip = v["lstrip"].get<bool>();
    if (v.contains("rstrip") && v["rstrip"].is_boolean()) t.rstrip = v["rstrip"].get<bool>();
  } else {
    return std::nullopt;
  }
  return t;
}

/// Special token settings from tokenizer_config.json, then special_tokens_map.json for the rest.
struct TokenConfig {
  json config = json::object();
  std::map<std::string, SpecialToken> named;  // unk_token, cls_token, ...
  std::vector<SpecialToken> additional;
};

TokenConfig read_token_config(const fs::path& folder) {
  TokenConfig tc;
  const char* names[] = {"unk_token", "sep_token", "pad_token", "cls_token", "mask_token",
                         "bos_token", "eos_token"};
  for (const char* file : {"tokenizer_config.json", "special_tokens_map.json"}) {
    fs::path p = folder / file;
    if (!exists_file(p)) continue;
    json j = read_json(p);
    if (!j.is_object()) fail(fmt::format("{}: expected a JSON object", p.string()));
    if (std::string(file) == "tokenizer_config.json") tc.config = j;
    for (const char* n : names) {
      if (tc.named.count(n) || !j.contains(n) || j[n].is_null()) continue;
      auto t = token_spec(j[n]);
      if (!t) fail(fmt::format("{}: '{}' is neither a string nor an AddedToken", p.string(), n));
      tc.named[n] = *t;
    }
    if (tc.additional.empty() && j.contains("additional_special_tokens") &&
        j["additional_special_tokens"].is_array()) {
      for (const auto& v : j["additional_special_tokens"])
        if (auto t = token_spec(v)) tc.additional.push_back(*t);
    }
  }
  return tc;
}

SpecialToken named_or(const TokenConfig& tc, const char* name, const char* def, bool lstrip = false) {
  auto it = tc.named.find(name);
  if (it != tc.named.end()) return it->second;
  SpecialToken t;
  t.content = def;
  t.lstrip = lstrip;
  return t;
}

/// Resolves ids of the special tokens through the vocabulary; `required` ones must be present.
void register_specials(detail::TokenizerBase& tok, std::vector<SpecialToken> list,
                       const std::string& file) {
  std::vector<SpecialToken> out;
  for (auto& t : list) {
    if (t.content.empty()) continue;
    bool dup = false;
    for (const auto& o : out) dup = dup || o.content == t.content;
    if (dup) continue;
    if (t.id < 0) {
      auto id = tok.vocab.find(t.content);
      if (!id) continue;  // not in the vocabulary: not usable as a special token
      t.id = *id;
    }
    out.push_back(t);
  }
  (void)file;
  tok.specials.set(out);
}

int64_t require_id(const detail::TokenizerBase& tok, const std::string& token, const std::string& file,
                   const char* role) {
  auto id = tok.token_to_id(token);
  if (!id) fail(fmt::format("{}: {} token '{}' is not in the vocabulary", file, role, token));
  return *id;
}

// ---------------------------------------------------------------- WordPiece (vocab.txt)

void apply_bert_options(detail::WordPieceOptions& o, const json& cfg) {
  if (cfg.contains("do_lower_case") && cfg["do_lower_case"].is_boolean())
    o.do_lower_case = cfg["do_lower_case"].get<bool>();
  if (cfg.contains("strip_accents")) {
    if (cfg["strip_accents"].is_boolean()) o.strip_accents = cfg["strip_accents"].get<bool>();
    else o.strip_accents.reset();
  }
  if (cfg.contains("tokenize_chinese_chars") && cfg["tokenize_chinese_chars"].is_boolean())
    o.tokenize_chinese_chars = cfg["tokenize_chinese_chars"].get<bool>();
}

std::unique_ptr<Tokenizer> load_wordpiece_txt(const fs::path& folder, Compat compat) {
  const fs::path vp = folder / "vocab.txt";
  const std::string content = read_file(vp);
  auto tok = std::make_unique<detail::WordPieceTokenizer>();
  tok->compat = compat;
  auto lines = split_lines(content);
  if (lines.empty()) fail(fmt::format("{}: empty vocabulary", vp.string()));
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (!uni::valid_utf8(lines[i]))
      fail(fmt::format("{}:{}: invalid UTF-8", vp.string(), i + 1));
    tok->vocab.add(std::string(lines[i]), static_cast<int64_t>(i));
  }
  tok->vocab.finish();

  TokenConfig tc = read_token_config(folder);
  apply_bert_options(tok->opt, tc.config);
  SpecialToken unk = named_or(tc, "unk_token", "[UNK]"), sep = named_or(tc, "sep_token", "[SEP]"),
               pad = named_or(tc, "pad_token", "[PAD]"), cls = named_or(tc, "cls_token", "[CLS]"),
               mask = named_or(tc, "mask_token", "[MASK]");
  std::vector<SpecialToken> list = {unk, sep, pad, cls, mask};
  list.insert(list.end(), tc.additional.begin(), tc.additional.end());
  // BertTokenizer's special tokens are plain strings: the text around them is stripped.
  for (auto& t : list) t.lstrip = t.rstrip = true;
  register_specials(*tok, list, vp.string());
  const std::string f = vp.string();
  tok->unk_id = require_id(*tok, unk.content, f, "unk");
  tok->post.cls_id = require_id(*tok, cls.content, f, "cls");
  tok->post.sep_id = require_id(*tok, sep.content, f, "sep");
  tok->post.double_sep = false;
  tok->post.pair_types = true;
  tok->pad_id_ = tok->token_to_id(pad.content).value_or(0);
  return tok;
}

// ---------------------------------------------------------------- BPE (vocab.json + merges.txt)

void read_vocab_json(detail::TokenizerBase& tok, const json& v, const std::string& file) {
  if (!v.is_object()) fail(fmt::format("{}: vocabulary must be a JSON object", file));
  if (v.empty()) fail(fmt::format("{}: empty vocabulary", file));
  for (auto it = v.begin(); it != v.end(); ++it) {
    if (!it.value().is_number_integer())
      fail(fmt::format("{}: id of token '{}' is not an integer", file, it.key()));
    int64_t id = it.value().get<int64_t>();
    if (id < 0 || id > 50'000'000)
      fail(fmt::format("{}: id {} of token '{}' out of range", file, id, it.key()));
    tok.vocab.add(it.key(), id);
  }
  tok.vocab.finish();
}

void add_merge_checked(detail::BpeTokenizer& tok, std::string_view line, const std::string& where) {
  std::vector<std::string_view> parts;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    if (i >= line.size()) break;
    std::size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
    parts.push_back(line.substr(i, j - i));
    i = j;
  }
  if (parts.size() != 2)
    fail(fmt::format("{}: expected two symbols separated by a space, got '{}'", where, line));
  tok.add_merge(std::string(parts[0]), std::string(parts[1]));
}

std::vector<SpecialToken> roberta_specials(const TokenConfig& tc) {
  return {named_or(tc, "bos_token", "<s>"),   named_or(tc, "eos_token", "</s>"),
          named_or(tc, "unk_token", "<unk>"), named_or(tc, "sep_token", "</s>"),
          named_or(tc, "pad_token", "<pad>"), named_or(tc, "cls_token", "<s>"),
          named_or(tc, "mask_token", "<mask>", /*lstrip=*/true)};
}

std::unique_ptr<Tokenizer> load_bpe_files(const fs::path& folder, Compat compat) {
  const fs::path vp = folder / "vocab.json", mp = folder / "merges.txt";
  auto tok = std::make_unique<detail::BpeTokenizer>();
  tok->compat = compat;
  read_vocab_json(*tok, read_json(vp), vp.string());

  TokenConfig tc = read_token_config(folder);
  if (tc.config.contains("add_prefix_space") && tc.config["add_prefix_space"].is_boolean())
    tok->add_prefix_space = tc.config["add_prefix_space"].get<bool>();
  auto list = roberta_specials(tc);
  list.insert(list.end(), tc.additional.begin(), tc.additional.end());
  register_specials(*tok, list, vp.string());
  const std::string f = vp.string();
  tok->unk_id = tok->token_to_id(named_or(tc, "unk_token", "<unk>").content).value_or(-1);
  tok->post.cls_id = require_id(*tok, named_or(tc, "cls_token", "<s>").content, f, "cls");
  tok->post.sep_id = require_id(*tok, named_or(tc, "sep_token", "</s>").content, f, "sep");
  tok->post.double_sep = true;
  tok->post.pair_types = false;
  tok->pad_id_ = tok->token_to_id(named_or(tc, "pad_token", "<pad>").content).value_or(0);

  const std::string merges = read_file(mp);
  auto lines = split_lines(merges);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    std::string_view l = lines[i];
    if (i == 0 && l.substr(0, 8) == "#version") continue;
    if (l.empty()) continue;
    const std::string where = fmt::format("{}:{}", mp.string(), i + 1);
    if (!uni::valid_utf8(l)) fail(where + ": invalid UTF-8");
    add_merge_checked(*tok, l, where);
  }
  tok->finish_model();
  return tok;
}

// ---------------------------------------------------------------- tokenizer.json

/// A tokenizer.json model before its post-processor: the model and its family's default specials.
struct JsonModel {
  std::unique_ptr<detail::TokenizerBase> base;
  std::string cls, sep, pad;
  bool roberta_style = false;
};

std::vector<SpecialToken> added_tokens_json(const json& j, const std::string& f) {
  std::vector<SpecialToken> added;
  if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
    for (const auto& a : j["added_tokens"]) {
      if (!a.is_object() || !a.contains("content") || !a.contains("id") || !a["content"].is_string() ||
          !a["id"].is_number_integer())
        fail(fmt::format("{}: malformed entry in 'added_tokens'", f));
      SpecialToken t;
      t.content = a["content"].get<std::string>();
      t.id = a["id"].get<int64_t>();
      t.lstrip = a.value("lstrip", false);
      t.rstrip = a.value("rstrip", false);
      added.push_back(t);
    }
  }
  return added;
}

JsonModel wordpiece_json(const json& j, const json& m, std::vector<SpecialToken> added, const std::string& f) {
  auto tok = std::make_unique<detail::WordPieceTokenizer>();
  read_vocab_json(*tok, m["vocab"], f + " (model.vocab)");
  auto& o = tok->opt;
  if (m.contains("continuing_subword_prefix") && m["continuing_subword_prefix"].is_string())
    o.continuing_prefix = m["continuing_subword_prefix"].get<std::string>();
  if (m.contains("max_input_chars_per_word") && m["max_input_chars_per_word"].is_number_integer())
    o.max_input_chars_per_word = m["max_input_chars_per_word"].get<int>();
  const json n = j.value("normalizer", json());
  if (n.is_null()) {
    o.do_lower_case = false;
    o.strip_accents = false;
    o.tokenize_chinese_chars = false;
    o.clean_text = false;
  } else if (n.is_object() && n.value("type", std::string()) == "BertNormalizer") {
    o.clean_text = n.value("clean_text", true);
    o.tokenize_chinese_chars = n.value("handle_chinese_chars", true);
    o.do_lower_case = n.value("lowercase", true);
    if (n.contains("strip_accents") && n["strip_accents"].is_boolean())
      o.strip_accents = n["strip_accents"].get<bool>();
    else
      o.strip_accents.reset();
  } else {
    fail(fmt::format("{}: unsupported normalizer '{}' (only BertNormalizer)", f,
                     n.is_object() ? n.value("type", std::string("?")) : std::string("?")));
  }
  std::string unk = m.value("unk_token", std::string("[UNK]"));
  for (auto& t : added) t.lstrip = t.rstrip = true;
  register_specials(*tok, added, f);
  tok->unk_id = require_id(*tok, unk, f, "unk");
  return {std::move(tok), "[CLS]", "[SEP]", "[PAD]", false};
}

JsonModel bpe_json(const json& j, const json& m, const std::vector<SpecialToken>& added, const TokenConfig& tc,
                   const std::string& f) {
  auto tok = std::make_unique<detail::BpeTokenizer>();
  read_vocab_json(*tok, m["vocab"], f + " (model.vocab)");
  const json pre = j.value("pre_tokenizer", json());
  if (pre.is_object() && pre.value("type", std::string()) == "ByteLevel") {
    tok->add_prefix_space = pre.value("add_prefix_space", false);
  } else {
    fail(fmt::format("{}: unsupported pre_tokenizer for BPE (only ByteLevel)", f));
  }
  register_specials(*tok, added, f);
  if (m.contains("unk_token") && m["unk_token"].is_string())
    tok->unk_id = tok->token_to_id(m["unk_token"].get<std::string>()).value_or(-1);
  else
    tok->unk_id = tok->token_to_id(named_or(tc, "unk_token", "<unk>").content).value_or(-1);
  if (!m.contains("merges") || !m["merges"].is_array())
    fail(fmt::format("{}: BPE model has no 'merges' list", f));
  std::size_t k = 0;
  for (const auto& mg : m["merges"]) {
    const std::string where = fmt::format("{}: model.merges[{}]", f, k++);
    if (mg.is_string()) {
      add_merge_checked(*tok, mg.get<std::string>(), where);
    } else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string()) {
      tok->add_merge(mg[0].get<std::string>(), mg[1].get<std::string>());
    } else {
      fail(where + ": expected \"a b\" or [\"a\", \"b\"]");
    }
  }
  tok->finish_model();
  return {std::move(tok), "<s>", "</s>", "<pad>", true};
}

/// Post-processor: which tokens wrap the sequences and how pairs look.
void post_processor_json(const json& j, JsonModel& jm, const std::string& f) {
  auto& base = jm.base;
  std::string cls = jm.cls, sep = jm.sep;
  bool roberta_style = jm.roberta_style;
  const json pp = j.value("post_processor", json());
  if (pp.is_object()) {
    const std::string pt = pp.value("type", std::string());
    if (pt == "RobertaProcessing" || pt == "BertProcessing") {
      if (pp.contains("cls") && pp["cls"].is_array() && !pp["cls"].empty()) cls = pp["cls"][0].get<std::string>();
      if (pp.contains("sep") && pp["sep"].is_array() && !pp["sep"].empty()) sep = pp["sep"][0].get<std::string>();
      roberta_style = pt == "RobertaProcessing";
    } else if (pt == "TemplateProcessing") {
      auto special_ids = [](const json& tmpl, std::vector<std::string>& sp, int& type_b) {
        if (!tmpl.is_array()) return;
        bool seen_b = false;
        for (const auto& piece : tmpl) {
          if (piece.contains("SpecialToken")) sp.push_back(piece["SpecialToken"].value("id", std::string()));
          if (piece.contains("Sequence") && piece["Sequence"].value("id", std::string()) == "B" && !seen_b) {
            type_b = piece["Sequence"].value("type_id", 0);
            seen_b = true;
          }
        }
      };
      std::vector<std::string> single, pair;
      int type_b = 1, dummy = 0;
      special_ids(pp.value("single", json()), single, dummy);
      special_ids(pp.value("pair", json()), pair, type_b);
      if (single.size() == 2) {
        cls = single[0];
        sep = single[1];
      }
      roberta_style = pair.size() == 4;
      base->post.pair_types = type_b != 0;
    }
  }
  base->post.cls_id = require_id(*base, cls, f, "cls");
  base->post.sep_id = require_id(*base, sep, f, "sep");
  base->post.double_sep = roberta_style;
  if (roberta_style) base->post.pair_types = false;
  else if (!pp.is_object() || pp.value("type", std::string()) != "TemplateProcessing") base->post.pair_types = true;
}

std::unique_ptr<Tokenizer> load_tokenizer_json(const fs::path& folder, const std::string& model_type,
                                               Compat compat) {
  const fs::path tp = folder / "tokenizer.json";
  const std::string f = tp.string();
  json j = read_json(tp);
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object())
    fail(fmt::format("{}: no 'model' object", f));
  const json& m = j["model"];
  std::string type = m.value("type", std::string());
  if (type.empty()) type = m.contains("merges") ? "BPE" : "WordPiece";
  if (!m.contains("vocab")) fail(fmt::format("{}: model has no 'vocab'", f));
  auto added = added_tokens_json(j, f);  // matched literally (HF: no-split tokens)
  TokenConfig tc = read_token_config(folder);
  JsonModel jm;
  if (type == "WordPiece") jm = wordpiece_json(j, m, added, f);
  else if (type == "BPE") jm = bpe_json(j, m, added, tc, f);
  else fail(fmt::format("{}: unsupported model type '{}' (WordPiece or BPE)", f, type));
  (void)model_type;
  post_processor_json(j, jm, f);
  auto& base = jm.base;
  std::string pad = named_or(tc, "pad_token", jm.pad.c_str()).content;
  const json padding = j.value("padding", json());
  if (padding.is_object() && padding.contains("pad_token") && padding["pad_token"].is_string() &&
      !tc.named.count("pad_token"))
    pad = padding["pad_token"].get<std::string>();
  base->pad_id_ = base->token_to_id(pad).value_or(0);
  base->compat = compat;
  return std::move(base);
}

std::unique_ptr<Tokenizer> load_from_folder(const fs::path& folder, const std::string& model_type,
                                            Compat compat);

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& folder_str, const std::string& model_type,
                                          Compat compat) {
  const fs::path folder(folder_str);
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) fail(fmt::format("{}: tokenizer folder not found", folder_str));
  try {
    return load_from_folder(folder, model_type, compat);
  } catch (const json::exception& e) {
    // A JSON value of an unexpected type somewhere in a tokenizer file.
    fail(fmt::format("{}: malformed tokenizer file: {}", folder_str, e.what()));
  }
}

namespace {

std::unique_ptr<Tokenizer> load_from_folder(const fs::path& folder, const std::string& model_type,
                                            Compat compat) {
  const std::string folder_str = folder.string();
  const bool has_txt = exists_file(folder / "vocab.txt");
  const bool has_vjson = exists_file(folder / "vocab.json");
  const bool has_merges = exists_file(folder / "merges.txt");
  const bool has_tjson = exists_file(folder / "tokenizer.json");

  std::string mt = model_type;
  for (auto& c : mt) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const bool want_wp = mt == "bert" || mt == "distilbert" || mt == "electra";
  const bool want_bpe = mt == "roberta" || mt == "gpt2" || mt == "longformer" || mt == "bart";

  if ((want_wp || (!want_bpe && !has_vjson)) && has_txt) return load_wordpiece_txt(folder, compat);
  if (!want_wp && (has_vjson || has_merges) && !has_tjson) {
    if (!has_vjson) fail(fmt::format("{}: merges.txt without vocab.json", folder_str));
    if (!has_merges) fail(fmt::format("{}: vocab.json without merges.txt", (folder / "vocab.json").string()));
  }
  if (!want_wp && has_vjson && has_merges) return load_bpe_files(folder, compat);
  if (has_tjson) return load_tokenizer_json(folder, model_type, compat);
  if (want_wp)
    fail(fmt::format("{}: no vocab.txt or tokenizer.json for model_type '{}'", folder_str, model_type));
  if (want_bpe)
    fail(fmt::format("{}: no vocab.json + merges.txt or tokenizer.json for model_type '{}'", folder_str,
                     model_type));
  fail(fmt::format("{}: no tokenizer files (vocab.txt, vocab.json + merges.txt or tokenizer.json)",
                   folder_str));
}

}  // namespace

void check_fits_model(const Tokenizer& tok, int64_t model_vocab_size, const std::string& folder) {
  if (tok.vocab_size() > model_vocab_size)
    throw Error(ErrorKind::TokenizerInvalid,
                fmt::format("{}: the tokenizer has ids up to {} but the model's vocab_size is {} (config.json): "
                            "those tokens would index past the embedding matrix",
                            folder, tok.vocab_size() - 1, model_vocab_size));
}

std::unique_ptr<Tokenizer> load_model_tokenizer(const std::string& folder, const std::string& model_type,
                                                int64_t model_vocab_size, Compat compat) {
  auto tok = load_tokenizer(folder, model_type, compat);
  check_fits_model(*tok, model_vocab_size, folder);
  return tok;
}

}  // namespace finepurify::text
