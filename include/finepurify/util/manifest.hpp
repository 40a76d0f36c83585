// Run manifests: the command, options, seed, SHA-256 of every input file and library versions,
// written next to every output so runs can be reproduced and audited.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace finepurify::util {

/// Hex SHA-256 of a file's bytes (Error(Io) if unreadable).
std::string sha256_file(const std::string& path);
/// Hex SHA-256 of a string.
std::string sha256_string(const std::string& data);

class Manifest {
 public:
  Manifest(std::string command, nlohmann::json options);
  /// Record an input: a file is hashed; a folder hashes its config/weights/tokenizer files.
  void add_input(const std::string& role, const std::string& path);
  void set(const std::string& key, nlohmann::json value) { extra_[key] = std::move(value); }
  nlohmann::json to_json() const;

 private:
  std::string command_;
  nlohmann::json options_, inputs_ = nlohmann::json::object(), extra_ = nlohmann::json::object();
  std::string started_;
};

/// The command line this process was started with (set by the CLI's main).
void set_command_line(int argc, char** argv);
const std::string& command_line();

}  // namespace finepurify::util
