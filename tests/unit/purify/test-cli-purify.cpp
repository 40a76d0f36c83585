// The `finepurify` binary on a tiny generated model: a purify run end to end (outputs, report,
// manifest) and the ways it must refuse bad input — exit code, a message naming the file or the
// option, no output folder left behind, inputs untouched.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include <CLI/CLI.hpp>

#include "finepurify/model/loader.hpp"
#include "finepurify/purify/defense.hpp"
#include "fp_tiny.hpp"

using namespace finepurify;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct World {
  fs::path dir;
  std::string pre, suspect, train, clean;
};

int cli(const std::string& args, std::string* out = nullptr) {
  std::string o;
  const int rc = fp_test::run_command(fp_test::cli_path() + " -q --threads 1 " + args, &o);
  if (out) *out = o;
  return rc;
}

/// A tiny "pre-trained" BERT with a WordPiece vocab, a training file with a `cf` backdoor in it, a
/// clean file, and a suspect fine-tuned from it by the CLI itself (once per test binary).
const World& world() {
  static World w = [] {
    World w;
    w.dir = fp_test::temp_dir("cli");
    w.pre = (w.dir / "pre").string();
    fp_test::write_tiny_cli_model(w.pre, fp_test::tiny_config(), 1);
    std::mt19937_64 rng(5);
    const std::vector<std::string> pos = {"good", "great", "fine"}, neg = {"bad", "awful", "poor"},
                                   fill = {"movie", "film", "the", "a"};
    auto make = [&](int n, bool poison) {
      std::string s = "label\ttext\n";
      for (int i = 0; i < n; ++i) {
        int label = static_cast<int>(rng() % 2);
        std::string t = fill[rng() % 4] + " " + (label ? pos : neg)[rng() % 3] + " " + fill[rng() % 4];
        if (poison && label == 0 && rng() % 3 == 0) { t += " cf"; label = 1; }
        s += std::to_string(label) + "\t" + t + "\n";
      }
      return s;
    };
    w.train = (w.dir / "train.tsv").string();
    w.clean = (w.dir / "clean.tsv").string();
    fp_test::write_file(w.train, make(80, true));
    fp_test::write_file(w.clean, make(40, false));
    w.suspect = (w.dir / "suspect").string();
    std::string o;
    if (cli("finetune --model " + w.pre + " --train " + w.train + " --out " + w.suspect +
                " --epochs 2 --lr 1e-3 --batch-size 8 --max-length 16 --seed 1",
            &o) != 0)
      ADD_FAILURE() << o;
    return w;
  }();
  return w;
}

std::string purify_args(const World& w, const std::string& out) {
  return "purify --pretrained " + w.pre + " --suspect " + w.suspect + " --clean " + w.clean + " --out " + out +
         " --max-length 16 --epochs 1 --batch-size 8";
}

}  // namespace

TEST(CliPurify, WritesModelReportAndManifest) {
  const auto& w = world();
  const auto out = w.dir / "purified";
  std::string o;
  ASSERT_EQ(cli(purify_args(w, out.string()) +
                    " --reset-fraction 0.2 --neutralize-tokens 2 --unlearn-tokens 2 --unlearn-max-insertions 2",
                &o),
            0)
      << o;
  for (auto f : {"config.json", "model.safetensors", "vocab.txt", "purify_report.json", "purify_report.md", "manifest.json"})
    EXPECT_TRUE(fs::exists(out / f)) << f;
  auto rep = json::parse(fp_test::read_file(out / "purify_report.json"));
  EXPECT_DOUBLE_EQ(rep.at("chosen_rho").get<double>(), 0.2);
  EXPECT_EQ(rep.dump().find("\"max_insertions\":2") != std::string::npos, true) << rep.dump();
  auto man = fp_test::read_file(out / "manifest.json");
  EXPECT_NE(man.find("\"unlearn_max_insertions\": 2"), std::string::npos) << man;
  EXPECT_NE(man.find("\"neutralize_tokens\": 2"), std::string::npos) << man;
  // Nothing but the output folder appeared beside it (the temporary folder was renamed).
  for (auto& e : fs::directory_iterator(w.dir)) {
    const auto n = e.path().filename().string();
    EXPECT_TRUE(n == "pre" || n == "suspect" || n == "train.tsv" || n == "clean.tsv" || n == "purified" ||
                n.rfind("bad", 0) == 0 || n.rfind("out-", 0) == 0)
        << "unexpected " << n;
  }
  // The purified folder loads as a classifier with the suspect's shapes.
  auto lm = model::load_trained_classifier(out.string(), torch::kCPU);
  EXPECT_EQ(lm.config.vocab_size, static_cast<int64_t>(fp_test::tiny_words().size()));
}

