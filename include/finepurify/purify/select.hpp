// Indicators of "poisonous" dimensions and exact top-k selection (linear time, no sorted copy).
#pragma once
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "finepurify/purify/align.hpp"
#include "finepurify/util/options.hpp"

namespace finepurify::purify {

/// fisher-ratio: r = delta^2 / (F + eps) (default); magnitude: r = delta^2; random: uniform
/// (Fine-mixing); inverse-fisher: r = 1 / (F + eps).
enum class Indicator { FisherRatio, Magnitude, Random, InverseFisher };
const util::EnumTable<Indicator>& enum_table(Indicator);
/// Whether the indicator is computed from the Fisher (fisher-ratio, inverse-fisher).
bool uses_fisher(Indicator i);

/// Global: top rho of all aligned dimensions; Tensor: top rho of each tensor.
enum class Scope { Global, Tensor };
const util::EnumTable<Scope>& enum_table(Scope);

/// The word-embedding matrix in the selection: Rank: ranked with the other tensors (the paper);
/// Keep: never reset (the reset fraction applies to the other tensors only; the rows of suspicious
/// tokens are left to --neutralize-tokens). On a real model the matrix is half of all parameters and
/// its rows for tokens absent from the clean set have F = 0, so ranking it spends the reset there.
enum class WordEmbedding { Rank, Keep };
const util::EnumTable<WordEmbedding>& enum_table(WordEmbedding);

/// What eps is relative to: the mean Fisher over all aligned dimensions, or each tensor's own mean
/// (a tensor whose dimensions the clean task barely uses is then not ranked by 1/eps alone).
enum class EpsilonBasis { Global, Tensor };
const util::EnumTable<EpsilonBasis>& enum_table(EpsilonBasis);

struct IndicatorOptions {
  Indicator indicator = Indicator::FisherRatio;
  /// eps = epsilon_scale * mean(F) (over epsilon_basis). 1 since issue 13: with the paper's tiny eps
  /// (1e-8) the word-embedding rows the clean set never uses (F = 0) take the whole reset on a real
  /// model and nothing is removed (docs/results/real-dev/).
  double epsilon_scale = 1.0;
  EpsilonBasis epsilon_basis = EpsilonBasis::Global;
  uint64_t seed = 42;           ///< for the random indicator
};

/// r for every aligned tensor (float32, CPU, shape of the parameter). `ft` and `fisher` map names
/// to w_FT and F; `alignment` gives w_Pre. Non-negative and finite by construction. `epsilon_out`
/// gets eps with the global basis, the mean of the per-tensor eps weighted by size with the tensor basis.
std::map<std::string, torch::Tensor> compute_indicators(const Alignment& alignment,
                                                        const std::map<std::string, torch::Tensor>& ft,
                                                        const std::map<std::string, torch::Tensor>* fisher,
                                                        const IndicatorOptions& opt, double* epsilon_out = nullptr);

/// compute_indicators for the fisher-ratio and inverse-fisher indicators, with r written over F's
/// own storage (float32 CPU tensors, as diagonal_fisher returns them): each F tensor becomes r and
/// `fisher` ends empty, so F and r are never held together. The same values as compute_indicators.
std::map<std::string, torch::Tensor> compute_indicators_in_place(const Alignment& alignment,
                                                                 const std::map<std::string, torch::Tensor>& ft,
                                                                 std::map<std::string, torch::Tensor>& fisher,
                                                                 const IndicatorOptions& opt,
                                                                 double* epsilon_out = nullptr);

/// Exactly round(rho * d) dimensions with the largest r (d = all aligned dimensions for Global,
/// each tensor's own size for Tensor scope). Ties are broken by (tensor order, flat index), so the
/// result is deterministic. Returns boolean masks per tensor (names in `order`).
std::map<std::string, torch::Tensor> select_top(const std::vector<std::string>& order,
                                                const std::map<std::string, torch::Tensor>& r, double rho,
                                                Scope scope);

/// select_top over `order` with the `word` tensor (the word-embedding matrix) handled by `policy`:
/// with Keep it is left out of the ranking (and out of d) and gets an all-false mask.
std::map<std::string, torch::Tensor> select_reset(const std::vector<std::string>& order,
                                                  const std::map<std::string, torch::Tensor>& r, double rho,
                                                  Scope scope, WordEmbedding policy, const std::string& word);

/// The k-th largest value (1-based) over all tensors' elements by radix selection on the float
/// bit patterns, and how many elements are strictly larger: histogram passes of 11, 11 and 10 bits,
/// until at most `gather_at_most` elements (and at most a 16th of them, or 65,536) match the bits
/// decided so far; those are gathered and finished by nth_element (the parameter exists for tests
/// of both paths).
struct Threshold {
  float value = 0;
  int64_t above = 0;  ///< elements with r > value
};
Threshold kth_largest(const std::vector<torch::Tensor>& values, int64_t k, int64_t gather_at_most = int64_t{1} << 22);

/// Number of selected dimensions in a mask set.
int64_t count_selected(const std::map<std::string, torch::Tensor>& masks);

}  // namespace finepurify::purify
