// config.json of a Hugging Face BERT / RoBERTa model: parsed, validated, and written back.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace finepurify::model {

/// Fields keep Hugging Face's names so config.json maps straight across.
struct ModelConfig {
  std::string model_type = "bert";  ///< "bert" or "roberta"
  int64_t vocab_size = 30522;
  int64_t hidden_size = 768;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 12;
  int64_t intermediate_size = 3072;
  std::string hidden_act = "gelu";
  double hidden_dropout_prob = 0.1;
  double attention_probs_dropout_prob = 0.1;
  std::optional<double> classifier_dropout;
  int64_t max_position_embeddings = 512;
  int64_t type_vocab_size = 2;
  double layer_norm_eps = 1e-12;
  double initializer_range = 0.02;
  int64_t pad_token_id = 0;
  std::string problem_type = "single_label_classification";
  std::vector<std::string> id2label = {"LABEL_0", "LABEL_1"};  ///< size = num_labels
  std::vector<std::string> architectures;
  nlohmann::json raw = nlohmann::json::object();  ///< the whole input, kept when writing back

  int64_t num_labels() const { return static_cast<int64_t>(id2label.size()); }
  bool is_roberta() const { return model_type == "roberta"; }
  /// "bert." or "roberta.": prefix of the encoder's parameters in a task checkpoint.
  std::string base_prefix() const { return model_type + "."; }
  /// The architecture name a sequence classifier of this type is saved under.
  std::string classifier_architecture() const;
  /// True when the architecture carries a classification head (vs a base / masked-LM model).
  bool has_classifier_head() const;
};

/// Parses and validates folder/config.json (or a config.json path). Unknown model types and
/// unsupported options (relative position embeddings, decoders...) give Error(ConfigInvalid /
/// UnsupportedModel) naming the file and field.
ModelConfig load_config(const std::string& path);
ModelConfig config_from_json(const nlohmann::json& j, const std::string& source);
/// The config.json of a sequence classifier with this config (raw fields preserved).
nlohmann::json classifier_config_json(const ModelConfig& c);
/// Sets id2label to `n` labels: names kept when the count matches, else LABEL_i.
void set_num_labels(ModelConfig& c, int64_t n, const std::vector<std::string>& names = {});

}  // namespace finepurify::model
