// Behavioural check of trigger candidates (beyond the paper): insert a candidate token into clean
// examples and see whether the suspect's prediction flips towards one class. A word trigger flips
// almost every example; an ordinary word, inserted once, flips few. Uses only the clean set and the
// suspect, never the trigger. `scan` runs it on the tokens whose rows look most suspicious; with it,
// `purify --neutralize-tokens / --unlearn-tokens` act only on tokens that really flip predictions.
#pragma once
#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "finepurify/model/bert.hpp"
#include "finepurify/text/tokenizer.hpp"
#include "finepurify/train/data.hpp"

namespace finepurify::purify {

struct TokenProbe {
  int64_t id = 0;
  double flip_rate = 0;  ///< max over classes c: share of examples not predicted c that become c
  int64_t flip_to = -1;  ///< the class c of flip_rate
  int64_t tested = 0;    ///< examples the token was inserted into
};

/// Probes each of `ids`: one copy of each of `examples` (the first `max_examples` rows of a seeded
/// permutation; 0 = all) with the token inserted once at a uniform inner position, predicted by `m`
/// and compared with the predictions without it. Results in the order of `ids`. Throws on an id
/// outside the model's vocabulary or an empty example set.
std::vector<TokenProbe> probe_tokens(model::SequenceClassifierImpl& m, const train::TokenizedSet& examples,
                                     const std::vector<int64_t>& ids, int64_t max_examples, uint64_t seed,
                                     torch::Device device);

/// The tokens worth probing: the `k` largest rows by indicator mass, then the `k` largest by row drift
/// ‖w_FT − w_Pre‖ (a trigger's row moves even when the clean data also uses it and its ratio is small),
/// without duplicates and without the tokenizer's special tokens (`Tokenizer::special_ids`). `row_mass` and `row_drift` are (V).
std::vector<int64_t> probe_candidates(const torch::Tensor& row_mass, const torch::Tensor& row_drift, int64_t k,
                                      const text::Tokenizer& tok);

}  // namespace finepurify::purify
