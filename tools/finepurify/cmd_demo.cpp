// `finepurify demo`: the quick-start job on the vendored model and data (no ../shared needed):
// fine-tune the small pre-trained BERT on SST-2 and print its dev and test accuracy.
#include <filesystem>

#include <fmt/format.h>

#include "commands.hpp"
#include "finepurify/error.hpp"
#include "finepurify/util/runtime.hpp"

namespace fp_cli {

using namespace finepurify;
namespace fs = std::filesystem;

namespace {
struct DemoArgs {
  std::string assets = FINEPURIFY_ASSETS_DIR;
  std::string out = "runs/demo";
  int64_t train_examples = 0;
  int epochs = 1;
  uint64_t seed = 42;
};
}  // namespace

void register_demo(CLI::App& app) {
  auto a = std::make_shared<DemoArgs>();
  auto* cmd = app.add_subcommand("demo", "Quick start: fine-tune the vendored small BERT on vendored SST-2");
  cmd->add_option("--assets", a->assets, "folder with models/ and data/")->capture_default_str();
  cmd->add_option("--out", a->out, "where to write the fine-tuned model")->capture_default_str();
  cmd->add_option("--train-examples", a->train_examples, "use only the first N training examples (0 = all)");
  cmd->add_option("--epochs", a->epochs, "epochs")->capture_default_str();
  cmd->add_option("--seed", a->seed, "seed")->capture_default_str();
  cmd->callback([a]() {
    auto dev = globals().dev();
    const std::string model_dir = a->assets + "/models/bert-mini-mlm", data = a->assets + "/data/sst2";
    if (!fs::exists(model_dir))
      throw Error(ErrorKind::Io, fmt::format("{}: vendored model not found (pass --assets)", model_dir));
    model::LoadOptions lo;
    lo.num_labels = 2;
    lo.label_names = {"negative", "positive"};
    lo.seed = a->seed;
    lo.device = dev;
    auto lm = model::load_classifier(model_dir, lo);
    util::log(fmt::format("{}: {}", model_dir, lm.report.summary()));
    auto tok = load_tokenizer_for(model_dir, lm.config);
    auto train_set = read_data(data + "/train.tsv", lm.config);
    if (a->train_examples > 0 && a->train_examples < static_cast<int64_t>(train_set.examples.size()))
      train_set.examples.resize(a->train_examples);
    auto tr = train::tokenize(*tok, train_set, 64);
    auto dv = train::tokenize(*tok, read_data(data + "/dev.tsv", lm.config), 64);
    auto te = train::tokenize(*tok, read_data(data + "/test.tsv", lm.config), 64);
    train::TrainOptions opt;
    opt.epochs = a->epochs;
    opt.lr = 1e-4;
    opt.batch_size = 32;
    opt.seed = a->seed;
    opt.label = "demo fine-tune";
    auto res = train::fine_tune(*lm.model, tr, &dv, opt, dev);
    auto ev_dev = train::evaluate(*lm.model, dv, dev);
    auto ev_test = train::evaluate(*lm.model, te, dev);
    model::save_classifier(*lm.model, a->out, model_dir, {}, /*overwrite=*/true, {model_dir, data});
    std::cout << fmt::format(
        "demo: fine-tuned {} on SST-2 ({} examples, {} epoch(s), {:.1f} examples/s)\n"
        "demo: dev accuracy {:.2f}%  test accuracy {:.2f}%\n"
        "demo: model saved to {} (Hugging Face folder: config.json, model.safetensors, tokenizer files)\n",
        model_dir, tr.size(), a->epochs, res.examples_per_second, 100 * ev_dev.accuracy, 100 * ev_test.accuracy, a->out);
  });
}

}  // namespace fp_cli
