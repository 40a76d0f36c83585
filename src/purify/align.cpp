// Suspect <-> pre-trained tensor alignment by name and shape.
#include "finepurify/purify/align.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "finepurify/error.hpp"
#include "finepurify/io/checkpoint.hpp"
#include "finepurify/model/loader.hpp"

namespace finepurify::purify {

int64_t Alignment::aligned_dims() const {
  int64_t d = 0;
  for (auto& n : aligned) d += pre.at(n).numel();
  return d;
}

Alignment align_with_pretrained(model::SequenceClassifierImpl& m, const std::string& folder) {
  auto pre_cfg = model::load_config(folder);
  if (pre_cfg.model_type != m.config.model_type)
    throw Error(ErrorKind::CheckpointMismatch,
                fmt::format("{}: pre-trained model_type '{}' differs from the suspect's '{}'", folder,
                            pre_cfg.model_type, m.config.model_type));
  io::CheckpointReader reader(folder);
  std::map<std::string, std::string> source;
  for (const auto& ck : reader.names()) {
    auto n = model::canonical_name(ck, m.config);
    if (!n.empty()) source[n] = ck;
  }
  Alignment a;
  for (auto& p : m.named_parameters()) {
    const auto& name = p.key();
    auto it = source.find(name);
    if (it == source.end()) {
      a.unaligned[name] = "no pre-trained counterpart";
      continue;
    }
    auto shape = reader.shape(it->second);
    if (std::vector<int64_t>(p.value().sizes().begin(), p.value().sizes().end()) != shape) {
      a.unaligned[name] = fmt::format("shape [{}] in the pre-trained checkpoint vs [{}]", fmt::join(shape, ", "),
                                      fmt::join(p.value().sizes(), ", "));
      continue;
    }
    auto t = reader.tensor(it->second).to(torch::kFloat32);
    if (!torch::isfinite(t).all().item<bool>())
      throw Error(ErrorKind::CheckpointMismatch, fmt::format("{}: tensor '{}' holds NaN or Inf", folder, it->second));
    a.pre[name] = t;
    a.aligned.push_back(name);
  }
  if (a.aligned.empty())
    throw Error(ErrorKind::CheckpointMismatch,
                fmt::format("{}: no tensor aligns with the suspect model (is this its pre-trained checkpoint?)", folder));
  return a;
}

}  // namespace finepurify::purify
