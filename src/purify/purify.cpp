// The Fine-purifying pipeline: diagnose (Fisher + indicator), select, reset, fine-tune, search rho.
#include "finepurify/purify/purify.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>

#include <fmt/format.h>

#include "finepurify/error.hpp"
#include "finepurify/model/loader.hpp"
#include "finepurify/purify/probe.hpp"
#include "finepurify/purify/unlearn.hpp"
#include "finepurify/util/runtime.hpp"

namespace finepurify::purify {

using nlohmann::json;

FisherAt fisher_at_from_string(const std::string& s) {
  if (s == "ft") return FisherAt::FT;
  if (s == "pre") return FisherAt::Pre;
  if (s == "mean") return FisherAt::Mean;
  throw Error(ErrorKind::InvalidArgument, "unknown --fisher-at '" + s + "' (ft, pre, mean)");
}

const char* fisher_at_name(FisherAt f) {
  switch (f) {
    case FisherAt::FT: return "ft";
    case FisherAt::Pre: return "pre";
    case FisherAt::Mean: return "mean";
  }
  return "?";
}

Defense defense_from_string(const std::string& s) {
  if (s == "fine-purifying") return Defense::FinePurifying;
  if (s == "finetune") return Defense::FineTune;
  if (s == "fine-pruning") return Defense::FinePruning;
  if (s == "fine-mixing") return Defense::FineMixing;
  if (s == "magnitude") return Defense::Magnitude;
  if (s == "reinit") return Defense::Reinit;
  throw Error(ErrorKind::InvalidArgument,
              "unknown defense '" + s + "' (fine-purifying, finetune, fine-pruning, fine-mixing, magnitude, reinit)");
}

const char* defense_name(Defense d) {
  switch (d) {
    case Defense::FinePurifying: return "fine-purifying";
    case Defense::FineTune: return "finetune";
    case Defense::FinePruning: return "fine-pruning";
    case Defense::FineMixing: return "fine-mixing";
    case Defense::Magnitude: return "magnitude";
    case Defense::Reinit: return "reinit";
  }
  return "?";
}

const std::vector<std::string>& defense_names() {
  static const std::vector<std::string> n = {"fine-purifying", "finetune", "fine-pruning", "fine-mixing", "magnitude",
                                             "reinit"};
  return n;
}

bool defense_has_knob(Defense d) { return d != Defense::FineTune && d != Defense::Reinit; }

namespace {
std::string ffn_name(const model::SequenceClassifierImpl& m, int64_t layer, const std::string& rest) {
  return fmt::format("{}.encoder.layer.{}.{}", m.config.model_type == "roberta" ? "roberta" : "bert", layer, rest);
}
}  // namespace

std::vector<torch::Tensor> ffn_mean_activations(model::SequenceClassifierImpl& m, const train::TokenizedSet& data,
                                                torch::Device device) {
  if (data.size() == 0) throw Error(ErrorKind::InvalidArgument, "fine-pruning: the clean set is empty");
  torch::NoGradGuard ng;
  bool was_training = m.is_training();
  m.eval();
  std::vector<torch::Tensor> sum;
  double tokens = 0;
  for (auto& idx : train::length_sorted_batches(data, 64)) {
    auto b = train::collate(data, idx, device);
    model::ForwardOptions fo;
    fo.output_ffn_activations = true;
    auto out = m.forward(b.input_ids, b.token_type_ids, b.attention_mask, fo);
    auto mask = b.attention_mask.to(torch::kFloat64).unsqueeze(-1);  // (B, T, 1)
    for (std::size_t l = 0; l < out.ffn_activations.size(); ++l) {
      auto s_l = (out.ffn_activations[l].to(torch::kFloat64) * mask).sum(at::IntArrayRef{0, 1}).cpu();  // (I)
      if (sum.size() <= l) sum.push_back(s_l); else sum[l] += s_l;
    }
    tokens += b.attention_mask.sum().item<double>();
  }
  if (was_training) m.train();
  for (auto& t : sum) t = (t / tokens).to(torch::kFloat32);
  return sum;
}

std::map<std::string, torch::Tensor> pruning_masks(model::SequenceClassifierImpl& m,
                                                   const std::vector<torch::Tensor>& mean_activation, double fraction) {
  if (!(fraction >= 0 && fraction <= 1))
    throw Error(ErrorKind::InvalidArgument, fmt::format("pruning fraction {} outside [0, 1]", fraction));
  auto params = m.named_parameters();
  std::map<std::string, torch::Tensor> masks;
  for (std::size_t l = 0; l < mean_activation.size(); ++l) {
    const auto& a = mean_activation[l];
    const int64_t I = a.numel(), k = std::llround(fraction * I);
    auto pruned = torch::zeros({I}, torch::kBool);
    if (k > 0) {
      // Least active first; ties by neuron index (stable sort of the values).
      auto order = std::get<1>(a.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false));
      pruned.index_fill_(0, order.slice(0, 0, k), true);
    }
    auto in_w = ffn_name(m, l, "intermediate.dense.weight"), in_b = ffn_name(m, l, "intermediate.dense.bias"),
         out_w = ffn_name(m, l, "output.dense.weight");
    for (auto& n : {in_w, in_b, out_w})
      if (!params.contains(n)) throw Error(ErrorKind::Internal, "fine-pruning: no parameter " + n);
    masks[in_w] = pruned.unsqueeze(1).expand(params[in_w].sizes()).contiguous();
    masks[in_b] = pruned.clone();
    masks[out_w] = pruned.unsqueeze(0).expand(params[out_w].sizes()).contiguous();
  }
  return masks;
}

