// `finepurify purify` and `finepurify scan`: Fine-purifying of a suspect model against its
// pre-trained checkpoint using a small clean set (scan = diagnosis only, no output model).
#include <fmt/format.h>

#include "commands.hpp"
#include "finepurify/error.hpp"
#include "finepurify/purify/purify.hpp"
#include "finepurify/report/purify_report.hpp"
#include "finepurify/util/manifest.hpp"
#include "finepurify/util/runtime.hpp"

namespace fp_cli {

using namespace finepurify;
using nlohmann::json;

namespace {
struct PurifyArgs {
  std::string pretrained, suspect, clean, clean_dev, out, attack_test, indicator = "fisher-ratio", scope = "global",
      fisher_at = "ft", grid;
  std::optional<double> reset_fraction, max_acc_drop;
  int64_t target_label = -1, fisher_examples = 0, top_tokens = 20, probe_tokens = 0,
          probe_examples = purify::DiagnoseOptions{}.probe_examples;
  double probe_min_flip = purify::DiagnoseOptions{}.probe_min_flip;
  double epsilon_scale = 1e-8, dev_fraction = 0.2;
  int max_length = 128;
  bool reinit_head = false, overwrite = false, json_out = false, epur = false, sweep = false;
  std::string method = "fine-purifying";
  int64_t epur_rows = 100, unlearn_tokens = 0, neutralize_tokens = 0;
  int unlearn_max_insertions = 3;
  train::TrainOptions train;
  uint64_t seed = 42;
  PurifyArgs() {
    train.epochs = 3;
    train.lr = 5e-5;
    train.batch_size = 16;
  }
};

void add_common(CLI::App* cmd, PurifyArgs& a) {
  cmd->add_option("--pretrained", a.pretrained, "clean pre-trained HF folder or model name (w_Pre)")->required()->transform(model_folder());
  cmd->add_option("--suspect", a.suspect, "suspect fine-tuned HF classifier folder (w_FT)")->required()->transform(model_folder());
  cmd->add_option("--clean", a.clean, "small clean labelled set of the task")->required()->check(CLI::ExistingFile);
  cmd->add_option("--clean-dev", a.clean_dev, "clean dev set for selection (default: hold out part of --clean)")->check(CLI::ExistingFile);
  cmd->add_option("--dev-fraction", a.dev_fraction, "held-out fraction of --clean without --clean-dev")->capture_default_str();
  cmd->add_option("--indicator", a.indicator, "fisher-ratio | magnitude | random | inverse-fisher")
      ->check(CLI::IsMember({"fisher-ratio", "magnitude", "random", "inverse-fisher"}))->capture_default_str();
  cmd->add_option("--epsilon-scale", a.epsilon_scale, "epsilon = scale x mean(Fisher)")->capture_default_str();
  cmd->add_option("--fisher-at", a.fisher_at, "Fisher point: ft | pre | mean")->check(CLI::IsMember({"ft", "pre", "mean"}))->capture_default_str();
  cmd->add_option("--fisher-examples", a.fisher_examples, "use at most N clean examples for the Fisher (0 = all)");
  cmd->add_option("--top-tokens", a.top_tokens, "suspicious tokens to list")->capture_default_str();
  cmd->add_option("--probe-tokens", a.probe_tokens,
                  "behavioural check: insert each of the K most suspicious tokens (by indicator mass and by row "
                  "drift) into clean examples and measure how often the suspect's prediction flips; with it, "
                  "--neutralize-tokens / --unlearn-tokens use only tokens flipping >= --probe-min-flip; 0 = off")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--probe-examples", a.probe_examples, "clean examples each probed token is inserted into (0 = all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--probe-min-flip", a.probe_min_flip, "flip share that makes a probed token a trigger candidate")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  cmd->add_option("--max-length", a.max_length, "max tokens per example")->capture_default_str();
  cmd->add_option("--seed", a.seed, "seed (split, random indicator, fine-tuning)")->capture_default_str();
  cmd->add_option("--attack-test", a.attack_test, "triggered test set (true labels) to report ASR; never used to choose")->check(CLI::ExistingFile);
  cmd->add_option("--target-label", a.target_label, "attack target label (with --attack-test)");
}

struct Prepared {
  model::LoadedModel lm;
  std::unique_ptr<text::Tokenizer> tok;
  train::TokenizedSet clean_train, clean_dev;
  std::string dev_note;
  std::optional<purify::AttackProbe> probe;
};

Prepared prepare(const PurifyArgs& a, torch::Device dev) {
  Prepared p;
  p.lm = model::load_trained_classifier(a.suspect, dev);
  p.tok = load_tokenizer_for(a.suspect, p.lm.config);
  auto clean = train::tokenize(*p.tok, read_data(a.clean, p.lm.config), a.max_length);
  if (!a.clean_dev.empty()) {
    p.clean_train = std::move(clean);
    p.clean_dev = train::tokenize(*p.tok, read_data(a.clean_dev, p.lm.config), a.max_length);
  } else {
    std::tie(p.clean_train, p.clean_dev) = purify::split_clean(clean, a.dev_fraction, a.seed);
    p.dev_note = fmt::format(" (no --clean-dev: a seeded {:.0f}% of --clean was held out for selection)", 100 * a.dev_fraction);
    util::log("no --clean-dev given:" + p.dev_note);
  }
  if (!a.attack_test.empty()) {
    if (a.target_label < 0 || a.target_label >= p.lm.config.num_labels())
      throw Error(ErrorKind::InvalidArgument, "--attack-test needs --target-label in [0, num_labels)");
    p.probe = purify::AttackProbe{train::tokenize(*p.tok, read_data(a.attack_test, p.lm.config), a.max_length), a.target_label};
  }
  return p;
}

purify::DiagnoseOptions diagnose_options(const PurifyArgs& a) {
  purify::DiagnoseOptions d;
  d.indicator.indicator = purify::indicator_from_string(a.indicator);
  d.indicator.epsilon_scale = a.epsilon_scale;
  d.indicator.seed = a.seed;
  d.fisher_at = purify::fisher_at_from_string(a.fisher_at);
  d.fisher_examples = a.fisher_examples;
  d.top_tokens = a.top_tokens;
  d.probe_tokens = a.probe_tokens;
  d.probe_examples = a.probe_examples;
  d.probe_min_flip = a.probe_min_flip;
  return d;
}

std::vector<double> parse_grid(const std::string& s) {
  std::vector<double> g;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      g.push_back(std::stod(item));
    } catch (...) {
      throw Error(ErrorKind::InvalidArgument, "--grid: '" + item + "' is not a number");
    }
  }
  return g;
}
}  // namespace

