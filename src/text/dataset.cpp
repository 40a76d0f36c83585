// Labelled text datasets: the shared TSV format (no quoting; header label\ttext[\ttext_b]), RFC 4180
// CSV and JSON Lines readers with column options, and an atomic TSV writer. Errors name file:line.
#include "finepurify/text/dataset.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "finepurify/error.hpp"
#include "finepurify/util/limits.hpp"
#include "text/unicode.hpp"

namespace finepurify::text {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

[[noreturn]] void fail_at(const std::string& file, std::size_t line, const std::string& what) {
  throw Error(ErrorKind::DataInvalid, fmt::format("{}:{}: {}", file, line, what));
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw Error(ErrorKind::Io, fmt::format("{}: cannot open dataset", path));
  const std::streamoff size = in.tellg();
  if (size < 0) throw Error(ErrorKind::Io, fmt::format("{}: cannot read dataset", path));
  std::string s(static_cast<std::size_t>(size), '\0');
  in.seekg(0);
  if (size > 0 && !in.read(s.data(), size))
    throw Error(ErrorKind::Io, fmt::format("{}: read error", path));
  if (s.size() >= 3 && s.compare(0, 3, "\xEF\xBB\xBF") == 0) s.erase(0, 3);  // UTF-8 BOM
  return s;
}

std::string lower_ascii(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

/// Label parsing shared by all formats.
struct LabelParser {
  const ReadOptions& opt;
  const std::string& file;

  int64_t parse(const std::string& raw, std::size_t line) const {
    if (raw.empty()) {
      if (opt.require_labels) fail_at(file, line, "empty label");
      return -1;
    }
    int64_t v = 0;
    auto it = opt.label2id.find(raw);
    if (it != opt.label2id.end()) {
      v = it->second;
    } else {
      std::size_t i = 0;
      bool neg = false;
      if (raw[0] == '-' || raw[0] == '+') {
        neg = raw[0] == '-';
        i = 1;
      }
      if (i >= raw.size()) fail_at(file, line, fmt::format("label '{}' is not an integer", raw));
      for (; i < raw.size(); ++i) {
        if (raw[i] < '0' || raw[i] > '9') {
          if (!opt.label2id.empty())
            fail_at(file, line, fmt::format("label '{}' is not in label2id", raw));
          fail_at(file, line, fmt::format("label '{}' is not an integer", raw));
        }
        if (v >= util::kMaxLabels) too_large(raw, line);  // before v * 10 can overflow
        v = v * 10 + (raw[i] - '0');
      }
      if (neg) v = -v;
    }
    return check(v, line);
  }

  [[noreturn]] void too_large(const std::string& raw, std::size_t line) const {
    fail_at(file, line, fmt::format("label {} is too large (a classifier has at most {} labels)", raw, util::kMaxLabels));
  }

  int64_t check(int64_t v, std::size_t line) const {
    if (v == -1 && !opt.require_labels) return -1;  // explicit "unlabelled"
    if (v < 0) fail_at(file, line, fmt::format("label {} is negative", v));
    if (v >= util::kMaxLabels) too_large(std::to_string(v), line);
    if (opt.num_labels > 0 && v >= opt.num_labels)
      fail_at(file, line, fmt::format("label {} out of range [0, {})", v, opt.num_labels));
    return v;
  }
};

/// Picks the text / text-pair / label columns from a header.
struct Columns {
  int label = -1, text = -1, pair = -1;
};

int find_col(const std::vector<std::string>& header, const std::string& name) {
  for (std::size_t i = 0; i < header.size(); ++i)
    if (header[i] == name) return static_cast<int>(i);
  return -1;
}

Columns resolve_columns(const std::vector<std::string>& header, const ReadOptions& opt,
                        const std::string& file) {
  Columns c;
  c.label = find_col(header, opt.label_column);
  if (c.label < 0 && opt.require_labels)
    fail_at(file, 1, fmt::format("no label column '{}' in the header", opt.label_column));
  std::string pair_default = "text_b";
  if (!opt.text_column.empty()) {
    c.text = find_col(header, opt.text_column);
    if (c.text < 0) fail_at(file, 1, fmt::format("no text column '{}' in the header", opt.text_column));
  } else {
    for (const char* n : {"text", "text_a", "sentence", "sentence1"}) {
      c.text = find_col(header, n);
      if (c.text >= 0) {
        if (std::string(n) == "sentence1") pair_default = "sentence2";
        break;
      }
    }
    if (c.text < 0) fail_at(file, 1, "no text column (text, text_a, sentence, sentence1) in the header");
  }
  if (!opt.text_pair_column.empty()) {
    c.pair = find_col(header, opt.text_pair_column);
    if (c.pair < 0)
      fail_at(file, 1, fmt::format("no text pair column '{}' in the header", opt.text_pair_column));
  } else {
    c.pair = find_col(header, pair_default);
  }
  return c;
}

void check_utf8(const std::string& s, const std::string& file, std::size_t line) {
  std::size_t bad = 0;
  if (!uni::valid_utf8(s, &bad)) fail_at(file, line, fmt::format("invalid UTF-8 at byte {} of a field", bad));
}

Example make_example(std::vector<std::string>& f, const Columns& c, const LabelParser& lp,
                     const std::string& file, std::size_t line) {
  Example ex;
  for (const auto& s : f) check_utf8(s, file, line);
  ex.label = c.label >= 0 ? lp.parse(f[static_cast<std::size_t>(c.label)], line) : -1;
  ex.text_a = f[static_cast<std::size_t>(c.text)];  // copies: columns may coincide
  if (c.pair >= 0) ex.text_b = f[static_cast<std::size_t>(c.pair)];
  return ex;
}

/// The shared TSV format: fields separated by tabs, no quoting or escaping at all.
void read_tsv(const std::string& content, Dataset& d, const ReadOptions& opt) {
  const std::string& file = d.source;
  LabelParser lp{opt, file};
  std::vector<std::string> header;
  Columns cols;
  std::vector<std::string> fields;
  std::size_t line = 0, pos = 0;
  while (pos < content.size()) {
    ++line;
    std::size_t nl = content.find('\n', pos);
    std::size_t end = nl == std::string::npos ? content.size() : nl;
    std::size_t e = end;
    if (e > pos && content[e - 1] == '\r') --e;
    std::string_view row(content.data() + pos, e - pos);
    pos = nl == std::string::npos ? content.size() : nl + 1;
    fields.clear();
    std::size_t s = 0;
    while (true) {
      std::size_t t = row.find('\t', s);
      fields.emplace_back(row.substr(s, t == std::string_view::npos ? row.size() - s : t - s));
      if (t == std::string_view::npos) break;
      s = t + 1;
    }
    if (line == 1) {
      header = fields;
      cols = resolve_columns(header, opt, file);
      continue;
    }
    if (row.empty() && pos >= content.size()) break;  // blank last line
    if (fields.size() != header.size())
      fail_at(file, line, fmt::format("expected {} tab-separated fields, got {}", header.size(), fields.size()));
    d.examples.push_back(make_example(fields, cols, lp, file, line));
  }
  if (line == 0) fail_at(file, 1, "empty file (no header)");
}

/// RFC 4180 CSV: comma separated, fields optionally in double quotes ("" inside quotes = ").
void read_csv(const std::string& content, Dataset& d, const ReadOptions& opt) {
  const std::string& file = d.source;
  LabelParser lp{opt, file};
  std::vector<std::string> header, fields;
  Columns cols;
  bool have_header = false;
  std::size_t pos = 0, line = 1;
  const std::size_t n = content.size();
  while (pos < n) {
    const std::size_t record_line = line;
    fields.clear();
    std::string field;
    bool at_end_of_record = false;
    while (!at_end_of_record) {
      field.clear();
      if (pos < n && content[pos] == '"') {
        ++pos;
        while (true) {
          if (pos >= n) fail_at(file, record_line, "unterminated quoted field");
          char c = content[pos];
          if (c == '"') {
            if (pos + 1 < n && content[pos + 1] == '"') {
              field.push_back('"');
              pos += 2;
              continue;
            }
            ++pos;
            break;
          }
          if (c == '\n') ++line;
          field.push_back(c);
          ++pos;
        }
        if (pos < n && content[pos] != ',' && content[pos] != '\n' && content[pos] != '\r')
          fail_at(file, line, "unexpected character after a closing quote");
      } else {
        // A quote inside an unquoted field is kept literally (as Python's csv module does).
        while (pos < n && content[pos] != ',' && content[pos] != '\n' && content[pos] != '\r')
          field.push_back(content[pos++]);
      }
      fields.push_back(field);
      if (pos < n && content[pos] == ',') {
        ++pos;
        continue;
      }
      if (pos < n && content[pos] == '\r') ++pos;
      if (pos < n && content[pos] == '\n') {
        ++pos;
        ++line;
      }
      at_end_of_record = true;
    }
    if (!have_header) {
      header = fields;
      cols = resolve_columns(header, opt, file);
      have_header = true;
      continue;
    }
    if (fields.size() == 1 && fields[0].empty() && header.size() != 1) continue;  // blank line
    if (fields.size() != header.size())
      fail_at(file, record_line, fmt::format("expected {} comma-separated fields, got {}", header.size(), fields.size()));
    d.examples.push_back(make_example(fields, cols, lp, file, record_line));
  }
  if (!have_header) fail_at(file, 1, "empty file (no header)");
}

void read_jsonl(const std::string& content, Dataset& d, const ReadOptions& opt) {
  const std::string& file = d.source;
  LabelParser lp{opt, file};
  std::size_t line = 0, pos = 0;
  std::string text_col = opt.text_column, pair_col = opt.text_pair_column;
  bool decided = false;
  while (pos < content.size()) {
    ++line;
    std::size_t nl = content.find('\n', pos);
    std::size_t end = nl == std::string::npos ? content.size() : nl;
    std::string_view row(content.data() + pos, end - pos);
    pos = nl == std::string::npos ? content.size() : nl + 1;
    if (row.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    check_utf8(std::string(row), file, line);
    json j;
    try {
      j = json::parse(row);
    } catch (const json::exception& e) {
      fail_at(file, line, fmt::format("invalid JSON: {}", e.what()));
    }
    if (!j.is_object()) fail_at(file, line, "expected a JSON object");
    if (!decided) {
      if (text_col.empty()) {
        for (const char* c : {"text", "text_a", "sentence", "sentence1"})
          if (j.contains(c)) {
            text_col = c;
            break;
          }
        if (text_col.empty()) fail_at(file, line, "no text field (text, text_a, sentence, sentence1)");
      }
      if (pair_col.empty()) {
        const char* def = text_col == "sentence1" ? "sentence2" : "text_b";
        if (j.contains(def)) pair_col = def;
      }
      decided = true;
    }
    Example ex;
    if (!j.contains(text_col) || !j[text_col].is_string())
      fail_at(file, line, fmt::format("field '{}' missing or not a string", text_col));
    ex.text_a = j[text_col].get<std::string>();
    if (!pair_col.empty()) {
      if (!j.contains(pair_col) || !j[pair_col].is_string())
        fail_at(file, line, fmt::format("field '{}' missing or not a string", pair_col));
      ex.text_b = j[pair_col].get<std::string>();
    }
    const json* lab = j.contains(opt.label_column) ? &j[opt.label_column] : nullptr;
    if (!lab || lab->is_null()) {
      if (opt.require_labels) fail_at(file, line, fmt::format("no label field '{}'", opt.label_column));
      ex.label = -1;
    } else if (lab->is_number_integer()) {
      ex.label = lp.check(lab->get<int64_t>(), line);
    } else if (lab->is_string()) {
      ex.label = lp.parse(lab->get<std::string>(), line);
    } else if (lab->is_boolean()) {
      ex.label = lp.check(lab->get<bool>() ? 1 : 0, line);
    } else {
      fail_at(file, line, fmt::format("label {} is not an integer or string", lab->dump()));
    }
    d.examples.push_back(std::move(ex));
  }
}

std::string tsv_field(const std::string& s) {
  // The format has no quoting: tabs and line breaks inside a text become a space (as in shared/data).
  std::string out = s;
  for (auto& c : out)
    if (c == '\t' || c == '\n' || c == '\r') c = ' ';
  return out;
}

}  // namespace

Dataset read_dataset(const std::string& path, const ReadOptions& opt) {
  std::string fmt_name = lower_ascii(opt.format);
  if (fmt_name == "auto" || fmt_name.empty()) {
    std::string ext = lower_ascii(fs::path(path).extension().string());
    if (ext == ".tsv" || ext == ".txt") fmt_name = "tsv";
    else if (ext == ".csv") fmt_name = "csv";
    else if (ext == ".jsonl" || ext == ".json" || ext == ".ndjson") fmt_name = "jsonl";
    else
      throw Error(ErrorKind::InvalidArgument,
                  fmt::format("{}: cannot tell the dataset format from the extension '{}' (use tsv, csv or jsonl)", path, ext));
  }
  Dataset d;
  d.source = path;
  const std::string content = read_all(path);
  if (fmt_name == "tsv") read_tsv(content, d, opt);
  else if (fmt_name == "csv") read_csv(content, d, opt);
  else if (fmt_name == "jsonl") read_jsonl(content, d, opt);
  else throw Error(ErrorKind::InvalidArgument, fmt::format("unknown dataset format '{}' (tsv, csv, jsonl)", opt.format));
  return d;
}

void write_tsv(const std::string& path, const Dataset& data) {
  const bool pair = data.is_pair();
  std::string out = pair ? "label\ttext_a\ttext_b\n" : "label\ttext\n";
  for (std::size_t i = 0; i < data.examples.size(); ++i) {
    const Example& ex = data.examples[i];
    if (ex.text_b.has_value() != pair)
      throw Error(ErrorKind::DataInvalid,
                  fmt::format("{}: example {} {} a text_b, unlike the first example", path, i,
                              pair ? "lacks" : "has"));
    if (ex.label >= 0) out += std::to_string(ex.label);
    out += '\t';
    out += tsv_field(ex.text_a);
    if (pair) {
      out += '\t';
      out += tsv_field(*ex.text_b);
    }
    out += '\n';
  }
  // Atomic: write a temporary next to the target, fsync, rename.
  static std::atomic<unsigned> counter{0};
  const fs::path target(path);
  const fs::path tmp = target.parent_path() /
                       fmt::format(".{}.tmp.{}.{}", target.filename().string(), ::getpid(), counter++);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(ErrorKind::Io, fmt::format("{}: cannot create: {}", tmp.string(), std::strerror(errno)));
  std::size_t done = 0;
  while (done < out.size()) {
    ssize_t w = ::write(fd, out.data() + done, out.size() - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      throw Error(ErrorKind::Io, fmt::format("{}: write failed: {}", tmp.string(), std::strerror(err)));
    }
    done += static_cast<std::size_t>(w);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw Error(ErrorKind::Io, fmt::format("{}: fsync/close failed: {}", tmp.string(), std::strerror(err)));
  }
  if (::rename(tmp.c_str(), target.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw Error(ErrorKind::Io, fmt::format("{}: rename failed: {}", path, std::strerror(err)));
  }
}

}  // namespace finepurify::text
