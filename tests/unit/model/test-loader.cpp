// Unit tests of loading/saving HF classifier folders on tiny generated models (names, aliases, errors, atomicity).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>
#include <unistd.h>
#include <torch/torch.h>

#include "finepurify/error.hpp"
#include "finepurify/io/safetensors.hpp"
#include "finepurify/model/bert.hpp"
#include "finepurify/model/config.hpp"
#include "finepurify/model/dropout.hpp"
#include "finepurify/model/linear.hpp"
#include "finepurify/model/loader.hpp"
#include "fp_test.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace finepurify;

namespace {

json tiny_config_json(const std::string& type = "bert", int num_labels = 2) {
  json j = {{"model_type", type},
            {"vocab_size", 50},
            {"hidden_size", 16},
            {"num_hidden_layers", 2},
            {"num_attention_heads", 2},
            {"intermediate_size", 32},
            {"max_position_embeddings", type == "roberta" ? 34 : 32},
            {"type_vocab_size", type == "roberta" ? 1 : 2},
            {"initializer_range", 0.1},
            {"pad_token_id", type == "roberta" ? 1 : 0},
            {"layer_norm_eps", type == "roberta" ? 1e-5 : 1e-12},
            {"architectures", json::array({type == "roberta" ? "RobertaForSequenceClassification"
                                                            : "BertForSequenceClassification"})}};
  json id2label = json::object();
  for (int i = 0; i < num_labels; ++i) id2label[std::to_string(i)] = "LABEL_" + std::to_string(i);
  j["id2label"] = id2label;
  return j;
}

model::ModelConfig tiny_config(const std::string& type = "bert", int num_labels = 2) {
  return model::config_from_json(tiny_config_json(type, num_labels), "tiny");
}

/// Writes a folder with config.json and model.safetensors holding `tensors`.
fs::path write_folder(const fs::path& dir, const json& config,
                      const std::vector<std::pair<std::string, torch::Tensor>>& tensors) {
  fs::create_directories(dir);
  fp_test::write_file(dir / "config.json", config.dump(2));
  io::write_safetensors((dir / "model.safetensors").string(), tensors);
  return dir;
}

std::vector<std::pair<std::string, torch::Tensor>> tensors_of(model::SequenceClassifierImpl& m) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (auto& [n, t] : model::named_tensors(m)) out.emplace_back(n, t.clone());
  return out;
}

struct Inputs {
  torch::Tensor ids, types, mask;
};

Inputs sample_inputs(int64_t pad) {
  // two rows, the second right-padded
  const int p = static_cast<int>(pad);
  auto ids = torch::tensor({{2, 7, 8, 9, 10, 3}, {2, 11, 12, 3, p, p}}, torch::kLong);
  auto types = torch::zeros_like(ids);
  auto mask = ids.ne(pad).to(torch::kLong);
  mask[0].fill_(1);
  return {ids, types, mask};
}

torch::Tensor logits_of(model::SequenceClassifierImpl& m, const Inputs& in) {
  torch::NoGradGuard ng;
  m.eval();
  return m.forward(in.ids, in.types, in.mask).logits;
}

ErrorKind kind_of(const std::function<void()>& f, std::string* msg = nullptr) {
  try {
    f();
  } catch (const Error& e) {
    if (msg) *msg = e.what();
    return e.kind();
  }
  ADD_FAILURE() << "no error thrown";
  return ErrorKind::Internal;
}

TEST(Loader, SaveLoadRoundTripIsExact) {
  for (std::string type : {"bert", "roberta"}) {
    auto cfg = tiny_config(type, 3);
    model::set_num_labels(cfg, 3, {"neg", "neu", "pos"});
    auto m = model::make_random_classifier(cfg, 123);
    auto out = fp_test::temp_dir("rt") / "model";
    model::save_classifier(*m, out.string(), "", {{"manifest.json", "{}\n"}});
    ASSERT_TRUE(fs::exists(out / "model.safetensors"));
    ASSERT_TRUE(fs::exists(out / "config.json"));
    ASSERT_TRUE(fs::exists(out / "manifest.json"));

    model::LoadOptions lo;
    lo.allow_missing_head = false;
    auto lm = model::load_classifier(out.string(), lo);
    EXPECT_TRUE(lm.report.initialised.empty());
    EXPECT_TRUE(lm.report.unused.empty());
    EXPECT_EQ(lm.config.id2label, (std::vector<std::string>{"neg", "neu", "pos"}));
    auto a = model::snapshot(*m), b = model::snapshot(*lm.model);
    ASSERT_EQ(a.size(), b.size());
    for (auto& [n, t] : a) {
      ASSERT_TRUE(b.count(n)) << n;
      EXPECT_TRUE(torch::equal(t, b.at(n))) << type << " " << n;
    }
    auto in = sample_inputs(cfg.pad_token_id);
    EXPECT_TRUE(torch::equal(logits_of(*m, in), logits_of(*lm.model, in))) << type;

    // config.json: the classifier architecture and labels via id2label/label2id
    auto cj = json::parse(fp_test::read_file(out / "config.json"));
    EXPECT_EQ(cj["architectures"], json::array({cfg.classifier_architecture()}));
    EXPECT_EQ(cj["model_type"], type);
    EXPECT_EQ(cj["id2label"], (json{{"0", "neg"}, {"1", "neu"}, {"2", "pos"}}));
    EXPECT_EQ(cj["label2id"], (json{{"neg", 0}, {"neu", 1}, {"pos", 2}}));
    EXPECT_FALSE(cj.contains("num_labels"));
    // safetensors: format=pt metadata, keys exactly named_parameters(), float32
    io::SafetensorsFile st((out / "model.safetensors").string());
    ASSERT_TRUE(st.view().metadata().count("format"));
    EXPECT_EQ(st.view().metadata().at("format"), "pt");
    EXPECT_EQ(st.view().tensors().size(), a.size());
    for (auto& t : st.view().tensors()) {
      EXPECT_TRUE(a.count(t.name)) << t.name;
      EXPECT_EQ(t.dtype, io::Dtype::F32) << t.name;
    }
    // snapshot/restore round trip
    auto snap = model::snapshot(*m);
    {
      torch::NoGradGuard ng;
      for (auto& p : m->parameters()) p.add_(1.0);
    }
    model::restore(*m, snap);
    EXPECT_TRUE(torch::equal(logits_of(*m, in), logits_of(*lm.model, in)));
  }
}

