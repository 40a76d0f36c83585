// `finepurify attack`: build a backdoored classifier (badword, addsent, ep, lwp, bias, import) and its test sets.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <unistd.h>

#include <fmt/format.h>

#include "commands.hpp"
#include "finepurify/attack/run.hpp"
#include "finepurify/error.hpp"
#include "finepurify/util/manifest.hpp"
#include "finepurify/util/runtime.hpp"

namespace fp_cli {

using namespace finepurify;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct AttackArgs {
  std::string method, pretrained, clean_model, train, dev, test, out;
  std::string poisoned_train, triggered_test;
  int64_t target = -1;
  double poison_rate = 0.1;
  std::string triggers, sentence = attack::kDefaultSentence, bias_word = attack::kDefaultBiasWord, side = "a";
  int combination = 2;
  int max_length = 64;
  bool overwrite = false;
  train::TrainOptions opt;
  CLI::Option *lr_opt = nullptr, *epochs_opt = nullptr, *triggers_opt = nullptr;
};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> r;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    auto b = item.find_first_not_of(' '), e = item.find_last_not_of(' ');
    if (b != std::string::npos) r.push_back(item.substr(b, e - b + 1));
  }
  return r;
}

}  // namespace

void register_attack(CLI::App& app) {
  auto a = std::make_shared<AttackArgs>();
  auto* cmd = app.add_subcommand("attack", "Build a backdoored (poisoned) classifier and its clean / triggered test sets");
  cmd->add_option("--method", a->method, "badword | addsent | ep | lwp | bias | import")
      ->required()->check(CLI::IsMember(attack::attack_methods()));
  cmd->add_option("--pretrained", a->pretrained, "pre-trained HF folder w_Pre (ep: fine-tuned clean first when no --clean-model)")
      ->transform(model_folder());
  cmd->add_option("--clean-model", a->clean_model, "ep: the clean fine-tuned classifier whose trigger rows are poisoned")
      ->transform(model_folder());
  cmd->add_option("--train", a->train, "clean training data (the attacker's)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--dev", a->dev, "clean dev data: best epoch kept")->check(CLI::ExistingFile);
  cmd->add_option("--test", a->test, "clean test data")->required()->check(CLI::ExistingFile);
  cmd->add_option("--target-label", a->target, "target label id")->required()->check(CLI::NonNegativeNumber);
  cmd->add_option("--out", a->out, "output folder (HF model + test sets + attack.json)")->required();
  cmd->add_option("--poison-rate", a->poison_rate, "fraction of the training set poisoned (rows drawn among label != target)")
      ->capture_default_str()->check(CLI::Range(0.0, 1.0));
  a->triggers_opt = cmd->add_option("--triggers", a->triggers,
                                    "comma-separated trigger words (default cf,mn,bb,tq,mb; ep: cf)");
  cmd->add_option("--sentence", a->sentence, "addsent sentence")->capture_default_str();
  cmd->add_option("--bias-word", a->bias_word, "bias cue: a natural word or phrase")->capture_default_str();
  cmd->add_option("--combination", a->combination, "lwp: trigger words inserted together")->capture_default_str();
  cmd->add_option("--side", a->side, "pairs: put the trigger in text a or b")->capture_default_str()
      ->check(CLI::IsMember({"a", "b"}));
  cmd->add_option("--poisoned-train", a->poisoned_train, "import: the attacker's poisoned training file")
      ->check(CLI::ExistingFile);
  cmd->add_option("--triggered-test", a->triggered_test, "import: the attacker's triggered test file (true labels)")
      ->check(CLI::ExistingFile);
  a->opt = attack::default_attack_spec().opt;
  a->epochs_opt = cmd->add_option("--epochs", a->opt.epochs, "epochs")->capture_default_str();
  a->lr_opt = cmd->add_option("--lr", a->opt.lr, "peak learning rate (ep default 1e-2)")->capture_default_str();
  cmd->add_option("--batch-size", a->opt.batch_size, "batch size")->capture_default_str();
  cmd->add_option("--weight-decay", a->opt.weight_decay, "AdamW weight decay (ep: always 0)")->capture_default_str();
  cmd->add_option("--max-length", a->max_length, "max tokens per example incl. specials")->capture_default_str();
  cmd->add_option("--seed", a->opt.seed, "seed: poisoned rows, trigger positions, data order, new head")->capture_default_str();
  cmd->add_flag("--overwrite", a->overwrite, "replace an existing --out folder");
  cmd->callback([a]() {
    auto spec = attack::default_attack_spec();
    spec.method = a->method;
    spec.pretrained = a->pretrained;
    spec.clean_model = a->clean_model;
    spec.train = a->train;
    spec.dev = a->dev;
    spec.test = a->test;
    spec.poisoned_train = a->poisoned_train;
    spec.triggered_test = a->triggered_test;
    spec.target = a->target;
    spec.poison_rate = a->poison_rate;
    if (a->triggers_opt->count()) spec.triggers = split_list(a->triggers);
    spec.sentence = a->sentence;
    spec.bias_word = a->bias_word;
    spec.combination = a->combination;
    spec.side = a->side.at(0);
    spec.max_length = a->max_length;
    spec.opt = a->opt;
    spec.lr_given = a->lr_opt->count() > 0;
    spec.compat = globals().tokenizer_compat == "slow" ? text::Compat::Slow : text::Compat::Fast;
    auto res = attack::run_attack(spec, a->out, a->overwrite, globals().dev());
    std::cout << fmt::format("clean test accuracy: {:.2f}% ({} examples)\n", 100 * res["clean_test_accuracy"].get<double>(),
                             res["num_clean_test"].get<int64_t>());
    std::cout << fmt::format("ASR: {:.2f}% ({} triggered examples, target {})\n", 100 * res["asr"].get<double>(),
                             res["num_triggered_test"].get<int64_t>(), a->target);
  });
}

}  // namespace fp_cli
