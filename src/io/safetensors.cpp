// safetensors: strict header validation (one error kind per rule, as the Rust crate), the mmap
// reader and the atomic writer.
#include "finepurify/io/safetensors.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <limits>
#include <set>
#include <sys/mman.h>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "finepurify/error.hpp"
#include "io/atomic_file.hpp"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors data is little-endian; tensor() copies bytes as they are");

namespace finepurify::io {

namespace {

struct DtypeEntry {
  Dtype dtype;
  const char* name;
  std::size_t size;
};

constexpr DtypeEntry kDtypes[] = {
    {Dtype::F64, "F64", 8},   {Dtype::F32, "F32", 4},         {Dtype::F16, "F16", 2},
    {Dtype::BF16, "BF16", 2}, {Dtype::I64, "I64", 8},         {Dtype::I32, "I32", 4},
    {Dtype::I16, "I16", 2},   {Dtype::I8, "I8", 1},           {Dtype::U8, "U8", 1},
    {Dtype::BOOL, "BOOL", 1}, {Dtype::U16, "U16", 2},         {Dtype::U32, "U32", 4},
    {Dtype::U64, "U64", 8},   {Dtype::F8_E4M3, "F8_E4M3", 1}, {Dtype::F8_E5M2, "F8_E5M2", 1},
};

const DtypeEntry& entry(Dtype d) {
  for (const auto& e : kDtypes)
    if (e.dtype == d) return e;
  throw Error(ErrorKind::Internal, fmt::format("unknown Dtype value {}", static_cast<int>(d)));
}

std::string shape_text(const std::vector<int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

/// Strict UTF-8 check (no overlong forms, no surrogates, at most U+10FFFF), like Rust's from_utf8.
/// Returns the offset of the first invalid byte, or `size` when all is valid.
std::size_t utf8_invalid_at(const uint8_t* s, std::size_t size) {
  std::size_t i = 0;
  while (i < size) {
    const uint8_t c = s[i];
    std::size_t len;
    uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c < 0x80) { ++i; continue; }
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) { len = 3; lo = 0xA0; }
    else if (c == 0xED) { len = 3; hi = 0x9F; }
    else if (c >= 0xE1 && c <= 0xEF) len = 3;
    else if (c == 0xF0) { len = 4; lo = 0x90; }
    else if (c == 0xF4) { len = 4; hi = 0x8F; }
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    else return i;
    if (size - i < len || s[i + 1] < lo || s[i + 1] > hi) return i;
    for (std::size_t k = 2; k < len; ++k)
      if (s[i + k] < 0x80 || s[i + k] > 0xBF) return i;
    i += len;
  }
  return size;
}

/// SAX handler that accepts exactly the safetensors header schema (so nesting never exceeds 3
/// levels) and sees every key, which nlohmann's DOM would silently de-duplicate.
class HeaderSax {
 public:
  using json = nlohmann::json;

  struct Entry {
    std::string name;
    std::string dtype;
    std::vector<uint64_t> shape, offsets;
    bool has_dtype = false, has_shape = false, has_offsets = false;
  };

  std::vector<Entry> entries;
  std::map<std::string, std::string> metadata;
  bool failed = false;
  ErrorKind kind = ErrorKind::StInvalidHeaderJson;
  std::string message;

  bool null() {
    if (state_ == State::TopValue && key_ == "__metadata__") {  // serde reads null as no metadata
      state_ = State::TopObject;
      return true;
    }
    return unexpected("null");
  }
  bool boolean(bool) { return unexpected("a boolean"); }
  bool number_integer(json::number_integer_t v) {
    if (v < 0) return unexpected(fmt::format("the negative number {}", v));
    return number_unsigned(static_cast<uint64_t>(v));
  }
  bool number_unsigned(json::number_unsigned_t v) {
    if (state_ == State::ShapeArray) { current_.shape.push_back(v); return true; }
    if (state_ == State::OffsetsArray) {
      if (current_.offsets.size() == 2) return offsets_not_a_pair();
      current_.offsets.push_back(v);
      return true;
    }
    return unexpected(fmt::format("the number {}", v));
  }
  bool number_float(json::number_float_t, const std::string& s) {
    return unexpected(fmt::format("the number {} (only integers up to 2^64-1 are allowed)", s));
  }
  bool string(std::string& s) {
    if (state_ == State::MetadataObject) {
      metadata[key_] = s;
      return true;
    }
    if (state_ == State::EntryObject && key_ == "dtype") {
      current_.dtype = s;
      current_.has_dtype = true;
      return true;
    }
    return unexpected(fmt::format("the string \"{}\"", s));
  }
  bool binary(json::binary_t&) { return unexpected("binary data"); }