namespace {
/// `purify` (Fine-purifying) and `defend --method NAME` (every defense) share options and outputs.
void register_reset_command(CLI::App& app, bool is_defend) {
  auto a = std::make_shared<PurifyArgs>();
  auto* cmd = is_defend
                  ? app.add_subcommand("defend", "Run one defense (fine-purifying or a baseline) under the same clean data, "
                                                 "trainer and accuracy-budget rule")
                  : app.add_subcommand("purify", "Fine-purifying: reset poisonous dimensions to w_Pre, fine-tune on clean data");
  add_common(cmd, *a);
  if (is_defend) {
    cmd->add_option("--method", a->method, "fine-purifying | finetune | fine-pruning | fine-mixing | magnitude | reinit")
        ->required()->check(CLI::IsMember(purify::defense_names()));
    cmd->add_flag("--epur", a->epur, "fine-mixing: also reset the E-PUR embedding rows");
    cmd->add_option("--epur-rows", a->epur_rows, "E-PUR: vocabulary rows reset")->capture_default_str();
  }
  cmd->add_flag("--sweep", a->sweep, "evaluate every grid value (all points reported) instead of a binary search");
  cmd->add_option("--out", a->out, "output HF folder (+ purify_report.json/.md)")->required();
  auto* rf = cmd->add_option("--reset-fraction", a->reset_fraction, "fixed reset fraction rho in [0, 1]");
  auto* md = cmd->add_option("--max-acc-drop", a->max_acc_drop, "accuracy budget in points: search rho on the grid");
  rf->excludes(md);
  cmd->add_option("--grid", a->grid, "comma-separated rho grid for --max-acc-drop");
  cmd->add_option("--scope", a->scope, "global | tensor")->check(CLI::IsMember({"global", "tensor"}))->capture_default_str();
  cmd->add_flag("--reinit-head", a->reinit_head, "re-initialise tensors without pre-trained counterpart (head)");
  cmd->add_option("--unlearn-tokens", a->unlearn_tokens,
                  "extension: also fine-tune on clean copies with 1-3 of the N most suspicious tokens inserted "
                  "(true labels kept); 0 = off (the paper's method)")->capture_default_str();
  cmd->add_option("--unlearn-max-insertions", a->unlearn_max_insertions,
                  "with --unlearn-tokens: each copy gets 1..K inserted candidates")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  cmd->add_option("--neutralize-tokens", a->neutralize_tokens,
                  "extension: set the embedding rows of the N most suspicious tokens to the pre-trained [UNK] row "
                  "before fine-tuning; 0 = off (the paper's method)")->capture_default_str();
  cmd->add_option("--epochs", a->train.epochs, "clean fine-tuning epochs after the reset")->capture_default_str();
  cmd->add_option("--lr", a->train.lr, "clean fine-tuning learning rate")->capture_default_str();
  cmd->add_option("--batch-size", a->train.batch_size, "clean fine-tuning batch size")->capture_default_str();
  cmd->add_flag("--overwrite", a->overwrite, "replace an existing --out folder");
  cmd->callback([a, is_defend]() {
    const auto method = purify::defense_from_string(a->method);
    if (purify::defense_has_knob(method) && !a->reset_fraction && !a->max_acc_drop)
      throw Error(ErrorKind::InvalidArgument,
                  fmt::format("{} needs --reset-fraction R or --max-acc-drop D", is_defend ? a->method : "purify"));
    model::check_output_not_input(a->out, {a->pretrained, a->suspect});
    auto dev = globals().dev();
    auto p = prepare(*a, dev);
    purify::PurifyOptions po;
    po.method = method;
    po.epur = a->epur;
    po.epur_rows = a->epur_rows;
    po.sweep = a->sweep;
    po.diagnose = diagnose_options(*a);
    po.scope = purify::scope_from_string(a->scope);
    po.reset_fraction = a->reset_fraction;
    po.max_acc_drop = a->max_acc_drop;
    if (!purify::defense_has_knob(method) && !po.max_acc_drop) po.reset_fraction.reset();
    if (!a->grid.empty()) po.grid = parse_grid(a->grid);
    po.train = a->train;
    po.reinit_head = a->reinit_head;
    po.unlearn_tokens = a->unlearn_tokens;
    po.unlearn_max_insertions = a->unlearn_max_insertions;
    po.neutralize_tokens = a->neutralize_tokens;
    po.max_length = a->max_length;
    po.seed = a->seed;
    auto res = purify::purify(*p.lm.model, a->pretrained, p.clean_train, p.clean_dev, *p.tok, po, dev,
                              p.probe ? &*p.probe : nullptr);
    res.report["clean_dev_note"] = p.dev_note;
    json opts = {{"method", a->method}, {"epur", a->epur}, {"epur_rows", a->epur_rows}, {"sweep", a->sweep},
                 {"pretrained", a->pretrained}, {"suspect", a->suspect}, {"clean", a->clean}, {"clean_dev", a->clean_dev},
                 {"indicator", a->indicator}, {"epsilon_scale", a->epsilon_scale}, {"fisher_at", a->fisher_at},
                 {"scope", a->scope}, {"reset_fraction", a->reset_fraction ? json(*a->reset_fraction) : json(nullptr)},
                 {"max_acc_drop", a->max_acc_drop ? json(*a->max_acc_drop) : json(nullptr)}, {"grid", a->grid},
                 {"epochs", a->train.epochs}, {"lr", a->train.lr}, {"batch_size", a->train.batch_size},
                 {"max_length", a->max_length}, {"seed", a->seed}, {"reinit_head", a->reinit_head},
                 {"unlearn_tokens", a->unlearn_tokens}, {"unlearn_max_insertions", a->unlearn_max_insertions},
                 {"neutralize_tokens", a->neutralize_tokens}, {"probe_tokens", a->probe_tokens},
                 {"probe_examples", a->probe_examples}, {"probe_min_flip", a->probe_min_flip}};
    util::Manifest man(is_defend ? "defend" : "purify", opts);
    man.add_input("pretrained", a->pretrained);
    man.add_input("suspect", a->suspect);
    man.add_input("clean", a->clean);
    if (!a->clean_dev.empty()) man.add_input("clean_dev", a->clean_dev);
    if (!a->attack_test.empty()) man.add_input("attack_test", a->attack_test);
    model::save_classifier(*p.lm.model, a->out, a->suspect,
                           {{"manifest.json", man.to_json().dump(2) + "\n"},
                            {"purify_report.json", res.report.dump(2) + "\n"},
                            {"purify_report.md", report::purify_markdown(res.report)}},
                           a->overwrite, {a->pretrained, a->suspect, a->clean, a->clean_dev});
    std::cout << fmt::format("{}: {} = {}, clean-dev accuracy {:.2f}% (suspect {:.2f}%)", a->method,
                             method == purify::Defense::FinePruning ? "pruned fraction" : "rho", res.chosen_rho,
                             100 * res.purified_dev_accuracy, 100 * res.suspect_dev_accuracy);
    if (p.probe) std::cout << fmt::format(", ASR {:.2f}% (suspect {:.2f}%)", 100 * res.purified_asr, 100 * res.suspect_asr);
    std::cout << fmt::format("\nwrote {} (report: {}/purify_report.md)\n", a->out, a->out);
  });
}

}  // namespace

