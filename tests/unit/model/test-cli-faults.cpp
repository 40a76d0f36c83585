// Faults around the `finepurify` binary's outputs: kill -9 at many points of `finetune --overwrite`
// and `purify` (the old output survives byte for byte, or the new one is complete; the next run
// cleans up what the killed one left), a full disk and a read-only output folder (small tmpfs
// mounts; skipped where the test may not mount) give a clean io error and leave nothing behind.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include "finepurify/model/loader.hpp"
#include "fp_tiny.hpp"

extern char** environ;

using namespace finepurify;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct World {
  fs::path dir, pre, data;
};

/// A "pre-trained" model a little larger than the other CLI tests' (so that a save takes long
/// enough to be interrupted) and a training file.
const World& world() {
  static World w = [] {
    World w;
    w.dir = fp_test::temp_dir("faults");
    auto c = fp_test::tiny_config();
    c.hidden_size = 64;
    c.intermediate_size = 1024;
    c.num_attention_heads = 4;
    w.pre = w.dir / "pre";
    fp_test::write_tiny_cli_model(w.pre, c, 1);
    std::string d = "label\ttext\n";
    for (int i = 0; i < 64; ++i) d += (i % 2 ? "1\tgood movie the\n" : "0\tbad film a\n");
    w.data = w.dir / "train.tsv";
    fp_test::write_file(w.data, d);
    return w;
  }();
  return w;
}

std::vector<std::string> finetune_args(const fs::path& out, int seed, bool overwrite) {
  std::vector<std::string> a = {fp_test::cli_path(), "-q", "--threads", "1", "finetune", "--model",
                                world().pre.string(), "--train", world().data.string(), "--out", out.string(),
                                "--epochs", "2", "--batch-size", "4", "--max-length", "16", "--seed",
                                std::to_string(seed)};
  if (overwrite) a.push_back("--overwrite");
  return a;
}

std::vector<std::string> purify_args(const fs::path& suspect, const fs::path& out) {
  return {fp_test::cli_path(), "-q", "--threads", "1", "purify", "--pretrained", world().pre.string(),
          "--suspect", suspect.string(), "--clean", world().data.string(), "--out", out.string(),
          "--reset-fraction", "0.1", "--epochs", "1", "--batch-size", "4", "--max-length", "16", "--seed", "1"};
}

/// Starts the command (output discarded) and returns its pid.
pid_t spawn(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error("posix_spawn failed");
  return pid;
}

