// Parsing and writing Hugging Face config.json for bert / roberta classifiers.
#include "finepurify/model/config.hpp"

#include <cmath>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "finepurify/error.hpp"
#include "finepurify/util/limits.hpp"

namespace finepurify::model {

namespace fs = std::filesystem;
using nlohmann::json;

std::string ModelConfig::classifier_architecture() const {
  return is_roberta() ? "RobertaForSequenceClassification" : "BertForSequenceClassification";
}

bool ModelConfig::has_classifier_head() const {
  for (const auto& a : architectures)
    if (a.find("ForSequenceClassification") != std::string::npos) return true;
  return false;
}

namespace {

template <typename T>
void get_field(const json& j, const char* key, T& out, const std::string& src) {
  if (!j.contains(key) || j[key].is_null()) return;
  try {
    out = j[key].get<T>();
  } catch (const std::exception& e) {
    throw Error(ErrorKind::ConfigInvalid,
                fmt::format("{}: field '{}' has the wrong type ({}): {}", src, key, j[key].type_name(), e.what()));
  }
}

void require_positive(int64_t v, const char* key, const std::string& src) {
  if (v <= 0) throw Error(ErrorKind::ConfigInvalid, fmt::format("{}: '{}' must be > 0, got {}", src, key, v));
}

/// An integer field in [lo, hi]: JSON integers, or floats with an integral value (2.0); a fraction,
/// a value out of range or one past int64 is refused by name (never cast: that is undefined behaviour).
void get_int_field(const json& j, const char* key, int64_t lo, int64_t hi, int64_t& out, const std::string& src) {
  if (!j.contains(key) || j[key].is_null()) return;
  const auto& v = j[key];
  auto bad = [&](const std::string& why) {
    return Error(ErrorKind::ConfigInvalid, fmt::format("{}: field '{}' {}, got {}", src, key, why, v.dump()));
  };
  if (v.is_number_unsigned()) {
    const auto u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(hi)) throw bad(fmt::format("must be an integer in [{}, {}]", lo, hi));
    out = static_cast<int64_t>(u);
  } else if (v.is_number_integer()) {
    out = v.get<int64_t>();
  } else if (v.is_number_float()) {
    const double d = v.get<double>();
    if (!std::isfinite(d) || d != std::floor(d)) throw bad("must be an integer");
    if (d < static_cast<double>(lo) || d > static_cast<double>(hi))
      throw bad(fmt::format("must be an integer in [{}, {}]", lo, hi));
    out = static_cast<int64_t>(d);
  } else {
    throw bad(fmt::format("has the wrong type ({}); expected an integer", v.type_name()));
  }
  if (out < lo || out > hi) throw bad(fmt::format("must be an integer in [{}, {}]", lo, hi));
}

/// A real field in [lo, hi) (or [lo, hi] with `closed`).
void get_real_field(const json& j, const char* key, double lo, double hi, bool closed, double& out,
                    const std::string& src) {
  if (!j.contains(key) || j[key].is_null()) return;
  const auto& v = j[key];
  if (!v.is_number())
    throw Error(ErrorKind::ConfigInvalid, fmt::format("{}: field '{}' has the wrong type ({}); expected a number", src,
                                                      key, v.type_name()));
  const double d = v.get<double>();
  if (!std::isfinite(d) || d < lo || d > hi || (!closed && d == hi))
    throw Error(ErrorKind::ConfigInvalid,
                fmt::format("{}: field '{}' must be in [{}, {}{}, got {}", src, key, lo, hi, closed ? "]" : ")", v.dump()));
  out = d;
}

/// The sizes, rates and names config.json may set, each range-checked; other keys are ignored as HF
/// does. The size bounds are far above any released BERT/RoBERTa (xlm-roberta: vocabulary 250,002,
/// bert-large: hidden 1,024, 24 layers) and keep a hostile config from asking for absurd sizes; the
/// tensors themselves are checked against the checkpoint's header before anything is allocated.
void read_fields(const json& j, ModelConfig& c, const std::string& src) {
  struct IntField { const char* key; int64_t* v; int64_t lo, hi; };
  for (auto f : {IntField{"vocab_size", &c.vocab_size, 1, int64_t{1} << 22},
                 IntField{"hidden_size", &c.hidden_size, 1, int64_t{1} << 16},
                 IntField{"num_hidden_layers", &c.num_hidden_layers, 1, 1024},
                 IntField{"num_attention_heads", &c.num_attention_heads, 1, 1024},
                 IntField{"intermediate_size", &c.intermediate_size, 1, int64_t{1} << 18},
                 IntField{"max_position_embeddings", &c.max_position_embeddings, 1, int64_t{1} << 20},
                 IntField{"type_vocab_size", &c.type_vocab_size, 1, 1024},
                 IntField{"pad_token_id", &c.pad_token_id, 0, (int64_t{1} << 22) - 1}})
    get_int_field(j, f.key, f.lo, f.hi, *f.v, src);
  get_real_field(j, "hidden_dropout_prob", 0, 1, false, c.hidden_dropout_prob, src);
  get_real_field(j, "attention_probs_dropout_prob", 0, 1, false, c.attention_probs_dropout_prob, src);
  get_real_field(j, "layer_norm_eps", 0, 1, false, c.layer_norm_eps, src);
  if (!(c.layer_norm_eps > 0)) throw Error(ErrorKind::ConfigInvalid, src + ": field 'layer_norm_eps' must be > 0");
  get_real_field(j, "initializer_range", 0, 1e3, true, c.initializer_range, src);
  get_field(j, "hidden_act", c.hidden_act, src);
  if (j.contains("classifier_dropout") && !j["classifier_dropout"].is_null()) {
    double d = 0; get_real_field(j, "classifier_dropout", 0, 1, false, d, src); c.classifier_dropout = d;
  }
  get_field(j, "architectures", c.architectures, src);
  get_field(j, "problem_type", c.problem_type, src);
}

/// Architecture options we do not implement are refused, not ignored.
void check_supported(const json& j, const ModelConfig& c, const std::string& src) {
  std::string pet = "absolute";
  get_field(j, "position_embedding_type", pet, src);
  if (pet != "absolute")
    throw Error(ErrorKind::UnsupportedModel,
                fmt::format("{}: position_embedding_type '{}' is not supported (only 'absolute')", src, pet));
  bool is_decoder = false;
  get_field(j, "is_decoder", is_decoder, src);
  if (is_decoder) throw Error(ErrorKind::UnsupportedModel, src + ": decoder models (is_decoder=true) are not supported");
  static const char* acts[] = {"gelu", "relu", "gelu_new", "gelu_pytorch_tanh", "silu", "swish", "tanh"};
  bool act_ok = false;
  for (auto* a : acts) act_ok |= (c.hidden_act == a);
  if (!act_ok) throw Error(ErrorKind::UnsupportedModel, fmt::format("{}: hidden_act '{}' is not supported", src, c.hidden_act));
}

void check_sizes(const ModelConfig& c, const std::string& src) {
  for (auto [key, v] : {std::pair{"vocab_size", c.vocab_size}, {"hidden_size", c.hidden_size},
                        {"num_hidden_layers", c.num_hidden_layers}, {"num_attention_heads", c.num_attention_heads},
                        {"intermediate_size", c.intermediate_size}, {"max_position_embeddings", c.max_position_embeddings},
                        {"type_vocab_size", c.type_vocab_size}})
    require_positive(v, key, src);
  if (c.hidden_size % c.num_attention_heads != 0)
    throw Error(ErrorKind::ConfigInvalid, fmt::format("{}: hidden_size {} is not a multiple of num_attention_heads {}",
                                                      src, c.hidden_size, c.num_attention_heads));
  if (c.pad_token_id < 0 || c.pad_token_id >= c.vocab_size)
    throw Error(ErrorKind::ConfigInvalid, fmt::format("{}: pad_token_id {} outside [0, {})", src, c.pad_token_id, c.vocab_size));
  if (c.is_roberta() && c.max_position_embeddings <= c.pad_token_id + 1)
    throw Error(ErrorKind::ConfigInvalid, src + ": max_position_embeddings too small for roberta positions");
  if (c.problem_type != "single_label_classification")
    throw Error(ErrorKind::UnsupportedModel,
                fmt::format("{}: problem_type '{}' is not supported (only single_label_classification)", src, c.problem_type));
}

using util::kMaxLabels;  // util/limits.hpp

/// Labels: id2label {"0": "NEG", ...} wins; else num_labels; else HF's default of 2.
void read_labels(const json& j, ModelConfig& c, const std::string& src) {
  if (j.contains("id2label") && j["id2label"].is_object() && !j["id2label"].empty()) {
    const auto& m = j["id2label"];
    if (static_cast<int64_t>(m.size()) > kMaxLabels)
      throw Error(ErrorKind::ConfigInvalid,
                  fmt::format("{}: id2label has {} labels, more than the {} supported", src, m.size(), kMaxLabels));
    std::vector<std::string> names(m.size());
    for (auto it = m.begin(); it != m.end(); ++it) {
      std::size_t pos = 0;
      long long id = -1;
      try { id = std::stoll(it.key(), &pos); } catch (...) { pos = 0; }
      if (pos != it.key().size() || id < 0 || id >= static_cast<long long>(m.size()) || !it.value().is_string())
        throw Error(ErrorKind::ConfigInvalid,
                    fmt::format("{}: id2label must map \"0\"..\"{}\" to strings; bad entry '{}'", src, m.size() - 1, it.key()));
      names[id] = it.value().get<std::string>();
    }
    c.id2label = names;
  } else if (j.contains("num_labels")) {
    int64_t n = 0; get_int_field(j, "num_labels", 1, kMaxLabels, n, src);
    set_num_labels(c, n);
  }
}

}  // namespace

