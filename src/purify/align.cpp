// Suspect <-> pre-trained tensor alignment by name and shape.
#include "finepurify/purify/align.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "finepurify/error.hpp"
#include "finepurify/io/checkpoint.hpp"
#include "finepurify/model/loader.hpp"
#include "finepurify/util/reduce.hpp"

namespace finepurify::purify {

namespace {

/// The aligned tensor `ck` of `reader` as float32, checked finite.
torch::Tensor read_checked(const io::CheckpointReader& reader, const std::string& folder, const std::string& ck) {
  auto t = reader.tensor(ck).to(torch::kFloat32);
  if (!util::all_finite(t))
    throw Error(ErrorKind::CheckpointMismatch, fmt::format("{}: tensor '{}' holds NaN or Inf", folder, ck));
  return t;
}

/// w_Pre of aligned `name` read again after the alignment: still the aligned shape, still finite.
torch::Tensor read_again(const Alignment& a, const io::CheckpointReader& reader, const std::string& name) {
  auto src = a.source.find(name);
  if (src == a.source.end())
    throw Error(ErrorKind::Internal, fmt::format("Alignment: no pre-trained counterpart of '{}'", name));
  if (!reader.contains(src->second.tensor) || reader.shape(src->second.tensor) != src->second.shape)
    throw Error(ErrorKind::CheckpointMismatch,
                fmt::format("{}: tensor '{}' is gone or changed shape since it was aligned", a.folder, src->second.tensor));
  return read_checked(reader, a.folder, src->second.tensor);
}

}  // namespace

Alignment align_with_pretrained(model::SequenceClassifierImpl& m, const std::string& folder, bool load_values) {
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
  a.folder = folder;
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
    auto t = read_checked(reader, folder, it->second);
    if (load_values) a.pre[name] = t;
    a.aligned.push_back(name);
    a.source[name] = {it->second, shape};
    a.dims += t.numel();
  }
  if (a.aligned.empty())
    throw Error(ErrorKind::CheckpointMismatch,
                fmt::format("{}: no tensor aligns with the suspect model (is this its pre-trained checkpoint?)", folder));
  return a;
}

torch::Tensor Alignment::pre_of(const std::string& name) const {
  if (auto it = pre.find(name); it != pre.end()) return it->second;
  return read_again(*this, io::CheckpointReader(folder), name);
}

}  // namespace finepurify::purify
