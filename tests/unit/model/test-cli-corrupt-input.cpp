// Corrupt inputs through the `finepurify` binary, grouped by kind (safetensors, shards, config,
// checkpoint/config pairing, tokenizer, dataset): each case copies a good tiny model folder, breaks
// one thing, runs `finetune` into a fresh output path and checks the exit code of the kind, one
// "error [kind]: ..." line naming the file / tensor / field, no output folder (nor any temporary)
// left behind, and every input file unchanged.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "finepurify/model/loader.hpp"
#include "finepurify/util/runtime.hpp"
#include "fp_tiny.hpp"

using namespace finepurify;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

/// A good tiny classifier folder (weights, config, WordPiece vocab) and a good training file.
struct Good {
  fs::path dir, model, data;
};

const Good& good() {
  static Good g = [] {
    Good g;
    g.dir = fp_test::temp_dir("corrupt");
    g.model = g.dir / "good";
    fp_test::write_tiny_cli_model(g.model, fp_test::tiny_config(), 1);
    g.data = g.dir / "train.tsv";
    fp_test::write_file(g.data, "label\ttext\n1\tgood movie\n0\tbad film\n1\tgreat film\n0\tawful movie\n");
    return g;
  }();
  return g;
}

// ---- safetensors surgery: [u64 little-endian header length][header JSON][data] ----
struct StFile {
  json header;
  std::string data;
};
StFile read_st(const fs::path& p) {
  const std::string b = fp_test::read_file(p);
  uint64_t n = 0;
  std::memcpy(&n, b.data(), 8);
  return {json::parse(b.substr(8, n)), b.substr(8 + n)};
}
void write_raw(const fs::path& p, const std::string& header, const std::string& data, uint64_t len_override = 0) {
  const uint64_t n = len_override ? len_override : header.size();
  std::string b(8, '\0');
  std::memcpy(b.data(), &n, 8);
  fp_test::write_file(p, b + header + data);
}
void write_st(const fs::path& p, const StFile& f) { write_raw(p, f.header.dump(), f.data); }
/// The name of the first tensor of the header (not "__metadata__") whose name contains `part`.
std::string tensor_named(const json& h, const std::string& part) {
  for (auto it = h.begin(); it != h.end(); ++it)
    if (it.key() != "__metadata__" && it.key().find(part) != std::string::npos) return it.key();
  throw std::runtime_error("no tensor named like " + part);
}
/// Removes a tensor and its bytes, shifting the offsets of the tensors stored after it.
void drop_tensor(StFile& f, const std::string& name) {
  const uint64_t b = f.header[name]["data_offsets"][0], e = f.header[name]["data_offsets"][1];
  f.data.erase(b, e - b);
  f.header.erase(name);
  for (auto it = f.header.begin(); it != f.header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    auto& o = it.value()["data_offsets"];
    if (o[0].get<uint64_t>() >= e) o = {o[0].get<uint64_t>() - (e - b), o[1].get<uint64_t>() - (e - b)};
  }
}
void edit_st(const fs::path& folder, const std::function<void(StFile&)>& f) {
  auto st = read_st(folder / "model.safetensors");
  f(st);
  write_st(folder / "model.safetensors", st);
}
void edit_config(const fs::path& folder, const std::function<void(json&)>& f) {
  auto j = json::parse(fp_test::read_file(folder / "config.json"));
  f(j);
  fp_test::write_file(folder / "config.json", j.dump(2));
}

/// Path -> bytes of every regular file under `root` (the inputs a run must leave alone).
std::map<std::string, std::string> contents(const fs::path& root) {
  std::map<std::string, std::string> m;
  for (auto& e : fs::recursive_directory_iterator(root))
    if (e.is_regular_file()) m[fs::relative(e.path(), root).string()] = fp_test::read_file(e.path());
  return m;
}

enum class Breaks { Model, Data };

struct Case {
  const char* name;
  Breaks what;
  std::function<void(const fs::path& target)> corrupt;  ///< the model folder's copy, or the data file
  const char* kind;                                    ///< error_kind_name printed by the CLI
  int exit_code;
  const char* needle;                                  ///< what the message must name
  const char* extra = "";                              ///< extra global options (before the subcommand)
};

std::ostream& operator<<(std::ostream& os, const Case& c) { return os << c.name; }