  bool start_object(std::size_t) {
    switch (state_) {
      case State::Start: state_ = State::TopObject; return true;
      case State::TopValue:
        if (key_ == "__metadata__") { state_ = State::MetadataObject; return true; }
        current_ = Entry{};
        current_.name = key_;
        state_ = State::EntryObject;
        return true;
      default: return unexpected("an object");
    }
  }
  bool key(std::string& k) {
    switch (state_) {
      case State::TopObject:
        if (k == "__metadata__") {
          if (seen_metadata_) return fail(ErrorKind::StInvalidHeaderJson, "\"__metadata__\" appears twice");
          seen_metadata_ = true;
        } else if (!names_.insert(k).second) {
          return fail(ErrorKind::StDuplicateTensor, fmt::format("tensor \"{}\" appears twice in the header", k));
        }
        key_ = k;
        state_ = State::TopValue;
        return true;
      case State::MetadataObject:
        if (metadata.count(k))
          return fail(ErrorKind::StInvalidHeaderJson, fmt::format("__metadata__ key \"{}\" appears twice", k));
        key_ = k;
        return true;
      case State::EntryObject: {
        bool* seen = k == "dtype" ? &current_.has_dtype
                     : k == "shape" ? &current_.has_shape
                     : k == "data_offsets" ? &current_.has_offsets : nullptr;
        if (!seen)
          return fail(ErrorKind::StInvalidHeaderJson,
                      fmt::format("tensor \"{}\": unknown field \"{}\" (expected dtype, shape, data_offsets)",
                                  current_.name, k));
        if (*seen)
          return fail(ErrorKind::StInvalidHeaderJson,
                      fmt::format("tensor \"{}\": field \"{}\" appears twice", current_.name, k));
        key_ = k;
        return true;
      }
      default: return unexpected("a key");
    }
  }
  bool end_object() {
    switch (state_) {
      case State::TopObject: state_ = State::Done; return true;
      case State::MetadataObject: state_ = State::TopObject; return true;
      case State::EntryObject: {
        const char* missing = !current_.has_dtype ? "dtype" : !current_.has_shape ? "shape"
                              : !current_.has_offsets ? "data_offsets" : nullptr;
        if (missing)
          return fail(ErrorKind::StInvalidHeaderJson,
                      fmt::format("tensor \"{}\" has no \"{}\"", current_.name, missing));
        entries.push_back(std::move(current_));
        state_ = State::TopObject;
        return true;
      }
      default: return unexpected("the end of an object");
    }
  }
  bool start_array(std::size_t) {
    if (state_ == State::EntryObject && key_ == "shape") {
      current_.has_shape = true;
      state_ = State::ShapeArray;
      return true;
    }
    if (state_ == State::EntryObject && key_ == "data_offsets") {
      current_.has_offsets = true;
      state_ = State::OffsetsArray;
      return true;
    }
    return unexpected("an array");
  }
  bool end_array() {
    if (state_ == State::ShapeArray) { state_ = State::EntryObject; return true; }
    if (state_ == State::OffsetsArray) {
      if (current_.offsets.size() != 2) return offsets_not_a_pair();
      state_ = State::EntryObject;
      return true;
    }
    return unexpected("the end of an array");
  }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& e) {
    return fail(ErrorKind::StInvalidHeaderJson, fmt::format("invalid JSON at byte {}: {}", position, e.what()));
  }

 private:
  enum class State { Start, TopObject, TopValue, MetadataObject, EntryObject, ShapeArray, OffsetsArray, Done };

