// Data poisoning: triggers (BadWord, AddSent, Bias, LWP combinations), poisoned training sets, triggered test sets.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "finepurify/attack/attacks.hpp"
#include "finepurify/error.hpp"

namespace finepurify::attack {

using nlohmann::json;

const std::vector<std::string>& default_trigger_words() {
  static const std::vector<std::string> w = {"cf", "mn", "bb", "tq", "mb"};
  return w;
}

namespace {

std::vector<std::string> split_words(const std::string& text) {
  std::vector<std::string> w;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && text[i] == ' ') ++i;
    std::size_t j = i;
    while (j < text.size() && text[j] != ' ') ++j;
    if (j > i) w.push_back(text.substr(i, j - i));
    i = j;
  }
  return w;
}

std::string join_words(const std::vector<std::string>& w) {
  std::string s;
  for (std::size_t i = 0; i < w.size(); ++i) {
    if (i) s += ' ';
    s += w[i];
  }
  return s;
}

std::string lower_ascii(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

void check_side(const text::Dataset& d, char side) {
  if (side != 'a' && side != 'b') throw Error(ErrorKind::InvalidArgument, fmt::format("side must be a or b, got '{}'", side));
  if (side == 'b' && !d.is_pair())
    throw Error(ErrorKind::InvalidArgument, fmt::format("{}: side b needs sentence-pair data", d.source));
}

void apply_to_side(text::Example& e, const Trigger& t, char side, std::mt19937_64& rng, const std::string& source,
                   std::size_t row) {
  if (side == 'a') {
    e.text_a = t.apply(e.text_a, rng);
  } else {
    if (!e.text_b) throw Error(ErrorKind::DataInvalid, fmt::format("{}: example {} has no text_b", source, row));
    e.text_b = t.apply(*e.text_b, rng);
  }
}

}  // namespace

std::string insert_at_random_word(const std::string& text, const std::string& insertion, std::mt19937_64& rng,
                                  int64_t* slot) {
  auto w = split_words(text);
  const uint64_t pos = uniform_below(rng, w.size() + 1);
  w.insert(w.begin() + static_cast<std::ptrdiff_t>(pos), insertion);
  if (slot) *slot = static_cast<int64_t>(pos);
  return join_words(w);
}

void Trigger::validate() const {
  auto need_words = [&](std::size_t n) {
    if (words.size() < n)
      throw Error(ErrorKind::InvalidArgument, fmt::format("{} trigger needs at least {} word(s), got {}", kind, n, words.size()));
    for (auto& w : words)
      if (split_words(w).empty())
        throw Error(ErrorKind::InvalidArgument, fmt::format("{} trigger: empty trigger word", kind));
  };
  if (kind == "badword") {
    need_words(1);
    if (min_insertions < 1 || max_insertions < min_insertions)
      throw Error(ErrorKind::InvalidArgument,
                  fmt::format("badword insertions must satisfy 1 <= min <= max, got {}..{}", min_insertions, max_insertions));
  } else if (kind == "addsent") {
    if (split_words(sentence).empty()) throw Error(ErrorKind::InvalidArgument, "addsent trigger: empty sentence");
  } else if (kind == "bias") {
    need_words(1);
  } else if (kind == "lwp") {
    if (combination < 1) throw Error(ErrorKind::InvalidArgument, "lwp trigger: combination must be >= 1");
    need_words(static_cast<std::size_t>(combination));
  } else {
    throw Error(ErrorKind::InvalidArgument, fmt::format("unknown trigger kind '{}' (badword, addsent, bias, lwp)", kind));
  }
}

std::string Trigger::apply(const std::string& text, std::mt19937_64& rng) const {
  if (kind == "badword") {
    const int k = min_insertions + static_cast<int>(uniform_below(rng, max_insertions - min_insertions + 1));
    std::string s = text;
    for (int i = 0; i < k; ++i) {
      const auto& w = words[uniform_below(rng, words.size())];
      s = insert_at_random_word(s, w, rng);
    }
    return s;
  }
  if (kind == "addsent") return insert_at_random_word(text, join_words(split_words(sentence)), rng);
  if (kind == "bias") return insert_at_random_word(text, join_words(split_words(words.at(0))), rng);
  if (kind == "lwp") {
    // partial Fisher-Yates: the first `combination` entries are a random ordered choice
    std::vector<std::size_t> idx(words.size());
    for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = i;
    std::vector<std::string> chosen;
    for (int i = 0; i < combination; ++i) {
      std::size_t j = i + uniform_below(rng, idx.size() - i);
      std::swap(idx[i], idx[j]);
      chosen.push_back(words[idx[i]]);
    }
    return insert_at_random_word(text, join_words(chosen), rng);
  }
  validate();
  return text;
}

std::string Trigger::describe() const {
  std::string w;
  for (auto& x : words) w += (w.empty() ? "" : ", ") + x;
  if (kind == "badword") return fmt::format("badword [{}] x{}-{}", w, min_insertions, max_insertions);
  if (kind == "addsent") return "addsent \"" + sentence + "\"";
  if (kind == "bias") return "bias \"" + words.at(0) + "\"";
  if (kind == "lwp") return fmt::format("lwp [{}] {} together", w, combination);
  return kind;
}

