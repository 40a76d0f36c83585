// Unit tests of the safetensors reader and writer: one test per error kind on hand-made bytes,
// round trips, atomic writes, and a seeded mutation fuzzer on the parser.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "finepurify/error.hpp"
#include "finepurify/io/safetensors.hpp"
#include "fp_test.hpp"

namespace fs = std::filesystem;
using finepurify::Error;
using finepurify::ErrorKind;
using namespace finepurify::io;

namespace {

using Bytes = std::vector<uint8_t>;

Bytes le64(uint64_t n) {
  Bytes b(8);
  for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(n >> (8 * i));
  return b;
}

/// 8-byte length + header + `data_size` data bytes (0, 1, 2, ...).
Bytes make_file(const std::string& header, std::size_t data_size) {
  Bytes b = le64(header.size());
  b.resize(8 + header.size() + data_size);
  std::memcpy(b.data() + 8, header.data(), header.size());
  for (std::size_t i = 0; i < data_size; ++i) b[8 + header.size() + i] = static_cast<uint8_t>(i);
  return b;
}

/// Parses `bytes` and returns the error kind (the test fails if nothing is thrown).
ErrorKind parse_error_kind(const Bytes& bytes, std::string* message = nullptr) {
  try {
    SafetensorsView v(bytes.data(), bytes.size(), "corrupt.safetensors");
  } catch (const Error& e) {
    if (message) *message = e.what();
    return e.kind();
  }
  ADD_FAILURE() << "no error thrown";
  return ErrorKind::Internal;
}

void expect_error(const Bytes& bytes, ErrorKind kind, const std::vector<std::string>& in_message = {}) {
  std::string msg;
  EXPECT_EQ(parse_error_kind(bytes, &msg), kind) << msg;
  EXPECT_NE(msg.find("corrupt.safetensors"), std::string::npos) << msg;
  for (const auto& s : in_message) EXPECT_NE(msg.find(s), std::string::npos) << "'" << s << "' not in: " << msg;
}

const std::string kOne = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";

std::vector<std::string> list_dir(const fs::path& d) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(d)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST(SafetensorsDtype, NamesSizesAndTorchTypes) {
  const std::vector<std::pair<std::string, std::size_t>> all = {
      {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F64", 8}, {"I64", 8},     {"I32", 4},     {"I16", 2},   {"I8", 1},
      {"U8", 1},  {"BOOL", 1}, {"U16", 2}, {"U32", 4}, {"U64", 8}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
  for (const auto& [name, size] : all) {
    const Dtype d = dtype_from_string(name, "test");
    EXPECT_EQ(dtype_name(d), name);
    EXPECT_EQ(dtype_size(d), size) << name;
  }
  for (const char* name : {"F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL"}) {
    const Dtype d = dtype_from_string(name, "test");
    EXPECT_EQ(dtype_from_torch(dtype_to_torch(d)), d) << name;
    EXPECT_EQ(torch::elementSize(dtype_to_torch(d)), dtype_size(d)) << name;
  }
  for (const char* name : {"U16", "U32", "U64", "F8_E4M3", "F8_E5M2"}) {
    try {
      dtype_to_torch(dtype_from_string(name, "test"));
      ADD_FAILURE() << name << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("libtorch 1.13"), std::string::npos) << e.what();
    }
  }
  try {
    dtype_from_torch(torch::kComplexFloat);
    ADD_FAILURE() << "complex accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
  }
}

TEST(SafetensorsParse, ValidFileAndMetadata) {
  const std::string header =
      R"({"__metadata__":{"format":"pt","k":"v"},"b":{"dtype":"I64","shape":[],"data_offsets":[8,16]},)"
      R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"z":{"dtype":"U16","shape":[0,3],"data_offsets":[16,16]}})";
  const Bytes b = make_file(header, 16);
  SafetensorsView v(b.data(), b.size(), "ok.safetensors");
  ASSERT_EQ(v.tensors().size(), 3u);
  EXPECT_EQ(v.tensors()[0].name, "a");  // sorted by offset
  EXPECT_EQ(v.tensors()[1].name, "b");
  EXPECT_EQ(v.info("b").shape, std::vector<int64_t>{});
  EXPECT_EQ(v.info("b").numel(), 1);
  EXPECT_EQ(v.info("z").numel(), 0);
  EXPECT_EQ(v.info("a").dtype, Dtype::F32);
  EXPECT_EQ(v.tensor_data(v.info("b"))[0], 8);
  EXPECT_EQ(v.metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"k", "v"}}));
  EXPECT_TRUE(v.contains("a"));
  EXPECT_FALSE(v.contains("__metadata__"));
}

