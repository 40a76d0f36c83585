// The fine-tuning loop and evaluation.
#include "finepurify/train/trainer.hpp"

#include <chrono>
#include <cmath>

#include <fmt/format.h>

#include "finepurify/error.hpp"
#include "finepurify/model/loader.hpp"
#include "finepurify/train/optimizer.hpp"
#include "finepurify/util/runtime.hpp"

namespace finepurify::train {

using nlohmann::json;

TrainOptions train_options(int epochs, double lr, int64_t batch_size) {
  TrainOptions t;
  t.epochs = epochs;
  t.lr = lr;
  t.batch_size = batch_size;
  return t;
}

namespace {

void check_training(const model::SequenceClassifierImpl& m, const TokenizedSet& train, const TrainOptions& opt) {
  if (train.size() == 0) throw Error(ErrorKind::InvalidArgument, "fine_tune: the training set is empty");
  if (opt.batch_size <= 0 || opt.lr <= 0 || opt.epochs < 0)
    throw Error(ErrorKind::InvalidArgument, "fine_tune: batch size and learning rate must be > 0");
  for (auto l : train.labels)
    if (l < 0 || l >= m.config.num_labels())
      throw Error(ErrorKind::DataInvalid, fmt::format("training label {} outside [0, {})", l, m.config.num_labels()));
}

/// AdamW over the trainable parameters: weight decay except on biases and LayerNorm weights.
struct Optimizer {
  FusedAdamW adamw;
  std::vector<torch::Tensor> trained;  ///< every trained parameter, for gradient clipping
};

Optimizer make_optimizer(model::SequenceClassifierImpl& m, const TrainOptions& opt) {
  std::vector<torch::Tensor> decay, no_decay;
  for (auto& p : m.named_parameters()) {
    bool train_it = !opt.trainable || opt.trainable(p.key());
    p.value().set_requires_grad(train_it);
    if (!train_it) continue;
    (model::is_no_decay(p.key()) ? no_decay : decay).push_back(p.value());
  }
  Optimizer o;
  if (!decay.empty()) o.adamw.add_group(decay, opt.weight_decay);
  if (!no_decay.empty()) o.adamw.add_group(no_decay, 0.0);
  o.trained = decay;
  o.trained.insert(o.trained.end(), no_decay.begin(), no_decay.end());
  return o;
}

/// Linear warm-up over warmup_ratio of the steps, then linear decay to 0.
struct Schedule {
  int64_t total = 0, warmup = 0;
  int epochs = 0;
  double lr = 0;
  Schedule(const TrainOptions& opt, int64_t n) : lr(opt.lr) {
    const int64_t steps_per_epoch = (n + opt.batch_size - 1) / opt.batch_size;
    total = opt.max_steps > 0 ? opt.max_steps : steps_per_epoch * opt.epochs;
    epochs = opt.max_steps > 0 ? static_cast<int>((opt.max_steps + steps_per_epoch - 1) / steps_per_epoch) : opt.epochs;
    warmup = static_cast<int64_t>(std::llround(opt.warmup_ratio * total));
  }
  double lr_at(int64_t step) const {
    if (step < warmup) return lr * static_cast<double>(step) / std::max<int64_t>(1, warmup);
    return lr * std::max(0.0, static_cast<double>(total - step) / std::max<int64_t>(1, total - warmup));
  }
};

struct Counters {
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  int64_t examples = 0, tokens = 0;
};

/// One epoch of optimizer steps (stops at the schedule's total); returns the mean training loss.
double train_epoch(model::SequenceClassifierImpl& m, const TokenizedSet& train, const TrainOptions& opt, int epoch,
                   Optimizer& o, const Schedule& sched, TrainResult& res, Counters& c, util::Progress& progress,
                   torch::Device device) {
  m.train();
  double loss_sum = 0;
  int64_t loss_n = 0;
  for (auto& idx : length_grouped_batches(train, opt.batch_size, opt.length_window, opt.seed + epoch)) {
    if (res.steps >= sched.total) break;
    auto batch = collate(train, idx, device);
    o.adamw.zero_grad();
    torch::Tensor loss = opt.loss_fn ? opt.loss_fn(m, batch)
                                     : torch::cross_entropy_loss(
                                           m.forward(batch.input_ids, batch.token_type_ids, batch.attention_mask).logits,
                                           batch.labels);
    loss.backward();
    if (opt.after_backward) opt.after_backward(m);
    if (opt.max_grad_norm > 0) torch::nn::utils::clip_grad_norm_(o.trained, opt.max_grad_norm);
    o.adamw.step(sched.lr_at(res.steps));
    double l = loss.item<double>();
    if (!std::isfinite(l))
      throw Error(ErrorKind::InvalidArgument,
                  fmt::format("training diverged (loss {} at step {}); lower --lr", l, res.steps + 1));
    loss_sum += l * idx.size();
    loss_n += static_cast<int64_t>(idx.size());
    c.examples += static_cast<int64_t>(idx.size());
    c.tokens += batch.num_tokens;
    ++res.steps;
    double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - c.t0).count();
    progress.step(1, fmt::format("epoch {} loss {:.4f} {:.1f} ex/s", epoch, loss_sum / loss_n, c.examples / el));
  }
  return loss_n ? loss_sum / loss_n : 0;
}

}  // namespace

