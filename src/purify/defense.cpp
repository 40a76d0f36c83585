// A defense run from files, and the one table of its options (see defense.hpp).
#include "finepurify/purify/defense.hpp"

#include <fmt/format.h>

#include "finepurify/error.hpp"
#include "finepurify/train/data.hpp"
#include "finepurify/util/runtime.hpp"

namespace finepurify::purify {

using util::field;
using F = util::Field<DefenseSpec>;

const util::Fields<DefenseSpec>& defense_fields() {
  static const util::Fields<DefenseSpec> t = {
      field<DefenseSpec>("pretrained", "clean pre-trained HF folder or model name (w_Pre)", [](DefenseSpec& s) -> auto& { return s.pretrained; }).model().needed(),
      field<DefenseSpec>("suspect", "suspect fine-tuned HF classifier folder (w_FT)", [](DefenseSpec& s) -> auto& { return s.suspect; }).model().needed(),
      field<DefenseSpec>("clean", "small clean labelled set of the task", [](DefenseSpec& s) -> auto& { return s.clean; }).file().needed(),
      field<DefenseSpec>("clean_dev", "clean dev set for selection (default: hold out part of --clean)", [](DefenseSpec& s) -> auto& { return s.clean_dev; }).file(),
      field<DefenseSpec>("dev_fraction", "held-out fraction of --clean without --clean-dev", [](DefenseSpec& s) -> auto& { return s.dev_fraction; }).range(0, 1),
      field<DefenseSpec>("attack_test", "triggered test set (true labels) to report ASR; never used to choose", [](DefenseSpec& s) -> auto& { return s.attack_test; }).file(),
      field<DefenseSpec>("target_label", "attack target label (with --attack-test)", [](DefenseSpec& s) -> auto& { return s.target_label; }),
      field<DefenseSpec>("test", "clean test set to report test accuracy of every point; never used to choose", [](DefenseSpec& s) -> auto& { return s.test; }).file(),
      field<DefenseSpec>("max_length", "max tokens per example", [](DefenseSpec& s) -> auto& { return s.max_length; }).range(2, 4096),
      field<DefenseSpec>("seed", "seed (split, random indicator, fine-tuning)", [](DefenseSpec& s) -> auto& { return s.purify.seed; }),
      field<DefenseSpec>("method", "defense", [](DefenseSpec& s) -> auto& { return s.purify.method; }),
      field<DefenseSpec>("indicator", "indicator of poisonous dimensions", [](DefenseSpec& s) -> auto& { return s.purify.diagnose.indicator.indicator; }),
      field<DefenseSpec>("epsilon_scale", "epsilon = scale x mean(Fisher)", [](DefenseSpec& s) -> auto& { return s.purify.diagnose.indicator.epsilon_scale; }).at_least(0),
      field<DefenseSpec>("fisher_at", "Fisher point", [](DefenseSpec& s) -> auto& { return s.purify.diagnose.fisher_at; }),
      field<DefenseSpec>("fisher_examples", "use at most N clean examples for the Fisher (0 = all)", [](DefenseSpec& s) -> auto& { return s.purify.diagnose.fisher_examples; }).at_least(0),
      field<DefenseSpec>("top_tokens", "suspicious tokens to list", [](DefenseSpec& s) -> auto& { return s.purify.diagnose.top_tokens; }).at_least(0),
      field<DefenseSpec>("probe_tokens",
                         "behavioural check: insert each of the K most suspicious tokens (by indicator mass and by row "
                         "drift) into clean examples and measure how often the suspect's prediction flips; with it, "
                         "--neutralize-tokens / --unlearn-tokens use only tokens flipping >= --probe-min-flip; 0 = off",
                         [](DefenseSpec& s) -> auto& { return s.purify.diagnose.probe_tokens; }).at_least(0),
      field<DefenseSpec>("probe_examples", "clean examples each probed token is inserted into (0 = all)", [](DefenseSpec& s) -> auto& { return s.purify.diagnose.probe_examples; }).at_least(0),
      field<DefenseSpec>("probe_min_flip", "flip share that makes a probed token a trigger candidate", [](DefenseSpec& s) -> auto& { return s.purify.diagnose.probe_min_flip; }).range(0, 1),
      field<DefenseSpec>("scope", "where rho applies", [](DefenseSpec& s) -> auto& { return s.purify.scope; }),
      field<DefenseSpec>("reset_fraction", "fixed reset fraction rho in [0, 1]", [](DefenseSpec& s) -> auto& { return s.purify.reset_fraction; }).range(0, 1),
      field<DefenseSpec>("max_acc_drop", "accuracy budget in points: search rho on the grid", [](DefenseSpec& s) -> auto& { return s.purify.max_acc_drop; }).at_least(0),
      field<DefenseSpec>("grid", "comma-separated rho grid for --max-acc-drop", [](DefenseSpec& s) -> auto& { return s.purify.grid; }),
      field<DefenseSpec>("sweep", "evaluate every grid value (all points reported) instead of a binary search", [](DefenseSpec& s) -> auto& { return s.purify.sweep; }),
      field<DefenseSpec>("reinit_head", "re-initialise tensors without pre-trained counterpart (head)", [](DefenseSpec& s) -> auto& { return s.purify.reinit_head; }),
      field<DefenseSpec>("epur", "fine-mixing: also reset the E-PUR embedding rows", [](DefenseSpec& s) -> auto& { return s.purify.epur; }),
      field<DefenseSpec>("epur_rows", "E-PUR: vocabulary rows reset", [](DefenseSpec& s) -> auto& { return s.purify.epur_rows; }).at_least(0),
      field<DefenseSpec>("unlearn_tokens",
                         "extension: also fine-tune on clean copies with 1-3 of the N most suspicious tokens inserted "
                         "(true labels kept); 0 = off (the paper's method)",
                         [](DefenseSpec& s) -> auto& { return s.purify.unlearn_tokens; }).at_least(0),
      field<DefenseSpec>("unlearn_max_insertions", "with --unlearn-tokens: each copy gets 1..K inserted candidates", [](DefenseSpec& s) -> auto& { return s.purify.unlearn_max_insertions; }).range(1, 64),
      field<DefenseSpec>("neutralize_tokens",
                         "extension: set the embedding rows of the N most suspicious tokens to the pre-trained [UNK] row "
                         "before fine-tuning; 0 = off (the paper's method)",
                         [](DefenseSpec& s) -> auto& { return s.purify.neutralize_tokens; }).at_least(0),
      field<DefenseSpec>("epochs", "clean fine-tuning epochs after the reset", [](DefenseSpec& s) -> auto& { return s.purify.train.epochs; }).at_least(1),
      field<DefenseSpec>("lr", "clean fine-tuning learning rate", [](DefenseSpec& s) -> auto& { return s.purify.train.lr; }).at_least(0),
      field<DefenseSpec>("batch_size", "clean fine-tuning batch size", [](DefenseSpec& s) -> auto& { return s.purify.train.batch_size; }).at_least(1),
  };
  return t;
}

const util::Fields<DefenseSpec>& defense_config_fields() {
  // Paths, seed, method, grid, budget, max length and the Fisher's size come from elsewhere in the config.
  static const auto t = util::omit(defense_fields(), {"pretrained", "suspect", "clean", "clean_dev", "dev_fraction",
                                                      "attack_test", "target_label", "test", "max_length", "seed",
                                                      "method", "grid", "sweep", "reset_fraction", "max_acc_drop",
                                                      "fisher_examples"});
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
  l.tok = text::load_tokenizer(s.suspect, l.lm.config.model_type, s.compat);
  return l;
}

train::TokenizedSet read_set(const Loaded& l, const std::string& path, int max_length) {
  return train::tokenize(*l.tok, train::read_task_data(path, l.lm.config), max_length);
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
  po.diagnose.indicator.seed = po.seed;
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
    out.dev_note = fmt::format(" (no --clean-dev: a seeded {:.0f}% of --clean was held out for selection)", 100 * s.dev_fraction);
    util::log("no --clean-dev given:" + out.dev_note);
  }
  std::optional<train::TokenizedSet> test, triggered;
  if (!s.test.empty()) test = read_set(l, s.test, s.max_length);
  if (!s.attack_test.empty()) triggered = read_set(l, s.attack_test, s.max_length);
  Measurements ms{triggered ? &*triggered : nullptr, s.target_label, test ? &*test : nullptr};
  out.result = purify(*l.lm.model, s.pretrained, clean_train, clean_dev, *l.tok, po, device, ms);
  out.model = std::move(l.lm);
  return out;
}

Diagnosis run_scan(const DefenseSpec& s, torch::Device device) {
  auto l = load_suspect(s, device);
  auto opt = s.purify.diagnose;
  opt.indicator.seed = s.purify.seed;
  return diagnose(*l.lm.model, s.pretrained, read_set(l, s.clean, s.max_length), *l.tok, opt, device);
}

}  // namespace finepurify::purify