TEST(SafetensorsParse, AcceptsTheRustCrateSerialisations) {
  // safetensors/src/tensor.rs test_serialization and test_empty (with and without metadata).
  const Bytes serialized = {
      64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100, 116, 121, 112, 101, 34, 58,
      34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116,
      97, 95, 111, 102, 102, 115, 101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0, 128, 63,
      0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64};
  SafetensorsView v(serialized.data(), serialized.size(), "crate");
  EXPECT_EQ(v.info("attn.0").shape, (std::vector<int64_t>{1, 2, 3}));
  float x[6];
  std::memcpy(x, v.tensor_data(v.info("attn.0")), sizeof x);
  EXPECT_EQ(x[5], 5.0f);

  const Bytes empty = {8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32};
  EXPECT_TRUE(SafetensorsView(empty.data(), empty.size(), "crate").tensors().empty());
  const Bytes empty_meta = {40,  0,   0,   0,   0,   0,   0,   0,   123, 34, 95, 95, 109, 101, 116, 97,
                            100, 97,  116, 97,  95,  95,  34,  58,  123, 34, 102, 114, 97, 109, 101, 119,
                            111, 114, 107, 34,  58,  34,  112, 116, 34,  125, 125, 32, 32, 32, 32, 32};
  EXPECT_EQ(SafetensorsView(empty_meta.data(), empty_meta.size(), "crate").metadata().at("framework"), "pt");
}

TEST(SafetensorsParse, TrailingSpacesAndNullMetadataAccepted) {
  Bytes b = make_file(kOne + "       ", 8);
  EXPECT_EQ(SafetensorsView(b.data(), b.size(), "x").tensors().size(), 1u);
  b = make_file(R"({"__metadata__":null})", 0);
  EXPECT_TRUE(SafetensorsView(b.data(), b.size(), "x").metadata().empty());
}

TEST(SafetensorsErrors, HeaderTooSmall) {
  expect_error({}, ErrorKind::StHeaderTooSmall);
  expect_error({1, 0, 0, 0, 0, 0, 0}, ErrorKind::StHeaderTooSmall, {"7 bytes"});
}

TEST(SafetensorsErrors, HeaderTooLarge) {
  Bytes b = le64(kMaxHeaderSize + 1);
  b.push_back('{');
  expect_error(b, ErrorKind::StHeaderTooLarge, {"100000001"});
  expect_error(le64(~uint64_t{0}), ErrorKind::StHeaderTooLarge);
}

TEST(SafetensorsErrors, InvalidHeaderLength) {
  Bytes b = make_file(kOne, 8);
  const Bytes n = le64(b.size());  // claims more header than the file has
  std::copy(n.begin(), n.end(), b.begin());
  expect_error(b, ErrorKind::StInvalidHeaderLength, {std::to_string(b.size())});
}