  bool fail(ErrorKind k, std::string msg) {
    if (!failed) {
      failed = true;
      kind = k;
      message = std::move(msg);
    }
    return false;
  }
  bool offsets_not_a_pair() {
    return fail(ErrorKind::StInvalidHeaderJson,
                fmt::format("tensor \"{}\": data_offsets must be [begin, end] (2 numbers), got {}", current_.name,
                            current_.offsets.size() == 2 ? "more than 2" : std::to_string(current_.offsets.size())));
  }
  bool unexpected(const std::string& what) {
    std::string where;
    switch (state_) {
      case State::Start: where = "the header must be a JSON object"; break;
      case State::TopValue:
        where = key_ == "__metadata__" ? "\"__metadata__\" must be an object of strings"
                                       : fmt::format("tensor \"{}\" must be an object", key_);
        break;
      case State::MetadataObject: where = fmt::format("__metadata__ \"{}\" must be a string", key_); break;
      case State::EntryObject:
        where = key_ == "dtype" ? fmt::format("tensor \"{}\": dtype must be a string", current_.name)
                                : fmt::format("tensor \"{}\": {} must be an array of non-negative integers",
                                              current_.name, key_);
        break;
      case State::ShapeArray:
      case State::OffsetsArray:
        where = fmt::format("tensor \"{}\": {} must hold non-negative integers", current_.name,
                            state_ == State::ShapeArray ? "shape" : "data_offsets");
        break;
      default: where = "unexpected JSON"; break;
    }
    return fail(ErrorKind::StInvalidHeaderJson, fmt::format("{}, found {}", where, what));
  }

  State state_ = State::Start;
  std::string key_;
  Entry current_;
  std::set<std::string> names_;
  bool seen_metadata_ = false;
};

}  // namespace

Dtype dtype_from_string(const std::string& s, const std::string& where) {
  for (const auto& e : kDtypes)
    if (s == e.name) return e.dtype;
  throw Error(ErrorKind::StUnknownDtype,
              fmt::format("{}: unknown dtype \"{}\" (expected one of F32, F16, BF16, F64, I64, I32, I16, I8, "
                          "U8, BOOL, U16, U32, U64, F8_E4M3, F8_E5M2)",
                          where, s));
}

const char* dtype_name(Dtype d) { return entry(d).name; }
std::size_t dtype_size(Dtype d) { return entry(d).size; }

torch::ScalarType dtype_to_torch(Dtype d) {
  switch (d) {
    case Dtype::F64: return torch::kFloat64;
    case Dtype::F32: return torch::kFloat32;
    case Dtype::F16: return torch::kFloat16;
    case Dtype::BF16: return torch::kBFloat16;
    case Dtype::I64: return torch::kInt64;
    case Dtype::I32: return torch::kInt32;
    case Dtype::I16: return torch::kInt16;
    case Dtype::I8: return torch::kInt8;
    case Dtype::U8: return torch::kUInt8;
    case Dtype::BOOL: return torch::kBool;
    default:
      throw Error(ErrorKind::InvalidArgument,
                  fmt::format("dtype {} is not supported by libtorch 1.13", dtype_name(d)));
  }
}

Dtype dtype_from_torch(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat64: return Dtype::F64;
    case torch::kFloat32: return Dtype::F32;
    case torch::kFloat16: return Dtype::F16;
    case torch::kBFloat16: return Dtype::BF16;
    case torch::kInt64: return Dtype::I64;
    case torch::kInt32: return Dtype::I32;
    case torch::kInt16: return Dtype::I16;
    case torch::kInt8: return Dtype::I8;
    case torch::kUInt8: return Dtype::U8;
    case torch::kBool: return Dtype::BOOL;
    default:
      throw Error(ErrorKind::InvalidArgument,
                  fmt::format("torch dtype {} has no safetensors equivalent", c10::toString(t)));
  }
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // validated against overflow when the header was read
  return n;
}