TEST(Loader, HeadNamesAndLayerIndex) {
  auto m = model::make_random_classifier(tiny_config("bert"), 1);
  auto h = model::head_parameter_names(*m);
  EXPECT_EQ(h, (std::vector<std::string>{"bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight",
                                         "classifier.bias"}));
  auto r = model::make_random_classifier(tiny_config("roberta"), 1);
  EXPECT_EQ(model::head_parameter_names(*r),
            (std::vector<std::string>{"classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight",
                                      "classifier.out_proj.bias"}));
  EXPECT_EQ(model::layer_of("bert.encoder.layer.1.output.dense.weight", 2), 1);
  EXPECT_EQ(model::layer_of("roberta.embeddings.word_embeddings.weight", 2), -1);
  EXPECT_EQ(model::layer_of("classifier.out_proj.bias", 2), 2);
  EXPECT_EQ(m->word_embedding_name(), "bert.embeddings.word_embeddings.weight");
}

TEST(Loader, BaseCheckpointWithoutPrefixAndAliasesLoads) {
  auto cfg = tiny_config("bert");
  auto ref = model::make_random_classifier(cfg, 5);
  std::vector<std::pair<std::string, torch::Tensor>> ts;
  std::map<std::string, std::string> model_name_of;  // ckpt name -> model name
  for (auto& [n, t] : tensors_of(*ref)) {
    if (n.rfind("classifier.", 0) == 0 || n.find(".pooler.") != std::string::npos) continue;  // a base model
    std::string k = n.substr(std::string("bert.").size());                                   // embeddings.* encoder.*
    if (k.size() > 16 && k.compare(k.size() - 16, 16, "LayerNorm.weight") == 0) k = k.substr(0, k.size() - 6) + "gamma";
    else if (k.size() > 14 && k.compare(k.size() - 14, 14, "LayerNorm.bias") == 0) k = k.substr(0, k.size() - 4) + "beta";
    model_name_of[k] = n;
    ts.emplace_back(k, t);
  }
  ts.emplace_back("embeddings.position_ids", torch::arange(32, torch::kLong).unsqueeze(0));
  json cj = tiny_config_json("bert");
  cj["architectures"] = json::array({"BertModel"});
  cj.erase("id2label");
  auto dir = write_folder(fp_test::temp_dir("base") / "base", cj, ts);

  EXPECT_EQ(model::canonical_name("encoder.layer.0.output.LayerNorm.gamma", cfg),
            "bert.encoder.layer.0.output.LayerNorm.weight");
  EXPECT_EQ(model::canonical_name("embeddings.LayerNorm.beta", cfg), "bert.embeddings.LayerNorm.bias");
  EXPECT_EQ(model::canonical_name("bert.embeddings.position_ids", cfg), "");

  // without a head allowed, it is refused
  model::LoadOptions strict;
  strict.allow_missing_head = false;
  EXPECT_EQ(kind_of([&] { model::load_classifier(dir.string(), strict); }), ErrorKind::CheckpointMismatch);

  model::LoadOptions lo;
  lo.num_labels = 2;
  auto lm = model::load_classifier(dir.string(), lo);
  EXPECT_EQ(lm.report.initialised, (std::vector<std::string>{"bert.pooler.dense.weight", "bert.pooler.dense.bias",
                                                             "classifier.weight", "classifier.bias"}));
  EXPECT_TRUE(lm.report.unused.empty()) << lm.report.summary();
  EXPECT_EQ(lm.report.ignored, std::vector<std::string>{"embeddings.position_ids"});
  EXPECT_EQ(lm.report.loaded.size(), ts.size() - 1);
  auto got = model::snapshot(*lm.model), want = model::snapshot(*ref);
  for (auto& [k, n] : model_name_of) EXPECT_TRUE(torch::equal(got.at(n), want.at(n))) << k << " -> " << n;
  // the fresh head is HF-initialised: zero biases
  EXPECT_EQ(got.at("classifier.bias").abs().max().item<double>(), 0.0);
}

TEST(Loader, PositionIdsBufferIgnored) {
  auto cfg = tiny_config("bert");
  auto ref = model::make_random_classifier(cfg, 6);
  auto ts = tensors_of(*ref);
  ts.emplace_back("bert.embeddings.position_ids", torch::arange(32, torch::kLong).unsqueeze(0));
  auto dir = write_folder(fp_test::temp_dir("pos") / "m", tiny_config_json("bert"), ts);
  model::LoadOptions lo;
  lo.allow_missing_head = false;
  auto lm = model::load_classifier(dir.string(), lo);
  EXPECT_EQ(lm.report.ignored, std::vector<std::string>{"bert.embeddings.position_ids"});
  EXPECT_TRUE(lm.report.unused.empty());
  auto in = sample_inputs(0);
  EXPECT_TRUE(torch::equal(logits_of(*ref, in), logits_of(*lm.model, in)));
}