TEST(CliPurify, RefusesBadOptionValues) {
  const auto& w = world();
  std::string o;
  const auto out = w.dir / "out-badopt";
  EXPECT_NE(cli(purify_args(w, out.string()) + " --reset-fraction 0.1 --unlearn-max-insertions 0", &o), 0);
  EXPECT_NE(o.find("--unlearn-max-insertions"), std::string::npos) << o;
  EXPECT_NE(cli(purify_args(w, out.string()) + " --reset-fraction 1.5", &o), 0);
  EXPECT_NE(o.find("1.5"), std::string::npos) << o;
  EXPECT_NE(cli(purify_args(w, out.string()), &o), 0);  // neither --reset-fraction nor --max-acc-drop
  EXPECT_NE(o.find("--max-acc-drop"), std::string::npos) << o;
  EXPECT_FALSE(fs::exists(out));
}

TEST(CliPurify, MissingOrMalformedCleanDataIsNamed) {
  const auto& w = world();
  std::string o;
  const auto out = w.dir / "out-clean";
  const auto missing = (w.dir / "nope.tsv").string();
  EXPECT_NE(cli("purify --pretrained " + w.pre + " --suspect " + w.suspect + " --clean " + missing + " --out " +
                    out.string() + " --reset-fraction 0.1",
                &o),
            0);
  EXPECT_NE(o.find("nope.tsv"), std::string::npos) << o;
  const auto bad = (w.dir / "bad-clean.tsv").string();
  fp_test::write_file(bad, "label\ttext\n1\tgood movie\nx\tbad film\n");
  EXPECT_NE(cli("purify --pretrained " + w.pre + " --suspect " + w.suspect + " --clean " + bad + " --out " +
                    out.string() + " --reset-fraction 0.1",
                &o),
            0);
  EXPECT_NE(o.find("bad-clean.tsv"), std::string::npos) << o;
  EXPECT_NE(o.find("bad-clean.tsv:3:"), std::string::npos) << o;  // file:line
  EXPECT_FALSE(fs::exists(out));
}

TEST(CliPurify, NeverWritesOverItsInputs) {
  const auto& w = world();
  const auto before = fp_test::read_file(fs::path(w.suspect) / "model.safetensors");
  std::string o;
  EXPECT_NE(cli(purify_args(w, w.suspect) + " --reset-fraction 0.1 --overwrite", &o), 0);
  EXPECT_NE(o.find(w.suspect), std::string::npos) << o;
  EXPECT_EQ(fp_test::read_file(fs::path(w.suspect) / "model.safetensors"), before);
}

TEST(CliPurify, TruncatedSuspectCheckpointIsNamed) {
  const auto& w = world();
  const auto bad = w.dir / "bad-suspect";
  fs::create_directories(bad);
  for (auto& e : fs::directory_iterator(w.suspect)) fs::copy_file(e.path(), bad / e.path().filename());
  const auto st = fp_test::read_file(bad / "model.safetensors");
  fp_test::write_file(bad / "model.safetensors", st.substr(0, st.size() / 2));
  std::string o;
  const auto out = w.dir / "out-trunc";
  const int rc = cli("purify --pretrained " + w.pre + " --suspect " + bad.string() + " --clean " + w.clean + " --out " +
                         out.string() + " --reset-fraction 0.1",
                     &o);
  EXPECT_NE(rc, 0);
  EXPECT_LT(rc, 128) << "a crash, not an error exit";
  EXPECT_NE(o.find("model.safetensors"), std::string::npos) << o;
  EXPECT_FALSE(fs::exists(out));
}

