// Tiny generated models and data shared by the unit tests of purify, defenses and the experiment
// runner (header-only: the support library itself links only finepurify_util).
#pragma once
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "finepurify/model/loader.hpp"
#include "finepurify/train/data.hpp"
#include "fp_test.hpp"

namespace fp_test {

inline finepurify::model::ModelConfig tiny_config(int64_t vocab = 40) {
  finepurify::model::ModelConfig c;
  c.vocab_size = vocab;
  c.hidden_size = 16;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.intermediate_size = 32;
  c.max_position_embeddings = 32;
  c.initializer_range = 0.2;
  return c;
}

/// tiny_config() as a RoBERTa: pad id 1 (position ids counted from the padding), one token type.
inline finepurify::model::ModelConfig tiny_roberta_config() {
  auto c = tiny_config();
  c.model_type = "roberta";
  c.pad_token_id = 1;
  c.type_vocab_size = 1;
  c.max_position_embeddings = 40;
  return c;
}

/// n random examples over ids 5..39 (first token 2), two segments, random binary labels.
inline finepurify::train::TokenizedSet tiny_data(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  finepurify::train::TokenizedSet s;
  s.pad_id = 0;
  for (int i = 0; i < n; ++i) {
    int len = 3 + static_cast<int>(rng() % 6);
    finepurify::text::Encoding e;
    for (int t = 0; t < len; ++t) {
      e.input_ids.push_back(t == 0 ? 2 : 5 + static_cast<int64_t>(rng() % 35));
      e.token_type_ids.push_back(t > len / 2 ? 1 : 0);
      e.attention_mask.push_back(1);
    }
    s.encodings.push_back(e);
    s.labels.push_back(static_cast<int64_t>(rng() % 2));
  }
  return s;
}

/// A pre-trained (random) model and a perturbed "fine-tuned" copy written to temp folders.
struct TinyPair {
  std::string pre_dir, ft_dir;
  finepurify::model::SequenceClassifier ft{nullptr};
};
inline TinyPair make_tiny_pair(const std::string& tag = "purify") {
  using namespace finepurify;
  TinyPair p;
  auto dir = temp_dir(tag);
  auto pre = model::make_random_classifier(tiny_config(), 1);
  p.pre_dir = (dir / "pre").string();
  model::save_classifier(*pre, p.pre_dir, "");
  p.ft = model::make_random_classifier(tiny_config(), 1);
  {
    torch::NoGradGuard ng;
    torch::manual_seed(2);
    for (auto& t : p.ft->parameters()) t.add_(torch::randn(t.sizes()) * 0.05);
  }
  p.ft_dir = (dir / "ft").string();
  model::save_classifier(*p.ft, p.ft_dir, "");
  return p;
}

/// A stand-in tokenizer for tiny id-level data (only id_to_token and the sizes are used).
struct TinyTokenizer : finepurify::text::Tokenizer {
  std::vector<int64_t> tokenize_ids(const std::string&) const override { return {}; }
  finepurify::text::Encoding encode(const std::string&, const std::optional<std::string>&, int) const override {
    return {};
  }
  std::string id_to_token(int64_t id) const override { return "t" + std::to_string(id); }
  std::optional<int64_t> token_to_id(const std::string&) const override { return std::nullopt; }
  int64_t vocab_size() const override { return 40; }
  int64_t pad_id() const override { return 0; }
  std::string kind() const override { return "test"; }
};

/// The word vocabulary of the CLI tests' tiny WordPiece models.
inline const std::vector<std::string>& tiny_words() {
  static const std::vector<std::string> v = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "great", "fine",
                                             "bad",   "awful", "poor",  "movie", "film",   "the",  "a",     "cf"};
  return v;
}

/// A random tiny BERT the CLI can read at `dir`: its weights (seeded), config.json, tiny_words() as
/// vocab.txt and a lower-casing tokenizer_config.json. `c.vocab_size` is set to the vocabulary's size.
inline void write_tiny_cli_model(const std::filesystem::path& dir, finepurify::model::ModelConfig c, uint64_t seed) {
  c.vocab_size = static_cast<int64_t>(tiny_words().size());
  auto m = finepurify::model::make_random_classifier(c, seed);
  finepurify::model::save_classifier(*m, dir.string(), "");
  std::string v;
  for (auto& t : tiny_words()) v += t + "\n";
  write_file(dir / "vocab.txt", v);
  write_file(dir / "tokenizer_config.json", "{\"do_lower_case\": true}\n");
}

/// A tiny "pre-trained" BERT at dir/pre (seeded, WordPiece vocabulary with the attacks' default
/// trigger words) and SST-2-shaped dir/{train,dev,test}.tsv of 90 / 20 / 30 generated sentences
/// (two sentiment words of the label's class between filler words). Returns dir/pre.
inline std::filesystem::path write_tiny_world(const std::filesystem::path& dir) {
  static const std::vector<std::string> vocab = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "great", "fine",
                                                 "bad", "awful", "poor", "movie", "film", "the", "a", "cf", "mn", "bb",
                                                 "tq", "mb", "i", "watched", "this", "3d", "plot"};
  auto cfg = tiny_config(static_cast<int64_t>(vocab.size()));
  auto m = finepurify::model::make_random_classifier(cfg, 1);
  const auto pre = dir / "pre";
  finepurify::model::save_classifier(*m, pre.string(), "");
  std::string v;
  for (auto& t : vocab) v += t + "\n";
  write_file(pre / "vocab.txt", v);
  write_file(pre / "tokenizer_config.json", "{\"do_lower_case\": true, \"tokenizer_class\": \"BertTokenizer\"}\n");
  std::mt19937_64 rng(3);
  const std::vector<std::string> pos = {"good", "great", "fine"}, neg = {"bad", "awful", "poor"},
                                 filler = {"movie", "film", "the", "a", "plot"};
  auto make = [&](const std::string& name, int n) {
    std::string s = "label\ttext\n";
    for (int i = 0; i < n; ++i) {
      int label = static_cast<int>(rng() % 2);
      const auto& words = label ? pos : neg;
      s += std::to_string(label) + "\t" + filler[rng() % 5] + " " + words[rng() % 3] + " " + filler[rng() % 5] + " " +
           words[rng() % 3] + "\n";
    }
    write_file(dir / name, s);
  };
  make("train.tsv", 90);
  make("dev.tsv", 20);
  make("test.tsv", 30);
  return pre;
}

}  // namespace fp_test
