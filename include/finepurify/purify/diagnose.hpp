// The diagnosis behind `scan` and every reset defense: Fisher at the chosen point, the indicator per
// aligned dimension, and a typed summary (where the indicator mass concentrates per tensor and layer,
// its distribution, the most suspicious tokens, the optional behavioural token probe). Also the
// selection summary of a reset and the reset itself. JSON forms are written in src/report.
#pragma once
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "finepurify/purify/align.hpp"
#include "finepurify/purify/fisher.hpp"
#include "finepurify/purify/probe.hpp"
#include "finepurify/purify/select.hpp"
#include "finepurify/text/tokenizer.hpp"
#include "finepurify/train/data.hpp"

namespace finepurify::purify {

/// Where the Fisher is computed: at w_FT, at w_Pre, or at their mean.
enum class FisherAt { FT, Pre, Mean };
const util::EnumTable<FisherAt>& enum_table(FisherAt);

struct DiagnoseOptions {
  IndicatorOptions indicator;
  FisherAt fisher_at = FisherAt::FT;
  int64_t fisher_examples = 0;  ///< 0 = all of the clean training part
  int64_t top_tokens = 20;
  /// Behavioural check (probe.hpp): the `probe_tokens` most suspicious rows by indicator mass and by
  /// row drift are inserted into `probe_examples` clean examples each; 0 = off.
  int64_t probe_tokens = 0;
  int64_t probe_examples = 100;
  /// Tokens flipping at least this share of predictions count as trigger candidates.
  double probe_min_flip = 0.9;
  /// Keep F in the Diagnosis (a caller computing another indicator from it); otherwise the indicator
  /// is written over F's storage and `fisher` ends empty.
  bool keep_fisher = false;
};

struct TensorStat {
  std::string name;
  int64_t numel = 0;
  double indicator_mass = 0, indicator_max = 0, drift_l2 = 0;
  std::optional<double> fisher_mean;  ///< indicators with a Fisher only
};

struct LayerShare {
  int layer = -1;  ///< -1 = embeddings
  double share = 0;
};

/// A vocabulary row ranked by its indicator mass (the fisher-ratio ranking `scan` prints).
struct TokenRank {
  int64_t rank = 0, id = 0;
  std::string token;
  double indicator_mass = 0, share = 0, drift_l2 = 0;
  std::optional<double> fisher_row_sum;
};

struct ProbedToken {
  int64_t rank = 0;
  TokenProbe probe;
  std::string token;
  double drift_l2 = 0, indicator_share = 0;
};

struct ProbeReport {
  int64_t candidates = 0, per_ranking = 0, examples = 0, flagged = 0;
  double min_flip = 0;
  std::vector<ProbedToken> tokens;  ///< most flipping first
};

struct Quantile {
  double p = 0;             ///< in [0, 1]
  double log10_value = 0;   ///< log10 of the indicator at that quantile
};

struct DiagnosisSummary {
  Indicator indicator = Indicator::FisherRatio;
  std::optional<Indicator> reset_indicator;  ///< set when the reset uses another indicator than the ranking
  double epsilon = 0, epsilon_scale = 0;
  EpsilonBasis epsilon_basis = EpsilonBasis::Global;
  FisherAt fisher_at = FisherAt::FT;
  int64_t fisher_examples = 0;  ///< 0 when the indicator needs no Fisher
  int64_t aligned_tensors = 0, aligned_dimensions = 0;
  std::vector<std::pair<std::string, std::string>> unaligned;  ///< (tensor, reason)
  std::vector<Quantile> distribution_log10;
  int64_t distribution_sampled = 0;
  std::vector<LayerShare> per_layer;
  std::vector<TensorStat> per_tensor;
  std::vector<TokenRank> top_tokens;
  std::optional<ProbeReport> token_probe;
};

/// Everything `scan` reports and the reset defenses select from.
struct Diagnosis {
  Alignment alignment;
  /// w_FT: the model's own parameters (shared storage, model::weights) as diagnose returns it; a
  /// caller that changes the model takes a copy first (purify does).
  std::map<std::string, torch::Tensor> ft;
  std::map<std::string, torch::Tensor> fisher;  ///< with keep_fisher only (empty otherwise)
  std::map<std::string, torch::Tensor> r;       ///< indicator per aligned tensor
  double epsilon = 0;
  DiagnosisSummary summary;
};

/// Computes the Fisher (if needed) and the indicator, and summarises them. The model's weights are
/// left as w_FT. Logs the Fisher's and the indicator's time and peak resident memory.
Diagnosis diagnose(model::SequenceClassifierImpl& m, const std::string& pretrained_folder,
                   const train::TokenizedSet& clean_train, const text::Tokenizer& tok, const DiagnoseOptions& opt,
                   torch::Device device);

/// Where a set of masks selects dimensions.
struct Selection {
  int64_t reset_dimensions = 0;
  std::map<int, int64_t> per_layer;  ///< -1 = embeddings
  std::map<std::string, int64_t> per_tensor;
};
Selection selection_of(const std::map<std::string, torch::Tensor>& masks, int64_t num_layers);

/// Sets selected dimensions to w_Pre (others keep their current value).
void reset_to_pretrained(model::SequenceClassifierImpl& m, const Alignment& a,
                         const std::map<std::string, torch::Tensor>& masks);

}  // namespace finepurify::purify
