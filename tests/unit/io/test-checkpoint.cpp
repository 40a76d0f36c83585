// Unit tests of checkpoint folders: single and sharded safetensors, every shard-index error,
// the pickle refusal, and the atomic text / tokenizer-file helpers.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "finepurify/error.hpp"
#include "finepurify/io/checkpoint.hpp"
#include "finepurify/io/safetensors.hpp"
#include "fp_test.hpp"

namespace fs = std::filesystem;
using finepurify::Error;
using finepurify::ErrorKind;
using namespace finepurify::io;

namespace {

std::vector<std::string> list_dir(const fs::path& d) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(d)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

/// Constructs a reader on `path`, expecting `kind`; returns the message.
std::string expect_error(const fs::path& path, ErrorKind kind) {
  try {
    CheckpointReader r(path.string());
    ADD_FAILURE() << "no error for " << path;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    return e.what();
  }
  return {};
}

/// A folder with two shards: a.safetensors {x, y}, b.safetensors {z}.
fs::path sharded_folder(const std::string& tag) {
  const fs::path d = fp_test::temp_dir(tag);
  write_safetensors((d / "a.safetensors").string(),
                    {{"x", torch::arange(4, torch::kFloat)}, {"y", torch::ones({2, 2}, torch::kLong)}},
                    {{"shard", "a"}});
  write_safetensors((d / "b.safetensors").string(), {{"z", torch::full({3}, 7.0)}});
  return d;
}

void write_index(const fs::path& d, const std::string& weight_map) {
  fp_test::write_file(d / "model.safetensors.index.json",
                      R"({"metadata":{"total_size":64},"weight_map":)" + weight_map + "}");
}

const std::string kGoodMap = R"({"x":"a.safetensors","y":"a.safetensors","z":"b.safetensors"})";

}  // namespace

TEST(Checkpoint, SingleFileFolder) {
  const fs::path d = fp_test::temp_dir("ck-single");
  write_safetensors((d / "model.safetensors").string(),
                    {{"w", torch::eye(3)}, {"b", torch::zeros({3}, torch::kHalf)}}, {{"k", "v"}});
  fp_test::write_file(d / "pytorch_model.bin", "pickle would be ignored");  // safetensors wins
  CheckpointReader r(d.string());
  EXPECT_EQ(r.names(), (std::vector<std::string>{"b", "w"}));
  EXPECT_TRUE(r.contains("w"));
  EXPECT_FALSE(r.contains("q"));
  EXPECT_EQ(r.shape("w"), (std::vector<int64_t>{3, 3}));
  EXPECT_TRUE(torch::equal(r.tensor("w"), torch::eye(3)));
  EXPECT_EQ(r.tensor("b").scalar_type(), torch::kHalf);
  EXPECT_EQ(r.metadata().at("k"), "v");
  EXPECT_EQ(r.metadata().at("format"), "pt");
  EXPECT_EQ(r.files(), std::vector<std::string>{(d / "model.safetensors").string()});
  try {
    r.tensor("q");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::StTensorNotFound);
    EXPECT_NE(std::string(e.what()).find("\"q\""), std::string::npos);
  }
  try {
    r.shape("q");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::StTensorNotFound);
  }
}

TEST(Checkpoint, DirectSafetensorsFile) {
  const fs::path d = fp_test::temp_dir("ck-direct");
  write_safetensors((d / "weights.safetensors").string(), {{"w", torch::ones({2})}});
  CheckpointReader r((d / "weights.safetensors").string());
  EXPECT_EQ(r.names(), std::vector<std::string>{"w"});
}

TEST(Checkpoint, CorruptSingleFileKeepsItsKind) {
  const fs::path d = fp_test::temp_dir("ck-corrupt");
  fp_test::write_file(d / "model.safetensors", "abc");
  expect_error(d, ErrorKind::StHeaderTooSmall);
}

