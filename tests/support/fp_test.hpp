// Shared test helpers: paths to ../shared and fixtures, temporary folders, running the CLI.
#pragma once
#include <filesystem>
#include <string>

namespace fp_test {

/// ../shared (data, models, goldens); tests that need it call require_shared() first.
std::filesystem::path shared_dir();
/// GTEST_SKIP-style check: returns false (and the caller should skip) when ../shared is absent.
bool have_shared();
std::filesystem::path source_dir();
/// A fresh empty temporary folder, removed at process exit.
std::filesystem::path temp_dir(const std::string& tag);
/// Path of the built CLI binary.
std::string cli_path();
/// Runs a shell command, returns its exit code; stdout+stderr go to `output` when non-null.
int run_command(const std::string& cmd, std::string* output = nullptr);
std::string read_file(const std::filesystem::path& p);
void write_file(const std::filesystem::path& p, const std::string& content);

}  // namespace fp_test