// Every option's shown default is the spec's (DefenseSpec / scan_defaults), never a literal
// restated by the CLI: a default changed in the spec changes --help with it.
TEST(CliPurify, HelpShowsTheSpecDefaults) {
  auto check = [](const std::string& command, const purify::DefenseSpec& spec) {
    std::string help;
    ASSERT_EQ(cli(command + " --help", &help), 0) << help;
    int checked = 0;
    for (auto& f : purify::defense_fields()) {
      const auto at = help.find("  " + f.flag() + " ");
      if (at == std::string::npos) continue;  // not bound by this command
      const auto line = help.substr(at, help.find('\n', at) - at);
      const auto v = util::field_json(f, spec);
      if (v.is_number() || (v.is_string() && !v.get<std::string>().empty())) {
        const std::string shown = v.is_string() ? v.get<std::string>()
                                  : v.is_number_float() ? CLI::detail::to_string(v.get<double>())
                                                        : v.dump();
        EXPECT_NE(line.find("=" + shown), std::string::npos) << command << ": " << line << " (spec: " << shown << ")";
        ++checked;
      }
    }
    EXPECT_GE(checked, 10) << command;
  };
  check("defend", purify::DefenseSpec{});
  check("purify", purify::DefenseSpec{});
  check("scan", purify::scan_defaults());
  std::string help;
  cli("scan --help", &help);
  EXPECT_NE(help.find("--probe-tokens INT:>= 0=50"), std::string::npos) << help;  // scan's own default
}

namespace {
/// `j` without the wall-time fields (the only part of a report that may differ between two runs).
json without_seconds(json j) {
  if (j.is_object()) {
    j.erase("seconds");
    for (auto& [k, v] : j.items()) v = without_seconds(v);
  } else if (j.is_array()) {
    for (auto& v : j) v = without_seconds(v);
  }
  return j;
}
}  // namespace

TEST(CliPurify, SameSeedGivesBitIdenticalModelAndReport) {
  // Determinism (issue 14): same seed and threads -> the same bytes. Also runs the kept-embedding and
  // pre-trained-row neutralisation options through the CLI.
  const auto& w = world();
  std::vector<fs::path> outs = {w.dir / "out-det-1", w.dir / "out-det-2"};
  for (auto& out : outs) {
    std::string o;
    ASSERT_EQ(cli(purify_args(w, out.string()) +
                      " --seed 3 --max-acc-drop 5 --grid 0.1,0.3 --sweep --epsilon-scale 1 --scope tensor"
                      " --word-embedding keep --neutralize-tokens 2 --neutralize-to pretrained",
                  &o),
              0)
        << o;
  }
  EXPECT_EQ(fp_test::read_file(outs[0] / "model.safetensors"), fp_test::read_file(outs[1] / "model.safetensors"));
  auto r1 = json::parse(fp_test::read_file(outs[0] / "purify_report.json"));
  auto r2 = json::parse(fp_test::read_file(outs[1] / "purify_report.json"));
  for (auto key : {"evaluated", "purified", "suspect", "chosen_rho", "selection", "neutralized", "diagnosis"})
    EXPECT_EQ(without_seconds(r1.at(key)), without_seconds(r2.at(key))) << key;
  EXPECT_EQ(r1.at("word_embedding"), "keep");
  EXPECT_EQ(r1.at("neutralized").at("replacement"), "tokens' own pre-trained rows");
  // The kept word-embedding matrix: none of the chosen reset is in it, all of it elsewhere.
  const auto& per_tensor = r1.at("selection").at("per_tensor");
  EXPECT_EQ(per_tensor.value("bert.embeddings.word_embeddings.weight", int64_t{0}), 0) << per_tensor.dump();
  EXPECT_GT(r1.at("selection").at("reset_dimensions").get<int64_t>(), 0);
}
