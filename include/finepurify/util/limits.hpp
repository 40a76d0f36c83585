// Bounds shared by the readers of attacker-controlled files, declared once.
#pragma once
#include <cstdint>

namespace finepurify::util {

/// The most labels a classifier may have (config.json's num_labels / id2label) and so one above
/// the largest label id a dataset may hold, in every format: far above any text classifier's, low
/// enough that a 60-byte hostile config cannot make every load build a million-row head and label
/// table (found by fuzz_config: "num_labels": 907382 took > 10 s under ASan), and one rule for
/// TSV, CSV and JSON Lines (fuzz_dataset found a JSON label of 1.1e16 that the TSV reader, reading
/// it back, refused).
inline constexpr int64_t kMaxLabels = int64_t{1} << 14;

}  // namespace finepurify::util
