// Two trigger-candidate extensions beyond the paper (both off by default), built on the scan's most
// suspicious tokens (largest fisher-ratio row mass). Unlearning: the clean fine-tuning after the
// reset also sees copies of the clean examples with candidates inserted, true labels kept.
// Neutralisation: the candidates' word-embedding rows are set to the pre-trained unknown-token row
// or to their own pre-trained rows, so the encoder no longer sees them as the tokens it may have
// learned to react to. Both use only
// the clean set and the two checkpoints, never the trigger.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include "finepurify/model/bert.hpp"
#include "finepurify/purify/diagnose.hpp"
#include "finepurify/text/tokenizer.hpp"
#include "finepurify/train/data.hpp"
#include "finepurify/util/options.hpp"

namespace finepurify::purify {

/// What a neutralised row becomes: the pre-trained unknown-token row (the mean pre-trained row when
/// the vocabulary has none), or the token's own pre-trained row (w_Pre for that row).
enum class NeutralizeTo { Unknown, Pretrained };
const util::EnumTable<NeutralizeTo>& enum_table(NeutralizeTo);

/// The `k` vocabulary ids with the largest row indicator mass, from a diagnosis' top_tokens (ranked
/// by the fisher-ratio indicator in `diagnose`). Fewer when the summary lists fewer. With a
/// behavioural check in the summary (token_probe), instead the tokens whose insertion flips at least
/// its min_flip share of predictions, most flipping first, at most `k` (possibly none).
std::vector<int64_t> candidate_tokens(const DiagnosisSummary& summary, int64_t k);

/// One copy of every example of `s` with 1..max_insertions tokens drawn uniformly from `token_ids`, each
/// inserted at a uniform position strictly between the first and the last token (the special tokens
/// stay in place; the inserted token takes the segment id of the token it lands before). An example
/// already `max_length` long (> 0) has a random inner token replaced instead, so lengths never exceed it.
/// Labels are kept. Deterministic for a seed. Throws on an empty `token_ids` or max_insertions < 1.
train::TokenizedSet insert_tokens(const train::TokenizedSet& s, const std::vector<int64_t>& token_ids,
                                  int max_insertions, int max_length, uint64_t seed);

/// `s` followed by `insert_tokens(s, ...)` (the set the unlearning fine-tune trains on).
train::TokenizedSet with_unlearning_copies(const train::TokenizedSet& s, const std::vector<int64_t>& token_ids,
                                           int max_insertions, int max_length, uint64_t seed);

/// The id of the tokenizer's unknown token ("[UNK]" for WordPiece, "<unk>" for byte-level BPE), if any.
std::optional<int64_t> unknown_token_id(const text::Tokenizer& tok);

/// Sets the word-embedding rows `ids` of `m` to `replacement`, in place: one row (H) for all, or one
/// row per id (len(ids), H). Throws on an id outside the vocabulary or a replacement of another shape.
void neutralize_rows(model::SequenceClassifierImpl& m, const std::vector<int64_t>& ids, const torch::Tensor& replacement);

}  // namespace finepurify::purify
