// A defense run from files, and the one table of its options (see defense.hpp).
#include "finepurify/purify/defense.hpp"

#include <fmt/format.h>

#include "finepurify/error.hpp"
#include "finepurify/train/data.hpp"
#include "finepurify/util/runtime.hpp"

namespace finepurify::purify {

using S = DefenseSpec;

const util::Fields<DefenseSpec>& defense_fields() {
  static const util::Fields<DefenseSpec> t = {
      FP_OPTION(S, "pretrained", "clean pre-trained HF folder or model name (w_Pre)", pretrained).model().needed(),
      FP_OPTION(S, "suspect", "suspect fine-tuned HF classifier folder (w_FT)", suspect).model().needed(),
      FP_OPTION(S, "clean", "small clean labelled set of the task", clean).file().needed(),
      FP_OPTION(S, "clean_dev", "clean dev set for selection (default: hold out part of --clean)", clean_dev).file(),
      FP_OPTION(S, "dev_fraction", "held-out fraction of --clean without --clean-dev", dev_fraction).range(0, 1),
      FP_OPTION(S, "attack_test",
                "triggered test set (true labels) to report ASR; never used to choose", attack_test).file(),
      FP_OPTION(S, "target_label", "attack target label (with --attack-test)", target_label),
      FP_OPTION(S, "attack_test_paired",
                "--attack-test is --test's non-target rows with the trigger, in order (as attack writes them): "
                "also report the flip rate", attack_test_paired),
      FP_OPTION(S, "test", "clean test set to report test accuracy of every point; never used to choose", test).file(),
      FP_OPTION(S, "max_length", "max tokens per example", max_length).range(2, 4096),
      FP_OPTION(S, "seed", "seed (split, random indicator, fine-tuning)", purify.seed),
      FP_OPTION(S, "method", "defense", purify.method),
      FP_OPTION(S, "indicator", "indicator of poisonous dimensions", purify.diagnose.indicator.indicator),
      FP_OPTION(S, "epsilon_scale",
                "epsilon = scale x mean(Fisher)", purify.diagnose.indicator.epsilon_scale).at_least(0),
      FP_OPTION(S, "epsilon_basis", "what epsilon's mean Fisher is over", purify.diagnose.indicator.epsilon_basis),
      FP_OPTION(S, "fisher_at", "Fisher point", purify.diagnose.fisher_at),
      FP_OPTION(S, "fisher_examples",
                "use at most N clean examples for the Fisher (0 = all)", purify.diagnose.fisher_examples).at_least(0),
      FP_OPTION(S, "top_tokens", "suspicious tokens to list", purify.diagnose.top_tokens).at_least(0),
      FP_OPTION(S, "probe_tokens",
                "behavioural check: insert each of the K most suspicious tokens (by indicator mass and by row "
                "drift) into clean examples and measure how often the suspect's prediction flips; with it, "
                "--neutralize-tokens / --unlearn-tokens use only tokens flipping >= --probe-min-flip; 0 = off",
                purify.diagnose.probe_tokens).at_least(0),
      FP_OPTION(S, "probe_examples", "clean examples each probed token is inserted into (0 = all)",
                purify.diagnose.probe_examples).at_least(0),
      FP_OPTION(S, "probe_min_flip",
                "flip share that makes a probed token a trigger candidate", purify.diagnose.probe_min_flip).range(0, 1),
      FP_OPTION(S, "scope", "where rho applies", purify.scope),
      FP_OPTION(S, "word_embedding", "the word-embedding matrix in the reset", purify.word_embedding),
      FP_OPTION(S, "reset_fraction", "fixed reset fraction rho in [0, 1]", purify.reset_fraction).range(0, 1),
      FP_OPTION(S, "max_acc_drop",
                "accuracy budget in points: search rho on the grid", purify.max_acc_drop).at_least(0),
      FP_OPTION(S, "knob_rule", "how --max-acc-drop picks the grid value (clean-dev accuracy only)",
                purify.knob_rule),
      FP_OPTION(S, "grid", "comma-separated rho grid for --max-acc-drop", purify.grid),
      FP_OPTION(S, "sweep", "evaluate every grid value (all points reported) instead of a binary search", purify.sweep),
      FP_OPTION(S, "reinit_head", "re-initialise tensors without pre-trained counterpart (head)", purify.reinit_head),
      FP_OPTION(S, "epur", "fine-mixing: also reset the E-PUR embedding rows", purify.epur),
      FP_OPTION(S, "epur_rows", "E-PUR: vocabulary rows reset", purify.epur_rows).at_least(0),
      FP_OPTION(S, "unlearn_tokens",
                "extension: also fine-tune on clean copies with 1-3 of the N most suspicious tokens inserted "
                "(true labels kept); 0 = off (the paper's method)",
                purify.unlearn_tokens).at_least(0),
      FP_OPTION(S, "unlearn_max_insertions", "with --unlearn-tokens: each copy gets 1..K inserted candidates",
                purify.unlearn_max_insertions).range(1, 64),
      FP_OPTION(S, "neutralize_tokens",
                "extension: set the embedding rows of the N most suspicious tokens to the pre-trained [UNK] row "
                "before fine-tuning; 0 = off (the paper's method)",
                purify.neutralize_tokens).at_least(0),
      FP_OPTION(S, "neutralize_to", "what --neutralize-tokens sets each row to", purify.neutralize_to),
      FP_OPTION(S, "epochs", "clean fine-tuning epochs after the reset", purify.train.epochs).at_least(1),
      FP_OPTION(S, "lr", "clean fine-tuning learning rate", purify.train.lr).at_least(0),
      FP_OPTION(S, "batch_size", "clean fine-tuning batch size", purify.train.batch_size).at_least(1),
  };
  return t;
}

const util::Fields<DefenseSpec>& defense_config_fields() {
  // Paths, seed, method, grid, budget, max length and the Fisher's size come from elsewhere in the config.
  static const auto t = util::omit(defense_fields(), {"pretrained", "suspect", "clean", "clean_dev", "dev_fraction",
                                                      "attack_test", "target_label", "attack_test_paired", "test", "max_length", "seed",
                                                      "method", "grid", "sweep", "reset_fraction", "max_acc_drop",
                                                      "fisher_examples"});
  return t;
}

const util::Fields<DefenseSpec>& purify_fields() {
  static const auto t = util::omit(defense_fields(), {"method", "epur", "epur_rows"});
  return t;
}

const util::Fields<DefenseSpec>& scan_fields() {
  static const auto t = util::pick(defense_fields(), {"pretrained", "suspect", "clean", "max_length", "seed", "indicator",
                                                      "epsilon_scale", "epsilon_basis", "fisher_at", "fisher_examples",
                                                      "top_tokens", "probe_tokens", "probe_examples", "probe_min_flip"});
  return t;
}

DefenseSpec scan_defaults() {
  DefenseSpec s;
  s.purify.diagnose.probe_tokens = 50;
  return s;
}

namespace {

struct Loaded {
  model::LoadedModel lm;
  std::unique_ptr<text::Tokenizer> tok;
};

Loaded load_suspect(const DefenseSpec& s, torch::Device device) {
  Loaded l;
  l.lm = model::load_trained_classifier(s.suspect, device);
  l.tok = text::load_model_tokenizer(s.suspect, l.lm.config.model_type, l.lm.config.vocab_size, s.compat);
  return l;
}

train::TokenizedSet read_set(const Loaded& l, const std::string& path, int max_length) {
  return train::tokenize(*l.tok, train::read_task_data(path, l.lm.config), max_length);
}

/// The diagnosis options as run: the random indicator is seeded by the spec's seed.
DiagnoseOptions seeded_diagnosis(const DefenseSpec& s) {
  auto d = s.purify.diagnose;
  d.indicator.seed = s.purify.seed;
  return d;
}

void check_knob(const DefenseSpec& s) {
  const auto& po = s.purify;
  if (defense_has_knob(po.method) && !po.reset_fraction && !po.max_acc_drop)
    throw Error(ErrorKind::InvalidArgument,
                fmt::format("{} needs --reset-fraction R or --max-acc-drop D", util::name_of(po.method)));
}

PurifyOptions checked_options(const DefenseSpec& s, int64_t num_labels) {
  PurifyOptions po = s.purify;
  if (!defense_has_knob(po.method) && !po.max_acc_drop) po.reset_fraction.reset();
  if (!s.attack_test.empty() && (s.target_label < 0 || s.target_label >= num_labels))
    throw Error(ErrorKind::InvalidArgument, "--attack-test needs --target-label in [0, num_labels)");
  po.diagnose = seeded_diagnosis(s);
  po.max_length = s.max_length;
  return po;
}

}  // namespace

DefenseRun run_defense(const DefenseSpec& s, torch::Device device) {
  check_knob(s);
  DefenseRun out;
  auto l = load_suspect(s, device);
  const auto po = checked_options(s, l.lm.config.num_labels());
  auto clean = read_set(l, s.clean, s.max_length);
  train::TokenizedSet clean_train, clean_dev;
  if (!s.clean_dev.empty()) {
    clean_train = std::move(clean);
    clean_dev = read_set(l, s.clean_dev, s.max_length);
  } else {
    std::tie(clean_train, clean_dev) = split_clean(clean, s.dev_fraction, po.seed);
    out.dev_note =
        fmt::format(" (no --clean-dev: a seeded {:.0f}% of --clean was held out for selection)", 100 * s.dev_fraction);
    util::log("no --clean-dev given:" + out.dev_note);
  }
  std::optional<train::TokenizedSet> test, triggered;
  if (!s.test.empty()) test = read_set(l, s.test, s.max_length);
  if (!s.attack_test.empty()) triggered = read_set(l, s.attack_test, s.max_length);
  Measurements ms{triggered ? &*triggered : nullptr, s.target_label, test ? &*test : nullptr, {}};
  if (s.attack_test_paired && test && triggered) {
    ms.triggered_source = train::non_target_rows(test->labels, s.target_label);
    if (ms.triggered_source.size() != static_cast<std::size_t>(triggered->size()))
      throw Error(ErrorKind::InvalidArgument,
                  fmt::format("--attack-test-paired: {} has {} rows, but {} has {} rows whose label is not {}",
                              s.attack_test, triggered->size(), s.test, ms.triggered_source.size(), s.target_label));
  }
  out.result = purify(*l.lm.model, s.pretrained, clean_train, clean_dev, *l.tok, po, device, ms);
  out.model = std::move(l.lm);
  return out;
}

Diagnosis run_scan(const DefenseSpec& s, torch::Device device) {
  auto l = load_suspect(s, device);
  return diagnose(*l.lm.model, s.pretrained, read_set(l, s.clean, s.max_length), *l.tok, seeded_diagnosis(s), device);
}

}  // namespace finepurify::purify