TEST(Checkpoint, ShardedFolder) {
  const fs::path d = sharded_folder("ck-sharded");
  write_index(d, kGoodMap);
  CheckpointReader r(d.string());
  EXPECT_EQ(r.names(), (std::vector<std::string>{"x", "y", "z"}));
  EXPECT_TRUE(torch::equal(r.tensor("x"), torch::arange(4, torch::kFloat)));
  EXPECT_TRUE(torch::equal(r.tensor("z"), torch::full({3}, 7.0)));
  EXPECT_EQ(r.shape("y"), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(r.files().size(), 2u);
  EXPECT_EQ(r.metadata().at("shard"), "a");
}

TEST(Checkpoint, ShardIndexErrors) {
  const fs::path d = sharded_folder("ck-index-errors");
  write_safetensors((d / "c.safetensors").string(), {{"z", torch::zeros({1})}});  // z again
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"x":"a.safetensors")", "invalid JSON"},
      {R"([])", "\"weight_map\" object"},
      {R"({})", "weight_map is empty"},
      {R"({"x":"a.safetensors","y":"a.safetensors","z":3})", "must be a file name"},
      {R"({"x":"a.safetensors","y":"a.safetensors","z":"sub/b.safetensors"})", "not a plain file name"},
      {R"({"x":"a.safetensors","y":"a.safetensors","z":"../b.safetensors"})", "not a plain file name"},
      {R"({"x":"a.safetensors","y":"a.safetensors","z":".."})", "not a plain file name"},
      {R"({"x":"a.safetensors","y":"a.safetensors","z":"/etc/passwd"})", "not a plain file name"},
      {R"({"x":"a.safetensors","y":"a.safetensors","z":""})", "not a plain file name"},
      {R"({"x":"a.safetensors","y":"a.safetensors","z":"missing.safetensors"})", "does not exist"},
      {R"({"x":"a.safetensors","y":"b.safetensors","z":"b.safetensors"})", "does not contain it"},
      {R"({"x":"a.safetensors","y":"a.safetensors","z":"b.safetensors","z":"b.safetensors"})",
       "\"z\" is listed twice"},
      {R"({"x":"a.safetensors","z":"b.safetensors"})", "weight_map does not list"},
      {R"({"x":"a.safetensors","y":"a.safetensors","z":"b.safetensors","q":"c.safetensors"})",
       "does not contain it"},
  };
  for (const auto& [map, expected] : cases) {
    SCOPED_TRACE(map);
    write_index(d, map);
    const std::string msg = expect_error(d, ErrorKind::ShardIndexInvalid);
    EXPECT_NE(msg.find("model.safetensors.index.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find(expected), std::string::npos) << msg;
  }
  // Two shards both holding "z".
  write_index(d, R"({"x":"a.safetensors","y":"a.safetensors","z":"b.safetensors","w":"c.safetensors"})");
  write_safetensors((d / "c.safetensors").string(), {{"w", torch::zeros({1})}, {"z", torch::zeros({1})}});
  const std::string msg = expect_error(d, ErrorKind::ShardIndexInvalid);
  EXPECT_NE(msg.find("\"z\" is in shard"), std::string::npos) << msg;
  // The root object twice-keyed is rejected as well.
  fp_test::write_file(d / "model.safetensors.index.json",
                      R"({"weight_map":{"x":"a.safetensors"},"weight_map":{"x":"a.safetensors"}})");
  expect_error(d, ErrorKind::ShardIndexInvalid);
}

TEST(Checkpoint, PickleRefused) {
  const fs::path d = fp_test::temp_dir("ck-pickle");
  fp_test::write_file(d / "config.json", "{}");
  fp_test::write_file(d / "pytorch_model.bin", "PK not really");
  const std::string msg = expect_error(d, ErrorKind::PickleRefused);
  EXPECT_NE(msg.find("pytorch_model.bin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("arbitrary code"), std::string::npos) << msg;
  EXPECT_NE(msg.find("safe_serialization=True"), std::string::npos) << msg;
  EXPECT_NE(msg.find("python -c"), std::string::npos) << msg;
  expect_error(d / "pytorch_model.bin", ErrorKind::PickleRefused);

  const fs::path s = fp_test::temp_dir("ck-pickle-sharded");
  fp_test::write_file(s / "pytorch_model.bin.index.json", R"({"weight_map":{}})");
  expect_error(s, ErrorKind::PickleRefused);
}

TEST(Checkpoint, NothingToRead) {
  const fs::path d = fp_test::temp_dir("ck-empty");
  fp_test::write_file(d / "training_args.bin", "not a model");
  std::string msg = expect_error(d, ErrorKind::Io);
  EXPECT_NE(msg.find(d.string()), std::string::npos) << msg;
  msg = expect_error(d / "absent", ErrorKind::Io);
  EXPECT_NE(msg.find("absent"), std::string::npos) << msg;
}

TEST(Checkpoint, WriteTextAtomic) {
  const fs::path d = fp_test::temp_dir("ck-text");
  const fs::path p = d / "config.json";
  write_text_atomic(p.string(), "first");
  write_text_atomic(p.string(), std::string("se\0cond", 7));
  EXPECT_EQ(fp_test::read_file(p), std::string("se\0cond", 7));
  EXPECT_EQ(list_dir(d), std::vector<std::string>{"config.json"});
  try {
    write_text_atomic((d / "missing" / "x.json").string(), "x");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Io);
    EXPECT_NE(std::string(e.what()).find("x.json"), std::string::npos);
  }
  EXPECT_EQ(list_dir(d), std::vector<std::string>{"config.json"});
}

TEST(Checkpoint, CopyTokenizerFiles) {
  const fs::path from = fp_test::temp_dir("ck-tok-from");
  const fs::path to = fp_test::temp_dir("ck-tok-to") / "out";
  fp_test::write_file(from / "vocab.txt", "[PAD]\n[UNK]\n");
  fp_test::write_file(from / "tokenizer_config.json", R"({"do_lower_case":true})");
  fp_test::write_file(from / "special_tokens_map.json", "{}");
  fp_test::write_file(from / "config.json", "{}");
  fp_test::write_file(from / "model.safetensors", "x");
  copy_tokenizer_files(from.string(), to.string());
  EXPECT_EQ(list_dir(to), (std::vector<std::string>{"special_tokens_map.json", "tokenizer_config.json", "vocab.txt"}));
  EXPECT_EQ(fp_test::read_file(to / "vocab.txt"), "[PAD]\n[UNK]\n");
  copy_tokenizer_files(from.string(), from.string());  // onto itself: unchanged
  EXPECT_EQ(fp_test::read_file(from / "vocab.txt"), "[PAD]\n[UNK]\n");
}