TrainResult fine_tune(model::SequenceClassifierImpl& m, const TokenizedSet& train, const TokenizedSet* dev,
                      const TrainOptions& opt, torch::Device device) {
  check_training(m, train, opt);
  torch::manual_seed(opt.seed);
  m.to(device);
  auto optimizer = make_optimizer(m, opt);
  const Schedule sched(opt, train.size());
  TrainResult res;
  std::map<std::string, torch::Tensor> best;
  util::Progress progress(opt.label, sched.total);
  Counters c;
  for (int epoch = 1; epoch <= sched.epochs && res.steps < sched.total; ++epoch) {
    auto te = std::chrono::steady_clock::now();
    EpochStats st;
    st.epoch = epoch;
    st.train_loss = train_epoch(m, train, opt, epoch, optimizer, sched, res, c, progress, device);
    if (dev && dev->size() > 0) {
      st.dev_accuracy = evaluate(m, *dev, device, opt.eval_batch_size).accuracy;
      util::log(fmt::format("{} epoch {}: train loss {:.4f}, dev accuracy {:.2f}%", opt.label, epoch, st.train_loss,
                            100 * st.dev_accuracy));
      if (st.dev_accuracy > res.best_dev_accuracy) {
        res.best_dev_accuracy = st.dev_accuracy;
        res.best_epoch = epoch;
        if (opt.keep_best && sched.epochs > 1) best = model::snapshot(m);
      }
    } else {
      res.best_epoch = epoch;
    }
    st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - te).count();
    res.epochs.push_back(st);
  }
  if (opt.keep_best && !best.empty() && res.best_epoch != static_cast<int>(res.epochs.size())) {
    model::restore(m, best);
    util::log(fmt::format("{}: restored the best epoch ({}, dev accuracy {:.2f}%)", opt.label, res.best_epoch,
                          100 * res.best_dev_accuracy));
  }
  for (auto& p : m.parameters()) p.set_requires_grad(true);
  m.eval();
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - c.t0).count();
  res.examples_per_second = res.seconds > 0 ? c.examples / res.seconds : 0;
  res.tokens_per_second = res.seconds > 0 ? c.tokens / res.seconds : 0;
  return res;
}

