// `finepurify finetune`: fine-tune a (pre-trained or classifier) HF folder on a labelled file.
#include <filesystem>

#include <fmt/format.h>

#include "commands.hpp"
#include "finepurify/error.hpp"
#include "finepurify/util/manifest.hpp"
#include "finepurify/util/runtime.hpp"

namespace fp_cli {

using namespace finepurify;
using nlohmann::json;

namespace {
struct FinetuneArgs {
  std::string model, train, dev, out;
  int64_t num_labels = 0;
  int max_length = 128;
  bool from_scratch = false, overwrite = false;
  train::TrainOptions opt;
};
}  // namespace

void register_finetune(CLI::App& app) {
  auto a = std::make_shared<FinetuneArgs>();
  auto* cmd = app.add_subcommand("finetune", "Fine-tune a model folder on a labelled dataset and save an HF folder");
  cmd->add_option("--model", a->model, "HF model folder or name (base/MLM checkpoint or classifier)")->required()->transform(model_folder());
  cmd->add_option("--train", a->train, "training data (.tsv/.csv/.jsonl)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--dev", a->dev, "dev data: evaluated each epoch, best epoch kept")->check(CLI::ExistingFile);
  cmd->add_option("--out", a->out, "output HF folder")->required();
  cmd->add_option("--num-labels", a->num_labels, "labels of a new head (default: from config or data)");
  cmd->add_option("--epochs", a->opt.epochs, "epochs")->capture_default_str();
  cmd->add_option("--steps", a->opt.max_steps, "stop after N optimizer steps (overrides --epochs)");
  cmd->add_option("--batch-size", a->opt.batch_size, "batch size")->capture_default_str();
  cmd->add_option("--lr", a->opt.lr, "peak learning rate (AdamW)")->capture_default_str();
  cmd->add_option("--weight-decay", a->opt.weight_decay, "AdamW weight decay (not on biases/LayerNorm)")->capture_default_str();
  cmd->add_option("--warmup-ratio", a->opt.warmup_ratio, "linear warm-up fraction")->capture_default_str();
  cmd->add_option("--max-grad-norm", a->opt.max_grad_norm, "gradient clipping (0 = off)")->capture_default_str();
  cmd->add_option("--max-length", a->max_length, "max tokens per example incl. specials")->capture_default_str();
  cmd->add_option("--seed", a->opt.seed, "seed: data order, dropout, new head")->capture_default_str();
  cmd->add_flag("--from-scratch", a->from_scratch, "random initialisation instead of the checkpoint's weights");
  cmd->add_flag("--overwrite", a->overwrite, "replace an existing --out folder");
  cmd->callback([a]() {
    // Refuse a bad --out before spending time on training (save_classifier checks again).
    model::check_output_not_input(a->out, {a->model, a->train, a->dev});
    {
      namespace fs = std::filesystem;
      std::error_code ec;
      if (!a->overwrite && fs::exists(a->out, ec) && !(fs::is_directory(a->out, ec) && fs::is_empty(a->out, ec)))
        throw Error(ErrorKind::InvalidArgument,
                    fmt::format("output folder '{}' already exists and is not empty (pass --overwrite to replace it)",
                                a->out));
    }
    auto dev = globals().dev();
    auto cfg = model::load_config(a->model);
    auto tok = load_tokenizer_for(a->model, cfg);
    // Labels: --num-labels, else the config's head, else the data's largest label + 1.
    auto train_data = read_data(a->train, cfg);
    int64_t n_labels = a->num_labels;
    if (n_labels <= 0 && !cfg.has_classifier_head()) {
      for (auto& e : train_data.examples) n_labels = std::max(n_labels, e.label + 1);
    }
    model::LoadOptions lo;
    lo.seed = a->opt.seed;
    lo.device = dev;
    if (n_labels > 0) lo.num_labels = n_labels;
    model::LoadedModel lm;
    if (a->from_scratch) {
      lm.config = cfg;
      if (n_labels > 0) model::set_num_labels(lm.config, n_labels);
      lm.model = model::make_random_classifier(lm.config, a->opt.seed, dev);
      util::log("random initialisation (--from-scratch)");
    } else {
      lm = model::load_classifier(a->model, lo);
      util::log(fmt::format("{}: {}", a->model, lm.report.summary()));
    }
    auto tr = train::tokenize(*tok, train_data, a->max_length);
    std::optional<train::TokenizedSet> dv;
    if (!a->dev.empty()) dv = train::tokenize(*tok, read_data(a->dev, lm.config), a->max_length);
    util::log(fmt::format("train {} examples ({} tokens){}", tr.size(), tr.num_tokens(),
                          dv ? fmt::format(", dev {}", dv->size()) : ""));
    auto res = train::fine_tune(*lm.model, tr, dv ? &*dv : nullptr, a->opt, dev);
    json opts = {{"model", a->model}, {"train", a->train}, {"dev", a->dev}, {"epochs", a->opt.epochs},
                 {"steps", a->opt.max_steps}, {"batch_size", a->opt.batch_size}, {"lr", a->opt.lr},
                 {"weight_decay", a->opt.weight_decay}, {"warmup_ratio", a->opt.warmup_ratio},
                 {"max_grad_norm", a->opt.max_grad_norm}, {"max_length", a->max_length}, {"seed", a->opt.seed},
                 {"from_scratch", a->from_scratch}, {"num_labels", lm.config.num_labels()}};
    util::Manifest man("finetune", opts);
    man.add_input("model", a->model);
    man.add_input("train", a->train);
    if (!a->dev.empty()) man.add_input("dev", a->dev);
    man.set("result", res.to_json());
    if (dv) {
      auto ev = train::evaluate(*lm.model, *dv, dev);
      man.set("dev_eval", ev.to_json(lm.config.id2label));
      std::cout << fmt::format("dev accuracy: {:.2f}%\n", 100 * ev.accuracy);
    }
    model::save_classifier(*lm.model, a->out, a->model, {{"manifest.json", man.to_json().dump(2) + "\n"}}, a->overwrite,
                           {a->model, a->train, a->dev});
    util::log(fmt::format("saved {} ({:.1f} examples/s, {:.0f} tokens/s)", a->out, res.examples_per_second,
                          res.tokens_per_second));
  });
}

}  // namespace fp_cli