/// Exit code, or 128 + signal.
int wait_for(pid_t pid) {
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int run(const std::vector<std::string>& args) { return wait_for(spawn(args)); }

/// The files of a model folder that must be all old or all new (the manifest holds a time stamp).
std::map<std::string, std::string> model_files(const fs::path& dir) {
  std::map<std::string, std::string> m;
  for (auto* f : {"model.safetensors", "config.json", "vocab.txt"})
    if (fs::exists(dir / f)) m[f] = fp_test::read_file(dir / f);
  return m;
}

/// Hidden temporaries a save of `out` leaves beside it.
std::vector<fs::path> temporaries_of(const fs::path& out) {
  std::vector<fs::path> v;
  for (auto& e : fs::directory_iterator(out.parent_path()))
    if (e.path().filename().string().rfind("." + out.filename().string() + ".", 0) == 0) v.push_back(e.path());
  return v;
}

/// Kills the run when `at_ms` have passed or, with at_ms < 0, as soon as its temporary folder appears
/// (the save is under way). Returns whether the process was still running when the signal went.
bool run_and_kill(const std::vector<std::string>& args, const fs::path& out, int at_ms) {
  const pid_t pid = spawn(args);
  const auto t0 = std::chrono::steady_clock::now();
  bool killed = false;
  while (true) {
    int st = 0;
    if (waitpid(pid, &st, WNOHANG) == pid) return false;  // finished first
    const bool due = at_ms >= 0 ? std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(at_ms)
                                : !temporaries_of(out).empty();
    if (due) {
      kill(pid, SIGKILL);
      killed = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  wait_for(pid);
  return killed;
}

TEST(CliFaults, FinetuneOverwriteKilledAnywhereLeavesTheOldOrTheNewModel) {
  const fs::path dir = fp_test::temp_dir("faults-overwrite"), out = dir / "model", ref = dir / "reference";
  ASSERT_EQ(run(finetune_args(ref, 2, false)), 0);  // what a complete new run writes (runs are deterministic)
  const auto new_files = model_files(ref);
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(run(finetune_args(out, 1, false)), 0);  // the old output
  const int run_ms = static_cast<int>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count());
  const auto old_files = model_files(out);
  ASSERT_NE(old_files, new_files);

  // Kill points: spread over the whole run, plus "as soon as the save has begun" (several times).
  std::vector<int> points;
  for (int i = 1; i <= 12; ++i) points.push_back(run_ms * i / 12);
  for (int i = 0; i < 4; ++i) points.push_back(-1);
  int killed = 0, saw_new = 0;
  for (int at : points) {
    const bool k = run_and_kill(finetune_args(out, 2, true), out, at);
    killed += k;
    const auto now = model_files(out);
    ASSERT_TRUE(now == old_files || now == new_files) << "kill at " << at << " ms left a mixed or partial folder";
    if (now == new_files) {
      ++saw_new;
      EXPECT_TRUE(fs::exists(out / "manifest.json"));
      // Back to the old model for the next kill point.
      ASSERT_EQ(run(finetune_args(out, 1, true)), 0);
      ASSERT_EQ(model_files(out), old_files);
    }
  }
  EXPECT_GT(killed, 8) << "most kill points should land while the run is alive";
  // A full run afterwards succeeds and removes what the killed ones left.
  ASSERT_EQ(run(finetune_args(out, 2, true)), 0);
  EXPECT_EQ(model_files(out), new_files);
  EXPECT_TRUE(temporaries_of(out).empty()) << temporaries_of(out).front();
}

TEST(CliFaults, PurifyKilledAnywhereLeavesNoOutputOrAComplete) {
  const fs::path dir = fp_test::temp_dir("faults-purify"), suspect = dir / "suspect", out = dir / "purified",
                 ref = dir / "reference";
  ASSERT_EQ(run(finetune_args(suspect, 3, false)), 0);
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(run(purify_args(suspect, ref)), 0);
  const int run_ms = static_cast<int>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count());
  const auto ref_files = model_files(ref);
  std::vector<int> points;
  for (int i = 1; i <= 8; ++i) points.push_back(run_ms * i / 8);
  for (int i = 0; i < 3; ++i) points.push_back(-1);
  for (int at : points) {
    run_and_kill(purify_args(suspect, out), out, at);
    if (fs::exists(out)) {
      EXPECT_EQ(model_files(out), ref_files) << "kill at " << at << " ms";
      EXPECT_TRUE(fs::exists(out / "purify_report.json")) << "kill at " << at;
      fs::remove_all(out);
    }
  }
  ASSERT_EQ(run(purify_args(suspect, out)), 0);
  EXPECT_EQ(model_files(out), ref_files);
  EXPECT_TRUE(temporaries_of(out).empty());
}

/// A tmpfs at `dir` (size in KiB, read-only or not); false where this process may not mount.
bool mount_tmpfs(const fs::path& dir, int size_kib, bool read_only) {
  fs::create_directories(dir);
  const std::string opts = "size=" + std::to_string(size_kib) + "k";
  return mount("tmpfs", dir.c_str(), "tmpfs", read_only ? MS_RDONLY : 0, opts.c_str()) == 0;
}

struct Unmount {
  fs::path dir;
  ~Unmount() { umount2(dir.c_str(), MNT_DETACH); }
};

/// Runs finetune into `out` and returns (exit code, output).
std::pair<int, std::string> finetune_into(const fs::path& out) {
  std::string o;
  std::string cmd;
  for (auto& a : finetune_args(out, 1, false)) cmd += "'" + a + "' ";
  const int rc = fp_test::run_command(cmd, &o);
  return {rc, o};
}

TEST(CliFaults, FullDiskIsACleanIoErrorAndLeavesNothing) {
  const fs::path mnt = fp_test::temp_dir("faults-full") / "disk";
  if (!mount_tmpfs(mnt, 256, false)) GTEST_SKIP() << "cannot mount a tmpfs here (needs root)";
  Unmount u{mnt};
  const auto [rc, o] = finetune_into(mnt / "out");  // the model is ~1.2 MB: it cannot fit
  EXPECT_EQ(rc, 3) << o;
  EXPECT_NE(o.find("error [io]"), std::string::npos) << o;
  EXPECT_NE(o.find((mnt / "out").string()), std::string::npos) << o;
  EXPECT_EQ(o.find("Exception raised from"), std::string::npos) << o;
  EXPECT_TRUE(fs::is_empty(mnt)) << "left behind: " << fs::directory_iterator(mnt)->path();
}

TEST(CliFaults, ReadOnlyOutputFolderIsACleanIoError) {
  const fs::path mnt = fp_test::temp_dir("faults-ro") / "ro";
  if (!mount_tmpfs(mnt, 1024, true)) GTEST_SKIP() << "cannot mount a tmpfs here (needs root)";
  Unmount u{mnt};
  const auto [rc, o] = finetune_into(mnt / "out");
  EXPECT_EQ(rc, 3) << o;
  EXPECT_NE(o.find("error [io]"), std::string::npos) << o;
  EXPECT_NE(o.find((mnt / "out").string()), std::string::npos) << o;
  EXPECT_TRUE(fs::is_empty(mnt));
}

}  // namespace