TEST(Loader, UnknownEncoderTensorIsRefused) {
  // Inside the encoder's namespace every tensor must be one the model has (the outside is reported:
  // ConfigMustDescribeTheWholeCheckpoint).
  auto ref = model::make_random_classifier(tiny_config("bert"), 6);
  auto ts = tensors_of(*ref);
  ts.emplace_back("bert.something_else.weight", torch::ones({3}));
  auto dir = write_folder(fp_test::temp_dir("unused") / "m", tiny_config_json("bert"), ts);
  std::string msg;
  EXPECT_EQ(kind_of([&] { model::load_classifier(dir.string()); }, &msg), ErrorKind::CheckpointMismatch);
  EXPECT_NE(msg.find("'bert.something_else.weight'"), std::string::npos) << msg;
}

TEST(Loader, WrongShapeNamesTheTensor) {
  auto ref = model::make_random_classifier(tiny_config("bert"), 7);
  auto ts = tensors_of(*ref);
  for (auto& [n, t] : ts)
    if (n == "bert.encoder.layer.1.attention.self.query.weight") t = torch::zeros({16, 15});
  auto dir = write_folder(fp_test::temp_dir("shape") / "m", tiny_config_json("bert"), ts);
  std::string msg;
  EXPECT_EQ(kind_of([&] { model::load_classifier(dir.string()); }, &msg), ErrorKind::CheckpointMismatch);
  EXPECT_NE(msg.find("bert.encoder.layer.1.attention.self.query.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("16, 15"), std::string::npos) << msg;

  // a head with another label count is a mismatch too (unless a new head is asked for)
  auto ts3 = tensors_of(*ref);
  auto dir3 = write_folder(fp_test::temp_dir("shape3") / "m", tiny_config_json("bert", 3), ts3);
  EXPECT_EQ(kind_of([&] { model::load_classifier(dir3.string(), {}); }, &msg), ErrorKind::CheckpointMismatch);
  EXPECT_NE(msg.find("classifier.weight"), std::string::npos) << msg;
}

TEST(Loader, ExplicitNewLabelCountStartsNewHead) {
  for (std::string type : {"bert", "roberta"}) {
    auto ref = model::make_random_classifier(tiny_config(type, 2), 7);
    auto dir = write_folder(fp_test::temp_dir("relabel") / "m", tiny_config_json(type, 2), tensors_of(*ref));
    model::LoadOptions lo;
    lo.num_labels = 3;
    auto lm = model::load_classifier(dir.string(), lo);
    EXPECT_EQ(lm.config.num_labels(), 3);
    const std::string w = type == "bert" ? "classifier.weight" : "classifier.out_proj.weight";
    const std::string b = type == "bert" ? "classifier.bias" : "classifier.out_proj.bias";
    EXPECT_EQ(lm.report.initialised, (std::vector<std::string>{w, b})) << lm.report.summary();
    auto got = model::snapshot(*lm.model), want = model::snapshot(*ref);
    EXPECT_EQ(got.at(w).size(0), 3);
    for (auto& [n, t] : want)
      if (n != w && n != b) EXPECT_TRUE(torch::equal(got.at(n), t)) << n;
    // not allowed to start a head: still an error
    lo.allow_missing_head = false;
    EXPECT_EQ(kind_of([&] { model::load_classifier(dir.string(), lo); }), ErrorKind::CheckpointMismatch);
  }
}

TEST(Loader, MissingEncoderTensorIsAnError) {
  auto ref = model::make_random_classifier(tiny_config("roberta"), 8);
  auto ts = tensors_of(*ref);
  ts.erase(std::remove_if(ts.begin(), ts.end(),
                          [](auto& p) { return p.first == "roberta.encoder.layer.0.intermediate.dense.bias"; }),
           ts.end());
  auto dir = write_folder(fp_test::temp_dir("missing") / "m", tiny_config_json("roberta"), ts);
  std::string msg;
  EXPECT_EQ(kind_of([&] { model::load_classifier(dir.string()); }, &msg), ErrorKind::CheckpointMismatch);
  EXPECT_NE(msg.find("roberta.encoder.layer.0.intermediate.dense.bias"), std::string::npos) << msg;
}

TEST(Loader, UnsupportedConfigs) {
  auto ref = model::make_random_classifier(tiny_config("bert"), 9);
  auto ts = tensors_of(*ref);
  json gpt = tiny_config_json("bert");
  gpt["model_type"] = "gpt2";
  auto d1 = write_folder(fp_test::temp_dir("gpt") / "m", gpt, ts);
  std::string msg;
  EXPECT_EQ(kind_of([&] { model::load_classifier(d1.string()); }, &msg), ErrorKind::UnsupportedModel);
  EXPECT_NE(msg.find("gpt2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;

  json rel = tiny_config_json("bert");
  rel["position_embedding_type"] = "relative_key";
  auto d2 = write_folder(fp_test::temp_dir("rel") / "m", rel, ts);
  EXPECT_EQ(kind_of([&] { model::load_classifier(d2.string()); }, &msg), ErrorKind::UnsupportedModel);
  EXPECT_NE(msg.find("relative_key"), std::string::npos) << msg;

  json nomt = tiny_config_json("bert");
  nomt.erase("model_type");
  EXPECT_EQ(kind_of([&] { model::config_from_json(nomt, "x/config.json"); }), ErrorKind::ConfigInvalid);
  json badheads = tiny_config_json("bert");
  badheads["num_attention_heads"] = 3;
  EXPECT_EQ(kind_of([&] { model::config_from_json(badheads, "x/config.json"); }), ErrorKind::ConfigInvalid);
}

TEST(Config, NumbersAreRangeCheckedNeverCast) {
  // Each case: field, value, a word the message must hold. Before the range checks 1e30 was cast to
  // int64 (undefined; "got -9223372036854775808" in Release), 256.7 was truncated and a dropout of 5
  // reached torch.
  const std::vector<std::tuple<std::string, json, std::string>> bad = {
      {"hidden_size", 1e30, "integer in [1,"},
      {"hidden_size", 256.7, "must be an integer"},
      {"vocab_size", 2e6 * 1e6, "integer in [1,"},
      {"vocab_size", json::parse("18446744073709551615"), "integer in [1,"},
      {"num_hidden_layers", -2, "integer in [1,"},
      {"num_hidden_layers", "4", "wrong type"},
      {"pad_token_id", -1, "integer in [0,"},
      {"hidden_dropout_prob", 5, "[0, 1)"},
      {"attention_probs_dropout_prob", 1.0, "[0, 1)"},
      {"classifier_dropout", -0.1, "[0, 1)"},
      {"layer_norm_eps", 0, "layer_norm_eps"},
      {"num_labels", 0.5, "must be an integer"},
  };
  for (const auto& [key, value, word] : bad) {
    json j = tiny_config_json("bert");
    j[key] = value;
    if (key == "num_labels") j.erase("id2label");
    std::string msg;
    EXPECT_EQ(kind_of([&] { model::config_from_json(j, "x/config.json"); }, &msg), ErrorKind::ConfigInvalid)
        << key << " = " << value.dump();
    EXPECT_NE(msg.find("'" + key + "'"), std::string::npos) << msg;
    EXPECT_NE(msg.find(word), std::string::npos) << msg;
  }
  json ok = tiny_config_json("bert");
  ok["hidden_size"] = 32.0;  // an integral float is an integer
  ok["hidden_dropout_prob"] = 0.0;
  EXPECT_EQ(model::config_from_json(ok, "x/config.json").hidden_size, 32);
}

TEST(Loader, ConfigMustDescribeTheWholeCheckpoint) {
  auto ref = model::make_random_classifier(tiny_config("bert"), 11);
  auto ts = tensors_of(*ref);
  std::string msg;
  // Fewer layers in config.json than in the file: the extra layer is refused by name (it used to be
  // ignored, and the model predicted with exit 0).
  json fewer = tiny_config_json("bert");
  fewer["num_hidden_layers"] = 1;
  auto d1 = write_folder(fp_test::temp_dir("fewer") / "m", fewer, ts);
  EXPECT_EQ(kind_of([&] { model::load_classifier(d1.string()); }, &msg), ErrorKind::CheckpointMismatch);
  EXPECT_NE(msg.find("bert.encoder.layer.1."), std::string::npos) << msg;
  // More layers: the last one is missing, found from the header before the model is built.
  json more = tiny_config_json("bert");
  more["num_hidden_layers"] = 3;
  auto d2 = write_folder(fp_test::temp_dir("more") / "m", more, ts);
  EXPECT_EQ(kind_of([&] { model::load_classifier(d2.string()); }, &msg), ErrorKind::CheckpointMismatch);
  EXPECT_NE(msg.find("bert.encoder.layer.2."), std::string::npos) << msg;
  EXPECT_NE(msg.find("num_hidden_layers 3"), std::string::npos) << msg;
  // A vocabulary far larger than the file's: refused from the header, before gigabytes are allocated.
  json huge = tiny_config_json("bert");
  huge["vocab_size"] = 4000000;
  huge["hidden_size"] = 16;
  auto d3 = write_folder(fp_test::temp_dir("huge") / "m", huge, ts);
  EXPECT_EQ(kind_of([&] { model::load_classifier(d3.string()); }, &msg), ErrorKind::CheckpointMismatch);
  EXPECT_NE(msg.find("word_embeddings"), std::string::npos) << msg;
  EXPECT_NE(msg.find("config.json implies [4000000, 16]"), std::string::npos) << msg;
  // An unknown tensor outside the encoder (another task's head) loads and is reported.
  auto extra = ts;
  extra.emplace_back("qa_outputs.weight", torch::zeros({2, 16}));
  auto d4 = write_folder(fp_test::temp_dir("extra") / "m", tiny_config_json("bert"), extra);
  auto lm = model::load_classifier(d4.string());
  EXPECT_EQ(lm.report.unused, std::vector<std::string>{"qa_outputs.weight"});
  // A pooler RoBERTa's classifier has no use for is a documented ignorable.
  auto rref = model::make_random_classifier(tiny_config("roberta"), 12);
  auto rts = tensors_of(*rref);
  rts.emplace_back("roberta.pooler.dense.weight", torch::zeros({16, 16}));
  auto d5 = write_folder(fp_test::temp_dir("rpool") / "m", tiny_config_json("roberta"), rts);
  auto rlm = model::load_classifier(d5.string());
  EXPECT_TRUE(rlm.report.unused.empty());
  EXPECT_NE(std::find(rlm.report.ignored.begin(), rlm.report.ignored.end(), "roberta.pooler.dense.weight"),
            rlm.report.ignored.end());
}

TEST(Loader, SaveRemovesTemporariesOfDeadProcessesOnly) {
  // A kill -9 during a save left hidden `.NAME.tmp-*` folders that nothing removed (one held 45 MB).
  const pid_t child = fork();
  if (child == 0) _exit(0);
  ASSERT_GT(child, 0);
  waitpid(child, nullptr, 0);  // a pid that is certainly not running now
  auto root = fp_test::temp_dir("stale");
  auto dead_tmp = root / fmt::format(".m.tmp-{}-1f", child);
  auto live_tmp = root / fmt::format(".m.tmp-{}-2f", getpid());
  auto dead_old = root / fmt::format(".m.old-{}-3f", child);
  auto other = root / fmt::format(".n.tmp-{}-4f", child);
  for (auto& d : {dead_tmp, live_tmp, dead_old, other}) {
    fs::create_directories(d);
    fp_test::write_file(d / "model.safetensors", "partial");
  }
  auto m = model::make_random_classifier(tiny_config("bert"), 13);
  model::save_classifier(*m, (root / "m").string(), "");
  EXPECT_FALSE(fs::exists(dead_tmp));  // removed
  EXPECT_TRUE(fs::exists(live_tmp));   // a running save's
  EXPECT_TRUE(fs::exists(dead_old));   // earlier contents: reported, never deleted
  EXPECT_TRUE(fs::exists(other));      // another folder's
  EXPECT_TRUE(fs::exists(root / "m" / "model.safetensors"));
}

TEST(Loader, NanWeightsRejected) {
  auto ref = model::make_random_classifier(tiny_config("bert"), 10);
  auto ts = tensors_of(*ref);
  for (auto& [n, t] : ts)
    if (n == "bert.encoder.layer.0.output.dense.weight") t[3][4] = std::numeric_limits<float>::quiet_NaN();
  auto dir = write_folder(fp_test::temp_dir("nan") / "m", tiny_config_json("bert"), ts);
  std::string msg;
  EXPECT_EQ(kind_of([&] { model::load_classifier(dir.string()); }, &msg), ErrorKind::CheckpointMismatch);
  EXPECT_NE(msg.find("bert.encoder.layer.0.output.dense.weight"), std::string::npos) << msg;
}

TEST(Loader, Float16CheckpointIsWidened) {
  auto ref = model::make_random_classifier(tiny_config("bert"), 11);
  auto ts = tensors_of(*ref);
  for (auto& [n, t] : ts) t = t.to(torch::kHalf);
  auto dir = write_folder(fp_test::temp_dir("f16") / "m", tiny_config_json("bert"), ts);
  auto lm = model::load_classifier(dir.string());
  auto got = model::snapshot(*lm.model);
  for (auto& [n, t] : ts) EXPECT_TRUE(torch::equal(got.at(n), t.to(torch::kFloat))) << n;
}

TEST(Loader, SaveRefusesInputsAndNonEmptyFolders) {
  auto m = model::make_random_classifier(tiny_config("bert"), 12);
  auto root = fp_test::temp_dir("save");
  auto in = root / "input";
  model::save_classifier(*m, in.string(), "");
  const auto before = fp_test::read_file(in / "model.safetensors");

  // into the input folder itself or below it
  for (auto out : {in, in / "sub", in / "." / "sub2"}) {
    std::string msg;
    EXPECT_EQ(kind_of([&] { model::save_classifier(*m, out.string(), "", {}, true, {in.string()}); }, &msg),
              ErrorKind::InvalidArgument)
        << out;
  }
  // an output folder that contains the input would delete it with --overwrite
  EXPECT_EQ(kind_of([&] { model::save_classifier(*m, root.string(), "", {}, true, {in.string()}); }),
            ErrorKind::InvalidArgument);
  EXPECT_EQ(fp_test::read_file(in / "model.safetensors"), before);

  // an existing non-empty folder without overwrite
  auto other = root / "other";
  fs::create_directories(other);
  fp_test::write_file(other / "keep.txt", "x");
  std::string msg;
  EXPECT_EQ(kind_of([&] { model::save_classifier(*m, other.string(), ""); }, &msg), ErrorKind::InvalidArgument);
  EXPECT_NE(msg.find("other"), std::string::npos) << msg;
  EXPECT_TRUE(fs::exists(other / "keep.txt"));
  // an existing empty folder is fine; overwrite replaces a non-empty one completely
  auto empty = root / "empty";
  fs::create_directories(empty);
  model::save_classifier(*m, empty.string(), "");
  EXPECT_TRUE(fs::exists(empty / "model.safetensors"));
  model::save_classifier(*m, other.string(), "", {}, true);
  EXPECT_TRUE(fs::exists(other / "model.safetensors"));
  EXPECT_FALSE(fs::exists(other / "keep.txt"));
  // tokenizer files are copied from tokenizer_from
  fp_test::write_file(in / "vocab.txt", "[PAD]\n[UNK]\n");
  auto withtok = root / "withtok";
  model::save_classifier(*m, withtok.string(), in.string());
  EXPECT_EQ(fp_test::read_file(withtok / "vocab.txt"), "[PAD]\n[UNK]\n");
}

TEST(Loader, FailedSaveLeavesNothing) {
  auto m = model::make_random_classifier(tiny_config("bert"), 13);
  auto root = fp_test::temp_dir("fail");
  auto out = root / "out";
  EXPECT_THROW(model::save_classifier(*m, out.string(), "", {{"no_such_dir/manifest.json", "{}"}}), Error);
  EXPECT_FALSE(fs::exists(out));
  EXPECT_TRUE(fs::is_empty(root)) << "temporary folder left behind";

  // a failed overwrite keeps the old folder intact
  model::save_classifier(*m, out.string(), "", {{"manifest.json", "old"}});
  EXPECT_THROW(model::save_classifier(*m, out.string(), "", {{"no_such_dir/manifest.json", "{}"}}, true), Error);
  EXPECT_EQ(fp_test::read_file(out / "manifest.json"), "old");
  std::vector<std::string> names;
  for (auto& e : fs::directory_iterator(root)) names.push_back(e.path().filename().string());
  EXPECT_EQ(names, std::vector<std::string>{"out"});
}

TEST(Loader, RobertaPositionIdsOnPaddedBatch) {
  auto cfg = tiny_config("roberta");
  auto m = model::make_random_classifier(cfg, 14);
  auto ids = torch::tensor({{0, 5, 6, 7, 2}, {0, 8, 2, 1, 1}}, torch::kLong);
  auto pos = m->base->embeddings->position_ids(ids);
  EXPECT_TRUE(torch::equal(pos, torch::tensor({{2, 3, 4, 5, 6}, {2, 3, 4, 1, 1}}, torch::kLong))) << pos;
  // BERT: 0..T-1 whatever the padding
  auto b = model::make_random_classifier(tiny_config("bert"), 14);
  auto bpos = b->base->embeddings->position_ids(torch::tensor({{2, 5, 3, 0}}, torch::kLong));
  EXPECT_TRUE(torch::equal(bpos, torch::tensor({{0, 1, 2, 3}}, torch::kLong)));

  // a padded row gives the logits of the same row alone (pads masked, positions unaffected)
  m->eval();
  torch::NoGradGuard ng;
  auto mask = ids.ne(1).to(torch::kLong);
  auto types = torch::zeros_like(ids);
  auto full = m->forward(ids, types, mask).logits;
  auto alone = m->forward(ids.slice(0, 1, 2).slice(1, 0, 3), types.slice(0, 1, 2).slice(1, 0, 3),
                          mask.slice(0, 1, 2).slice(1, 0, 3))
                   .logits;
  EXPECT_LT((full[1] - alone[0]).abs().max().item<double>(), 1e-5);
  // too long for the position table: a clear error, not an index crash
  auto too_long = torch::full({1, 40}, 5, torch::kLong);
  EXPECT_EQ(kind_of([&] { m->forward(too_long, torch::zeros_like(too_long), torch::ones_like(too_long)); }),
            ErrorKind::InvalidArgument);
  // At the table's end (34 positions, pad id 1): 33 real tokens reach position 34, refused; the same
  // 33 columns with two of them padding reach only 32, accepted (checked on the device, not by T).
  auto edge = torch::full({1, 33}, 5, torch::kLong);
  auto run = [&](const torch::Tensor& x) { m->forward(x, torch::zeros_like(x), x.ne(1).to(torch::kLong)); };
  EXPECT_EQ(kind_of([&] { run(edge); }), ErrorKind::InvalidArgument);
  edge.index_put_({0, torch::indexing::Slice(31, 33)}, 1);
  EXPECT_NO_THROW(run(edge));
  EXPECT_NO_THROW(run(torch::full({1, 32}, 5, torch::kLong)));
  // BERT: positions 0..T-1, so T = 32 fits a 32-row table and T = 33 does not, padding or not
  auto bert_run = [&](int64_t T) {
    auto x = torch::full({1, T}, 5, torch::kLong);
    b->forward(x, torch::zeros_like(x), torch::ones_like(x));
  };
  EXPECT_NO_THROW(bert_run(32));
  EXPECT_EQ(kind_of([&] { bert_run(33); }), ErrorKind::InvalidArgument);
}

/// Logits and every parameter's gradient of one step on (ids, mask, labels), with the full padded last
/// layer (`full`: every position's hidden states asked for) or the first-position one, unpadded where
/// model::unpadded takes the batch; `seed`, when given, seeds the dropout first.
std::pair<torch::Tensor, std::map<std::string, torch::Tensor>> one_step(model::SequenceClassifierImpl& m, bool full,
                                                                         const torch::Tensor& ids, const torch::Tensor& mask,
                                                                         const torch::Tensor& labels,
                                                                         std::optional<uint64_t> seed = {}) {
  m.zero_grad();
  if (seed) torch::manual_seed(*seed);
  model::ForwardOptions o;
  o.output_hidden_states = full;  // reads every position: the full last layer
  auto out = m.forward(ids, torch::zeros_like(ids), mask, o);
  torch::cross_entropy_loss(out.logits, labels).backward();
  std::map<std::string, torch::Tensor> g;
  for (auto& p : m.named_parameters()) g[p.key()] = p.value().grad().clone();
  return {out.logits.detach(), g};
}

/// The same on two rows, the second padded at its end.
std::pair<torch::Tensor, std::map<std::string, torch::Tensor>> one_step(model::SequenceClassifierImpl& m, bool full,
                                                                         std::optional<uint64_t> seed = {}) {
  const int64_t pad = m.config.pad_token_id;
  auto ids = torch::tensor(std::vector<int64_t>{2, 5, 6, 7, 9, 3, 2, 8, 4, 3, pad, pad}).view({2, 6});
  auto mask = torch::tensor({{1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 0, 0}}, torch::kLong);
  return one_step(m, full, ids, mask, torch::tensor({1, 0}, torch::kLong), seed);
}

/// Every gradient of `got` equals `want` within rel x its own scale + abs_of_all x the largest of all
/// (the attention key bias's gradient is zero in exact arithmetic: rounding noise, held to the whole scale).
void expect_gradients_equal(const std::map<std::string, torch::Tensor>& want, const std::map<std::string, torch::Tensor>& got,
                            double rel, double abs_of_all, const std::string& what) {
  double all = 0;
  for (auto& [name, g] : want) all = std::max(all, g.abs().max().item<double>());
  for (auto& [name, g] : want) {
    const double tol = rel * g.abs().max().item<double>() + abs_of_all * all;
    EXPECT_LT((g - got.at(name)).abs().max().item<double>(), tol) << what << " " << name;
  }
}

// The parallel dropout: seeded by torch::manual_seed, the same mask for any thread count, a fresh one
// per call, values 0 or 1/(1-p) with the keep rate 1-p.
TEST(Dropout, SeededMaskIndependentOfThreadsWithTheKeepRate) {
  const int threads = at::get_num_threads();
  torch::manual_seed(7);
  auto a = model::dropout_noise({1000, 1000}, 0.1);
  auto a2 = model::dropout_noise({1000, 1000}, 0.1);
  at::set_num_threads(1);
  torch::manual_seed(7);
  auto b = model::dropout_noise({1000, 1000}, 0.1);
  at::set_num_threads(threads);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(a, a2));  // the generator advanced
  torch::manual_seed(8);
  EXPECT_FALSE(torch::equal(a, model::dropout_noise({1000, 1000}, 0.1)));
  const float scale = 1.0f / 0.9f;
  EXPECT_TRUE((a.eq(0) | a.eq(scale)).all().item<bool>());
  const double kept = a.ne(0).to(torch::kFloat64).mean().item<double>();
  EXPECT_NEAR(kept, 0.9, 0.002);  // 1M draws: sd 0.0003
  // element i's draw depends on i and the seed only: an odd-sized mask is the prefix of a longer one
  torch::manual_seed(9);
  auto odd = model::dropout_noise({100001}, 0.5);
  torch::manual_seed(9);
  auto even = model::dropout_noise({100002}, 0.5);
  EXPECT_TRUE(torch::equal(odd, even.narrow(0, 0, 100001)));
  // no dropout outside training or at p = 0
  auto x = torch::randn({4, 5});
  EXPECT_TRUE(model::dropout(x, 0.1, false).is_same(x));
  EXPECT_TRUE(model::dropout(x, 0.0, true).is_same(x));
  EXPECT_TRUE(torch::equal(model::dropout(x, 1.0, true), torch::zeros_like(x)));
}

// model::linear (oneDNN on the CPU, its own backward) against torch's Linear: outputs and the gradients of
// x, W and b at float32 rounding, for a contiguous and a strided (first-position) input, with and without
// bias; float64 takes torch's path and is exact.
TEST(Linear, OneDnnMatchesTorchOutputsAndGradients) {
  if (at::hasMKLDNN()) EXPECT_TRUE(model::onednn_linear_available());  // else the test compares torch with itself
  torch::manual_seed(3);
  for (bool strided : {false, true})
    for (bool bias : {true, false}) {
      SCOPED_TRACE(fmt::format("strided {} bias {}", strided, bias));
      auto full = torch::randn({6, 9, 40});
      auto x = (strided ? full.narrow(1, 0, 1) : full).detach().requires_grad_(true);
      auto w = (torch::randn({24, 40}) * 0.2).requires_grad_(true);
      auto b = bias ? torch::randn({24}).requires_grad_(true) : torch::Tensor();
      auto x2 = x.detach().clone().requires_grad_(true), w2 = w.detach().clone().requires_grad_(true);
      auto b2 = bias ? b.detach().clone().requires_grad_(true) : torch::Tensor();
      auto y = model::linear(x, w, b), y2 = torch::nn::functional::linear(x2, w2, b2);
      ASSERT_EQ(y.sizes(), y2.sizes());
      EXPECT_TRUE(torch::allclose(y, y2, 1e-5, 1e-5));
      auto up = torch::randn(y.sizes());
      (y * up).sum().backward();
      (y2 * up).sum().backward();
      EXPECT_TRUE(torch::allclose(x.grad(), x2.grad(), 1e-5, 1e-5));
      EXPECT_TRUE(torch::allclose(w.grad(), w2.grad(), 1e-5, 1e-4));
      if (bias) EXPECT_TRUE(torch::allclose(b.grad(), b2.grad(), 1e-5, 1e-4));
      torch::NoGradGuard ng;  // the path without autograd gives the same values
      EXPECT_TRUE(torch::equal(model::linear(x, w, b), y.detach()));
    }
  auto xd = torch::randn({5, 7}, torch::kFloat64), wd = torch::randn({3, 7}, torch::kFloat64);
  EXPECT_TRUE(torch::equal(model::linear(xd, wd, {}), torch::nn::functional::linear(xd, wd)));
  // empty products (no rows; no input features) give torch's results instead of oneDNN's error
  EXPECT_EQ(model::linear(torch::randn({0, 7}), torch::randn({3, 7}), {}).sizes(), (std::vector<int64_t>{0, 3}));
  EXPECT_TRUE(torch::equal(model::linear(torch::randn({4, 0}), torch::randn({3, 0}), torch::ones({3})), torch::ones({4, 3})));
  // GELU fused into the product without autograd (erf and tanh forms); with autograd, linear then gelu
  auto x = torch::randn({3, 8, 40}), w = torch::randn({64, 40}) * 0.3, b = torch::randn({64});
  for (auto [act, form] : {std::pair{model::Activation::gelu_erf, "none"}, {model::Activation::gelu_tanh, "tanh"}}) {
    auto want = torch::gelu(torch::nn::functional::linear(x, w, b), form);
    {
      torch::NoGradGuard ng;
      EXPECT_TRUE(torch::allclose(model::linear(x, w, b, act), want, 1e-5, 1e-5)) << form;
    }
    auto wg = w.clone().requires_grad_(true);
    auto y = model::linear(x, wg, b, act);
    EXPECT_TRUE(torch::allclose(y.detach(), want, 1e-5, 1e-5)) << form;
    y.sum().backward();
    EXPECT_TRUE(wg.grad().defined() && wg.grad().abs().sum().item<double>() > 0) << form;
  }
}

// In eval mode the last layer computes only the first position (all the head reads): the same logits and
// gradients as the full layer, which the forward still runs when every position's states are asked for.
TEST(Model, FirstPositionLastLayerEqualsTheFullLayer) {
  for (const std::string type : {"bert", "roberta"}) {
    auto cfg = tiny_config(type);
    cfg.hidden_dropout_prob = cfg.attention_probs_dropout_prob = 0;
    auto m = model::make_random_classifier(cfg, 21);
    m->eval();  // the first-position path is taken in eval mode (inference, the Fisher)
    auto [l_full, g_full] = one_step(*m, true);
    auto [l_first, g_first] = one_step(*m, false);
    EXPECT_LT((l_full - l_first).abs().max().item<double>(), 1e-6) << type;
    EXPECT_GT(l_full.abs().max().item<double>(), 1e-3) << type;
    expect_gradients_equal(g_full, g_first, 1e-5, 1e-7, type);
  }
}

// Training: the first-position last layer draws its dropout masks for the whole layer and slices them,
// so a seeded training step gives the whole layer's logits and gradients, dropout included.
TEST(Model, FirstPositionLastLayerTrainsAsTheFullLayer) {
  for (const std::string type : {"bert", "roberta"}) {
    auto cfg = tiny_config(type);
    cfg.hidden_dropout_prob = cfg.attention_probs_dropout_prob = 0.3;
    auto m = model::make_random_classifier(cfg, 22);
    m->train();
    auto [l_full, g_full] = one_step(*m, true, 5);
    auto [l_first, g_first] = one_step(*m, false, 5);
    auto [l_other, g_other] = one_step(*m, false, 6);
    EXPECT_LT((l_full - l_first).abs().max().item<double>(), 1e-5) << type;
    // the dropout is live: another seed moves the logits
    EXPECT_GT((l_full - l_other).abs().max().item<double>(), 1e-3) << type;
    expect_gradients_equal(g_full, g_first, 1e-5, 1e-6, type);
  }
}

// A padded batch runs unpadded (model::unpadded): right padding, left padding (a masked position 0,
// which is kept: the head reads it) and a one-token row give the logits and gradients of the padded
// computation (the whole last layer, taken when every hidden state is asked for).
TEST(Model, UnpaddedBatchEqualsThePaddedOne) {
  const std::vector<std::vector<int64_t>> rows_mask = {
      {1, 1, 1, 1, 1, 1, 1, 1}, {1, 1, 1, 0, 0, 0, 0, 0}, {0, 0, 0, 1, 1, 1, 1, 1}, {1, 0, 0, 0, 0, 0, 0, 0}};
  auto mask = torch::tensor(rows_mask[0], torch::kLong).view({1, 8});
  for (std::size_t r = 1; r < rows_mask.size(); ++r)
    mask = torch::cat({mask, torch::tensor(rows_mask[r], torch::kLong).view({1, 8})});
  auto u = model::unpadded(mask);
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->B, 4);
  EXPECT_EQ(u->T, 8);
  // kept: 8 + 3 + (position 0 and 5 attended) + 1
  EXPECT_EQ(u->rows.size(0), 8 + 3 + 6 + 1);
  EXPECT_TRUE(torch::equal(u->first, torch::tensor({0, 8, 11, 17}, torch::kLong)));
  EXPECT_EQ(u->rows[11].item<int64_t>(), 16);  // row 2's position 0
  EXPECT_EQ(u->rows[12].item<int64_t>(), 19);  // then its first attended position
  for (const std::string type : {"bert", "roberta"}) {
    for (const bool training : {false, true}) {
      auto cfg = tiny_config(type);
      cfg.hidden_dropout_prob = cfg.attention_probs_dropout_prob = 0;  // training: the same arithmetic
      auto m = model::make_random_classifier(cfg, 23);
      m->train(training);
      const int64_t pad = cfg.pad_token_id;
      auto ids = torch::randint(5, cfg.vocab_size, {4, 8}, torch::kLong);
      ids.masked_fill_(mask.eq(0), pad);
      const auto labels = torch::tensor({1, 0, 1, 0}, torch::kLong);
      auto [l_pad, g_pad] = one_step(*m, true, ids, mask, labels);
      auto [l_unpad, g_unpad] = one_step(*m, false, ids, mask, labels);
      const auto what = type + (training ? " training" : " eval");
      EXPECT_GT(l_pad.abs().max().item<double>(), 1e-3) << what;
      EXPECT_LT((l_pad - l_unpad).abs().max().item<double>(), 1e-5 * l_pad.abs().max().item<double>()) << what;
      expect_gradients_equal(g_pad, g_unpad, 1e-5, 1e-6, what);
    }
  }
}

// The padded computation stays where unpadding gains little or would not be faithful.
TEST(Model, UnpaddedOnlyWhereItIsFaithfulAndWorthIt) {
  auto full = torch::ones({4, 10}, torch::kLong);
  EXPECT_FALSE(model::unpadded(full).has_value());
  auto little = full.clone();
  little[3][9] = 0;  // 1 position in 40 (2.5%) is padding: under the 10% threshold
  EXPECT_FALSE(model::unpadded(little).has_value());
  auto much = full.clone();
  much.select(1, 9).fill_(0);
  much.select(1, 8).fill_(0);  // 20%
  EXPECT_TRUE(model::unpadded(much).has_value());
  auto empty_row = much.clone();
  empty_row[2].fill_(0);  // an example that attends to nothing: its padded keys enter its attention
  EXPECT_FALSE(model::unpadded(empty_row).has_value());
}

}  // namespace