ModelConfig config_from_json(const json& j, const std::string& src) {
  if (!j.is_object()) throw Error(ErrorKind::ConfigInvalid, src + ": config is not a JSON object");
  ModelConfig c;
  c.raw = j;
  if (!j.contains("model_type"))
    throw Error(ErrorKind::ConfigInvalid, src + ": missing 'model_type' (expected \"bert\" or \"roberta\")");
  get_field(j, "model_type", c.model_type, src);
  if (c.model_type != "bert" && c.model_type != "roberta")
    throw Error(ErrorKind::UnsupportedModel,
                fmt::format("{}: model_type '{}' is not supported (supported: bert, roberta)", src, c.model_type));
  if (c.is_roberta()) {  // roberta defaults differ
    c.layer_norm_eps = 1e-5;
    c.pad_token_id = 1;
    c.type_vocab_size = 1;
    c.max_position_embeddings = 514;
    c.vocab_size = 50265;
  }
  read_fields(j, c, src);
  check_supported(j, c, src);
  check_sizes(c, src);
  read_labels(j, c, src);
  return c;
}

ModelConfig load_config(const std::string& path) {
  fs::path p(path);
  if (fs::is_directory(p)) p /= "config.json";
  std::ifstream f(p);
  if (!f) throw Error(ErrorKind::Io, fmt::format("{}: cannot open (is this a Hugging Face model folder?)", p.string()));
  json j;
  try {
    j = json::parse(f);
  } catch (const std::exception& e) {
    throw Error(ErrorKind::ConfigInvalid, fmt::format("{}: not valid JSON: {}", p.string(), e.what()));
  }
  return config_from_json(j, p.string());
}

