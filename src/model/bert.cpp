// BERT / RoBERTa encoder and sequence-classification heads (mirrors transformers' modeling_bert.py
// and modeling_roberta.py, eval-mode outputs match them to float32 rounding).
#include "finepurify/model/bert.hpp"
#include "finepurify/model/dropout.hpp"
#include "finepurify/model/linear.hpp"

#include <cmath>
#include <limits>
#include <regex>

#include <fmt/format.h>

#include "finepurify/error.hpp"

namespace finepurify::model {

namespace nn = torch::nn;

namespace {
thread_local ActivationTape* g_tape = nullptr;

/// l(x) (model::linear: oneDNN on the CPU), recorded on the active tape.
torch::Tensor linear(nn::Linear& l, const torch::Tensor& x) {
  auto y = model::linear(x, l->weight, l->bias);
  if (g_tape) g_tape->linears.push_back({l.get(), x, y});
  return y;
}

/// ln(x), recorded on the active tape with its normalised input (the per-example weight gradient
/// is sum_t dL/dy_t * xhat_t).
torch::Tensor layer_norm(nn::LayerNorm& ln, const torch::Tensor& x) {
  auto y = ln(x);
  if (g_tape) {
    torch::NoGradGuard ng;
    auto var_mean = torch::var_mean(x, {-1}, /*unbiased=*/false, /*keepdim=*/true);
    auto xhat = (x - std::get<1>(var_mean)) * torch::rsqrt(std::get<0>(var_mean) + ln->options.eps());
    g_tape->norms.push_back({ln.get(), xhat, y});
  }
  return y;
}

/// Dropout of a first-position slice x (B, 1, ...) of a tensor shaped full: the keep mask is drawn for
/// the whole tensor and its first position taken, so the random stream (and every value) is that of
/// dropping out the full tensor. The first-position last layer trains with it and stays equal to the
/// whole layer, dropout included.
torch::Tensor first_position_dropout(const torch::Tensor& x, at::IntArrayRef full, int64_t dim, double p) {
  return x * dropout_noise(full, p, x.options()).narrow(dim, 0, 1);  // 0 or 1/(1-p)
}
}  // namespace

std::optional<Unpadded> unpadded(const torch::Tensor& attention_mask) {
  const int64_t B = attention_mask.size(0), T = attention_mask.size(1);
  auto attended = attention_mask.ne(0);
  auto keep = attended.clone();
  if (T > 0) keep.select(1, 0).fill_(true);  // the head reads every example's position 0, padded or not
  auto counts = keep.sum(1);                  // (B)
  // one read back for both conditions: the kept rows, and whether some example attends to nothing
  auto summary = torch::stack({counts.sum(), attended.any(1).logical_not().sum()}).cpu();
  const int64_t N = summary[0].item<int64_t>(), unattended = summary[1].item<int64_t>();
  if (unattended > 0 || N * 10 > B * T * 9) return std::nullopt;
  Unpadded u;
  u.B = B;
  u.T = T;
  u.rows = keep.view(-1).nonzero().squeeze(1);
  u.first = counts.cumsum(0) - counts;
  return u;
}

ActivationTape::Scope::Scope(ActivationTape& tape) {
  if (g_tape) throw Error(ErrorKind::Internal, "ActivationTape scopes do not nest");
  g_tape = &tape;
}
ActivationTape::Scope::~Scope() { g_tape = nullptr; }

EmbeddingsImpl::EmbeddingsImpl(const ModelConfig& c) : roberta_(c.is_roberta()), pad_(c.pad_token_id) {
  word_embeddings = register_module(
      "word_embeddings", nn::Embedding(nn::EmbeddingOptions(c.vocab_size, c.hidden_size).padding_idx(c.pad_token_id)));
  auto popt = nn::EmbeddingOptions(c.max_position_embeddings, c.hidden_size);
  if (roberta_) popt.padding_idx(c.pad_token_id);
  position_embeddings = register_module("position_embeddings", nn::Embedding(popt));
  token_type_embeddings =
      register_module("token_type_embeddings", nn::Embedding(nn::EmbeddingOptions(c.type_vocab_size, c.hidden_size)));
  LayerNorm = register_module("LayerNorm", nn::LayerNorm(nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps)));
  dropout = register_module("dropout", nn::Dropout(c.hidden_dropout_prob));
}

torch::Tensor EmbeddingsImpl::position_ids(const torch::Tensor& input_ids) const {
  const int64_t T = input_ids.size(1);
  if (!roberta_) return torch::arange(T, input_ids.options()).unsqueeze(0).expand_as(input_ids);
  auto mask = input_ids.ne(pad_).to(torch::kLong);
  return torch::cumsum(mask, 1) * mask + pad_;
}

