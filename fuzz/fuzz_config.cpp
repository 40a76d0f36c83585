// libFuzzer target: config.json text through the validating parser. Invariants for an accepted
// config: the sizes are positive and heads divide the hidden size, and the config the saver writes
// parses back to the same model.
#include <nlohmann/json.hpp>

#include "finepurify/error.hpp"
#include "finepurify/model/config.hpp"

using namespace finepurify;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto j = nlohmann::json::parse(data, data + size, nullptr, false);
  if (j.is_discarded()) return 0;
  try {
    const auto c = model::config_from_json(j, "fuzz");
    if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.num_hidden_layers <= 0 || c.num_attention_heads <= 0 ||
        c.hidden_size % c.num_attention_heads != 0 || c.intermediate_size <= 0 || c.max_position_embeddings <= 0)
      __builtin_trap();
    const auto back = model::config_from_json(model::classifier_config_json(c), "round trip");
    if (back.vocab_size != c.vocab_size || back.hidden_size != c.hidden_size ||
        back.num_hidden_layers != c.num_hidden_layers || back.num_labels() != c.num_labels())
      __builtin_trap();
  } catch (const Error&) {
  }
  return 0;
}