void register_purify(CLI::App& app) { register_reset_command(app, false); }
void register_defend(CLI::App& app) { register_reset_command(app, true); }

void register_scan(CLI::App& app) {
  auto a = std::make_shared<PurifyArgs>();
  a->probe_tokens = 50;  // scan is the detection tool: the behavioural check is on by default
  auto* cmd = app.add_subcommand("scan", "Report suspicious dimensions and tokens (Fisher + indicator, no fine-tuning)");
  add_common(cmd, *a);
  cmd->add_option("--report", a->out, "also write the diagnosis as JSON (.json) or Markdown (.md)");
  cmd->add_flag("--json", a->json_out, "print JSON instead of Markdown");
  cmd->callback([a]() {
    auto dev = globals().dev();
    auto lm = model::load_trained_classifier(a->suspect, dev);
    auto tok = load_tokenizer_for(a->suspect, lm.config);
    auto clean = train::tokenize(*tok, read_data(a->clean, lm.config), a->max_length);
    auto d = purify::diagnose(*lm.model, a->pretrained, clean, *tok, diagnose_options(*a), dev);
    std::string md = "# finepurify scan\n\n" + report::diagnosis_markdown(d.summary);
    if (a->json_out) std::cout << d.summary.dump(2) << "\n"; else std::cout << md;
    if (!a->out.empty()) {
      bool as_json = a->out.size() >= 5 && a->out.substr(a->out.size() - 5) == ".json";
      write_output(a->out, as_json ? d.summary.dump(2) + "\n" : md, {a->pretrained, a->suspect, a->clean});
    }
  });
}

}  // namespace fp_cli