TEST(SafetensorsErrors, InvalidHeaderUtf8) {
  expect_error(make_file("{\"w\xff\":1}", 0), ErrorKind::StInvalidHeaderUtf8, {"0xff"});
  expect_error(make_file("{\"\xc0\xaf\":1}", 0), ErrorKind::StInvalidHeaderUtf8);      // overlong '/'
  expect_error(make_file("{\"\xed\xa0\x80\":1}", 0), ErrorKind::StInvalidHeaderUtf8);  // surrogate
  expect_error(make_file("{\"\xe2\x82", 0), ErrorKind::StInvalidHeaderUtf8);           // cut sequence
}

TEST(SafetensorsErrors, InvalidHeaderStart) {
  expect_error(make_file(" " + kOne, 8), ErrorKind::StInvalidHeaderStart);
  expect_error(make_file("[]", 0), ErrorKind::StInvalidHeaderStart, {"0x5b"});
  expect_error(make_file("", 0), ErrorKind::StInvalidHeaderStart);
}

TEST(SafetensorsErrors, InvalidHeaderJson) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{", "invalid JSON"},
      {"{} x", "invalid JSON"},
      {R"({"w":[1]})", "\"w\" must be an object"},
      {R"({"w":{"shape":[2],"data_offsets":[0,8]}})", "\"w\" has no \"dtype\""},
      {R"({"w":{"dtype":"F32","data_offsets":[0,8]}})", "\"w\" has no \"shape\""},
      {R"({"w":{"dtype":"F32","shape":[2]}})", "\"w\" has no \"data_offsets\""},
      {R"({"w":{"dtype":3,"shape":[2],"data_offsets":[0,8]}})", "dtype must be a string"},
      {R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", "negative"},
      {R"({"w":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", "shape must hold"},
      {R"({"w":{"dtype":"F32","shape":[[2]],"data_offsets":[0,8]}})", "shape must hold"},
      {R"({"w":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", "shape must be an array"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}})", "(2 numbers), got more than 2"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", "(2 numbers), got 1"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551616]}})", "only integers up to 2^64-1"},
      {R"({"w":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}})", "appears twice"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":1}})", "unknown field \"extra\""},
      {R"({"__metadata__":{"n":1}})", "__metadata__ \"n\" must be a string"},
      {R"({"__metadata__":{"a":"x","a":"y"}})", "appears twice"},
      {R"({"__metadata__":{},"__metadata__":{}})", "appears twice"},
      {R"({"__metadata__":"pt"})", "must be an object of strings"},
  };
  for (const auto& [header, expected] : cases) {
    SCOPED_TRACE(header);
    expect_error(make_file(header, 8), ErrorKind::StInvalidHeaderJson, {expected});
  }
}

TEST(SafetensorsErrors, UnknownDtype) {
  expect_error(make_file(R"({"w":{"dtype":"F31","shape":[2],"data_offsets":[0,8]}})", 8), ErrorKind::StUnknownDtype,
               {"\"w\"", "F31"});
}

TEST(SafetensorsErrors, DuplicateTensor) {
  expect_error(make_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                         R"("w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                         8),
               ErrorKind::StDuplicateTensor, {"\"w\""});
}

TEST(SafetensorsErrors, InvalidOffsets) {
  // gap before the first tensor
  expect_error(make_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
               ErrorKind::StInvalidOffsets, {"\"w\"", "begin at 4, expected 0"});
  // end before begin
  expect_error(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                         R"("v":{"dtype":"U8","shape":[0],"data_offsets":[4,2]}})",
                         4),
               ErrorKind::StInvalidOffsets, {"\"v\"", "[4, 2] end before they begin"});
  // overlap
  expect_error(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                         R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                         12),
               ErrorKind::StInvalidOffsets, {"\"b\"", "expected 8"});
}