const std::vector<Case>& cases() {
  static const std::vector<Case> v = {
      // --- safetensors: one kind per validation rule, through the whole CLI ---
      {"StHeaderTooSmall", Breaks::Model, [](auto& d) { fp_test::write_file(d / "model.safetensors", "abc"); },
       "safetensors.header_too_small", 4, "model.safetensors"},
      {"StHeaderTooLarge", Breaks::Model,
       [](auto& d) { write_raw(d / "model.safetensors", "{}", "", uint64_t{1} << 40); },
       "safetensors.header_too_large", 4, "model.safetensors"},
      {"StInvalidHeaderLength", Breaks::Model,
       [](auto& d) {
         auto st = read_st(d / "model.safetensors");
         write_raw(d / "model.safetensors", st.header.dump(), "", st.header.dump().size() + 1000);
       },
       "safetensors.invalid_header_length", 4, "model.safetensors"},
      {"StInvalidHeaderStart", Breaks::Model, [](auto& d) { write_raw(d / "model.safetensors", "[1, 2]  ", ""); },
       "safetensors.invalid_header_start", 4, "model.safetensors"},
      {"StInvalidHeaderUtf8", Breaks::Model, [](auto& d) { write_raw(d / "model.safetensors", "{\"\xff\xfe\": 1}", ""); },
       "safetensors.invalid_header_utf8", 4, "model.safetensors"},
      {"StInvalidHeaderJson", Breaks::Model, [](auto& d) { write_raw(d / "model.safetensors", "{\"a\": [1, ", ""); },
       "safetensors.invalid_header_json", 4, "model.safetensors"},
      {"StUnknownDtype", Breaks::Model,
       [](auto& d) { edit_st(d, [](StFile& f) { f.header[tensor_named(f.header, "word_embeddings")]["dtype"] = "F33"; }); },
       "safetensors.unknown_dtype", 4, "F33"},
      {"StDuplicateTensor", Breaks::Model,
       [](auto& d) {
         auto st = read_st(d / "model.safetensors");
         const std::string k = tensor_named(st.header, "word_embeddings");
         std::string h = st.header.dump();
         h.insert(h.size() - 1, ",\"" + k + "\":" + st.header[k].dump());  // the same key twice
         write_raw(d / "model.safetensors", h, st.data);
       },
       "safetensors.duplicate_tensor", 4, "word_embeddings"},
      {"StInvalidOffsets", Breaks::Model,
       [](auto& d) {
         edit_st(d, [](StFile& f) {
           auto& t = f.header[tensor_named(f.header, "word_embeddings")]["data_offsets"];
           t = json::array({t[1].get<uint64_t>(), t[0].get<uint64_t>()});  // begin > end
         });
       },
       "safetensors.invalid_offsets", 4, "word_embeddings"},
      {"StDataSizeMismatch", Breaks::Model,
       [](auto& d) {
         edit_st(d, [](StFile& f) { f.header[tensor_named(f.header, "word_embeddings")]["shape"] = json::array({3, 3}); });
       },
       "safetensors.data_size_mismatch", 4, "word_embeddings"},
      {"StOverflow", Breaks::Model,
       [](auto& d) {
         edit_st(d, [](StFile& f) {
           f.header[tensor_named(f.header, "word_embeddings")]["shape"] = json::array({uint64_t{1} << 62, uint64_t{1} << 62});
         });
       },
       "safetensors.overflow", 4, "word_embeddings"},
      {"StMetadataIncompleteBuffer", Breaks::Model,
       [](auto& d) { edit_st(d, [](StFile& f) { f.data += std::string(64, '\0'); }); },
       "safetensors.metadata_incomplete_buffer", 4, "model.safetensors"},
      {"TruncatedData", Breaks::Model,
       [](auto& d) { edit_st(d, [](StFile& f) { f.data.resize(f.data.size() / 2); }); },
       "safetensors.metadata_incomplete_buffer", 4, "model.safetensors"},
      // --- checkpoint folders ---
      {"PickleOnly", Breaks::Model,
       [](auto& d) {
         fs::remove(d / "model.safetensors");
         fp_test::write_file(d / "pytorch_model.bin", "not a pickle, never opened");
       },
       "checkpoint.pickle_refused", 4, "pytorch_model"},
      {"NoWeights", Breaks::Model, [](auto& d) { fs::remove(d / "model.safetensors"); }, "io", 3, "corrupt"},
      {"ShardIndexNamesAMissingShard", Breaks::Model,
       [](auto& d) {
         auto st = read_st(d / "model.safetensors");
         json wm = json::object();
         for (auto it = st.header.begin(); it != st.header.end(); ++it)
           if (it.key() != "__metadata__") wm[it.key()] = "model-00001-of-00002.safetensors";
         fs::remove(d / "model.safetensors");
         fp_test::write_file(d / "model.safetensors.index.json", json{{"metadata", json::object()}, {"weight_map", wm}}.dump());
       },
       "checkpoint.shard_index_invalid", 4, "model-00001-of-00002.safetensors"},
      {"ShardIndexNotJson", Breaks::Model,
       [](auto& d) {
         fs::remove(d / "model.safetensors");
         fp_test::write_file(d / "model.safetensors.index.json", "{\"weight_map\": ");
       },
       "checkpoint.shard_index_invalid", 4, "model.safetensors.index.json"},
      // --- config.json ---
      {"ConfigMissing", Breaks::Model, [](auto& d) { fs::remove(d / "config.json"); }, "io", 3, "config.json"},
      {"ConfigNotJson", Breaks::Model, [](auto& d) { fp_test::write_file(d / "config.json", "{\"hidden_size\": 16,"); },
       "config.invalid", 5, "config.json"},
      {"ConfigSizeOutOfRange", Breaks::Model, [](auto& d) { edit_config(d, [](json& j) { j["hidden_size"] = 1e30; }); },
       "config.invalid", 5, "hidden_size"},
      {"ConfigSizeNotAnInteger", Breaks::Model,
       [](auto& d) { edit_config(d, [](json& j) { j["intermediate_size"] = 32.5; }); }, "config.invalid", 5,
       "intermediate_size"},
      {"ConfigSizeAString", Breaks::Model, [](auto& d) { edit_config(d, [](json& j) { j["num_hidden_layers"] = "2"; }); },
       "config.invalid", 5, "num_hidden_layers"},
      {"ConfigProbabilityOutOfRange", Breaks::Model,
       [](auto& d) { edit_config(d, [](json& j) { j["hidden_dropout_prob"] = 5; }); }, "config.invalid", 5,
       "hidden_dropout_prob"},
      {"ConfigHeadsDoNotDivide", Breaks::Model,
       [](auto& d) { edit_config(d, [](json& j) { j["num_attention_heads"] = 3; }); }, "config.invalid", 5,
       "num_attention_heads"},
      {"ConfigTooManyLabels", Breaks::Model,  // found by fuzz_config (a timeout: a million-label head)
       [](auto& d) { edit_config(d, [](json& j) { j.erase("id2label"); j.erase("label2id"); j["num_labels"] = 907382; }); },
       "config.invalid", 5, "num_labels"},
      {"ConfigUnsupportedModelType", Breaks::Model, [](auto& d) { edit_config(d, [](json& j) { j["model_type"] = "gpt2"; }); },
       "config.unsupported_model", 5, "gpt2"},
      // --- a config that does not describe its checkpoint: refused before the model is allocated ---
      {"ConfigVocabLargerThanCheckpoint", Breaks::Model,
       [](auto& d) { edit_config(d, [](json& j) { j["vocab_size"] = 4000000; }); }, "checkpoint.mismatch", 4,
       "config.json implies [4000000, 16]"},
      {"ConfigFewerLayersThanCheckpoint", Breaks::Model,
       [](auto& d) { edit_config(d, [](json& j) { j["num_hidden_layers"] = 1; }); }, "checkpoint.mismatch", 4,
       "layer.1."},
      {"ConfigMoreLayersThanCheckpoint", Breaks::Model,
       [](auto& d) { edit_config(d, [](json& j) { j["num_hidden_layers"] = 3; }); }, "checkpoint.mismatch", 4,
       "layer.2."},
      // --- tensors ---
      {"TensorMissing", Breaks::Model,
       [](auto& d) { edit_st(d, [](StFile& f) { drop_tensor(f, tensor_named(f.header, "layer.0.output.dense.bias")); }); },
       "checkpoint.mismatch", 4, "layer.0.output.dense.bias"},
      {"TensorWrongShape", Breaks::Model,
       [](auto& d) {
         edit_st(d, [](StFile& f) {
           auto& t = f.header[tensor_named(f.header, "attention.self.query.weight")];
           t["shape"] = json::array({8, 32});  // same element count as [16, 16]
         });
       },
       "checkpoint.mismatch", 4, "query.weight"},
      {"TensorHoldsNaN", Breaks::Model,
       [](auto& d) {
         edit_st(d, [](StFile& f) {
           const auto b = f.header[tensor_named(f.header, "attention.self.key.weight")]["data_offsets"][0].get<uint64_t>();
           const float nan = std::numeric_limits<float>::quiet_NaN();
           std::memcpy(f.data.data() + b, &nan, 4);
         });
       },
       "checkpoint.mismatch", 4, "key.weight"},
      {"TensorNotFloat", Breaks::Model,
       [](auto& d) {
         edit_st(d, [](StFile& f) { f.header[tensor_named(f.header, "attention.self.value.weight")]["dtype"] = "I32"; });
       },
       "checkpoint.mismatch", 4, "value.weight"},
      {"TwoTensorsForOneParameter", Breaks::Model,
       [](auto& d) {
         edit_st(d, [](StFile& f) {  // LayerNorm.gamma is transformers' old name of LayerNorm.weight
           const std::string w = tensor_named(f.header, "embeddings.LayerNorm.weight");
           json t = f.header[w];
           const uint64_t n = f.data.size(), b = t["data_offsets"][0], e = t["data_offsets"][1];
           f.data += f.data.substr(b, e - b);
           t["data_offsets"] = json::array({n, n + (e - b)});
           f.header[w.substr(0, w.size() - 6) + "gamma"] = t;
         });
       },
       "checkpoint.mismatch", 4, "LayerNorm.gamma"},
      {"UnknownTensorUnderStrict", Breaks::Model,
       [](auto& d) {
         edit_st(d, [](StFile& f) {
           const uint64_t n = f.data.size();
           f.header["stray.weight"] = {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {n, n + 8}}};
           f.data += std::string(8, '\0');
         });
       },
       "checkpoint.mismatch", 4, "stray.weight", "--strict"},
      // --- tokenizer files ---
      {"TokenizerMissing", Breaks::Model, [](auto& d) { fs::remove(d / "vocab.txt"); }, "tokenizer.invalid", 6, "vocab"},
      {"TokenizerIdsBeyondModelVocab", Breaks::Model,
       [](auto& d) {
         std::string v = fp_test::read_file(d / "vocab.txt");
         for (int i = 0; i < 10; ++i) v += "extra" + std::to_string(i) + "\n";
         fp_test::write_file(d / "vocab.txt", v);
       },
       "tokenizer.invalid", 6, "vocab_size"},
      {"TokenizerJsonMalformed", Breaks::Model,
       [](auto& d) {  // the only tokenizer file (beside a vocab.txt, a BERT folder reads vocab.txt)
         fs::remove(d / "vocab.txt");
         fp_test::write_file(d / "tokenizer.json", "{\"model\": {\"type\": \"WordPiece\", ");
       },
       "tokenizer.invalid", 6, "tokenizer.json"},
      // --- dataset files (line numbers named) ---
      {"DataLabelNotANumber", Breaks::Data,
       [](auto& f) { fp_test::write_file(f, "label\ttext\n1\tgood movie\nx\tbad film\n"); }, "data.invalid", 7,
       "train.tsv:3:"},
      {"DataNegativeLabel", Breaks::Data,
       [](auto& f) { fp_test::write_file(f, "label\ttext\n1\tgood movie\n-1\tbad film\n"); }, "data.invalid", 7,
       "train.tsv:3:"},
      {"DataMissingColumn", Breaks::Data,
       [](auto& f) { fp_test::write_file(f, "label\ttext\n1\tgood movie\n0\n"); }, "data.invalid", 7, "train.tsv:3:"},
      {"DataNoHeader", Breaks::Data, [](auto& f) { fp_test::write_file(f, "1\tgood movie\n0\tbad film\n"); },
       "data.invalid", 7, "train.tsv"},
      {"DataEmpty", Breaks::Data, [](auto& f) { fp_test::write_file(f, "label\ttext\n"); }, "data.invalid", 7,
       "train.tsv"},
  };
  return v;
}

