// Fine-mixing's E-PUR (Zhang et al., 2022): embedding rows that drifted far for how rarely the
// clean data uses them (see baselines.hpp).
#include <algorithm>

#include "finepurify/purify/baselines.hpp"

namespace finepurify::purify {

torch::Tensor epur_mask(const torch::Tensor& ft_word, const torch::Tensor& pre_word, const train::TokenizedSet& clean,
                        int64_t rows) {
  const int64_t V = ft_word.size(0);
  auto count = torch::zeros({V}, torch::kFloat64);
  auto acc = count.accessor<double, 1>();
  for (auto& e : clean.encodings)
    for (auto id : e.input_ids)
      if (id >= 0 && id < V) acc[id] += 1;
  auto drift = (ft_word.to(torch::kCPU, torch::kFloat64) - pre_word.to(torch::kFloat64)).norm(2, {1});
  auto score = drift / torch::log(count + 2.0);
  auto mask = torch::zeros(ft_word.sizes(), torch::kBool);
  rows = std::min(rows, V);
  if (rows > 0) mask.index_fill_(0, std::get<1>(score.topk(rows)), true);
  return mask;
}

}  // namespace finepurify::purify