TEST(SafetensorsErrors, DataSizeMismatch) {
  expect_error(make_file(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
               ErrorKind::StDataSizeMismatch, {"\"w\"", "needs 12 bytes", "hold 8"});
}

TEST(SafetensorsErrors, Overflow) {
  // element count overflows
  expect_error(make_file(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8),
               ErrorKind::StOverflow, {"\"w\""});
  // count fits, bytes overflow
  expect_error(make_file(R"({"w":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,8]}})", 8),
               ErrorKind::StOverflow, {"\"w\""});
  // a dimension above int64
  expect_error(make_file(R"({"w":{"dtype":"U8","shape":[9223372036854775808],"data_offsets":[0,8]}})", 8),
               ErrorKind::StOverflow);
}

TEST(SafetensorsErrors, MetadataIncompleteBuffer) {
  expect_error(make_file(kOne, 9), ErrorKind::StMetadataIncompleteBuffer, {"cover 8 bytes", "holds 9 bytes"});
  expect_error(make_file(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}})", 8),
               ErrorKind::StMetadataIncompleteBuffer, {"cover 12 bytes", "holds 8 bytes"});
}

TEST(SafetensorsErrors, TensorNotFound) {
  const Bytes b = make_file(kOne, 8);
  SafetensorsView v(b.data(), b.size(), "x.safetensors");
  try {
    v.info("nope");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::StTensorNotFound);
    EXPECT_NE(std::string(e.what()).find("\"nope\""), std::string::npos);
  }
}

TEST(SafetensorsFileTest, MissingAndEmptyFiles) {
  const fs::path d = fp_test::temp_dir("st-missing");
  try {
    SafetensorsFile f((d / "absent.safetensors").string());
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Io);
    EXPECT_NE(std::string(e.what()).find("absent.safetensors"), std::string::npos);
  }
  fp_test::write_file(d / "empty.safetensors", "");
  try {
    SafetensorsFile f((d / "empty.safetensors").string());
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::StHeaderTooSmall);
  }
  try {
    SafetensorsFile f(d.string());
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Io);
  }
}

TEST(SafetensorsFileTest, UnsupportedDtypeTensorThrows) {
  const fs::path d = fp_test::temp_dir("st-u16");
  const Bytes b = make_file(R"({"w":{"dtype":"U16","shape":[2],"data_offsets":[0,4]}})", 4);
  fp_test::write_file(d / "u16.safetensors", std::string(b.begin(), b.end()));
  SafetensorsFile f((d / "u16.safetensors").string());
  EXPECT_EQ(f.view().info("w").dtype, Dtype::U16);
  try {
    f.tensor("w");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
  }
}

TEST(SafetensorsFileTest, BoolBytesAreNormalised) {
  const fs::path d = fp_test::temp_dir("st-bool");
  Bytes b = make_file(R"({"m":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]}})", 3);
  b[b.size() - 3] = 0, b[b.size() - 2] = 1, b[b.size() - 1] = 7;
  fp_test::write_file(d / "b.safetensors", std::string(b.begin(), b.end()));
  SafetensorsFile f((d / "b.safetensors").string());
  const torch::Tensor t = f.tensor("m");
  EXPECT_EQ(t.scalar_type(), torch::kBool);
  EXPECT_TRUE(torch::equal(t, torch::tensor({false, true, true})));
}