class CorruptInput : public ::testing::TestWithParam<Case> {};

/// Copies the good inputs into a fresh folder, breaks the case's one, runs `command` (a function of
/// the model folder, the data file and the output path) and checks what every refusal must do.
void expect_refused(const Case& c, const std::string& tag,
                    const std::function<std::string(const fs::path&, const fs::path&, const fs::path&)>& command) {
  const Good& g = good();
  const fs::path work = fp_test::temp_dir("corrupt-" + tag + "-" + c.name);
  const fs::path model = work / "model", data = work / "train.tsv", out = work / "out";
  fs::copy(g.model, model, fs::copy_options::recursive);
  fs::copy_file(g.data, data);
  c.corrupt(c.what == Breaks::Model ? model : data);
  const auto before = contents(work);

  std::string o;
  const int rc = fp_test::run_command(fp_test::cli_path() + " -q --threads 1 " + c.extra + " " +
                                          command(model, data, out),
                                      &o);
  EXPECT_EQ(rc, c.exit_code) << o;
  // Exactly one error line, of the case's kind, naming what is wrong.
  std::istringstream lines(o);
  std::vector<std::string> errors;
  for (std::string l; std::getline(lines, l);)
    if (l.rfind("error", 0) == 0) errors.push_back(l);
  ASSERT_EQ(errors.size(), 1u) << o;
  EXPECT_EQ(errors[0].rfind(std::string("error [") + c.kind + "]: ", 0), 0u) << errors[0];
  EXPECT_NE(errors[0].find(c.needle), std::string::npos) << "the message should name " << c.needle << ": " << errors[0];
  EXPECT_EQ(o.find("Exception raised from"), std::string::npos) << o;  // no torch backtrace
  // Nothing written: no output folder, no temporary beside it, inputs byte for byte as they were.
  EXPECT_FALSE(fs::exists(out));
  EXPECT_EQ(contents(work), before);
  for (auto& e : fs::directory_iterator(work))
    EXPECT_TRUE(e.path() == model || e.path() == data) << "left behind: " << e.path();
}