torch::Tensor epur_mask(const torch::Tensor& ft_word, const torch::Tensor& pre_word, const train::TokenizedSet& clean,
                        int64_t rows) {
  const int64_t V = ft_word.size(0);
  auto count = torch::zeros({V}, torch::kFloat64);
  auto acc = count.accessor<double, 1>();
  for (auto& e : clean.encodings)
    for (auto id : e.input_ids)
      if (id >= 0 && id < V) acc[id] += 1;
  auto drift = (ft_word.to(torch::kCPU, torch::kFloat64) - pre_word.to(torch::kFloat64)).norm(2, {1});
  auto score = drift / torch::log(count + 2.0);
  auto mask = torch::zeros(ft_word.sizes(), torch::kBool);
  rows = std::min(rows, V);
  if (rows > 0) mask.index_fill_(0, std::get<1>(score.topk(rows)), true);
  return mask;
}

std::vector<double> default_grid() {
  return {0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9};
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

/// Overwrite aligned parameters with a blend of w_FT and w_Pre: w = (1 - t) w_FT + t w_Pre.
void blend_aligned(model::SequenceClassifierImpl& m, const Alignment& a, const std::map<std::string, torch::Tensor>& ft,
                   double t) {
  torch::NoGradGuard ng;
  auto params = m.named_parameters();
  for (auto& n : a.aligned) {
    auto& p = params[n];
    p.copy_((ft.at(n) * (1 - t) + a.pre.at(n) * t).to(p.device()));
  }
}

json quantiles_log10(const std::vector<torch::Tensor>& vals) {
  // Distribution of log10(r) over all dimensions, from a seeded sample of at most 1M values.
  int64_t total = 0;
  for (auto& v : vals) total += v.numel();
  auto flat = torch::cat([&] {
    std::vector<torch::Tensor> f;
    for (auto& v : vals) f.push_back(v.view(-1));
    return f;
  }());
  if (total > 1000000) {
    auto gen = at::detail::createCPUGenerator(7);
    flat = flat.index_select(0, at::randint(total, {1000000}, gen, torch::kLong));
  }
  auto lg = torch::log10(flat.to(torch::kFloat64) + 1e-300);
  json q = json::object();
  for (double p : {0.0, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0})
    q[fmt::format("p{}", p * 100)] = torch::quantile(lg, p).item<double>();
  q["sampled"] = std::min<int64_t>(total, 1000000);
  return q;
}

}  // namespace