TEST(SafetensorsWrite, RoundTripDtypesAndMetadata) {
  const fs::path d = fp_test::temp_dir("st-roundtrip");
  torch::manual_seed(0);
  std::vector<std::pair<std::string, torch::Tensor>> tensors = {
      {"z.f32", torch::randn({3, 4}).t()},  // non-contiguous
      {"a.f16", torch::randn({5}).to(torch::kHalf)},
      {"m.bf16", torch::randn({2, 3}).to(torch::kBFloat16)},
      {"ids", torch::arange(-3, 7, torch::kLong).reshape({2, 5})},
      {"mask", torch::tensor({true, false, true})},
      {"f64", torch::randn({2}, torch::kDouble)},
      {"i32", torch::tensor({1, -2, 3}, torch::kInt)},
      {"i16", torch::tensor({-7, 9}, torch::kShort)},
      {"i8", torch::tensor({-1, 1}, torch::kChar)},
      {"u8", torch::tensor({0, 255}, torch::kByte)},
      {"scalar", torch::tensor(2.5)},
      {"empty", torch::zeros({0, 7})},
  };
  const std::string path = (d / "rt.safetensors").string();
  write_safetensors(path, tensors, {{"note", "kept"}});
  EXPECT_EQ(list_dir(d), std::vector<std::string>{"rt.safetensors"});

  SafetensorsFile f(path);
  EXPECT_EQ(f.view().metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"note", "kept"}}));
  ASSERT_EQ(f.view().tensors().size(), tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, want] = tensors[i];
    SCOPED_TRACE(name);
    EXPECT_EQ(f.view().tensors()[i].name, name);  // written in the given order
    const torch::Tensor got = f.tensor(name);
    EXPECT_EQ(got.scalar_type(), want.scalar_type());
    EXPECT_EQ(got.sizes(), want.sizes());
    EXPECT_TRUE(torch::equal(got, want));
  }

  // Header: length a multiple of 8, starts with '{', the metadata first.
  const std::string raw = fp_test::read_file(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(raw[i]);
  EXPECT_EQ(n % 8, 0u);
  const std::string start = R"({"__metadata__":{"format":"pt","note":"kept"},"z.f32":)";
  EXPECT_EQ(raw.compare(8, start.size(), start), 0) << raw.substr(8, 60);
}

TEST(SafetensorsWrite, OverwritesAndLeavesNoTemporaryFiles) {
  const fs::path d = fp_test::temp_dir("st-overwrite");
  const std::string path = (d / "w.safetensors").string();
  write_safetensors(path, {{"a", torch::ones({2})}});
  write_safetensors(path, {{"b", torch::zeros({3})}});
  EXPECT_EQ(list_dir(d), std::vector<std::string>{"w.safetensors"});
  SafetensorsFile f(path);
  EXPECT_FALSE(f.view().contains("a"));
  EXPECT_TRUE(torch::equal(f.tensor("b"), torch::zeros({3})));
}

TEST(SafetensorsWrite, FailureLeavesDestinationUnchanged) {
  const fs::path d = fp_test::temp_dir("st-atomic");
  const std::string path = (d / "w.safetensors").string();
  fp_test::write_file(path, "previous content");
  const auto expect_refused = [&](const std::vector<std::pair<std::string, torch::Tensor>>& t,
                                  const std::map<std::string, std::string>& meta, ErrorKind kind) {
    try {
      write_safetensors(path, t, meta);
      ADD_FAILURE() << "write accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), kind) << e.what();
    }
    EXPECT_EQ(fp_test::read_file(path), "previous content");
    EXPECT_EQ(list_dir(d), std::vector<std::string>{"w.safetensors"});
  };
  expect_refused({{"a", torch::ones({1})}, {"a", torch::ones({1})}}, {}, ErrorKind::InvalidArgument);
  expect_refused({{"__metadata__", torch::ones({1})}}, {}, ErrorKind::InvalidArgument);
  expect_refused({{"a", torch::Tensor()}}, {}, ErrorKind::InvalidArgument);
  expect_refused({{"c", torch::ones({1}, torch::kComplexFloat)}}, {}, ErrorKind::InvalidArgument);
  expect_refused({{"bad\xff", torch::ones({1})}}, {}, ErrorKind::InvalidArgument);
  expect_refused({{"a", torch::ones({1})}}, {{"format", "flax"}}, ErrorKind::InvalidArgument);

  try {
    write_safetensors((d / "no-such-dir" / "x.safetensors").string(), {{"a", torch::ones({1})}});
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Io);
  }
  EXPECT_EQ(list_dir(d), std::vector<std::string>{"w.safetensors"});
}