torch::Tensor EmbeddingsImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids,
                                      const torch::Tensor& inputs_embeds) {
  const int64_t max_pos = position_embeddings->weight.size(0);
  auto pos = position_ids(input_ids);
  // The largest position is T - 1 (BERT) or at most pad + T (RoBERTa, counted from the padding): only
  // a sequence that could reach the table is checked on the device (.item() waits for a GPU).
  const int64_t T = input_ids.size(1), bound = roberta_ ? pad_ + T : T - 1;
  if (T > 0 && bound >= max_pos && pos.max().item<int64_t>() >= max_pos)
    throw Error(ErrorKind::InvalidArgument,
                fmt::format("sequence of {} tokens is longer than the model's max_position_embeddings ({}); "
                            "use a smaller --max-length", input_ids.size(1), max_pos));
  auto words = inputs_embeds.defined() ? inputs_embeds : word_embeddings(input_ids);
  auto x = words + token_type_embeddings(token_type_ids) + position_embeddings(pos);
  if (g_tape) {
    g_tape->embedding_sum = x;
    g_tape->input_ids = input_ids;
    g_tape->position_ids = pos;
    g_tape->token_type_ids = token_type_ids;
  }
  return model::dropout(layer_norm(LayerNorm, x), dropout->options.p(), is_training());
}

SelfAttentionImpl::SelfAttentionImpl(const ModelConfig& c)
    : heads_(c.num_attention_heads), head_dim_(c.hidden_size / c.num_attention_heads) {
  query = register_module("query", nn::Linear(c.hidden_size, c.hidden_size));
  key = register_module("key", nn::Linear(c.hidden_size, c.hidden_size));
  value = register_module("value", nn::Linear(c.hidden_size, c.hidden_size));
  dropout = register_module("dropout", nn::Dropout(c.attention_probs_dropout_prob));
}

torch::Tensor SelfAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& ext_mask, bool first_only,
                                         const Unpadded* u) {
  const int64_t B = u ? u->B : x.size(0), T = u ? u->T : x.size(1), Tq = first_only ? 1 : T;
  const int64_t H = heads_ * head_dim_;
  auto split = [&](const torch::Tensor& t, int64_t n) { return t.view({B, n, heads_, head_dim_}).transpose(1, 2); };
  // Unpadded rows (N, H) back in their (B * T, H) places; the padding gets zeros (masked as keys; finite,
  // so that nothing undefined reaches the gradients through the dropped query rows).
  auto padded = [&](const torch::Tensor& t) {
    return u ? torch::zeros({B * T, H}, t.options()).index_copy(0, u->rows, t) : t;
  };
  torch::Tensor q;  // (B, nh, Tq, dh)
  if (!first_only)
    q = split(padded(linear(query, x)), T);
  else
    q = split(linear(query, u ? x.index_select(0, u->first) : x.narrow(1, 0, 1)), 1);
  auto k = split(padded(linear(key, x)), T), v = split(padded(linear(value, x)), T);  // (B, nh, T, dh)
  // softmax(q kᵀ / √dh + mask) v in one fused kernel (transformers' default "sdpa" path). In training
  // with attention dropout, the steps of the kernel's own training path (on the CPU its math path:
  // softmax, dropout of the probabilities, product), with model::dropout's parallel masks; the
  // first-position layer draws the keep mask for all T queries, so its stream is the whole layer's.
  const double p = is_training() ? dropout->options.p() : 0.0;
  torch::Tensor ctx;  // (B, nh, Tq, dh)
  if (p > 0 && (first_only || q.is_cpu())) {
    auto s = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(head_dim_));  // (B, nh, Tq, T)
    if (ext_mask.defined()) s = s + ext_mask;
    auto probs = torch::softmax(s, -1);
    ctx = torch::matmul(first_only ? first_position_dropout(probs, {B, heads_, T, T}, 2, p) : model::dropout(probs, p, true), v);
  } else {
    // eval, or training on a GPU (the fused kernels' own dropout)
    ctx = at::scaled_dot_product_attention(q, k, v, ext_mask.defined() ? std::optional(ext_mask) : std::nullopt, p);
  }
  auto out = ctx.transpose(1, 2).contiguous().view({B, Tq, H});
  if (u && !first_only) return out.view({B * T, H}).index_select(0, u->rows);  // (N, H)
  return out;
}

DenseResidualNormImpl::DenseResidualNormImpl(int64_t in, int64_t out, double eps, double p) {
  dense = register_module("dense", nn::Linear(in, out));
  LayerNorm = register_module("LayerNorm", nn::LayerNorm(nn::LayerNormOptions({out}).eps(eps)));
  dropout = register_module("dropout", nn::Dropout(p));
}

