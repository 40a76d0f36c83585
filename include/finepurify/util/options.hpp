// Options declared once. A typed spec struct (DefenseSpec, AttackSpec, TrainOptions, ...) holds every
// default in its member initialisers; a table of Field<Spec> names each option once (key, help,
// accessor, checks). From that table the CLI binds its flags (tools/finepurify/bind.hpp), the
// experiment config reader parses an options object, and manifests write the options back, so a
// changed default or a new option is one line in the spec plus one table row. Enumerations have one
// EnumTable each ({value, name, help}) for parsing, printing and CLI choices.
#pragma once
#include <algorithm>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "finepurify/error.hpp"

namespace finepurify::util {

template <class E>
struct EnumEntry {
  E value;
  const char* name;
  const char* help;
};

/// The names of one enumeration. `what` names it in errors ("indicator").
template <class E>
struct EnumTable {
  const char* what;
  std::vector<EnumEntry<E>> entries;

  std::vector<std::string> names() const {
    std::vector<std::string> n;
    for (auto& e : entries) n.push_back(e.name);
    return n;
  }
  /// "a | b | c"
  std::string joined(const char* sep = " | ") const {
    std::string s;
    for (auto& e : entries) s += (s.empty() ? "" : sep) + std::string(e.name);
    return s;
  }
  E parse(const std::string& s) const {
    for (auto& e : entries)
      if (s == e.name) return e.value;
    throw Error(ErrorKind::InvalidArgument, "unknown " + std::string(what) + " '" + s + "' (" + joined(", ") + ")");
  }
  const char* name(E v) const {
    for (auto& e : entries)
      if (e.value == v) return e.name;
    return "?";
  }
};

/// What a field holds (the type behind Field::ref).
enum class Kind { Bool, Int, Int64, UInt64, Double, String, OptDouble, Doubles, Strings, Enum };
/// How the CLI checks a path-valued field: an existing file, or a model folder / model name.
enum class PathCheck { None, ExistingFile, Model };

template <class S>
struct Field {
  std::string key;   ///< config / manifest key; the CLI flag is "--" + key with '_' -> '-'
  std::string help;  ///< CLI help (enum fields append their choices)
  Kind kind = Kind::Int;
  std::function<void*(S&)> ref;  ///< the member (of the type `kind` names)
  std::vector<std::string> choices;  ///< Enum (and String fields restricted to a list)
  std::function<std::string(const S&)> get_name;          ///< Enum only
  std::function<void(S&, const std::string&)> set_name;   ///< Enum only
  std::optional<double> min, max;  ///< numeric range (inclusive)
  bool required = false;
  PathCheck path = PathCheck::None;

