// Labelled text datasets: the shared TSV format (header `label\ttext` or `label\ttext_a\ttext_b`),
// CSV and JSON Lines with column options. Errors name the file and line.
#pragma once
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace finepurify::text {

struct Example {
  std::string text_a;
  std::optional<std::string> text_b;
  int64_t label = -1;  ///< -1 = unlabelled
};

struct Dataset {
  std::string source;                 ///< file path
  std::vector<Example> examples;
  bool is_pair() const { return !examples.empty() && examples.front().text_b.has_value(); }
};

struct ReadOptions {
  std::string format = "auto";        ///< auto (by extension) | tsv | csv | jsonl
  std::string label_column = "label";
  std::string text_column = "";       ///< "" = text, else text_a / sentence / sentence1 ...
  std::string text_pair_column = "";  ///< "" = text_b if present
  int64_t num_labels = -1;            ///< > 0: labels must lie in [0, num_labels)
  /// label string -> id (from the model's label2id). Numeric labels are used as ids otherwise.
  std::map<std::string, int64_t> label2id;
  bool require_labels = true;
};

Dataset read_dataset(const std::string& path, const ReadOptions& opt = {});
/// Writes the shared TSV format (used by attacks to emit poisoned / triggered sets) atomically
/// (temporary file + rename). The format has no quoting: tabs and line breaks inside a text are
/// written as spaces, as in shared/data; a label of -1 is written as an empty field.
void write_tsv(const std::string& path, const Dataset& data);

}  // namespace finepurify::text
