// The CLI side of the option tables (util/options.hpp): one flag per table row, with the spec's
// current value as the shown default, the row's checks (range, choices, existing file, model name)
// and its help. Subcommands bind their spec's table instead of restating options.
#pragma once
#include <string>

#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "finepurify/util/options.hpp"

namespace fp_cli {

/// CLI11 check ">= lo" (CLI::Range would print the upper end as 1.79769e+308).
inline CLI::Validator at_least(double lo) {
  const auto text = CLI::detail::to_string(lo);
  return CLI::Validator(
      [lo, text](std::string& s) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(s, v)) return "'" + s + "' is not a number";
        return v < lo ? "value " + s + " below " + text : std::string();
      },
      ">= " + text);
}

template <class S>
CLI::Option* bind_field(CLI::App* cmd, S& spec, const finepurify::util::Field<S>& f) {
  using finepurify::util::Kind;
  void* p = f.ref(spec);
  const auto flag = f.flag();
  CLI::Option* o = nullptr;
  switch (f.kind) {
    case Kind::Bool: return cmd->add_flag(flag, *static_cast<bool*>(p), f.help);
    case Kind::Int: o = cmd->add_option(flag, *static_cast<int*>(p), f.help); break;
    case Kind::Int64: o = cmd->add_option(flag, *static_cast<int64_t*>(p), f.help); break;
    case Kind::UInt64: o = cmd->add_option(flag, *static_cast<uint64_t*>(p), f.help); break;
    case Kind::Double: o = cmd->add_option(flag, *static_cast<double*>(p), f.help); break;
    case Kind::String: o = cmd->add_option(flag, *static_cast<std::string*>(p), f.help); break;
    case Kind::OptDouble: o = cmd->add_option(flag, *static_cast<std::optional<double>*>(p), f.help); break;
    case Kind::Doubles: o = cmd->add_option(flag, *static_cast<std::vector<double>*>(p), f.help)->delimiter(','); break;
    case Kind::Strings: o = cmd->add_option(flag, *static_cast<std::vector<std::string>*>(p), f.help)->delimiter(','); break;
    case Kind::Enum:
      o = cmd->add_option_function<std::string>(flag, [&spec, f](const std::string& v) { f.set_name(spec, v); }, f.help)
              ->default_str(f.get_name(spec));
      break;
  }
  if (f.kind != Kind::Enum && f.kind != Kind::OptDouble) o->capture_default_str();
  if (!f.choices.empty()) o->check(CLI::IsMember(f.choices));
  if (f.min && f.max) o->check(CLI::Range(*f.min, *f.max));
  if (f.min && !f.max) o->check(at_least(*f.min));
  if (f.path == finepurify::util::PathCheck::ExistingFile) o->check(CLI::ExistingFile);
  if (f.path == finepurify::util::PathCheck::Model) o->transform(model_folder());
  if (f.required) o->required();
  return o;
}

/// One flag per row of `fields`, writing into `spec` (which must outlive the parse).
template <class S>
void bind_options(CLI::App* cmd, S& spec, const finepurify::util::Fields<S>& fields) {
  for (auto& f : fields) bind_field(cmd, spec, f);
}

/// A subcommand that runs one spec into an output folder: the spec's flags plus --out and --overwrite.
template <class S>
struct SpecCommand {
  S spec;
  std::string out;
  bool overwrite = false;
};

template <class S>
std::shared_ptr<SpecCommand<S>> add_spec_command(CLI::App* cmd, const finepurify::util::Fields<S>& fields,
                                                 const char* out_help, S defaults = {}) {
  auto a = std::make_shared<SpecCommand<S>>();
  a->spec = std::move(defaults);
  bind_options(cmd, a->spec, fields);
  cmd->add_option("--out", a->out, out_help)->required();
  cmd->add_flag("--overwrite", a->overwrite, "replace an existing --out folder");
  return a;
}

}  // namespace fp_cli