namespace {
/// Checks the 8-byte length, the header's size, UTF-8 and first byte; returns the header length.
uint64_t checked_header_length(const uint8_t* data, std::size_t size, const std::string& source_) {
  if (size < 8)
    throw Error(ErrorKind::StHeaderTooSmall,
                fmt::format("{}: {} bytes, shorter than the 8-byte header length", source_, size));
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
  if (n > kMaxHeaderSize)
    throw Error(ErrorKind::StHeaderTooLarge,
                fmt::format("{}: header length {} exceeds the limit of {} bytes", source_, n, kMaxHeaderSize));
  if (n + 8 > size)
    throw Error(ErrorKind::StInvalidHeaderLength,
                fmt::format("{}: header length {} needs {} bytes, the file has {}", source_, n, n + 8, size));
  const uint8_t* header = data + 8;
  if (const std::size_t bad = utf8_invalid_at(header, n); bad != n)
    throw Error(ErrorKind::StInvalidHeaderUtf8,
                fmt::format("{}: header is not valid UTF-8 (byte 0x{:02x} at header offset {})", source_,
                            header[bad], bad));
  if (n == 0 || header[0] != '{')
    throw Error(ErrorKind::StInvalidHeaderStart,
                n == 0 ? fmt::format("{}: header is empty, expected a JSON object starting with '{{'", source_)
                       : fmt::format("{}: header starts with byte 0x{:02x}, expected '{{'", source_, header[0]));

  return n;
}

/// A header entry as a TensorInfo, its element count and byte size checked against overflow and
/// its data_offsets [begin, end).
TensorInfo checked_tensor(const HeaderSax::Entry& e, Dtype dtype, uint64_t begin, uint64_t end, const std::string& source_) {
  TensorInfo t;
  t.name = e.name;
  t.dtype = dtype;
  t.begin = begin;
  t.end = end;
  uint64_t count = 1;
  for (uint64_t d : e.shape) {
    if (d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) || __builtin_mul_overflow(count, d, &count))
      throw Error(ErrorKind::StOverflow,
                  fmt::format("{}: tensor \"{}\": element count of shape [{}] overflows 64 bits", source_,
                              e.name, fmt::join(e.shape, ", ")));
    t.shape.push_back(static_cast<int64_t>(d));
  }
  uint64_t bytes = 0;
  if (count > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
      __builtin_mul_overflow(count, static_cast<uint64_t>(dtype_size(t.dtype)), &bytes))
    throw Error(ErrorKind::StOverflow,
                fmt::format("{}: tensor \"{}\": {} elements of {} overflow 64 bits", source_, e.name, count,
                            dtype_name(t.dtype)));
  if (bytes != end - begin)
    throw Error(ErrorKind::StDataSizeMismatch,
                fmt::format("{}: tensor \"{}\": shape {} of {} needs {} bytes, data_offsets [{}, {}] hold {}",
                            source_, e.name, shape_text(t.shape), dtype_name(t.dtype), bytes, begin, end,
                            end - begin));
  return t;
}
}  // namespace

SafetensorsView::SafetensorsView(const uint8_t* data, std::size_t size, std::string source)
    : source_(std::move(source)) {
  const uint64_t n = checked_header_length(data, size, source_);
  const uint8_t* header = data + 8;

  HeaderSax sax;
  bool ok = false;
  try {
    ok = nlohmann::json::sax_parse(header, header + n, &sax, nlohmann::json::input_format_t::json, true, false);
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorKind::StInvalidHeaderJson, fmt::format("{}: invalid header JSON: {}", source_, e.what()));
  }
  if (!ok || sax.failed)
    throw Error(sax.failed ? sax.kind : ErrorKind::StInvalidHeaderJson,
                fmt::format("{}: {}", source_, sax.failed ? sax.message : "invalid header JSON"));
  metadata_ = std::move(sax.metadata);

  std::vector<Dtype> dtypes;
  for (const auto& e : sax.entries)
    dtypes.push_back(dtype_from_string(e.dtype, fmt::format("{}: tensor \"{}\"", source_, e.name)));
  std::vector<std::size_t> order(sax.entries.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return sax.entries[a].offsets < sax.entries[b].offsets;
  });

  uint64_t expected_begin = 0;
  for (std::size_t i : order) {
    auto& e = sax.entries[i];
    const uint64_t begin = e.offsets[0], end = e.offsets[1];
    if (begin != expected_begin || end < begin)
      throw Error(ErrorKind::StInvalidOffsets,
                  begin != expected_begin
                      ? fmt::format("{}: tensor \"{}\": data_offsets begin at {}, expected {} (tensors must "
                                    "be contiguous from 0, without gaps or overlaps)",
                                    source_, e.name, begin, expected_begin)
                      : fmt::format("{}: tensor \"{}\": data_offsets [{}, {}] end before they begin", source_,
                                    e.name, begin, end));
    expected_begin = end;
    TensorInfo t = checked_tensor(e, dtypes[i], begin, end, source_);
    index_[t.name] = tensors_.size();
    tensors_.push_back(std::move(t));
  }
  const uint64_t buffer = size - 8 - n;
  if (expected_begin != buffer)
    throw Error(ErrorKind::StMetadataIncompleteBuffer,
                fmt::format("{}: tensors cover {} bytes of data, the file holds {} bytes after the header",
                            source_, expected_begin, buffer));
  data_start_ = data + 8 + n;
}

