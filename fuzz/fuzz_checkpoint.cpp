// libFuzzer target: a checkpoint folder with a sharded index. The input is
// "INDEX\n----\nSHARD1\n----\nSHARD2": the index JSON and two shard files (a.safetensors,
// b.safetensors) it may name; the reader opens the folder and copies out every tensor it lists.
#include <torch/torch.h>

#include "finepurify/error.hpp"
#include "finepurify/io/checkpoint.hpp"
#include "fuzz_common.hpp"

using namespace finepurify;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts = fp_fuzz::split(data, size, 3);
  const auto& dir = fp_fuzz::fresh();
  fp_fuzz::write(dir / "model.safetensors.index.json", parts[0]);
  fp_fuzz::write(dir / "a.safetensors", parts[1]);
  fp_fuzz::write(dir / "b.safetensors", parts[2]);
  try {
    io::CheckpointReader r(dir.string());
    for (const auto& n : r.names()) {
      if (!r.contains(n)) __builtin_trap();
      const auto shape = r.shape(n);
      try {
        auto t = r.tensor(n);
        if (t.dim() != static_cast<int64_t>(shape.size())) __builtin_trap();
      } catch (const Error&) {
      }
    }
  } catch (const Error&) {
  }
  return 0;
}