torch::Tensor DenseResidualNormImpl::forward(const torch::Tensor& x, const torch::Tensor& residual,
                                             int64_t full_positions) {
  auto y = linear(dense, x);
  const double p = dropout->options.p();
  if (full_positions > 0 && is_training() && p > 0)
    y = first_position_dropout(y, {y.size(0), full_positions, y.size(2)}, 1, p);
  else
    y = model::dropout(y, p, is_training());
  return layer_norm(LayerNorm, y + residual);
}

AttentionImpl::AttentionImpl(const ModelConfig& c) {
  self = register_module("self", SelfAttention(c));
  output = register_module("output",
                           DenseResidualNorm(c.hidden_size, c.hidden_size, c.layer_norm_eps, c.hidden_dropout_prob));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& ext_mask, bool first_only,
                                     const Unpadded* u) {
  if (!first_only) return output(self(x, ext_mask, false, u), x);
  auto first = u ? x.index_select(0, u->first).unsqueeze(1) : x.narrow(1, 0, 1);  // (B, 1, H)
  return output(self(x, ext_mask, true, u), first, u ? u->T : x.size(1));
}

IntermediateImpl::IntermediateImpl(const ModelConfig& c) : act_(c.hidden_act) {
  dense = register_module("dense", nn::Linear(c.hidden_size, c.intermediate_size));
}

torch::Tensor IntermediateImpl::forward(const torch::Tensor& x) {
  const bool erf = act_ == "gelu", tanh = act_ == "gelu_new" || act_ == "gelu_pytorch_tanh";  // HF's names
  if ((erf || tanh) && !g_tape)  // the tape records the pre-activation output: not fused there
    return model::linear(x, dense->weight, dense->bias, erf ? Activation::gelu_erf : Activation::gelu_tanh);
  auto h = linear(dense, x);
  if (erf) return torch::gelu(h);  // exact erf form, as HF's "gelu"
  if (tanh) return torch::gelu(h, "tanh");
  if (act_ == "relu") return torch::relu(h);
  if (act_ == "silu" || act_ == "swish") return torch::silu(h);
  return torch::tanh(h);
}

LayerImpl::LayerImpl(const ModelConfig& c) {
  attention = register_module("attention", Attention(c));
  intermediate = register_module("intermediate", Intermediate(c));
  output = register_module("output", DenseResidualNorm(c.intermediate_size, c.hidden_size, c.layer_norm_eps,
                                                       c.hidden_dropout_prob));
}

torch::Tensor LayerImpl::forward(const torch::Tensor& x, const torch::Tensor& ext_mask) {
  return forward_with_ffn(x, ext_mask, nullptr);
}

torch::Tensor LayerImpl::forward_with_ffn(const torch::Tensor& x, const torch::Tensor& ext_mask, torch::Tensor* ffn,
                                          bool first_only, const Unpadded* u) {
  auto a = attention(x, ext_mask, first_only, u);
  auto h = intermediate(a);
  if (ffn) *ffn = h;
  return output(h, a, first_only ? (u ? u->T : x.size(1)) : 0);
}

BaseModelImpl::BaseModelImpl(const ModelConfig& c) {
  embeddings = register_module("embeddings", Embeddings(c));
  auto encoder = std::make_shared<nn::Module>();
  layers = nn::ModuleList();
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    layer_list.push_back(Layer(c));
    layers->push_back(layer_list.back());
  }
  encoder->register_module("layer", layers);
  register_module("encoder", encoder);
  if (!c.is_roberta()) {
    auto pooler = std::make_shared<nn::Module>();
    pooler_dense = pooler->register_module("dense", nn::Linear(c.hidden_size, c.hidden_size));
    register_module("pooler", pooler);
  }
}

SequenceClassifierImpl::SequenceClassifierImpl(const ModelConfig& c) : config(c) {
  base = register_module(c.model_type, BaseModel(c));
  const double p = c.classifier_dropout.value_or(c.hidden_dropout_prob);
  dropout = register_module("dropout", nn::Dropout(p));
  if (c.is_roberta()) {
    roberta_head = std::make_shared<nn::Module>();
    head_dense = roberta_head->register_module("dense", nn::Linear(c.hidden_size, c.hidden_size));
    head_out_proj = roberta_head->register_module("out_proj", nn::Linear(c.hidden_size, c.num_labels()));
    register_module("classifier", roberta_head);
  } else {
    classifier = register_module("classifier", nn::Linear(c.hidden_size, c.num_labels()));
  }
}