  std::string flag() const {
    std::string f = "--" + key;
    std::replace(f.begin(), f.end(), '_', '-');
    return f;
  }
  Field& range(double lo, double hi) { min = lo; max = hi; return *this; }
  Field& at_least(double lo) { min = lo; return *this; }
  Field& one_of(std::vector<std::string> c) { choices = std::move(c); return *this; }
  Field& needed() { required = true; return *this; }
  Field& file() { path = PathCheck::ExistingFile; return *this; }
  Field& model() { path = PathCheck::Model; return *this; }
};

template <class S>
using Fields = std::vector<Field<S>>;

namespace detail {
template <class T> constexpr Kind kind_of() {
  if constexpr (std::is_same_v<T, bool>) return Kind::Bool;
  else if constexpr (std::is_same_v<T, int>) return Kind::Int;
  else if constexpr (std::is_same_v<T, int64_t>) return Kind::Int64;
  else if constexpr (std::is_same_v<T, uint64_t>) return Kind::UInt64;
  else if constexpr (std::is_same_v<T, double>) return Kind::Double;
  else if constexpr (std::is_same_v<T, std::string>) return Kind::String;
  else if constexpr (std::is_same_v<T, std::optional<double>>) return Kind::OptDouble;
  else if constexpr (std::is_same_v<T, std::vector<double>>) return Kind::Doubles;
  else if constexpr (std::is_same_v<T, std::vector<std::string>>) return Kind::Strings;
  else static_assert(std::is_enum_v<T>, "unsupported option type");
  return Kind::Enum;
}
}  // namespace detail

/// One table row. `member` maps the spec to the field (`[](S& s) -> auto& { return s.x.y; }`); an
/// enum member needs `enum_table(E)` findable by ADL.
template <class S, class F>
Field<S> field(std::string key, std::string help, F member) {
  using T = std::remove_reference_t<std::invoke_result_t<F, S&>>;
  Field<S> f;
  f.key = std::move(key);
  f.help = std::move(help);
  f.kind = detail::kind_of<T>();
  f.ref = [member](S& s) -> void* { return &member(s); };
  if constexpr (std::is_enum_v<T>) {
    const auto& table = enum_table(T{});
    f.choices = table.names();
    f.help += " (" + table.joined() + ")";
    f.get_name = [member, &table](const S& s) { return std::string(table.name(member(const_cast<S&>(s)))); };
    f.set_name = [member, &table](S& s, const std::string& v) { member(s) = table.parse(v); };
  }
  return f;
}

/// One table row in one line: FP_OPTION(Spec, "key", "help", member.path).checks()...
#define FP_OPTION(S, key, help, member) ::finepurify::util::field<S>(key, help, [](S& s) -> auto& { return s.member; })

/// The rows of `all` whose keys are in `keys`, in `keys`' order (an unknown key is a bug).
template <class S>
Fields<S> pick(const Fields<S>& all, const std::vector<std::string>& keys) {
  Fields<S> out;
  for (auto& k : keys) {
    auto it = std::find_if(all.begin(), all.end(), [&](const Field<S>& f) { return f.key == k; });
    if (it == all.end()) throw Error(ErrorKind::Internal, "no option '" + k + "' in its table");
    out.push_back(*it);
  }
  return out;
}
/// The rows of `all` except `keys`.
template <class S>
Fields<S> omit(const Fields<S>& all, const std::vector<std::string>& keys) {
  Fields<S> out;
  for (auto& f : all)
    if (std::find(keys.begin(), keys.end(), f.key) == keys.end()) out.push_back(f);
  return out;
}

/// The field's value as JSON (enums by name, an empty optional as null).
template <class S>
nlohmann::json field_json(const Field<S>& f, const S& s) {
  void* p = f.ref(const_cast<S&>(s));
  switch (f.kind) {
    case Kind::Bool: return *static_cast<bool*>(p);
    case Kind::Int: return *static_cast<int*>(p);
    case Kind::Int64: return *static_cast<int64_t*>(p);
    case Kind::UInt64: return *static_cast<uint64_t*>(p);
    case Kind::Double: return *static_cast<double*>(p);
    case Kind::String: return *static_cast<std::string*>(p);
    case Kind::OptDouble: {
      auto& o = *static_cast<std::optional<double>*>(p);
      return o ? nlohmann::json(*o) : nlohmann::json(nullptr);
    }
    case Kind::Doubles: return *static_cast<std::vector<double>*>(p);
    case Kind::Strings: return *static_cast<std::vector<std::string>*>(p);
    case Kind::Enum: return f.get_name(s);
  }
  return nullptr;
}

/// Checks a numeric value against the field's range and a string against its choices.
template <class S>
void check_field(const Field<S>& f, const S& s, ErrorKind kind, const std::string& where) {
  const nlohmann::json v = field_json(f, s);
  auto fail = [&](const std::string& why) { throw Error(kind, where + (where.empty() ? "" : ": ") + f.key + " " + why); };
  if (v.is_number()) {
    const double x = v.get<double>();
    if ((f.min && x < *f.min) || (f.max && x > *f.max))
      fail(nlohmann::json(x).dump() + " outside [" + (f.min ? nlohmann::json(*f.min).dump() : "-inf") + ", " +
           (f.max ? nlohmann::json(*f.max).dump() : "inf") + "]");
  }
  if (f.kind == Kind::String && !f.choices.empty() &&
      std::find(f.choices.begin(), f.choices.end(), v.get<std::string>()) == f.choices.end())
    fail("'" + v.get<std::string>() + "' is not one of the choices");
}

/// Sets one field from a JSON value (type, range and choices checked; errors name `where` and the key).
template <class S>
void set_field(const Field<S>& f, S& s, const nlohmann::json& v, ErrorKind kind, const std::string& where) {
  void* p = f.ref(s);
  try {
    switch (f.kind) {
      case Kind::Bool: *static_cast<bool*>(p) = v.get<bool>(); break;
      case Kind::Int: *static_cast<int*>(p) = v.get<int>(); break;
      case Kind::Int64: *static_cast<int64_t*>(p) = v.get<int64_t>(); break;
      case Kind::UInt64: *static_cast<uint64_t*>(p) = v.get<uint64_t>(); break;
      case Kind::Double: *static_cast<double*>(p) = v.get<double>(); break;
      case Kind::String: *static_cast<std::string*>(p) = v.get<std::string>(); break;
      case Kind::OptDouble:
        *static_cast<std::optional<double>*>(p) = v.is_null() ? std::nullopt : std::optional<double>(v.get<double>());
        break;
      case Kind::Doubles: *static_cast<std::vector<double>*>(p) = v.get<std::vector<double>>(); break;
      case Kind::Strings: *static_cast<std::vector<std::string>*>(p) = v.get<std::vector<std::string>>(); break;
      case Kind::Enum: f.set_name(s, v.get<std::string>()); break;
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(kind, where + (where.empty() ? "" : ": ") + f.key + ": wrong type (" + e.what() + ")");
  } catch (const Error& e) {
    throw Error(kind, where + (where.empty() ? "" : ": ") + f.key + ": " + e.what());
  }
  check_field(f, s, kind, where);
}

/// Sets `s` from an options object; every key must be a field of `fields` (a typo is an error).
template <class S>
void read_options(const nlohmann::json& j, S& s, const Fields<S>& fields, ErrorKind kind, const std::string& where) {
  if (!j.is_object()) throw Error(kind, where + ": options must be an object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    auto f = std::find_if(fields.begin(), fields.end(), [&](const Field<S>& x) { return x.key == it.key(); });
    if (f == fields.end()) {
      std::string known;
      for (auto& x : fields) known += (known.empty() ? "" : ", ") + x.key;
      throw Error(kind, where + ": unknown option \"" + it.key() + "\" (known: " + known + ")");
    }
    set_field(*f, s, it.value(), kind, where);
  }
}

/// Every field of `fields` as one JSON object (manifests, reports).
template <class S>
nlohmann::json options_json(const S& s, const Fields<S>& fields) {
  nlohmann::json j = nlohmann::json::object();
  for (auto& f : fields) j[f.key] = field_json(f, s);
  return j;
}

/// The CLI flags that set `s` where it differs from `base` (" --key value" each, in table order;
/// a true Bool as its bare flag, lists comma-joined): the command line a run is equivalent to.
template <class S>
std::string command_flags(const S& s, const Fields<S>& fields, const S& base = S{}) {
  std::string out;
  for (auto& f : fields) {
    const nlohmann::json v = field_json(f, s);
    if (v == field_json(f, base) || v.is_null()) continue;
    if (f.kind == Kind::Bool) {
      if (v.get<bool>()) out += " " + f.flag();
      continue;
    }
    std::string text;
    if (v.is_array())
      for (auto& x : v) text += (text.empty() ? "" : ",") + (x.is_string() ? x.get<std::string>() : x.dump());
    else
      text = v.is_string() ? v.get<std::string>() : v.dump();
    const bool quote = text.empty() || text.find_first_of(" \t'\"$\\;&|<>()*?") != std::string::npos;
    out += " " + f.flag() + " " + (quote ? "'" + text + "'" : text);
  }
  return out;
}

/// Name of an enum value through its table (`enum_table(E)` found by ADL).
template <class E>
const char* name_of(E v) { return enum_table(v).name(v); }
/// Enum value of a name; Error(InvalidArgument) listing the names.
template <class E>
E parse_enum(const std::string& s) { return enum_table(E{}).parse(s); }
}  // namespace finepurify::util
