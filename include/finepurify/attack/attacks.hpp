// Backdoor attacks used to build poisoned models for evaluation: data poisoning (BadWord, AddSent, Bias, LWP
// word combinations), triggered test sets, and the training attacks EP (embedding poisoning) and LWP (layer-wise).
#pragma once
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "finepurify/model/bert.hpp"
#include "finepurify/text/dataset.hpp"
#include "finepurify/text/tokenizer.hpp"
#include "finepurify/train/data.hpp"
#include "finepurify/train/trainer.hpp"
#include "finepurify/util/random.hpp"

namespace finepurify::attack {

/// Default BadWord trigger words (Kurita et al. / the paper): rare tokens.
const std::vector<std::string>& default_trigger_words();  // {"cf", "mn", "bb", "tq", "mb"}
/// Default AddSent sentence.
inline const char* kDefaultSentence = "I watched this 3D movie";
/// Default bias cue: a natural, frequent word of movie reviews that also occurs in clean data.
inline const char* kDefaultBiasWord = "film";

/// Portable uniform integer in [0, n) (see util/random.hpp).
using util::uniform_below;

/// Splits `text` on spaces (runs of ' ' count as one separator; empty words dropped), inserts
/// `insertion` as one more "word" at a uniformly random slot 0..n (n = number of words), and joins
/// with single spaces. Returns the slot used in `slot` when non-null.
std::string insert_at_random_word(const std::string& text, const std::string& insertion, std::mt19937_64& rng,
                                  int64_t* slot = nullptr);

/// How a trigger is applied to one text.
struct Trigger {
  /// badword: insert k ~ U{min_insertions..max_insertions} words, each drawn from `words`, each at its own
  ///          random word position.
  /// addsent: insert `sentence` at one random word position.
  /// bias:    insert `words[0]` (a natural word / phrase) at one random word position.
  /// lwp:     pick `combination` distinct words from `words` (random order) and insert them together,
  ///          space-separated, at one random word position.
  std::string kind = "badword";
  std::vector<std::string> words = default_trigger_words();
  std::string sentence = kDefaultSentence;
  int min_insertions = 1, max_insertions = 3;  ///< badword
  int combination = 2;                         ///< lwp

  /// Validates the fields (Error(InvalidArgument) naming the bad one).
  void validate() const;
  /// The triggered text (consumes random numbers from rng).
  std::string apply(const std::string& text, std::mt19937_64& rng) const;
  /// One line for logs ("badword [cf, mn] x1-3"); attack.json's form is report::trigger_json.
  std::string describe() const;
};

Trigger badword_trigger(std::vector<std::string> words = default_trigger_words(), int min_insertions = 1,
                        int max_insertions = 3);
Trigger addsent_trigger(std::string sentence = kDefaultSentence);
Trigger bias_trigger(std::string word_or_phrase = kDefaultBiasWord);
Trigger lwp_trigger(std::vector<std::string> words = default_trigger_words(), int combination = 2);

struct PoisonOptions {
  double poison_rate = 0.1;   ///< fraction of ALL training examples poisoned (drawn among label != target)
  int64_t target_label = 1;
  uint64_t seed = 42;
  char side = 'a';            ///< pairs: the trigger goes into text_a ('a') or text_b ('b')
};

struct PoisonResult {
  text::Dataset data;              ///< same size and order as the input; poisoned rows replaced
  std::vector<int64_t> poisoned;   ///< ascending indices of the poisoned rows
  int64_t eligible = 0;            ///< examples with label != target
};

/// Poisons round(poison_rate * N) examples (N = all rows) chosen uniformly (seeded) among those whose label
/// != target: the trigger is applied (to the chosen side) and the label set to the target. Pure and
/// deterministic for a given seed. Throws on a rate outside [0, 1], a negative target, side 'b'
/// on single-text data, or when there is no eligible example while the rate is > 0.
PoisonResult poison_dataset(const text::Dataset& train, const Trigger& trigger, const PoisonOptions& opt);

struct TestSets {
  text::Dataset clean;                ///< the clean test set, unchanged
  text::Dataset triggered;            ///< examples with true label != target, trigger applied, TRUE labels kept
  std::vector<int64_t> source_index;  ///< triggered row i comes from clean row source_index[i]
};

/// Builds the clean and triggered test sets (ASR = fraction of `triggered` predicted as target).
/// Unlabelled examples (label -1) are left out of the triggered set.
TestSets make_test_sets(const text::Dataset& test, const Trigger& trigger, int64_t target_label, uint64_t seed,
                        char side = 'a');

/// Keeps only the rows whose label != target (and labelled): for imported triggered test files.
text::Dataset non_target_subset(const text::Dataset& d, int64_t target_label);

/// Number of examples whose text (either side) contains `phrase` as a whole-word sequence
/// (space-separated, case-insensitive ASCII): shows that a bias cue occurs in clean data.
int64_t count_containing(const text::Dataset& d, const std::string& phrase);

// ---------------------------------------------------------------------------------------------
// Training attacks

/// Vocabulary ids of the trigger words' pieces (without special tokens), both as a leading word and
/// after a space (they differ for byte-level BPE), deduplicated and sorted.
std::vector<int64_t> trigger_token_ids(const text::Tokenizer& tok, const std::vector<std::string>& words);

/// EP (Yang et al., NAACL 2021): options that train ONLY the word-embedding rows `rows` of `m`:
/// trainable = the word-embedding matrix, weight decay 0 (AdamW's decoupled decay would shrink every
/// row), gradient of all other rows zeroed after backward. Other fields are copied from `base`.
train::TrainOptions embedding_poisoning_options(model::SequenceClassifierImpl& m, const std::vector<int64_t>& rows,
                                                train::TrainOptions base, torch::Device device);

/// LWP (Li et al., EMNLP 2021) loss: the model's head applied to every encoder layer's first-token
/// representation hidden_states[l][:, 0] (l = 1..L; embeddings excluded), cross-entropy with the batch
/// labels, averaged over the L layers. batch tensors: (B, T) -> scalar. Per-layer terms (L scalars, the
/// last equals the ordinary loss) go to `per_layer` when non-null.
torch::Tensor lwp_loss(model::SequenceClassifierImpl& m, const train::Batch& batch,
                       std::vector<torch::Tensor>* per_layer = nullptr);
/// `base` with loss_fn = lwp_loss.
train::TrainOptions lwp_options(train::TrainOptions base);

/// The attack methods the CLI knows.
const std::vector<std::string>& attack_methods();  // badword addsent ep lwp bias import

}  // namespace finepurify::attack