Diagnosis diagnose(model::SequenceClassifierImpl& m, const std::string& pretrained_folder,
                   const train::TokenizedSet& clean_train, const text::Tokenizer& tok, const DiagnoseOptions& opt,
                   torch::Device device) {
  Diagnosis d;
  d.alignment = align_with_pretrained(m, pretrained_folder);
  d.ft = model::snapshot(m);
  const auto& a = d.alignment;
  util::log(fmt::format("aligned {} tensors ({} dimensions) with {}; {} without counterpart", a.aligned.size(),
                        a.aligned_dims(), pretrained_folder, a.unaligned.size()));
  const auto ind = opt.indicator.indicator;
  if (ind == Indicator::FisherRatio || ind == Indicator::InverseFisher) {
    if (opt.fisher_at != FisherAt::FT) blend_aligned(m, a, d.ft, opt.fisher_at == FisherAt::Pre ? 1.0 : 0.5);
    FisherOptions fo;
    fo.max_examples = opt.fisher_examples;
    auto t0 = std::chrono::steady_clock::now();
    d.fisher = diagonal_fisher(m, clean_train, device, fo);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    util::log(fmt::format("Fisher at w_{} on {} clean examples in {:.1f}s", fisher_at_name(opt.fisher_at),
                          fo.max_examples > 0 ? std::min(fo.max_examples, clean_train.size()) : clean_train.size(), s));
    if (opt.fisher_at != FisherAt::FT) model::restore(m, d.ft);
  }
  d.r = compute_indicators(a, d.ft, d.fisher.empty() ? nullptr : &d.fisher, opt.indicator, &d.epsilon);

  // Summary: per tensor, per layer, distribution, top tokens.
  json tensors = json::array();
  std::map<int, double> layer_mass;
  double total_mass = 0;
  std::vector<torch::Tensor> vals;
  for (auto& n : a.aligned) {
    const auto& r = d.r.at(n);
    vals.push_back(r);
    double mass = r.sum(torch::kFloat64).item<double>();
    total_mass += mass;
    layer_mass[model::layer_of(n, m.config.num_hidden_layers)] += mass;
    auto delta = d.ft.at(n) - a.pre.at(n);
    json t = {{"name", n}, {"numel", r.numel()}, {"indicator_mass", mass}, {"indicator_max", r.max().item<double>()},
              {"drift_l2", delta.norm().item<double>()}};
    if (!d.fisher.empty()) t["fisher_mean"] = d.fisher.at(n).mean().item<double>();
    tensors.push_back(t);
  }
  json layers = json::array();
  for (auto& [l, mass] : layer_mass)
    layers.push_back({{"layer", l < 0 ? "embeddings" : std::to_string(l)},
                      {"indicator_share", total_mass > 0 ? mass / total_mass : 0}});
  json unaligned = json::array();
  for (auto& [n, why] : a.unaligned) unaligned.push_back({{"name", n}, {"reason", why}});

  json top = json::array();
  json probe_summary = nullptr;
  const auto word = m.word_embedding_name();
  if (d.r.count(word)) {
    auto row_mass = d.r.at(word).sum(1, false, torch::kFloat64);
    auto drift = (d.ft.at(word) - a.pre.at(word)).norm(2, {1});
    auto k = std::min<int64_t>(opt.top_tokens, row_mass.numel());
    auto tk = row_mass.topk(k);
    auto vals_t = std::get<0>(tk), idx = std::get<1>(tk);
    torch::Tensor frow;
    if (!d.fisher.empty()) frow = d.fisher.at(word).sum(1);
    for (int64_t i = 0; i < k; ++i) {
      int64_t id = idx[i].item<int64_t>();
      json e = {{"rank", i + 1}, {"id", id}, {"token", tok.id_to_token(id)},
                {"indicator_mass", vals_t[i].item<double>()},
                {"share", total_mass > 0 ? vals_t[i].item<double>() / total_mass : 0},
                {"drift_l2", drift[id].item<double>()}};
      if (frow.defined()) e["fisher_row_sum"] = frow[id].item<double>();
      top.push_back(e);
    }
    if (opt.probe_tokens > 0) {
      const auto ids = probe_candidates(row_mass, drift, opt.probe_tokens, tok);
      util::log(fmt::format("token probe: inserting each of {} candidate tokens into {} clean examples", ids.size(),
                            opt.probe_examples > 0 ? std::min(opt.probe_examples, clean_train.size()) : clean_train.size()));
      auto probes = probe_tokens(m, clean_train, ids, opt.probe_examples, opt.indicator.seed, device);
      std::vector<std::size_t> order(probes.size());
      std::iota(order.begin(), order.end(), std::size_t{0});
      std::stable_sort(order.begin(), order.end(),
                       [&](std::size_t x, std::size_t y) { return probes[x].flip_rate > probes[y].flip_rate; });
      json probed = json::array();
      int64_t flagged = 0;
      for (std::size_t i = 0; i < order.size(); ++i) {
        const auto& p = probes[order[i]];
        flagged += p.flip_rate >= opt.probe_min_flip;
        probed.push_back({{"rank", i + 1}, {"id", p.id}, {"token", tok.id_to_token(p.id)}, {"flip_rate", p.flip_rate},
                          {"flip_to", p.flip_to}, {"tested", p.tested}, {"drift_l2", drift[p.id].item<double>()},
                          {"indicator_share", total_mass > 0 ? row_mass[p.id].item<double>() / total_mass : 0}});
      }
      probe_summary = {{"candidates", ids.size()}, {"per_ranking", opt.probe_tokens},
                       {"examples", probes.empty() ? 0 : probes[0].tested}, {"min_flip", opt.probe_min_flip},
                       {"flagged", flagged}, {"tokens", probed}};
      util::log(fmt::format("token probe: {} of {} candidates flip >= {:.0f}% of predictions{}", flagged, ids.size(),
                            100 * opt.probe_min_flip,
                            probed.empty() ? "" : fmt::format(" (top: {} {:.1f}%)", probed[0]["token"].get<std::string>(),
                                                              100 * probed[0]["flip_rate"].get<double>())));
    }
  }
  d.summary = {{"indicator", indicator_name(ind)},
               {"epsilon", d.epsilon},
               {"epsilon_scale", opt.indicator.epsilon_scale},
               {"fisher_at", fisher_at_name(opt.fisher_at)},
               {"fisher_examples", d.fisher.empty() ? 0 : (opt.fisher_examples > 0 ? std::min(opt.fisher_examples, clean_train.size()) : clean_train.size())},
               {"aligned_tensors", a.aligned.size()},
               {"aligned_dimensions", a.aligned_dims()},
               {"unaligned", unaligned},
               {"distribution_log10", quantiles_log10(vals)},
               {"per_layer", layers},
               {"per_tensor", tensors},
               {"top_tokens", top}};
  if (!probe_summary.is_null()) d.summary["token_probe"] = probe_summary;
  return d;
}

