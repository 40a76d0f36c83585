// The shared defense pipeline: diagnose, the trigger-candidate extensions, reset (or prune) at a
// knob value, clean fine-tuning, and the knob search under the accuracy budget (see purify.hpp).
#include "finepurify/purify/purify.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>

#include <fmt/format.h>

#include "finepurify/error.hpp"
#include "finepurify/model/loader.hpp"
#include "finepurify/purify/unlearn.hpp"
#include "finepurify/util/memory.hpp"
#include "finepurify/util/runtime.hpp"

namespace finepurify::purify {

const util::EnumTable<Defense>& enum_table(Defense) {
  static const util::EnumTable<Defense> t{
      "defense",
      {{Defense::FinePurifying, "fine-purifying", "reset the top rho dimensions by the indicator (fisher-ratio)"},
       {Defense::FineTune, "finetune", "clean fine-tuning only (rho = 0)"},
       {Defense::FinePruning, "fine-pruning", "zero the least active FFN neurons per layer (knob: pruned fraction)"},
       {Defense::FineMixing, "fine-mixing", "reset a random rho of the dimensions (optionally E-PUR rows)"},
       {Defense::Magnitude, "magnitude", "reset the top rho dimensions by drift^2"},
       {Defense::Reinit, "reinit", "reset everything to w_Pre (rho = 1), then fine-tune"}}};
  return t;
}

bool defense_has_knob(Defense d) { return d != Defense::FineTune && d != Defense::Reinit; }
const char* knob_name(Defense d) { return d == Defense::FinePruning ? "pruned" : "rho"; }

train::TrainOptions clean_tuning_defaults() { return train::train_options(3, 5e-5, 16); }

std::vector<double> default_grid() {
  return {0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5};
}

Measured measure(model::SequenceClassifierImpl& m, const Measurements& ms, torch::Device device) {
  Measured r;
  std::vector<int64_t> trig_pred;
  if (ms.triggered) {
    trig_pred = train::evaluate(m, *ms.triggered, device).predictions;
    r.asr = train::attack_success_rate(trig_pred, ms.triggered->labels, ms.target);
  }
  if (ms.test) {
    auto e = train::evaluate(m, *ms.test, device);
    r.test_accuracy = e.accuracy;
    if (ms.triggered && !ms.triggered_source.empty())
      r.flip_rate = train::flip_rate(e.predictions, ms.test->labels, trig_pred, ms.triggered_source, ms.target);
  }
  return r;
}

std::pair<train::TokenizedSet, train::TokenizedSet> split_clean(const train::TokenizedSet& s, double dev_fraction,
                                                                uint64_t seed) {
  std::vector<int64_t> idx(s.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(idx.begin(), idx.end(), rng);
  int64_t n_dev = std::max<int64_t>(1, std::llround(dev_fraction * s.size()));
  if (n_dev >= s.size()) throw Error(ErrorKind::InvalidArgument, "clean set too small to hold out a dev part");
  std::vector<int64_t> dev(idx.begin(), idx.begin() + n_dev), tr(idx.begin() + n_dev, idx.end());
  std::sort(dev.begin(), dev.end());
  std::sort(tr.begin(), tr.end());
  return {train::subset(s, tr), train::subset(s, dev)};
}


namespace {

using Masks = std::map<std::string, torch::Tensor>;

/// Re-initialises the tensors without pre-trained counterpart (head, pooler) from the seed.
void reinit_unaligned(model::SequenceClassifierImpl& m, const Alignment& a, uint64_t seed) {
  auto fresh = model::make_random_classifier(m.config, seed);
  auto src = fresh->named_parameters();
  torch::NoGradGuard ng;
  for (auto& p : m.named_parameters())
    if (a.unaligned.count(p.key())) p.value().copy_(src[p.key()].to(p.value().device()));
}

void check_options(const PurifyOptions& opt) {
  if (defense_has_knob(opt.method) && opt.reset_fraction.has_value() == opt.max_acc_drop.has_value())
    throw Error(ErrorKind::InvalidArgument, "give exactly one of --reset-fraction and --max-acc-drop");
  if (opt.reset_fraction && (*opt.reset_fraction < 0 || *opt.reset_fraction > 1))
    throw Error(ErrorKind::InvalidArgument, fmt::format("--reset-fraction {} outside [0, 1]", *opt.reset_fraction));
}

/// The indicator a defense resets by: fine-purifying the chosen one, fine-mixing random, the others
/// magnitude (cheap; only their diagnosis uses it).
IndicatorOptions method_indicator(const PurifyOptions& opt) {
  auto i = opt.diagnose.indicator;
  if (opt.method == Defense::FineMixing) i.indicator = Indicator::Random;
  else if (opt.method != Defense::FinePurifying) i.indicator = Indicator::Magnitude;
  return i;
}

bool ranks_tokens(const PurifyOptions& opt) { return opt.unlearn_tokens > 0 || opt.neutralize_tokens > 0; }

/// The diagnosis a defense needs: its own indicator, or fisher-ratio when the token extensions rank
/// candidates (they always rank by fisher-ratio row mass; epsilon_scale stays the user's).
DiagnoseOptions diagnosis_options(const PurifyOptions& opt) {
  auto d = opt.diagnose;
  d.indicator = method_indicator(opt);
  if (ranks_tokens(opt)) {
    d.indicator.indicator = Indicator::FisherRatio;
    d.top_tokens = std::max({d.top_tokens, opt.unlearn_tokens, opt.neutralize_tokens});
    d.keep_fisher = method_indicator(opt).indicator == Indicator::InverseFisher;  // prepare() computes it from F
  }
  return d;
}

std::vector<std::string> token_names(const text::Tokenizer& tok, const std::vector<int64_t>& ids) {
  std::vector<std::string> names;
  for (auto id : ids) names.push_back(tok.id_to_token(id));
  return names;
}

std::string list_text(const std::vector<std::string>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ",\"" : "\"") + v[i] + "\"";
  return s + "]";
}

/// ", ASR a%, flip f%, test t%" for the measurements there are.
std::string measured_text(const Measured& m) {
  std::string s;
  if (m.asr >= 0) s += fmt::format(", ASR {:.2f}%", 100 * m.asr);
  if (m.flip_rate >= 0) s += fmt::format(", flip {:.2f}%", 100 * m.flip_rate);
  if (m.test_accuracy >= 0) s += fmt::format(", test {:.2f}%", 100 * m.test_accuracy);
  return s;
}

/// One defense run: the diagnosis, the extensions' state, and every evaluated point's weights.
class Run {
 public:
  Run(model::SequenceClassifierImpl& m, const std::string& pretrained, const train::TokenizedSet& clean_train,
      const train::TokenizedSet& clean_dev, const text::Tokenizer& tok, const PurifyOptions& opt, torch::Device device,
      const Measurements& measure)
      : m_(m), pretrained_(pretrained), train_(clean_train), dev_(clean_dev), tok_(tok), opt_(opt), device_(device),
        measure_(measure) {}

  PurifyResult run();

 private:
  Measured measured() { return measure(m_, measure_, device_); }
  void prepare();
  void prepare_neutralization();
  void prepare_unlearning();
  Masks apply_knob(double rho, train::TrainOptions& topt);
  EvaluatedPoint evaluate(double rho);
  void search();

  model::SequenceClassifierImpl& m_;
  const std::string& pretrained_;
  const train::TokenizedSet &train_, &dev_;
  const text::Tokenizer& tok_;
  const PurifyOptions& opt_;
  torch::Device device_;
  Measurements measure_;
  PurifyResult res_;
  Diagnosis diag_;
  std::vector<int64_t> neutral_ids_;
  torch::Tensor neutral_row_, epur_;
  train::TokenizedSet unlearn_train_;
  bool unlearn_ = false;
  std::vector<torch::Tensor> activations_;
  std::map<double, Masks> states_;  // purified weights of the evaluated rho that can still be chosen
};

void Run::prepare_neutralization() {
  neutral_ids_ = candidate_tokens(diag_.summary, opt_.neutralize_tokens);
  const auto pre_word = diag_.alignment.pre_of(m_.word_embedding_name());
  TokenAction t;
  t.tokens = token_names(tok_, neutral_ids_);
  if (opt_.neutralize_to == NeutralizeTo::Pretrained) {
    neutral_row_ = pre_word.index_select(0, torch::tensor(neutral_ids_, torch::kInt64)).clone();
    t.replacement = "tokens' own pre-trained rows";
  } else {
    auto unk = unknown_token_id(tok_);
    neutral_row_ = unk && *unk < pre_word.size(0) ? pre_word[*unk].clone() : pre_word.mean(0);
    t.replacement = unk ? tok_.id_to_token(*unk) + " (pre-trained row)" : "mean pre-trained row";
  }
  util::log(neutral_ids_.empty()
                ? std::string("neutralising: no candidate token passed the behavioural check; nothing neutralised")
                : fmt::format("neutralising the embedding rows of {} suspicious tokens: {}", neutral_ids_.size(),
                              list_text(t.tokens)));
  res_.neutralized = t;
}

void Run::prepare_unlearning() {
  const auto ids = candidate_tokens(diag_.summary, opt_.unlearn_tokens);
  unlearn_ = !ids.empty();
  if (unlearn_)
    unlearn_train_ = with_unlearning_copies(train_, ids, opt_.unlearn_max_insertions, opt_.max_length, opt_.seed ^ 0x756e6cULL);
  TokenAction t;
  t.tokens = token_names(tok_, ids);
  t.max_insertions = opt_.unlearn_max_insertions;
  t.train_examples = unlearn_ ? unlearn_train_.size() : train_.size();
  util::log(unlearn_ ? fmt::format("unlearning: clean fine-tuning also sees {} copies with suspicious tokens inserted ({})",
                                   train_.size(), list_text(t.tokens))
                     : std::string("unlearning: no candidate token passed the behavioural check; plain clean fine-tuning"));
  res_.unlearning = t;
}

void Run::prepare() {
  diag_ = diagnose(m_, pretrained_, train_, tok_, diagnosis_options(opt_), device_);
  diag_.ft = model::snapshot(m_);  // the diagnosis shares the model's storage; every point starts from this copy
  const auto& a = diag_.alignment;
  if (opt_.neutralize_tokens > 0) prepare_neutralization();
  const auto own = method_indicator(opt_);
  if (ranks_tokens(opt_) && own.indicator != Indicator::FisherRatio) {
    // The diagnosis (and its token ranking) stays fisher-ratio; the reset uses the defense's own indicator.
    diag_.r = compute_indicators(a, diag_.ft, &diag_.fisher, own, nullptr);
    diag_.summary.reset_indicator = own.indicator;
  }
  if (opt_.unlearn_tokens > 0) prepare_unlearning();
  if (opt_.method == Defense::FinePruning) activations_ = ffn_mean_activations(m_, train_, device_);
  if (opt_.method == Defense::FineMixing && opt_.epur) {
    const auto word = m_.word_embedding_name();
    epur_ = epur_mask(diag_.ft.at(word), a.pre_of(word), train_, opt_.epur_rows);
  }
  diag_.fisher.clear();  // summarised and turned into the indicator: one model-sized copy less from here on
}

/// Puts the weights at the knob value: w_FT with the pruned neurons zeroed (their gradients masked
/// in `topt`) or the selected dimensions reset to w_Pre. Returns the masks.
Masks Run::apply_knob(double rho, train::TrainOptions& topt) {
  Masks masks;
  const auto& a = diag_.alignment;
  if (opt_.method == Defense::FinePruning) {
    masks = pruning_masks(m_, activations_, rho);
    torch::NoGradGuard ng;
    auto params = m_.named_parameters();
    for (auto& [n, mk] : masks) params[n].masked_fill_(mk.to(params[n].device()), 0.0);
    // Pruned weights stay zero: their gradient is masked, so AdamW's moments stay zero too.
    auto dev_masks = std::make_shared<Masks>();
    for (auto& [n, mk] : masks) (*dev_masks)[n] = mk.to(params[n].device());
    auto prev = topt.after_backward;
    topt.after_backward = [dev_masks, prev](model::SequenceClassifierImpl& mm) {
      if (prev) prev(mm);
      auto ps = mm.named_parameters();
      for (auto& [n, mk] : *dev_masks)
        if (ps[n].grad().defined()) ps[n].mutable_grad().masked_fill_(mk, 0.0);
    };
  } else if (rho > 0) {
    masks = select_reset(a.aligned, diag_.r, rho, opt_.scope, opt_.word_embedding, m_.word_embedding_name());
    if (epur_.defined()) {
      const auto word = m_.word_embedding_name();
      masks[word] = masks.count(word) ? masks[word].logical_or(epur_) : epur_;
    }
    reset_to_pretrained(m_, a, masks);
  }
  return masks;
}

EvaluatedPoint Run::evaluate(double rho) {
  auto t0 = std::chrono::steady_clock::now();
  // The previous point's training buffers and dropped weights go back to the system first: the
  // allocator keeps free pages (jemalloc without decay, tools/finepurify/main.cpp) and without this a
  // bert-base purify grew ~0.7 GB a point (docs/perf.md).
  util::release_free_memory();
  util::RssSampler rss;
  model::restore(m_, diag_.ft);
  EvaluatedPoint pt;
  pt.rho = rho;
  auto topt = opt_.train;
  const auto masks = apply_knob(rho, topt);
  pt.reset_dims = count_selected(masks);
  if (opt_.reinit_head) reinit_unaligned(m_, diag_.alignment, opt_.seed);
  if (opt_.neutralize_tokens > 0) neutralize_rows(m_, neutral_ids_, neutral_row_);
  pt.selection = selection_of(masks, m_.config.num_hidden_layers);
  const char* knob = knob_name(opt_.method);
  const char* method = util::name_of(opt_.method);
  topt.label = fmt::format("{} {}={}", method, knob, rho);
  topt.seed = opt_.seed;
  train::fine_tune(m_, unlearn_ ? unlearn_train_ : train_, &dev_, topt, device_);
  pt.dev_accuracy = train::evaluate(m_, dev_, device_).accuracy;
  pt.measured = measured();
  pt.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  pt.within_budget = !opt_.max_acc_drop || within_budget(pt.dev_accuracy, *res_.budget_line);
  util::log(fmt::format("{} {}={}: {} {} dims, clean-dev accuracy {:.2f}%{}{} ({:.0f}s, peak resident memory {:.2f} GiB)",
                        method, knob, rho, opt_.method == Defense::FinePruning ? "pruned" : "reset", pt.reset_dims,
                        100 * pt.dev_accuracy, measured_text(pt.measured),
                        opt_.max_acc_drop ? (pt.within_budget ? " within budget" : " over budget") : "", pt.seconds,
                        rss.peak() / 1073741824.0));
  states_[rho] = model::snapshot(m_);
  res_.evaluated.push_back(pt);
  return pt;
}

/// The knob: the defense's single point, the fixed value, or the largest grid value within budget
/// (binary search, or every value with `sweep`); 0 (clean fine-tuning) when none qualifies.
void Run::search() {
  if (!defense_has_knob(opt_.method)) {
    res_.chosen_rho = opt_.method == Defense::Reinit ? 1.0 : 0.0;
    evaluate(res_.chosen_rho);
    return;
  }
  if (opt_.reset_fraction) {
    evaluate(*opt_.reset_fraction);
    res_.chosen_rho = *opt_.reset_fraction;
    return;
  }
  auto grid = opt_.grid;
  std::sort(grid.begin(), grid.end());
  grid.erase(std::unique(grid.begin(), grid.end()), grid.end());
  for (double g : grid)
    if (!(g > 0 && g <= 1)) throw Error(ErrorKind::InvalidArgument, fmt::format("grid value {} outside (0, 1]", g));
  int64_t lo = -1;
  const bool line_rule = opt_.knob_rule == KnobRule::Largest || opt_.knob_rule == KnobRule::Tolerant;
  if (opt_.sweep || !line_rule) {  // every grid value, then the rule
    std::vector<KnobPoint> pts;
    for (double g : grid) pts.push_back({g, evaluate(g).dev_accuracy});
    lo = choose_knob(pts, res_.suspect_dev_accuracy, *opt_.max_acc_drop, opt_.knob_rule, dev_.size());
  } else {  // accuracy falls as rho grows: binary search for the largest grid value over the budget line
    int64_t hi = static_cast<int64_t>(grid.size());
    // Only the weights that can still be chosen are kept: the last point within budget.
    while (hi - lo > 1) {
      int64_t mid = (lo + hi) / 2;
      if (evaluate(grid[mid]).within_budget) {
        if (lo >= 0) states_.erase(grid[lo]);
        lo = mid;
      } else {
        states_.erase(grid[mid]);
        hi = mid;
      }
    }
  }
  if (lo >= 0) {
    res_.chosen_rho = grid[lo];
    return;
  }
  util::log("no grid value kept the accuracy budget: falling back to 0 (clean fine-tuning only)");
  evaluate(0.0);
  res_.chosen_rho = 0.0;
}

PurifyResult Run::run() {
  check_options(opt_);
  res_.options = opt_;
  res_.suspect_dev_accuracy = train::evaluate(m_, dev_, device_).accuracy;
  res_.suspect = measured();
  util::log(fmt::format("suspect model: clean-dev accuracy {:.2f}%{}", 100 * res_.suspect_dev_accuracy,
                        measured_text(res_.suspect)));
  if (opt_.max_acc_drop) {
    res_.budget_line = budget_line(res_.suspect_dev_accuracy, *opt_.max_acc_drop, opt_.knob_rule, dev_.size());
    util::log(fmt::format("budget line ({} rule, {} points, {} clean-dev rows): clean-dev accuracy >= {:.2f}%",
                          util::name_of(opt_.knob_rule), *opt_.max_acc_drop, dev_.size(), 100 * *res_.budget_line));
  }
  prepare();
  search();
  model::restore(m_, states_.at(res_.chosen_rho));
  for (auto& pt : res_.evaluated)
    if (pt.rho == res_.chosen_rho) {
      res_.purified_dev_accuracy = pt.dev_accuracy;
      res_.purified = pt.measured;
      res_.selection = pt.selection;
    }
  res_.diagnosis = diag_.summary;
  res_.clean_train_examples = train_.size();
  res_.clean_dev_examples = dev_.size();
  return res_;
}

}  // namespace

PurifyResult purify(model::SequenceClassifierImpl& m, const std::string& pretrained_folder,
                    const train::TokenizedSet& clean_train, const train::TokenizedSet& clean_dev,
                    const text::Tokenizer& tok, const PurifyOptions& opt, torch::Device device,
                    const Measurements& measure) {
  return Run(m, pretrained_folder, clean_train, clean_dev, tok, opt, device, measure).run();
}

}  // namespace finepurify::purify
