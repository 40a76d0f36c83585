// libFuzzer target: the dataset readers (the first byte picks .tsv, .csv or .jsonl), then a round
// trip through write_tsv: what was read, written and read again is the same examples (the TSV
// format writes tabs and line breaks inside a text as spaces).
#include "finepurify/error.hpp"
#include "finepurify/text/dataset.hpp"
#include "fuzz_common.hpp"

using namespace finepurify;

namespace {
std::string flat(std::string s) {
  for (auto& c : s)
    if (c == '\t' || c == '\n' || c == '\r') c = ' ';
  return s;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static const char* ext[] = {".tsv", ".csv", ".jsonl"};
  const auto& dir = fp_fuzz::fresh();
  const auto in = dir / (std::string("in") + ext[data[0] % 3]);
  fp_fuzz::write(in, std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
  text::ReadOptions ro;
  ro.require_labels = (data[0] / 3) % 2 == 0;
  text::Dataset d;
  try {
    d = text::read_dataset(in.string(), ro);
  } catch (const Error&) {
    return 0;
  }
  const auto out = dir / "out.tsv";
  try {
    text::write_tsv(out.string(), d);
  } catch (const Error&) {
    return 0;  // e.g. nothing to write
  }
  const auto back = text::read_dataset(out.string(), ro);  // must not throw: we wrote it
  if (back.examples.size() != d.examples.size()) __builtin_trap();
  for (size_t i = 0; i < d.examples.size(); ++i) {
    const auto &a = d.examples[i], &b = back.examples[i];
    if (a.label != b.label || flat(a.text_a) != b.text_a || a.text_b.has_value() != b.text_b.has_value() ||
        (a.text_b && flat(*a.text_b) != *b.text_b))
      __builtin_trap();
  }
  return 0;
}