json selection_summary(const std::map<std::string, torch::Tensor>& masks, int64_t num_layers) {
  json per_tensor = json::object();
  std::map<int, int64_t> per_layer;
  int64_t total = 0;
  for (auto& [n, mk] : masks) {
    int64_t c = mk.sum().item<int64_t>();
    if (c == 0) continue;
    per_tensor[n] = c;
    per_layer[model::layer_of(n, num_layers)] += c;
    total += c;
  }
  json layers = json::object();
  for (auto& [l, c] : per_layer) layers[l < 0 ? "embeddings" : std::to_string(l)] = c;
  return {{"reset_dimensions", total}, {"per_layer", layers}, {"per_tensor", per_tensor}};
}

void reset_to_pretrained(model::SequenceClassifierImpl& m, const Alignment& a,
                         const std::map<std::string, torch::Tensor>& masks) {
  torch::NoGradGuard ng;
  auto params = m.named_parameters();
  for (auto& [n, mk] : masks) {
    auto& p = params[n];
    auto pre = a.pre.at(n).to(p.device());
    p.copy_(torch::where(mk.to(p.device()), pre, p));
  }
}

namespace {
/// Re-initialises the tensors without pre-trained counterpart (head, pooler) from the seed.
void reinit_unaligned(model::SequenceClassifierImpl& m, const Alignment& a, uint64_t seed) {
  auto fresh = model::make_random_classifier(m.config, seed);
  auto src = fresh->named_parameters();
  torch::NoGradGuard ng;
  for (auto& p : m.named_parameters())
    if (a.unaligned.count(p.key())) p.value().copy_(src[p.key()].to(p.value().device()));
}
}  // namespace

