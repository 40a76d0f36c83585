// BERT and RoBERTa sequence classifiers on libtorch. Modules are registered under Hugging Face's
// exact names, so named_parameters() yields checkpoint keys (bert.encoder.layer.0.attention.self.query.weight).
#pragma once
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "finepurify/model/config.hpp"

namespace finepurify::model {

/// What a batched per-example gradient needs from one forward pass (purify's batched Fisher): every
/// Linear's input and output, every LayerNorm's normalised input and output, and the embeddings'
/// sum with the ids it was looked up from. Filled while an ActivationTape::Scope is alive on the
/// calling thread; the modules record into it and otherwise behave exactly as without it.
struct ActivationTape {
  struct Linear {
    const torch::nn::LinearImpl* module;
    torch::Tensor x, y;  ///< (B, T, in) / (B, T, out) (T = 1 for the last layer's first-position-only Linears), or (B, in) / (B, out) in the head
  };
  struct Norm {
    const torch::nn::LayerNormImpl* module;
    torch::Tensor xhat, y;  ///< (x - mean) / sqrt(var + eps), detached; the output (B, T, H)
  };
  std::vector<Linear> linears;
  std::vector<Norm> norms;
  torch::Tensor embedding_sum;                    ///< (B, T, H): words + positions + token types
  torch::Tensor input_ids, position_ids, token_type_ids;  ///< (B, T) each

  /// Makes `tape` the calling thread's active tape until destroyed (scopes do not nest).
  class Scope {
   public:
    explicit Scope(ActivationTape& tape);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
  };
};

/// A padded batch with its padding taken out: the encoder runs its token-wise work (the Linears,
/// LayerNorms, GELU, residuals, dropout) on the N kept rows only and pads them back inside the
/// attention alone. rows: (N) int64, the kept positions of the flattened (B * T) batch in order (the
/// attended ones and every example's position 0, which the head reads); first: (B) int64, each
/// example's position 0 among those rows. Hidden states are then (N, H) between layers.
struct Unpadded {
  torch::Tensor rows, first;
  int64_t B = 0, T = 0;
};

/// The unpadded layout of a (B, T) attention mask, or none when under 10% of the positions are padding
/// (the gathers would cost about what they save) or an example attends to no position (its padded
/// keys would then enter its attention, so only the padded computation is faithful).
std::optional<Unpadded> unpadded(const torch::Tensor& attention_mask);

/// embeddings.{word,position,token_type}_embeddings, embeddings.LayerNorm
class EmbeddingsImpl : public torch::nn::Module {
 public:
  explicit EmbeddingsImpl(const ModelConfig& c);
  /// input_ids, token_type_ids: (B, T) int64; inputs_embeds: optional (B, T, H) replacing the
  /// word-embedding lookup (used by per-example Fisher). Returns (B, T, H).
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids,
                        const torch::Tensor& inputs_embeds = {});
  /// Position ids (B, T): BERT 0..T-1; RoBERTa pad+1, pad+2, ... over non-pad tokens, pad elsewhere.
  torch::Tensor position_ids(const torch::Tensor& input_ids) const;

  torch::nn::Embedding word_embeddings{nullptr}, position_embeddings{nullptr}, token_type_embeddings{nullptr};
  torch::nn::LayerNorm LayerNorm{nullptr};
  torch::nn::Dropout dropout{nullptr};

 private:
  bool roberta_;
  int64_t pad_;
};
TORCH_MODULE(Embeddings);

/// attention.self.{query,key,value}
class SelfAttentionImpl : public torch::nn::Module {
 public:
  explicit SelfAttentionImpl(const ModelConfig& c);
  /// x: (B, T, H); ext_mask: (B, 1, 1, T) additive, or undefined when every position is attended.
  /// Returns (B, T, H), or with first_only (B, 1, H): only the first position queries (keys and values
  /// still come from every position); in training its attention dropout draws as for all T queries.
  /// With u, x is the unpadded (N, H) and so is the result (first_only: still (B, 1, H)).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& ext_mask, bool first_only = false,
                        const Unpadded* u = nullptr);
  torch::nn::Linear query{nullptr}, key{nullptr}, value{nullptr};
  torch::nn::Dropout dropout{nullptr};

 private:
  int64_t heads_, head_dim_;
};
TORCH_MODULE(SelfAttention);

/// dense -> dropout -> LayerNorm(x + residual); used as attention.output and output.
class DenseResidualNormImpl : public torch::nn::Module {
 public:
  DenseResidualNormImpl(int64_t in, int64_t out, double eps, double dropout);
  /// x: (B, T, in), residual: (B, T, out) -> (B, T, out). full_positions > 0 marks x as the first
  /// position (T = 1) of a full_positions-long layer: in training the dropout draws as for the full one.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& residual, int64_t full_positions = 0);
  torch::nn::Linear dense{nullptr};
  torch::nn::LayerNorm LayerNorm{nullptr};
  torch::nn::Dropout dropout{nullptr};
};
TORCH_MODULE(DenseResidualNorm);