torch::Tensor SequenceClassifierImpl::head(const torch::Tensor& h0) {
  const double p = dropout->options.p();
  const bool train = is_training();
  if (config.is_roberta())
    return linear(head_out_proj, model::dropout(torch::tanh(linear(head_dense, model::dropout(h0, p, train))), p, train));
  auto pooled = torch::tanh(linear(base->pooler_dense, h0));
  return linear(classifier, model::dropout(pooled, p, train));
}

ForwardOutput SequenceClassifierImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids,
                                              const torch::Tensor& attention_mask, const ForwardOptions& opt) {
  ForwardOutput out;
  auto x = base->embeddings(input_ids, token_type_ids, opt.inputs_embeds);
  // additive mask (B, 1, 1, T): 0 where attended, the float minimum where masked (as HF); none when
  // every position is attended (as HF's sdpa path: the fused kernel runs faster without a mask)
  torch::Tensor ext;
  if (!attention_mask.all().item<bool>())
    ext = (1.0 - attention_mask.to(x.dtype()).unsqueeze(1).unsqueeze(2)) * std::numeric_limits<float>::lowest();
  if (opt.output_hidden_states) out.hidden_states.push_back(x);
  // The head reads the first position only, so the last layer computes only that position's output
  // (its keys and values still come from every position): the same logits and gradients for about 1/L
  // less work. The Fisher's tape records that layer's first-position Linears and LayerNorms as (B, 1, .):
  // the other positions' gradients there are zero, so its per-example sums are the same. In training its
  // dropout masks are drawn for the whole layer and sliced (first_position_dropout), so the random
  // stream, and so a seeded run, is the whole layer's. Callers that read every position's states get
  // the whole layer.
  const bool cls_last = !opt.output_hidden_states && !opt.output_ffn_activations;
  // A padded batch whose states nobody reads but the head's row is run unpadded (Unpadded): the same
  // logits and gradients (to float32 rounding) for the padding's share less token-wise work. Not under
  // the Fisher's tape, which records (B, T, .) tensors per example. In training the hidden dropout
  // then draws its masks for the kept rows, a different (equally seeded) stream than the padded one.
  std::optional<Unpadded> unpad;
  if (cls_last && ext.defined() && !g_tape && !base->layer_list.empty()) unpad = unpadded(attention_mask);
  if (unpad) x = x.reshape({-1, x.size(2)}).index_select(0, unpad->rows);  // (N, H)
  for (size_t i = 0; i < base->layer_list.size(); ++i) {
    auto& layer = base->layer_list[i];
    torch::Tensor ffn;
    x = layer->forward_with_ffn(x, ext, opt.output_ffn_activations ? &ffn : nullptr,
                                cls_last && i + 1 == base->layer_list.size(), unpad ? &*unpad : nullptr);
    if (opt.output_ffn_activations) out.ffn_activations.push_back(ffn);
    if (opt.output_hidden_states) out.hidden_states.push_back(x);
  }
  auto h0 = x.select(1, 0);  // (B, H)
  if (!config.is_roberta()) out.pooler_output = torch::tanh(base->pooler_dense(h0));
  out.logits = head(h0);
  return out;
}

void init_weights(nn::Module& m, double std) {
  torch::NoGradGuard ng;
  for (auto& mod : m.modules(/*include_self=*/true)) {
    if (auto* lin = mod->as<nn::Linear>()) {
      lin->weight.normal_(0.0, std);
      if (lin->bias.defined()) lin->bias.zero_();
    } else if (auto* emb = mod->as<nn::Embedding>()) {
      emb->weight.normal_(0.0, std);
      if (emb->options.padding_idx()) emb->weight[*emb->options.padding_idx()].zero_();
    } else if (auto* ln = mod->as<nn::LayerNorm>()) {
      ln->weight.fill_(1.0);
      ln->bias.zero_();
    }
  }
}

std::vector<std::string> head_parameter_names(const SequenceClassifierImpl& m) {
  std::vector<std::string> out;
  for (const auto& p : m.named_parameters()) {
    const auto& n = p.key();
    if (n.rfind("classifier.", 0) == 0 || n.find(".pooler.") != std::string::npos) out.push_back(n);
  }
  return out;
}

bool is_no_decay(const std::string& name) {
  auto ends_with = [&](const std::string& s) {
    return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
  };
  return ends_with(".bias") || ends_with("LayerNorm.weight");
}

int layer_of(const std::string& name, int64_t num_layers) {
  static const std::regex re(R"(\.layer\.(\d+)\.)");
  std::smatch m;
  if (std::regex_search(name, m, re)) return std::stoi(m[1]);
  if (name.find(".embeddings.") != std::string::npos) return -1;
  return static_cast<int>(num_layers);  // pooler / classifier head
}

}  // namespace finepurify::model