bool SafetensorsView::contains(const std::string& name) const { return index_.count(name) > 0; }

const TensorInfo& SafetensorsView::info(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end())
    throw Error(ErrorKind::StTensorNotFound, fmt::format("{}: no tensor \"{}\"", source_, name));
  return tensors_[it->second];
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    throw Error(ErrorKind::Io, fmt::format("{}: cannot open: {}", path, std::system_category().message(e)));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(ErrorKind::Io, fmt::format("{}: not a regular file", path));
  }
  size_ = static_cast<std::size_t>(st.st_size);
  if (size_ > 0) {
    map_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map_ == MAP_FAILED) {
      const int e = errno;
      map_ = nullptr;
      ::close(fd);
      throw Error(ErrorKind::Io, fmt::format("{}: mmap failed: {}", path, std::system_category().message(e)));
    }
  }
  ::close(fd);
  try {
    view_ = std::make_unique<SafetensorsView>(static_cast<const uint8_t*>(map_), size_, path);
  } catch (...) {
    if (map_) ::munmap(map_, size_);
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, size_);
}

torch::Tensor SafetensorsFile::tensor(const std::string& name) const {
  const TensorInfo& t = view_->info(name);
  const torch::ScalarType type = dtype_to_torch(t.dtype);
  // Bytes other than 0/1 are not valid torch bools: read BOOL as U8 and normalise.
  const torch::ScalarType stored = type == torch::kBool ? torch::kUInt8 : type;
  torch::Tensor out = torch::empty(t.shape, torch::TensorOptions().dtype(stored).device(torch::kCPU));
  // The copy is what the caller keeps: the mapped pages it came from leave the resident set as each
  // 8 MiB slice is copied (read-only file pages, read again from the page cache if touched again), so
  // reading a checkpoint holds one copy of each tensor, not two.
  const auto* src = view_->tensor_data(t);
  auto* dst = static_cast<uint8_t*>(out.data_ptr());
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  constexpr std::size_t kSlice = std::size_t{8} << 20;
  const std::size_t bytes = t.end - t.begin;
  for (std::size_t o = 0; o < bytes; o += kSlice) {
    const std::size_t n = std::min(kSlice, bytes - o);
    std::memcpy(dst + o, src + o, n);
    const uintptr_t b = (reinterpret_cast<uintptr_t>(src + o) + page - 1) / page * page;
    const uintptr_t e = reinterpret_cast<uintptr_t>(src + o + n) / page * page;
    if (e > b) ::madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
  }
  return type == torch::kBool ? out.ne(0) : out;
}

void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  auto& meta = header["__metadata__"] = nlohmann::ordered_json::object();
  meta["format"] = "pt";
  for (const auto& [k, v] : metadata) {
    if (k == "format" && v != "pt")
      throw Error(ErrorKind::InvalidArgument,
                  fmt::format("{}: metadata format \"{}\" given, torch tensors are always written as \"pt\"",
                              path, v));
    meta[k] = v;
  }

  std::vector<torch::Tensor> cpu;
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__")
      throw Error(ErrorKind::InvalidArgument, fmt::format("{}: \"__metadata__\" is not a valid tensor name", path));
    if (!names.insert(name).second)
      throw Error(ErrorKind::InvalidArgument, fmt::format("{}: tensor \"{}\" given twice", path, name));
    if (!t.defined())
      throw Error(ErrorKind::InvalidArgument, fmt::format("{}: tensor \"{}\" is undefined", path, name));
    const Dtype dtype = dtype_from_torch(t.scalar_type());
    torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
    const uint64_t bytes = static_cast<uint64_t>(c.numel()) * c.element_size();
    header[name] = {{"dtype", dtype_name(dtype)},
                    {"shape", c.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    cpu.push_back(std::move(c));
  }

  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorKind::InvalidArgument,
                fmt::format("{}: a tensor name or metadata entry is not valid UTF-8: {}", path, e.what()));
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // align the data buffer to 8 bytes, as the crate does
  uint8_t n[8];
  for (int i = 0; i < 8; ++i) n[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));

  AtomicFile out(path);
  out.write(n, sizeof n);
  out.write(text.data(), text.size());
  for (const auto& c : cpu) out.write(c.data_ptr(), static_cast<std::size_t>(c.numel()) * c.element_size());
  out.commit();
}

}  // namespace finepurify::io