class AttentionImpl : public torch::nn::Module {
 public:
  explicit AttentionImpl(const ModelConfig& c);
  /// (B,T,H) -> (B,T,H), or (B,1,H) with first_only; with u (N,H) -> (N,H) (first_only: (B,1,H))
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& ext_mask, bool first_only = false,
                        const Unpadded* u = nullptr);
  SelfAttention self{nullptr};
  DenseResidualNorm output{nullptr};
};
TORCH_MODULE(Attention);

/// intermediate.dense + activation
class IntermediateImpl : public torch::nn::Module {
 public:
  explicit IntermediateImpl(const ModelConfig& c);
  torch::Tensor forward(const torch::Tensor& x);  // (B,T,H) -> (B,T,I)
  torch::nn::Linear dense{nullptr};

 private:
  std::string act_;
};
TORCH_MODULE(Intermediate);

class LayerImpl : public torch::nn::Module {
 public:
  explicit LayerImpl(const ModelConfig& c);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& ext_mask);  // (B,T,H) -> (B,T,H)
  /// Same, also returning the FFN intermediate activation (B, T, I) (used by fine-pruning). With
  /// first_only only the first position's output is computed: (B, 1, H), the same values as row 0 of
  /// the full output (every position's keys and values still enter the attention). With u, x is the
  /// unpadded (N, H) and so is the result (first_only: (B, 1, H)).
  torch::Tensor forward_with_ffn(const torch::Tensor& x, const torch::Tensor& ext_mask, torch::Tensor* ffn,
                                 bool first_only = false, const Unpadded* u = nullptr);
  Attention attention{nullptr};
  Intermediate intermediate{nullptr};
  DenseResidualNorm output{nullptr};
};
TORCH_MODULE(Layer);

/// The encoder: embeddings, encoder.layer.N, optional pooler.dense (BERT only).
class BaseModelImpl : public torch::nn::Module {
 public:
  explicit BaseModelImpl(const ModelConfig& c);
  Embeddings embeddings{nullptr};
  torch::nn::ModuleList layers{nullptr};  ///< registered as encoder.layer
  torch::nn::Linear pooler_dense{nullptr};  ///< registered as pooler.dense (BERT)
  std::vector<Layer> layer_list;
};
TORCH_MODULE(BaseModel);

struct ForwardOptions {
  bool output_hidden_states = false;
  bool output_ffn_activations = false;
  torch::Tensor inputs_embeds;  ///< (B, T, H) replaces the word-embedding lookup when defined
};

struct ForwardOutput {
  torch::Tensor logits;                        ///< (B, num_labels)
  std::vector<torch::Tensor> hidden_states;    ///< L+1 of (B, T, H) when asked
  std::vector<torch::Tensor> ffn_activations;  ///< L of (B, T, I) when asked
  torch::Tensor pooler_output;                 ///< (B, H), BERT only
};

/// BertForSequenceClassification / RobertaForSequenceClassification.
class SequenceClassifierImpl : public torch::nn::Module {
 public:
  explicit SequenceClassifierImpl(const ModelConfig& c);
  /// input_ids, token_type_ids, attention_mask: (B, T) int64 -> logits (B, num_labels)
  ForwardOutput forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids,
                        const torch::Tensor& attention_mask, const ForwardOptions& opt = {});
  /// Classification logits from a first-token representation h0: (B, H) -> (B, num_labels).
  torch::Tensor head(const torch::Tensor& h0);
  /// The word-embedding matrix (vocab, H).
  torch::Tensor& word_embedding_weight() { return base->embeddings->word_embeddings->weight; }
  /// Name of the word-embedding parameter ("bert.embeddings.word_embeddings.weight").
  std::string word_embedding_name() const { return config.base_prefix() + "embeddings.word_embeddings.weight"; }

  ModelConfig config;
  BaseModel base{nullptr};
  // BERT head: dropout -> classifier
  torch::nn::Dropout dropout{nullptr};
  torch::nn::Linear classifier{nullptr};
  // RoBERTa head: classifier.dense -> tanh -> classifier.out_proj (a submodule named "classifier")
  std::shared_ptr<torch::nn::Module> roberta_head;
  torch::nn::Linear head_dense{nullptr}, head_out_proj{nullptr};
};
TORCH_MODULE(SequenceClassifier);

/// Hugging Face's _init_weights on every module: Linear/Embedding ~ N(0, initializer_range),
/// biases 0, padding rows 0, LayerNorm 1/0. Uses the global torch generator (seed it first).
void init_weights(torch::nn::Module& m, double initializer_range);
/// Names of the parameters of the classification head (and pooler) — what a base checkpoint lacks.
std::vector<std::string> head_parameter_names(const SequenceClassifierImpl& m);
/// True for names that should not receive weight decay (biases, LayerNorm weights).
bool is_no_decay(const std::string& name);
/// Layer index of a parameter name ("...encoder.layer.3..." -> 3; embeddings -> -1; head -> L).
int layer_of(const std::string& name, int64_t num_layers);

}  // namespace finepurify::model