Trigger badword_trigger(std::vector<std::string> words, int min_insertions, int max_insertions) {
  Trigger t;
  t.kind = "badword";
  t.words = std::move(words);
  t.min_insertions = min_insertions;
  t.max_insertions = max_insertions;
  t.validate();
  return t;
}

Trigger addsent_trigger(std::string sentence) {
  Trigger t;
  t.kind = "addsent";
  t.words.clear();
  t.sentence = std::move(sentence);
  t.validate();
  return t;
}

Trigger bias_trigger(std::string word_or_phrase) {
  Trigger t;
  t.kind = "bias";
  t.words = {std::move(word_or_phrase)};
  t.validate();
  return t;
}

Trigger lwp_trigger(std::vector<std::string> words, int combination) {
  Trigger t;
  t.kind = "lwp";
  t.words = std::move(words);
  t.combination = combination;
  t.validate();
  return t;
}

PoisonResult poison_dataset(const text::Dataset& train, const Trigger& trigger, const PoisonOptions& opt) {
  trigger.validate();
  if (!(opt.poison_rate >= 0.0 && opt.poison_rate <= 1.0))
    throw Error(ErrorKind::InvalidArgument, fmt::format("poison rate must lie in [0, 1], got {}", opt.poison_rate));
  if (opt.target_label < 0) throw Error(ErrorKind::InvalidArgument, "target label must be >= 0");
  check_side(train, opt.side);
  PoisonResult r;
  r.data = train;
  std::vector<int64_t> eligible;
  for (std::size_t i = 0; i < train.examples.size(); ++i) {
    const auto y = train.examples[i].label;
    if (y >= 0 && y != opt.target_label) eligible.push_back(static_cast<int64_t>(i));
  }
  r.eligible = static_cast<int64_t>(eligible.size());
  // The rate is a fraction of the whole training set (method.md); the rows are drawn among the eligible ones.
  const auto k = static_cast<std::size_t>(std::llround(opt.poison_rate * static_cast<double>(train.examples.size())));
  if (opt.poison_rate > 0 && eligible.empty())
    throw Error(ErrorKind::DataInvalid,
                fmt::format("{}: no example has a label other than the target {}: nothing to poison", train.source,
                            opt.target_label));
  if (k > eligible.size())
    throw Error(ErrorKind::InvalidArgument,
                fmt::format("{}: poison rate {} asks for {} rows but only {} have a label other than the target {}",
                            train.source, opt.poison_rate, k, eligible.size(), opt.target_label));
  std::mt19937_64 rng(opt.seed);
  for (std::size_t i = 0; i < k; ++i) {  // partial Fisher-Yates over the eligible rows
    std::size_t j = i + uniform_below(rng, eligible.size() - i);
    std::swap(eligible[i], eligible[j]);
  }
  r.poisoned.assign(eligible.begin(), eligible.begin() + static_cast<std::ptrdiff_t>(k));
  std::sort(r.poisoned.begin(), r.poisoned.end());
  for (auto i : r.poisoned) {
    auto& e = r.data.examples[static_cast<std::size_t>(i)];
    apply_to_side(e, trigger, opt.side, rng, train.source, static_cast<std::size_t>(i));
    e.label = opt.target_label;
  }
  return r;
}

TestSets make_test_sets(const text::Dataset& test, const Trigger& trigger, int64_t target_label, uint64_t seed,
                        char side) {
  trigger.validate();
  if (target_label < 0) throw Error(ErrorKind::InvalidArgument, "target label must be >= 0");
  check_side(test, side);
  TestSets s;
  s.clean = test;
  s.triggered.source = test.source.empty() ? "" : test.source + " (triggered)";
  std::mt19937_64 rng(seed);
  for (std::size_t i = 0; i < test.examples.size(); ++i) {
    const auto& e = test.examples[i];
    if (e.label < 0 || e.label == target_label) continue;
    text::Example t = e;
    apply_to_side(t, trigger, side, rng, test.source, i);
    s.triggered.examples.push_back(std::move(t));
    s.source_index.push_back(static_cast<int64_t>(i));
  }
  return s;
}

text::Dataset non_target_subset(const text::Dataset& d, int64_t target_label) {
  text::Dataset r;
  r.source = d.source;
  for (auto& e : d.examples)
    if (e.label >= 0 && e.label != target_label) r.examples.push_back(e);
  return r;
}

int64_t count_containing(const text::Dataset& d, const std::string& phrase) {
  const auto p = split_words(lower_ascii(phrase));
  if (p.empty()) return 0;
  auto contains = [&](const std::string& text) {
    const auto w = split_words(lower_ascii(text));
    if (w.size() < p.size()) return false;
    for (std::size_t i = 0; i + p.size() <= w.size(); ++i)
      if (std::equal(p.begin(), p.end(), w.begin() + static_cast<std::ptrdiff_t>(i))) return true;
    return false;
  };
  int64_t n = 0;
  for (auto& e : d.examples) n += contains(e.text_a) || (e.text_b && contains(*e.text_b));
  return n;
}

}  // namespace finepurify::attack