EvalResult evaluate(model::SequenceClassifierImpl& m, const TokenizedSet& data, torch::Device device,
                    int64_t batch_size) {
  EvalResult r;
  r.n = data.size();
  const int64_t C = m.config.num_labels();
  r.logits = torch::zeros({r.n, C});
  r.predictions.assign(r.n, -1);
  auto t0 = std::chrono::steady_clock::now();
  bool was_training = m.is_training();
  m.eval();
  {
    c10::InferenceMode im;  // no autograd bookkeeping at all (the logits never meet a backward)
    for (auto& idx : length_sorted_batches(data, batch_size)) {
      auto b = collate(data, idx, device);
      auto logits = m.forward(b.input_ids, b.token_type_ids, b.attention_mask).logits.to(torch::kCPU, torch::kFloat32);
      auto rows = torch::tensor(idx, torch::kLong);
      r.logits.index_copy_(0, rows, logits);  // one block copy per batch
      auto pred = logits.argmax(1).contiguous();
      const int64_t* p = pred.data_ptr<int64_t>();
      for (std::size_t i = 0; i < idx.size(); ++i) r.predictions[idx[i]] = p[i];
    }
  }
  if (was_training) m.train();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.confusion.assign(C, std::vector<int64_t>(C, 0));
  int64_t correct = 0, labelled = 0;
  for (int64_t i = 0; i < r.n; ++i) {
    int64_t y = data.labels[i];
    if (y < 0) continue;
    if (y >= C) throw Error(ErrorKind::DataInvalid, fmt::format("label {} outside the model's {} classes", y, C));
    ++labelled;
    correct += (y == r.predictions[i]);
    r.confusion[y][r.predictions[i]]++;
  }
  r.accuracy = labelled ? static_cast<double>(correct) / labelled : 0.0;
  for (int64_t c = 0; c < C; ++c) {
    int64_t tp = r.confusion[c][c], pred_c = 0, true_c = 0;
    for (int64_t k = 0; k < C; ++k) { pred_c += r.confusion[k][c]; true_c += r.confusion[c][k]; }
    double p = pred_c ? static_cast<double>(tp) / pred_c : 0, rc = true_c ? static_cast<double>(tp) / true_c : 0;
    r.precision.push_back(p);
    r.recall.push_back(rc);
    r.f1.push_back(p + rc > 0 ? 2 * p * rc / (p + rc) : 0);
    r.macro_f1 += r.f1.back() / C;
  }
  return r;
}

double attack_success_rate(const std::vector<int64_t>& pred, const std::vector<int64_t>& labels, int64_t target) {
  int64_t n = 0, hit = 0;
  for (std::size_t i = 0; i < pred.size(); ++i) {
    if (labels[i] == target || labels[i] < 0) continue;  // target-label and unlabelled rows do not count
    ++n;
    hit += pred[i] == target;
  }
  return n ? static_cast<double>(hit) / n : -1.0;
}

std::vector<int64_t> non_target_rows(const std::vector<int64_t>& labels, int64_t target) {
  std::vector<int64_t> r;
  for (std::size_t i = 0; i < labels.size(); ++i)
    if (labels[i] >= 0 && labels[i] != target) r.push_back(static_cast<int64_t>(i));
  return r;
}

double flip_rate(const std::vector<int64_t>& clean_pred, const std::vector<int64_t>& clean_labels,
                 const std::vector<int64_t>& trig_pred, const std::vector<int64_t>& source, int64_t target) {
  if (source.size() != trig_pred.size())
    throw Error(ErrorKind::Internal, fmt::format("flip_rate: {} triggered predictions for {} source rows",
                                                 trig_pred.size(), source.size()));
  int64_t n = 0, hit = 0;
  for (std::size_t i = 0; i < source.size(); ++i) {
    const auto j = static_cast<std::size_t>(source[i]);
    if (j >= clean_pred.size()) throw Error(ErrorKind::Internal, "flip_rate: source row outside the clean set");
    if (clean_labels[j] < 0 || clean_labels[j] == target || clean_pred[j] != clean_labels[j]) continue;
    ++n;
    hit += trig_pred[i] == target;
  }
  return n ? static_cast<double>(hit) / n : -1.0;
}

}  // namespace finepurify::train