PurifyResult purify(model::SequenceClassifierImpl& m, const std::string& pretrained_folder,
                    const train::TokenizedSet& clean_train, const train::TokenizedSet& clean_dev,
                    const text::Tokenizer& tok, const PurifyOptions& opt, torch::Device device,
                    const AttackProbe* probe) {
  if (defense_has_knob(opt.method) && opt.reset_fraction.has_value() == opt.max_acc_drop.has_value())
    throw Error(ErrorKind::InvalidArgument, "give exactly one of --reset-fraction and --max-acc-drop");
  if (opt.reset_fraction && (*opt.reset_fraction < 0 || *opt.reset_fraction > 1))
    throw Error(ErrorKind::InvalidArgument, fmt::format("--reset-fraction {} outside [0, 1]", *opt.reset_fraction));
  PurifyResult res;
  auto asr_of = [&](model::SequenceClassifierImpl& mm) {
    if (!probe) return -1.0;
    auto e = train::evaluate(mm, probe->data, device);
    return train::attack_success_rate(e.predictions, probe->data.labels, probe->target);
  };
  res.suspect_dev_accuracy = train::evaluate(m, clean_dev, device).accuracy;
  res.suspect_asr = asr_of(m);
  util::log(fmt::format("suspect model: clean-dev accuracy {:.2f}%{}", 100 * res.suspect_dev_accuracy,
                        probe ? fmt::format(", ASR {:.2f}%", 100 * res.suspect_asr) : ""));

  auto dopt = opt.diagnose;
  switch (opt.method) {
    case Defense::FinePurifying: break;
    case Defense::FineMixing: dopt.indicator.indicator = Indicator::Random; break;
    default: dopt.indicator.indicator = Indicator::Magnitude; break;  // cheap; only the diagnosis uses it
  }
  bool unlearn = opt.unlearn_tokens > 0, neutralize = opt.neutralize_tokens > 0;
  const auto method_indicator = dopt.indicator;
  if (unlearn || neutralize) {  // candidates are ranked by the fisher-ratio row mass whatever the defense's indicator
    dopt.indicator.indicator = Indicator::FisherRatio;  // epsilon_scale is the user's (dopt copies opt.diagnose)
    dopt.top_tokens = std::max({dopt.top_tokens, opt.unlearn_tokens, opt.neutralize_tokens});
  }
  auto diag = diagnose(m, pretrained_folder, clean_train, tok, dopt, device);
  const auto& a = diag.alignment;
  auto token_names = [&](const std::vector<int64_t>& ids) {
    json names = json::array();
    for (auto id : ids) names.push_back(tok.id_to_token(id));
    return names;
  };
  std::vector<int64_t> neutral_ids;
  torch::Tensor neutral_row;
  json neutral_report = nullptr;
  if (neutralize) {
    neutral_ids = candidate_tokens(diag.summary, opt.neutralize_tokens);
    const auto& pre_word = a.pre.at(m.word_embedding_name());
    auto unk = unknown_token_id(tok);
    neutral_row = unk && *unk < pre_word.size(0) ? pre_word[*unk].clone() : pre_word.mean(0);
    const json toks = token_names(neutral_ids);
    neutral_report = {{"tokens", toks}, {"replacement", unk ? tok.id_to_token(*unk) + " (pre-trained row)" : "mean pre-trained row"}};
    util::log(neutral_ids.empty()
                  ? std::string("neutralising: no candidate token passed the behavioural check; nothing neutralised")
                  : fmt::format("neutralising the embedding rows of {} suspicious tokens: {}", neutral_ids.size(), toks.dump()));
  }
  if ((unlearn || neutralize) && method_indicator.indicator != Indicator::FisherRatio) {
    // The diagnosis (and its token ranking) stays fisher-ratio; the reset uses the defense's own indicator.
    diag.r = compute_indicators(a, diag.ft, &diag.fisher, method_indicator, nullptr);
    diag.summary["reset_indicator"] = indicator_name(method_indicator.indicator);
  }
  train::TokenizedSet unlearn_train;
  json unlearn_report = nullptr;
  if (unlearn) {
    const auto ids = candidate_tokens(diag.summary, opt.unlearn_tokens);
    unlearn = !ids.empty();
    if (unlearn)
      unlearn_train = with_unlearning_copies(clean_train, ids, opt.unlearn_max_insertions, opt.max_length, opt.seed ^ 0x756e6cULL);
    const json toks = token_names(ids);
    unlearn_report = {{"tokens", toks}, {"max_insertions", opt.unlearn_max_insertions},
                      {"train_examples", unlearn ? unlearn_train.size() : clean_train.size()}};
    util::log(unlearn ? fmt::format("unlearning: clean fine-tuning also sees {} copies with suspicious tokens inserted ({})",
                                    clean_train.size(), toks.dump())
                      : std::string("unlearning: no candidate token passed the behavioural check; plain clean fine-tuning"));
  }
  const train::TokenizedSet& tune_set = unlearn ? unlearn_train : clean_train;
  std::vector<torch::Tensor> activations;
  if (opt.method == Defense::FinePruning) activations = ffn_mean_activations(m, clean_train, device);
  torch::Tensor epur;
  if (opt.method == Defense::FineMixing && opt.epur) {
    const auto word = m.word_embedding_name();
    epur = epur_mask(diag.ft.at(word), a.pre.at(word), clean_train, opt.epur_rows);
  }

  std::map<double, std::map<std::string, torch::Tensor>> states;  // purified weights per evaluated rho
  std::map<double, json> selections;
  auto evaluate_rho = [&](double rho) -> EvaluatedPoint {
    auto t0 = std::chrono::steady_clock::now();
    model::restore(m, diag.ft);
    EvaluatedPoint pt;
    pt.rho = rho;
    std::map<std::string, torch::Tensor> masks;
    auto topt = opt.train;
    if (opt.method == Defense::FinePruning) {
      masks = pruning_masks(m, activations, rho);
      torch::NoGradGuard ng;
      auto params = m.named_parameters();
      for (auto& [n, mk] : masks) params[n].masked_fill_(mk.to(params[n].device()), 0.0);
      // Pruned weights stay zero: their gradient is masked, so AdamW's moments stay zero too.
      auto dev_masks = std::make_shared<std::map<std::string, torch::Tensor>>();
      for (auto& [n, mk] : masks) (*dev_masks)[n] = mk.to(params[n].device());
      auto prev = topt.after_backward;
      topt.after_backward = [dev_masks, prev](model::SequenceClassifierImpl& mm) {
        if (prev) prev(mm);
        auto ps = mm.named_parameters();
        for (auto& [n, mk] : *dev_masks)
          if (ps[n].grad().defined()) ps[n].mutable_grad().masked_fill_(mk, 0.0);
      };
    } else if (rho > 0) {
      masks = select_top(a.aligned, diag.r, rho, opt.scope);
      if (epur.defined()) {
        const auto word = m.word_embedding_name();
        masks[word] = masks.count(word) ? masks[word].logical_or(epur) : epur;
      }
      reset_to_pretrained(m, a, masks);
    }
    pt.reset_dims = count_selected(masks);
    if (opt.reinit_head) reinit_unaligned(m, a, opt.seed);
    if (neutralize) neutralize_rows(m, neutral_ids, neutral_row);
    pt.selection = selection_summary(masks, m.config.num_hidden_layers);
    selections[rho] = pt.selection;
    topt.label = fmt::format("{} {}={}", defense_name(opt.method), opt.method == Defense::FinePruning ? "pruned" : "rho", rho);
    topt.seed = opt.seed;
    train::fine_tune(m, tune_set, &clean_dev, topt, device);
    pt.dev_accuracy = train::evaluate(m, clean_dev, device).accuracy;
    pt.asr = asr_of(m);
    if (opt.measure) pt.extra = opt.measure(m);
    pt.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    pt.within_budget = !opt.max_acc_drop || pt.dev_accuracy >= res.suspect_dev_accuracy - *opt.max_acc_drop / 100.0 - 1e-12;
    util::log(fmt::format("{} {}={}: {} {} dims, clean-dev accuracy {:.2f}%{}{} ({:.0f}s)", defense_name(opt.method),
                          opt.method == Defense::FinePruning ? "pruned" : "rho", rho,
                          opt.method == Defense::FinePruning ? "pruned" : "reset", pt.reset_dims, 100 * pt.dev_accuracy,
                          probe ? fmt::format(", ASR {:.2f}%", 100 * pt.asr) : "",
                          opt.max_acc_drop ? (pt.within_budget ? " within budget" : " over budget") : "", pt.seconds));
    states[rho] = model::snapshot(m);
    res.evaluated.push_back(pt);
    return pt;
  };

  if (!defense_has_knob(opt.method)) {
    res.chosen_rho = opt.method == Defense::Reinit ? 1.0 : 0.0;
    evaluate_rho(res.chosen_rho);
  } else if (opt.reset_fraction) {
    evaluate_rho(*opt.reset_fraction);
    res.chosen_rho = *opt.reset_fraction;
  } else {
    auto grid = opt.grid;
    std::sort(grid.begin(), grid.end());
    grid.erase(std::unique(grid.begin(), grid.end()), grid.end());
    for (double g : grid)
      if (!(g > 0 && g <= 1)) throw Error(ErrorKind::InvalidArgument, fmt::format("grid value {} outside (0, 1]", g));
    int64_t lo = -1;
    if (opt.sweep) {  // every grid value (curves); the largest within budget wins
      for (std::size_t i = 0; i < grid.size(); ++i)
        if (evaluate_rho(grid[i]).within_budget) lo = static_cast<int64_t>(i);
    } else {  // accuracy falls as rho grows: binary search for the largest grid value within budget
      int64_t hi = static_cast<int64_t>(grid.size());
      while (hi - lo > 1) {
        int64_t mid = (lo + hi) / 2;
        if (evaluate_rho(grid[mid]).within_budget) lo = mid; else hi = mid;
      }
    }
    if (lo >= 0) {
      res.chosen_rho = grid[lo];
    } else {
      util::log("no grid value kept the accuracy budget: falling back to 0 (clean fine-tuning only)");
      evaluate_rho(0.0);
      res.chosen_rho = 0.0;
    }
  }
  model::restore(m, states.at(res.chosen_rho));
  for (auto& pt : res.evaluated)
    if (pt.rho == res.chosen_rho) { res.purified_dev_accuracy = pt.dev_accuracy; res.purified_asr = pt.asr; }

  json pts = json::array();
  auto sorted = res.evaluated;
  std::sort(sorted.begin(), sorted.end(), [](auto& x, auto& y) { return x.rho < y.rho; });
  for (auto& p : sorted)
    pts.push_back({{"rho", p.rho}, {"reset_dimensions", p.reset_dims}, {"clean_dev_accuracy", p.dev_accuracy},
                   {"asr", p.asr < 0 ? json(nullptr) : json(p.asr)}, {"within_budget", p.within_budget},
                   {"seconds", p.seconds}, {"extra", p.extra}});
  res.report = {
      {"method", defense_name(opt.method)},
      {"epur", opt.method == Defense::FineMixing && opt.epur ? json(opt.epur_rows) : json(nullptr)},
      {"chosen_rho", res.chosen_rho},
      {"max_acc_drop_points", opt.max_acc_drop ? json(*opt.max_acc_drop) : json(nullptr)},
      {"scope", opt.scope == Scope::Global ? "global" : "tensor"},
      {"reinit_head", opt.reinit_head},
      {"unlearning", unlearn_report},
      {"neutralized", neutral_report},
      {"suspect", {{"clean_dev_accuracy", res.suspect_dev_accuracy}, {"asr", res.suspect_asr < 0 ? json(nullptr) : json(res.suspect_asr)}}},
      {"purified", {{"clean_dev_accuracy", res.purified_dev_accuracy}, {"asr", res.purified_asr < 0 ? json(nullptr) : json(res.purified_asr)}}},
      {"evaluated", pts},
      {"selection", selections.at(res.chosen_rho)},
      {"diagnosis", diag.summary},
      {"clean_train_examples", clean_train.size()},
      {"clean_dev_examples", clean_dev.size()},
      {"fine_tuning", {{"epochs", opt.train.epochs}, {"lr", opt.train.lr}, {"batch_size", opt.train.batch_size},
                       {"weight_decay", opt.train.weight_decay}, {"warmup_ratio", opt.train.warmup_ratio}}},
  };
  return res;
}

}  // namespace finepurify::purify