// The broken folder as the model to fine-tune (base or trained: a missing head is initialised).
TEST_P(CorruptInput, FinetuneRefusesIt) {
  expect_refused(GetParam(), "finetune", [](const fs::path& model, const fs::path& data, const fs::path& out) {
    return "finetune --model " + model.string() + " --train " + data.string() + " --out " + out.string() +
           " --epochs 1 --batch-size 2 --max-length 16 --seed 1";
  });
}

// The broken folder as the suspect of `purify` (the attacker's file), the data as its clean set;
// the pre-trained model is the good folder.
TEST_P(CorruptInput, PurifyRefusesItAsTheSuspect) {
  expect_refused(GetParam(), "purify", [](const fs::path& model, const fs::path& data, const fs::path& out) {
    return "purify --pretrained " + good().model.string() + " --suspect " + model.string() + " --clean " +
           data.string() + " --out " + out.string() + " --epochs 1 --batch-size 2 --max-length 16 --seed 1 --reset-fraction 0.1";
  });
}

INSTANTIATE_TEST_SUITE_P(Kinds, CorruptInput, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& i) { return std::string(i.param.name); });

// The unknown tensor of UnknownTensorUnderStrict is only a warning without --strict: the run
// goes through and says which tensor it ignored.
TEST(CorruptInputControls, UnknownTensorWarnsWithoutStrict) {
  const Good& g = good();
  const fs::path work = fp_test::temp_dir("corrupt-warn");
  const fs::path model = work / "model", out = work / "out";
  fs::copy(g.model, model, fs::copy_options::recursive);
  edit_st(model, [](StFile& f) {
    const uint64_t n = f.data.size();
    f.header["stray.weight"] = {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {n, n + 8}}};
    f.data += std::string(8, '\0');
  });
  std::string o;
  const int rc = fp_test::run_command(fp_test::cli_path() + " --threads 1 finetune --model " + model.string() +
                                          " --train " + g.data.string() + " --out " + out.string() +
                                          " --epochs 1 --batch-size 2 --max-length 16 --seed 1",
                                      &o);
  EXPECT_EQ(rc, 0) << o;
  EXPECT_NE(o.find("warning"), std::string::npos) << o;
  EXPECT_NE(o.find("stray.weight"), std::string::npos) << o;
  EXPECT_TRUE(fs::exists(out / "model.safetensors"));
}

// The good folder itself trains: every failure above is the corruption's, not the fixture's.
TEST(CorruptInputControls, GoodInputsTrain) {
  const Good& g = good();
  const fs::path out = fp_test::temp_dir("corrupt-good") / "out";
  std::string o;
  EXPECT_EQ(fp_test::run_command(fp_test::cli_path() + " -q --threads 1 --strict finetune --model " + g.model.string() +
                                     " --train " + g.data.string() + " --out " + out.string() +
                                     " --epochs 1 --batch-size 2 --max-length 16 --seed 1",
                                 &o),
            0)
      << o;
  EXPECT_TRUE(fs::exists(out / "model.safetensors"));
}

}  // namespace