TEST(SafetensorsFuzz, MutationsOnlyEverThrowFinepurifyError) {
  const fs::path d = fp_test::temp_dir("st-fuzz");
  const std::string path = (d / "seed.safetensors").string();
  write_safetensors(path,
                    {{"emb", torch::randn({4, 3})},
                     {"ids", torch::arange(6, torch::kLong)},
                     {"h", torch::ones({2}, torch::kHalf)},
                     {"mask", torch::tensor({true, false})},
                     {"none", torch::zeros({0})}},
                    {{"k", "v"}});
  const std::string seed_text = fp_test::read_file(path);
  const Bytes seed(seed_text.begin(), seed_text.end());
  uint64_t header_end = 0;
  for (int i = 7; i >= 0; --i) header_end = (header_end << 8) | seed[i];
  header_end += 8;

  std::mt19937_64 rng(20240601);
  int accepted = 0, rejected = 0;
  for (int iter = 0; iter < 2000; ++iter) {
    Bytes b = seed;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !b.empty(); ++e) {
      // Mostly aim at the length and header, where the parser's decisions are.
      const std::size_t limit = rng() % 4 ? std::min<std::size_t>(header_end, b.size()) : b.size();
      const std::size_t pos = rng() % limit;
      switch (rng() % 6) {
        case 0: b[pos] ^= static_cast<uint8_t>(1u << (rng() % 8)); break;
        case 1: b[pos] = static_cast<uint8_t>(rng()); break;
        case 2: b.resize(pos); break;
        case 3: b.erase(b.begin() + static_cast<std::ptrdiff_t>(pos)); break;
        case 4: b.insert(b.begin() + static_cast<std::ptrdiff_t>(pos), static_cast<uint8_t>(rng())); break;
        case 5: {  // a JSON-significant character
          static const char kChars[] = "{}[]\",:0123456789-. e";
          b[pos] = static_cast<uint8_t>(kChars[rng() % (sizeof kChars - 1)]);
          break;
        }
      }
    }
    try {
      SafetensorsView v(b.data(), b.size(), "fuzz");
      ++accepted;
      // Whatever was accepted must lie in bounds and be readable as tensors.
      fp_test::write_file(d / "m.safetensors", std::string(b.begin(), b.end()));
      SafetensorsFile f((d / "m.safetensors").string());
      for (const auto& t : v.tensors()) {
        ASSERT_GE(v.tensor_data(t), b.data() + 8);
        ASSERT_LE(v.tensor_data(t) + (t.end - t.begin), b.data() + b.size());
        try {
          const torch::Tensor x = f.tensor(t.name);
          EXPECT_EQ(x.numel(), t.numel());
        } catch (const Error& e) {
          EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument) << e.what();  // a dtype libtorch lacks
        }
      }
    } catch (const Error&) {
      ++rejected;
    } catch (const std::exception& e) {
      FAIL() << "mutation " << iter << " threw a non-finepurify exception: " << e.what();
    } catch (...) {
      FAIL() << "mutation " << iter << " threw an unknown exception";
    }
  }
  EXPECT_EQ(accepted + rejected, 2000);
  EXPECT_GT(rejected, 1000);
  std::printf("fuzz: %d accepted, %d rejected\n", accepted, rejected);
}

// Reading a tensor drops the mapped pages it was copied from (in 8 MiB slices): a second read of the
// same tensor, and of its neighbour sharing a page with it, still gives the stored bytes.
TEST(SafetensorsFileTest, ReadsAgainAfterItsPagesLeftTheResidentSet) {
  const auto d = fp_test::temp_dir("st-reread");
  const auto path = (d / "m.safetensors").string();
  torch::manual_seed(1);
  auto big = torch::randn({5 * 1024 * 1024 + 3});  // 20 MiB + 12 bytes: three slices, unaligned end
  auto small = torch::randn({7});
  write_safetensors(path, {{"big", big}, {"small", small}});
  SafetensorsFile f(path);
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(torch::equal(f.tensor("big"), big));
    EXPECT_TRUE(torch::equal(f.tensor("small"), small));
  }
}