void set_num_labels(ModelConfig& c, int64_t n, const std::vector<std::string>& names) {
  if (n <= 0) throw Error(ErrorKind::InvalidArgument, fmt::format("num_labels must be > 0, got {}", n));
  if (static_cast<int64_t>(names.size()) == n) { c.id2label = names; return; }
  if (c.num_labels() == n) return;
  c.id2label.clear();
  for (int64_t i = 0; i < n; ++i) c.id2label.push_back("LABEL_" + std::to_string(i));
}

json classifier_config_json(const ModelConfig& c) {
  json j = c.raw.is_object() ? c.raw : json::object();
  j["architectures"] = json::array({c.classifier_architecture()});
  j["model_type"] = c.model_type;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["intermediate_size"] = c.intermediate_size;
  j["hidden_act"] = c.hidden_act;
  j["hidden_dropout_prob"] = c.hidden_dropout_prob;
  j["attention_probs_dropout_prob"] = c.attention_probs_dropout_prob;
  j["classifier_dropout"] = c.classifier_dropout ? json(*c.classifier_dropout) : json(nullptr);
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["type_vocab_size"] = c.type_vocab_size;
  j["layer_norm_eps"] = c.layer_norm_eps;
  j["initializer_range"] = c.initializer_range;
  j["pad_token_id"] = c.pad_token_id;
  j["position_embedding_type"] = "absolute";
  j["problem_type"] = c.problem_type;
  j["torch_dtype"] = "float32";
  j.erase("num_labels");
  json id2label = json::object(), label2id = json::object();
  for (std::size_t i = 0; i < c.id2label.size(); ++i) {
    id2label[std::to_string(i)] = c.id2label[i];
    label2id[c.id2label[i]] = i;
  }
  j["id2label"] = id2label;
  j["label2id"] = label2id;
  return j;
}

}  // namespace finepurify::model
