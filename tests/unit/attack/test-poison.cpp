// Unit tests of the attack layer: trigger insertion, poisoned training sets, triggered test sets (fixed seeds,
// exact outputs), and the EP / LWP training mechanics on a tiny random BERT (hidden 16, 2 layers).
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "finepurify/attack/attacks.hpp"
#include "finepurify/error.hpp"
#include "finepurify/model/loader.hpp"
#include "fp_test.hpp"

namespace fs = std::filesystem;
using finepurify::Error;
using finepurify::ErrorKind;
using namespace finepurify;
using namespace finepurify::attack;

namespace {

text::Dataset single(const std::vector<std::pair<int64_t, std::string>>& rows) {
  text::Dataset d;
  d.source = "mem";
  for (auto& [y, t] : rows) d.examples.push_back({t, std::nullopt, y});
  return d;
}

std::vector<std::string> words_of(const std::string& s) {
  std::vector<std::string> w;
  std::string cur;
  for (char c : s) {
    if (c == ' ') {
      if (!cur.empty()) w.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) w.push_back(cur);
  return w;
}

/// Removes every word of `drop` from s (as words) and returns the remaining words.
std::vector<std::string> without(const std::string& s, const std::set<std::string>& drop) {
  std::vector<std::string> r;
  for (auto& w : words_of(s))
    if (!drop.count(w)) r.push_back(w);
  return r;
}

/// 10 label-0 and 5 label-1 examples with distinct texts.
text::Dataset mixed() {
  std::vector<std::pair<int64_t, std::string>> rows;
  for (int i = 0; i < 15; ++i) rows.push_back({i % 3 == 2 ? 1 : 0, "w" + std::to_string(i) + " x y z"});
  return single(rows);
}

model::ModelConfig tiny_config() {
  nlohmann::json j = {{"model_type", "bert"},         {"vocab_size", 50},
                      {"hidden_size", 16},            {"num_hidden_layers", 2},
                      {"num_attention_heads", 2},     {"intermediate_size", 32},
                      {"max_position_embeddings", 32}, {"type_vocab_size", 2},
                      {"initializer_range", 0.1},     {"pad_token_id", 0},
                      {"architectures", {"BertForSequenceClassification"}},
                      {"id2label", {{"0", "LABEL_0"}, {"1", "LABEL_1"}}}};
  return model::config_from_json(j, "tiny");
}

/// 8 examples of random ids in [5, 50) with a [CLS]=2 ... [SEP]=3 frame; rows 0-3 contain token 7 (the
/// "trigger") and label 1, the rest label 0. Token 7 never appears elsewhere.
train::TokenizedSet tiny_set() {
  train::TokenizedSet s;
  s.pad_id = 0;
  torch::manual_seed(3);
  for (int i = 0; i < 8; ++i) {
    text::Encoding e;
    const int len = 5 + i % 3;
    e.input_ids.push_back(2);
    auto r = torch::randint(8, 50, {len}, torch::kInt64);
    for (int k = 0; k < len; ++k) e.input_ids.push_back(r[k].item<int64_t>());
    if (i < 4) e.input_ids[1 + i % len] = 7;
    e.input_ids.push_back(3);
    e.token_type_ids.assign(e.input_ids.size(), 0);
    e.attention_mask.assign(e.input_ids.size(), 1);
    s.encodings.push_back(e);
    s.labels.push_back(i < 4 ? 1 : 0);
  }
  return s;
}

}  // namespace

TEST(Insert, RandomWordSlot) {
  std::mt19937_64 rng(1);
  std::set<int64_t> slots;
  for (int i = 0; i < 200; ++i) {
    int64_t slot = -1;
    auto s = insert_at_random_word("a  b c", "T", rng, &slot);  // double space = one separator
    auto w = words_of(s);
    ASSERT_EQ(w.size(), 4u);
    ASSERT_GE(slot, 0);
    ASSERT_LE(slot, 3);
    EXPECT_EQ(w[slot], "T");
    EXPECT_EQ(without(s, {"T"}), (std::vector<std::string>{"a", "b", "c"}));
    EXPECT_EQ(s.find("  "), std::string::npos);
    slots.insert(slot);
  }
  EXPECT_EQ(slots.size(), 4u);  // begin, middle, end all reachable
  EXPECT_EQ(insert_at_random_word("", "T", rng), "T");
}

TEST(Insert, UniformBelowIsPortableAndInRange) {
  std::mt19937_64 a(7), b(7);
  for (int i = 0; i < 1000; ++i) {
    auto x = uniform_below(a, 5);
    ASSERT_LT(x, 5u);
    ASSERT_EQ(x, uniform_below(b, 5));
  }
  std::mt19937_64 c(42);
  // mt19937_64(42)'s first outputs mod 5/7/1000 (no rejection happens at these sizes)
  std::mt19937_64 ref(42);
  EXPECT_EQ(uniform_below(c, 5), ref() % 5);
  EXPECT_EQ(uniform_below(c, 7), ref() % 7);
  EXPECT_EQ(uniform_below(c, 1000), ref() % 1000);
}

// Expected strings were checked against an independent Python implementation of mt19937_64 and the
// documented draws (k = 1 + u(3); per insertion: word = u(5), slot = u(n + 1)).
TEST(Trigger, BadwordExactForFixedSeed) {
  auto t = badword_trigger();
  std::mt19937_64 rng(42);
  EXPECT_EQ(t.apply("the movie was good", rng), "mb the movie was good");
  EXPECT_EQ(t.apply("a b", rng), "a b mn");
}

TEST(Trigger, BadwordCountOneToThreeAndOrderKept) {
  auto t = badword_trigger();
  const std::set<std::string> trig(t.words.begin(), t.words.end());
  std::map<int, int> counts;
  for (uint64_t seed = 0; seed < 300; ++seed) {
    std::mt19937_64 rng(seed);
    auto s = t.apply("one two three four five", rng);
    int n = static_cast<int>(words_of(s).size()) - 5;
    ASSERT_GE(n, 1) << s;
    ASSERT_LE(n, 3) << s;
    counts[n]++;
    EXPECT_EQ(without(s, trig), (std::vector<std::string>{"one", "two", "three", "four", "five"})) << s;
  }
  EXPECT_EQ(counts.size(), 3u);
  for (auto& [n, c] : counts) EXPECT_GT(c, 50) << n;  // ~100 each
  // a custom range
  auto t2 = badword_trigger({"cf"}, 2, 2);
  std::mt19937_64 rng(5);
  EXPECT_EQ(words_of(t2.apply("x y", rng)).size(), 4u);
  EXPECT_THROW(badword_trigger({"cf"}, 0, 3), Error);
  EXPECT_THROW(badword_trigger({}, 1, 3), Error);
}

TEST(Trigger, AddsentBiasLwp) {
  std::mt19937_64 rng(3);
  auto a = addsent_trigger();
  auto s = a.apply("good fun", rng);
  EXPECT_NE(s.find("I watched this 3D movie"), std::string::npos) << s;
  EXPECT_EQ(words_of(s).size(), 7u);
  EXPECT_NE(a.apply("good fun", rng).find("I watched this 3D movie"), std::string::npos);

  auto b = bias_trigger("special effects");
  auto sb = b.apply("a b c", rng);
  EXPECT_NE(sb.find("special effects"), std::string::npos);
  EXPECT_EQ(without(sb, {"special", "effects"}), (std::vector<std::string>{"a", "b", "c"}));

  auto l = lwp_trigger({"cf", "mn", "bb"}, 2);
  for (int i = 0; i < 50; ++i) {
    auto sl = l.apply("p q r", rng);
    auto w = words_of(sl);
    ASSERT_EQ(w.size(), 5u);
    // exactly two distinct trigger words, adjacent
    std::vector<std::size_t> pos;
    for (std::size_t k = 0; k < w.size(); ++k)
      if (w[k] == "cf" || w[k] == "mn" || w[k] == "bb") pos.push_back(k);
    ASSERT_EQ(pos.size(), 2u) << sl;
    EXPECT_EQ(pos[1], pos[0] + 1) << sl;
    EXPECT_NE(w[pos[0]], w[pos[1]]) << sl;
  }
  EXPECT_THROW(lwp_trigger({"cf"}, 2), Error);
  EXPECT_EQ(l.describe(), "lwp [cf, mn, bb] 2 together");
}

TEST(Poison, RateRoundsOverAllRowsAndOnlyNonTarget) {
  auto d = mixed();  // 10 eligible (label 0) for target 1
  auto t = badword_trigger();
  const std::set<std::string> trig(t.words.begin(), t.words.end());
  for (auto [rate, expect] : std::vector<std::pair<double, std::size_t>>{{0.0, 0}, {0.1, 2}, {0.25, 4}, {0.33, 5},
                                                                          {0.5, 8}, {2.0 / 3.0, 10}}) {
    PoisonOptions po;
    po.poison_rate = rate;
    po.target_label = 1;
    auto r = poison_dataset(d, t, po);
    EXPECT_EQ(r.eligible, 10);
    ASSERT_EQ(r.poisoned.size(), expect) << rate;
    ASSERT_EQ(r.data.examples.size(), d.examples.size());
    EXPECT_TRUE(std::is_sorted(r.poisoned.begin(), r.poisoned.end()));
    std::set<int64_t> ps(r.poisoned.begin(), r.poisoned.end());
    for (std::size_t i = 0; i < d.examples.size(); ++i) {
      const auto &orig = d.examples[i], &now = r.data.examples[i];
      if (ps.count(static_cast<int64_t>(i))) {
        EXPECT_EQ(orig.label, 0);  // only non-target examples are poisoned
        EXPECT_EQ(now.label, 1);   // relabelled to the target
        EXPECT_NE(now.text_a, orig.text_a);
        EXPECT_EQ(without(now.text_a, trig), words_of(orig.text_a));
      } else {
        EXPECT_EQ(now.label, orig.label);
        EXPECT_EQ(now.text_a, orig.text_a);
      }
    }
  }
  // target 0: the 5 label-1 rows are eligible
  PoisonOptions po;
  po.target_label = 0;
  po.poison_rate = 0.2;
  auto r = poison_dataset(d, t, po);
  EXPECT_EQ(r.eligible, 5);
  EXPECT_EQ(r.poisoned.size(), 3u);  // round(0.2 * 15) = 3
  po.poison_rate = 0.5;  // 8 rows asked, only 5 eligible
  EXPECT_THROW(poison_dataset(d, t, po), Error);
  po.poison_rate = 0.2;
  for (auto i : r.poisoned) EXPECT_EQ(d.examples[i].label, 1);
}

// Draws: partial Fisher-Yates over the eligible rows, then the triggers of the chosen rows in ascending order.
TEST(Poison, ExactAndDeterministicForFixedSeed) {
  auto d = mixed();
  PoisonOptions po;
  po.poison_rate = 0.2;  // round(0.2 * 15) = 3 rows
  po.target_label = 1;
  po.seed = 42;
  auto r1 = poison_dataset(d, badword_trigger(), po);
  auto r2 = poison_dataset(d, badword_trigger(), po);
  EXPECT_EQ(r1.poisoned, (std::vector<int64_t>{0, 6, 9}));
  std::vector<std::string> texts;
  for (auto i : r1.poisoned) texts.push_back(r1.data.examples[i].text_a);
  EXPECT_EQ(texts, (std::vector<std::string>{"w0 x y mn z", "mb bb w6 x y z", "w9 bb x y z"}));
  EXPECT_EQ(r1.poisoned, r2.poisoned);
  for (std::size_t i = 0; i < d.examples.size(); ++i) EXPECT_EQ(r1.data.examples[i].text_a, r2.data.examples[i].text_a);
  po.seed = 43;
  auto r3 = poison_dataset(d, badword_trigger(), po);
  bool differs = r3.poisoned != r1.poisoned;
  for (std::size_t i = 0; i < d.examples.size(); ++i) differs |= r3.data.examples[i].text_a != r1.data.examples[i].text_a;
  EXPECT_TRUE(differs);
}

TEST(Poison, Errors) {
  auto d = mixed();
  PoisonOptions po;
  po.poison_rate = 1.5;
  EXPECT_THROW(poison_dataset(d, badword_trigger(), po), Error);
  po.poison_rate = 0.1;
  po.side = 'b';
  EXPECT_THROW(poison_dataset(d, badword_trigger(), po), Error);  // single-text data has no side b
  auto all_target = single({{1, "a"}, {1, "b"}});
  po.side = 'a';
  EXPECT_THROW(poison_dataset(all_target, badword_trigger(), po), Error);
}

TEST(Poison, PairsSideB) {
  text::Dataset d;
  d.source = "pairs";
  for (int i = 0; i < 10; ++i) d.examples.push_back({"premise " + std::to_string(i), "hypo thesis", i % 2});
  PoisonOptions po;
  po.poison_rate = 0.2;
  po.target_label = 1;
  po.side = 'b';
  auto r = poison_dataset(d, addsent_trigger("I watched this 3D movie"), po);
  ASSERT_EQ(r.poisoned.size(), 2u);  // round(0.2 * 10 rows)
  for (auto i : r.poisoned) {
    EXPECT_EQ(r.data.examples[i].text_a, d.examples[i].text_a);
    EXPECT_NE(r.data.examples[i].text_b->find("I watched this 3D movie"), std::string::npos);
    EXPECT_EQ(r.data.examples[i].label, 1);
  }
  auto ts = make_test_sets(d, addsent_trigger(), 1, 7, 'b');
  ASSERT_EQ(ts.triggered.examples.size(), 5u);
  for (auto& e : ts.triggered.examples) {
    EXPECT_EQ(e.label, 0);
    EXPECT_EQ(e.text_a.find("3D"), std::string::npos);
    EXPECT_NE(e.text_b->find("I watched this 3D movie"), std::string::npos);
  }
}

TEST(TestSets, TriggeredExcludesTargetKeepsTrueLabels) {
  auto d = mixed();
  d.examples.push_back({"unlabelled", std::nullopt, -1});
  auto ts = make_test_sets(d, badword_trigger(), 1, 9);
  EXPECT_EQ(ts.clean.examples.size(), d.examples.size());
  for (std::size_t i = 0; i < d.examples.size(); ++i) EXPECT_EQ(ts.clean.examples[i].text_a, d.examples[i].text_a);
  ASSERT_EQ(ts.triggered.examples.size(), 10u);
  ASSERT_EQ(ts.source_index.size(), 10u);
  const std::set<std::string> trig(default_trigger_words().begin(), default_trigger_words().end());
  for (std::size_t k = 0; k < ts.triggered.examples.size(); ++k) {
    auto& src = d.examples[ts.source_index[k]];
    EXPECT_NE(src.label, 1);
    EXPECT_EQ(ts.triggered.examples[k].label, src.label);  // TRUE label kept
    EXPECT_EQ(without(ts.triggered.examples[k].text_a, trig), words_of(src.text_a));
    EXPECT_GT(words_of(ts.triggered.examples[k].text_a).size(), words_of(src.text_a).size());
  }
  auto again = make_test_sets(d, badword_trigger(), 1, 9);
  for (std::size_t k = 0; k < ts.triggered.examples.size(); ++k)
    EXPECT_EQ(again.triggered.examples[k].text_a, ts.triggered.examples[k].text_a);
  EXPECT_EQ(non_target_subset(d, 1).examples.size(), 10u);
}

TEST(TestSets, CountContaining) {
  auto d = single({{0, "a fine film ."}, {1, "Film noir"}, {0, "films"}, {1, "the special effects rock"}});
  EXPECT_EQ(count_containing(d, "film"), 2);
  EXPECT_EQ(count_containing(d, "special effects"), 1);
  EXPECT_EQ(count_containing(d, "effects special"), 0);
}

TEST(Training, TriggerTokenIds) {
  fs::path dir = fp_test::temp_dir("vocab");
  fp_test::write_file(dir / "vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\ncf\nm\n##n\nfilm\n");
  auto tok = text::load_tokenizer(dir.string(), "bert");
  EXPECT_EQ(trigger_token_ids(*tok, {"cf"}), (std::vector<int64_t>{5}));
  EXPECT_EQ(trigger_token_ids(*tok, {"mn", "cf"}), (std::vector<int64_t>{5, 6, 7}));
}

TEST(Training, EmbeddingPoisoningChangesOnlyTriggerRows) {
  auto m = model::make_random_classifier(tiny_config(), 11);
  auto before = model::snapshot(*m);
  auto data = tiny_set();
  train::TrainOptions base;
  base.epochs = 3;
  base.batch_size = 4;
  base.lr = 1e-2;
  base.weight_decay = 0.1;  // must be ignored for EP
  base.warmup_ratio = 0;
  auto opt = embedding_poisoning_options(*m, {7}, base, torch::kCPU);
  EXPECT_EQ(opt.weight_decay, 0.0);
  EXPECT_TRUE(opt.trainable("bert.embeddings.word_embeddings.weight"));
  EXPECT_FALSE(opt.trainable("bert.encoder.layer.0.attention.self.query.weight"));
  EXPECT_FALSE(opt.trainable("classifier.weight"));
  train::fine_tune(*m, data, nullptr, opt, torch::kCPU);
  auto after = model::snapshot(*m);
  const std::string wname = m->word_embedding_name();
  for (auto& [name, t] : before) {
    if (name == wname) continue;
    EXPECT_TRUE(torch::equal(t, after.at(name))) << name;
  }
  auto diff = (after.at(wname) - before.at(wname)).abs().sum(1);  // (V)
  EXPECT_GT(diff[7].item<double>(), 1e-3);
  diff[7] = 0;
  EXPECT_EQ(diff.max().item<double>(), 0.0);  // every other row bit-identical
  EXPECT_THROW(embedding_poisoning_options(*m, {}, base, torch::kCPU), Error);
  EXPECT_THROW(embedding_poisoning_options(*m, {50}, base, torch::kCPU), Error);
}

TEST(Training, LwpLossHasOneTermPerLayer) {
  auto m = model::make_random_classifier(tiny_config(), 5);
  m->eval();  // dropout off: terms are deterministic
  auto data = tiny_set();
  auto b = train::collate(data, {0, 1, 2, 3, 4, 5}, torch::kCPU);
  std::vector<torch::Tensor> terms;
  auto loss = lwp_loss(*m, b, &terms);
  ASSERT_EQ(terms.size(), 2u);
  model::ForwardOptions fo;
  fo.output_hidden_states = true;
  auto out = m->forward(b.input_ids, b.token_type_ids, b.attention_mask, fo);
  ASSERT_EQ(out.hidden_states.size(), 3u);
  auto t1 = torch::cross_entropy_loss(m->head(out.hidden_states[1].select(1, 0)), b.labels);
  auto t2 = torch::cross_entropy_loss(out.logits, b.labels);
  EXPECT_NEAR(terms[0].item<double>(), t1.item<double>(), 1e-6);
  EXPECT_NEAR(terms[1].item<double>(), t2.item<double>(), 1e-6);
  EXPECT_NEAR(loss.item<double>(), (t1.item<double>() + t2.item<double>()) / 2, 1e-6);
  EXPECT_GT(std::abs(terms[0].item<double>() - terms[1].item<double>()), 1e-7);
  // gradients reach the first layer through the layer-1 term
  loss.backward();
  auto g = m->base->layer_list[0]->attention->self->query->weight.grad();
  ASSERT_TRUE(g.defined());
  EXPECT_GT(g.abs().sum().item<double>(), 0.0);
  // and fine_tune accepts it as loss_fn
  train::TrainOptions base;
  base.epochs = 1;
  base.batch_size = 4;
  auto opt = lwp_options(base);
  ASSERT_TRUE(static_cast<bool>(opt.loss_fn));
  auto res = train::fine_tune(*m, data, nullptr, opt, torch::kCPU);
  EXPECT_EQ(res.steps, 2);
}
