// libFuzzer target: a safetensors buffer through the validating view, then every tensor read back
// through the file reader (mmap + copy into a torch tensor). Invariants: each tensor's bytes lie in
// the buffer and match its shape x dtype; the tensor read back has the header's shape.
#include <cstring>

#include <torch/torch.h>

#include "finepurify/error.hpp"
#include "finepurify/io/safetensors.hpp"
#include "fuzz_common.hpp"

using namespace finepurify;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    io::SafetensorsView v(data, size, "fuzz");
    uint64_t sum = 0;
    for (const auto& t : v.tensors()) {
      if (t.begin > t.end || t.end > size) __builtin_trap();
      uint64_t n = io::dtype_size(t.dtype);
      for (auto d : t.shape) n *= static_cast<uint64_t>(d);
      if (n != t.end - t.begin) __builtin_trap();
      for (uint64_t i = t.begin; i < t.end; ++i) sum += v.tensor_data(t)[i - t.begin];
    }
    (void)sum;
    // The same bytes as a file, each tensor copied out as torch would see it.
    const auto path = fp_fuzz::fresh() / "model.safetensors";
    fp_fuzz::write(path, std::string_view(reinterpret_cast<const char*>(data), size));
    io::SafetensorsFile f(path.string());
    for (const auto& t : f.view().tensors()) {
      try {
        auto x = f.tensor(t.name);
        if (x.dim() != static_cast<int64_t>(t.shape.size())) __builtin_trap();
        for (int64_t i = 0; i < x.dim(); ++i)
          if (x.size(i) != static_cast<int64_t>(t.shape[i])) __builtin_trap();
      } catch (const Error&) {  // a dtype libtorch lacks
      }
    }
  } catch (const Error&) {
  }
  return 0;
}
