// Run manifests and SHA-256 hashing of inputs.
#include "finepurify/util/manifest.hpp"

#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <openssl/evp.h>
#include <torch/version.h>

#include "finepurify/error.hpp"
#include "finepurify/util/runtime.hpp"

namespace finepurify::util {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {
std::string g_command_line;

std::string now_iso() {
  std::time_t t = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}
}  // namespace

std::string sha256_string(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) hex += fmt::format("{:02x}", md[i]);
  return hex;
}

std::string sha256_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(ErrorKind::Io, fmt::format("{}: cannot open to hash", path));
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 20);
  while (f) {
    f.read(buf.data(), buf.size());
    if (f.gcount() > 0) EVP_DigestUpdate(ctx, buf.data(), static_cast<size_t>(f.gcount()));
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  std::string hex;
  for (unsigned i = 0; i < len; ++i) hex += fmt::format("{:02x}", md[i]);
  return hex;
}

void set_command_line(int argc, char** argv) {
  g_command_line.clear();
  for (int i = 0; i < argc; ++i) {
    if (i) g_command_line += ' ';
    std::string a = argv[i];
    bool quote = a.empty() || a.find_first_of(" \t'\"$") != std::string::npos;
    g_command_line += quote ? "'" + a + "'" : a;
  }
}
const std::string& command_line() { return g_command_line; }

Manifest::Manifest(std::string command, json options)
    : command_(std::move(command)), options_(std::move(options)), started_(now_iso()) {}

void Manifest::add_input(const std::string& role, const std::string& path) {
  json entry = {{"path", fs::absolute(path).string()}};
  if (fs::is_directory(path)) {
    json files = json::object();
    for (const auto& e : fs::directory_iterator(path)) {
      auto name = e.path().filename().string();
      bool relevant = e.is_regular_file() && (name == "config.json" || name.find(".safetensors") != std::string::npos ||
                                              name == "vocab.txt" || name == "vocab.json" || name == "merges.txt" ||
                                              name == "tokenizer.json" || name == "tokenizer_config.json");
      if (relevant && name != "golden.safetensors") files[name] = sha256_file(e.path().string());
    }
    entry["sha256"] = files;
  } else {
    entry["sha256"] = sha256_file(path);
  }
  inputs_[role] = entry;
}

json Manifest::to_json() const {
  auto blas = detect_blas();
  json j = {
      {"tool", "finepurify"},
      {"command", command_},
      {"command_line", g_command_line},
      {"options", options_},
      {"inputs", inputs_},
      {"started", started_},
      {"finished", now_iso()},
      {"versions",
       {{"libtorch", TORCH_VERSION},
        {"fmt", FMT_VERSION},
        {"nlohmann_json", fmt::format("{}.{}.{}", NLOHMANN_JSON_VERSION_MAJOR, NLOHMANN_JSON_VERSION_MINOR,
                                      NLOHMANN_JSON_VERSION_PATCH)},
        {"blas", blas.kind + (blas.library.empty() ? "" : " (" + blas.library + ")")}}},
  };
  for (auto it = extra_.begin(); it != extra_.end(); ++it) j[it.key()] = it.value();
  return j;
}

}  // namespace finepurify::util
