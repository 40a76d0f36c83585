// Parity: the safetensors files written by the real Hugging Face code (goldens/models/*) read back
// with the names, shapes and dtypes their golden.json records, and survive a rewrite unchanged.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "finepurify/io/checkpoint.hpp"
#include "finepurify/io/safetensors.hpp"
#include "fp_test.hpp"

namespace fs = std::filesystem;
using namespace finepurify::io;

namespace {

fs::path models_dir() { return fp_test::shared_dir() / "goldens" / "models"; }

nlohmann::json golden_json(const fs::path& folder) {
  std::ifstream f(folder / "golden.json");
  return nlohmann::json::parse(f);
}

torch::ScalarType torch_dtype(const std::string& name) {
  if (name == "float32") return torch::kFloat32;
  if (name == "int64") return torch::kInt64;
  ADD_FAILURE() << "unexpected dtype in golden.json: " << name;
  return torch::kFloat32;
}

}  // namespace

TEST(SafetensorsGoldens, ModelParametersMatchGoldenJson) {
  if (!fp_test::have_shared()) GTEST_SKIP() << "shared folder absent";
  int checked = 0;
  for (const auto& entry : fs::directory_iterator(models_dir())) {
    const fs::path folder = entry.path();
    SCOPED_TRACE(folder.string());
    const nlohmann::json golden = golden_json(folder);
    CheckpointReader r(folder.string());
    EXPECT_EQ(r.metadata().at("format"), "pt");
    if (!golden.contains("parameters")) {  // bert-mlm-base: a base checkpoint without pooler
      EXPECT_TRUE(r.contains("bert.embeddings.word_embeddings.weight"));
      EXPECT_FALSE(r.contains("bert.pooler.dense.weight"));
      continue;
    }
    std::set<std::string> want;
    for (const auto& p : golden["parameters"]) {
      const std::string name = p["name"];
      want.insert(name);
      ASSERT_TRUE(r.contains(name)) << name;
      EXPECT_EQ(r.shape(name), p["shape"].get<std::vector<int64_t>>()) << name;
      const torch::Tensor t = r.tensor(name);
      EXPECT_EQ(t.scalar_type(), torch::kFloat32) << name;
      EXPECT_EQ(t.sizes().vec(), p["shape"].get<std::vector<int64_t>>()) << name;
    }
    const std::vector<std::string> names = r.names();
    EXPECT_EQ(std::set<std::string>(names.begin(), names.end()), want);
    ++checked;
  }
  EXPECT_EQ(checked, 4);
}

TEST(SafetensorsGoldens, GoldenTensorsMatchGoldenJson) {
  if (!fp_test::have_shared()) GTEST_SKIP() << "shared folder absent";
  for (const auto& entry : fs::directory_iterator(models_dir())) {
    const fs::path folder = entry.path();
    SCOPED_TRACE(folder.string());
    const nlohmann::json golden = golden_json(folder);
    SafetensorsFile f((folder / "golden.safetensors").string());
    EXPECT_EQ(f.view().tensors().size(), golden["tensors"].size());
    for (const auto& [name, info] : golden["tensors"].items()) {
      const torch::Tensor t = f.tensor(name);
      EXPECT_EQ(t.sizes().vec(), info["shape"].get<std::vector<int64_t>>()) << name;
      EXPECT_EQ(t.scalar_type(), torch_dtype(info["dtype"])) << name;
    }
  }
}

TEST(SafetensorsGoldens, RewriteKeepsEveryTensor) {
  if (!fp_test::have_shared()) GTEST_SKIP() << "shared folder absent";
  const fs::path out = fp_test::temp_dir("st-goldens") / "model.safetensors";
  const fs::path folder = models_dir() / "roberta-h32-2cls";
  CheckpointReader r(folder.string());
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& name : r.names()) tensors.emplace_back(name, r.tensor(name));
  write_safetensors(out.string(), tensors, r.metadata());
  CheckpointReader again(out.string());
  ASSERT_EQ(again.names(), r.names());
  for (const auto& [name, t] : tensors) EXPECT_TRUE(torch::equal(again.tensor(name), t)) << name;
  EXPECT_EQ(again.metadata(), r.metadata());
}
