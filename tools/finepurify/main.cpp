// finepurify CLI entry point: global options, allocator/BLAS/thread set-up, error -> exit code.
#include <cstdlib>
#include <iostream>

#include <fmt/format.h>

#include "commands.hpp"
#include "finepurify/error.hpp"
#include "finepurify/model/loader.hpp"
#include "finepurify/util/manifest.hpp"
#include "finepurify/util/runtime.hpp"

#ifdef FINEPURIFY_JEMALLOC
// jemalloc without decay (memory kept for reuse) measured fastest for libtorch CPU training
// (docs/perf.md): glibc malloc spends half the time mmap/munmap-ing large buffers.
extern "C" {
const char* malloc_conf = "dirty_decay_ms:-1,muzzy_decay_ms:-1,background_thread:false";
}
#endif

namespace fp_cli {

Globals& globals() {
  static Globals g;
  return g;
}

torch::Device Globals::dev() const { return finepurify::util::parse_device(device); }

}  // namespace fp_cli

int main(int argc, char** argv) {
  using namespace finepurify;
  util::set_command_line(argc, argv);
  CLI::App app{"finepurify: find and remove backdoors in fine-tuned BERT/RoBERTa classifiers"};
  app.set_version_flag("--version", std::string("finepurify ") + FINEPURIFY_VERSION);
  app.require_subcommand(1);
  auto& g = fp_cli::globals();
  app.add_option("--threads", g.threads, "CPU threads (0 = all cores)")->check(CLI::NonNegativeNumber);
  app.add_option("--device", g.device, "cpu, cuda, cuda:N or auto");
  app.add_flag("-q,--quiet", g.quiet, "no progress output");
  app.add_option("--tokenizer-compat", g.tokenizer_compat,
                 "match the 'fast' (AutoTokenizer default) or 'slow' Hugging Face tokenizer")
      ->check(CLI::IsMember({"fast", "slow"}));
  app.add_flag("--strict", g.strict,
               "refuse checkpoints holding tensors the model does not use (default: warn and ignore them)");
  for (auto* reg : {fp_cli::register_finetune, fp_cli::register_eval, fp_cli::register_predict, fp_cli::register_tokenize,
                    fp_cli::register_demo, fp_cli::register_bench, fp_cli::register_purify, fp_cli::register_defend,
                    fp_cli::register_experiment, fp_cli::register_scan, fp_cli::register_attack, fp_cli::register_models,
                    fp_cli::register_fisher})
    reg(app);
  app.parse_complete_callback([&]() {
    util::set_quiet(g.quiet);
    model::set_unknown_tensors(g.strict ? model::UnknownTensors::Refuse : model::UnknownTensors::Warn);
    int n = util::configure_threads(g.threads);
    auto blas = util::detect_blas();
    if (blas.slow)
      std::cerr << "warning: the reference BLAS (" << blas.library
                << ") is active: matrix products run ~10x slower. Build against the torch wheel of the "
                   "project's .venv (./setup.sh), which carries MKL\n";
    util::log(fmt::format("finepurify {} | {} threads | BLAS {}", FINEPURIFY_VERSION, n, blas.kind));
  });
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const Error& e) {
    std::cerr << "error [" << error_kind_name(e.kind()) << "]: " << e.what() << "\n";
    return error_exit_code(e.kind());
  } catch (const c10::Error& e) {
    std::cerr << "error [torch]: " << e.what_without_backtrace() << "\n";
    return 70;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 70;
  }
  return 0;
}
