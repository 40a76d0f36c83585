// finepurify._core: the Python front end's bridge to the C++ library (python/finepurify wraps it in
// typed functions). Options arrive as a JSON object and are set through each spec's option table
// (util::read_options: the same keys, types, ranges and choices as the CLI flags and experiment
// configs); results go back as JSON text; the purified weights as torch tensors that share the
// model's storage (no copy). Library errors raise finepurify._core.Error with the CLI's kind name
// and exit code; log and progress lines go to a Python callable while the GIL is released.
#include <torch/extension.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "finepurify/attack/run.hpp"
#include "finepurify/error.hpp"
#include "finepurify/io/model_store.hpp"
#include "finepurify/model/loader.hpp"
#include "finepurify/purify/defense.hpp"
#include "finepurify/report/purify_report.hpp"
#include "finepurify/report/run_report.hpp"
#include "finepurify/train/run.hpp"
#include "finepurify/util/runtime.hpp"

namespace py = pybind11;
using nlohmann::json;
using namespace finepurify;

namespace fp_py {

py::object g_error_type;  ///< finepurify._core.Error

/// `s` with the options of `options_json` set through `fields`, model names resolved to folders
/// (the model store, the HF cache) and required paths checked.
template <class S>
S spec_from(const util::Fields<S>& fields, S s, const std::string& options_json, const std::string& what) {
  json j;
  try {
    j = json::parse(options_json);
  } catch (const json::exception& e) {
    throw Error(ErrorKind::InvalidArgument, what + ": options are not JSON (" + e.what() + ")");
  }
  util::read_options(j, s, fields, ErrorKind::InvalidArgument, what);
  for (auto& f : fields) {
    if (f.kind != util::Kind::String) continue;
    auto& v = *static_cast<std::string*>(f.ref(s));
    if (v.empty()) {
      if (f.required) throw Error(ErrorKind::InvalidArgument, what + ": " + f.key + " is required");
      continue;
    }
    if (f.path == util::PathCheck::Model) v = io::resolve_model(v);
    if (f.path == util::PathCheck::ExistingFile && !std::filesystem::is_regular_file(v))
      throw Error(ErrorKind::Io, what + ": " + f.key + ": no such file: " + v);
  }
  return s;
}

/// Runs `fn` without the GIL, with the library's log lines sent to `progress` (None: stderr). An
/// exception the callback raises stops the run and reaches the caller.
template <class F>
auto with_progress(const py::object& progress, F fn) {
  struct Restore {
    ~Restore() { util::set_log_sink({}); }
  } restore;
  // A borrowed pointer: the sink is copied on every line without the GIL, so it must not own a
  // Python reference; the caller's callable outlives the call.
  if (!progress.is_none())
    util::set_log_sink([cb = progress.ptr()](const std::string& line) {
      py::gil_scoped_acquire gil;
      py::handle callback(cb);
      callback(line);
    });
  py::gil_scoped_release nogil;
  return fn();
}

/// The model's parameters by their Hugging Face names, sharing its storage.
py::dict state_dict(model::SequenceClassifierImpl& m) {
  py::dict d;
  for (auto& [name, t] : model::named_tensors(m)) d[py::str(name)] = t;
  return d;
}

py::tuple defend(const std::string& options, const std::string& out, bool overwrite, const std::string& command,
                 const std::string& device, const py::object& progress) {
  const auto& fields = command == "purify" ? purify::purify_fields() : purify::defense_fields();
  const auto s = spec_from(fields, purify::DefenseSpec{}, options, command);
  auto dev = util::parse_device(device);
  auto [run, report] = with_progress(progress, [&] {
    if (!out.empty()) model::check_output_not_input(out, {s.pretrained, s.suspect});
    auto r = purify::run_defense(s, dev);
    if (!out.empty()) report::save_defense(r, s, "python:" + command, out, overwrite);
    const auto rep = report::purify_json(r.result, r.dev_note);
    return std::make_pair(std::move(r), rep.dump());
  });
  return py::make_tuple(report, state_dict(*run.model.model));
}

std::string scan(const std::string& options, const std::string& out, const std::string& device, const py::object& progress) {
  const auto s = spec_from(purify::scan_fields(), purify::scan_defaults(), options, "scan");
  auto dev = util::parse_device(device);
  return with_progress(progress, [&] {
    const auto j = report::diagnosis_json(purify::run_scan(s, dev).summary);
    if (!out.empty()) report::save_diagnosis(j, out, {s.pretrained, s.suspect, s.clean});
    return j.dump();
  });
}

py::tuple attack(const std::string& options, const std::string& out, bool overwrite, const std::string& device,
                 const py::object& progress) {
  auto s = spec_from(attack::attack_fields(), attack::AttackSpec{}, options, "attack");
  s.lr_given = json::parse(options).contains("lr");
  auto dev = util::parse_device(device);
  auto [run, report] = with_progress(progress, [&] {
    attack::check_attack_output(s, out, overwrite);
    auto r = attack::run_attack(s, dev);
    report::save_attack(r, s, out, overwrite);
    const auto rep = report::attack_json(r, s).dump();
    return std::make_pair(std::move(r), rep);
  });
  return py::make_tuple(report, state_dict(*run.model.model));
}

std::string finetune(const std::string& options, const std::string& out, bool overwrite, const std::string& device,
                     const py::object& progress) {
  const auto s = spec_from(train::finetune_fields(), train::FinetuneSpec{}, options, "finetune");
  auto dev = util::parse_device(device);
  return with_progress(progress, [&] {
    train::check_finetune_output(s, out, overwrite);
    auto r = train::run_finetune(s, dev);
    report::save_finetune(r, s, out, overwrite);
    json j = {{"train", report::train_json(r.train)}, {"out", out}};
    if (r.dev_eval) j["dev"] = report::eval_json(*r.dev_eval, r.model.config.id2label);
    return j.dump();
  });
}

py::tuple evaluate(const std::string& model_dir, const std::string& data, int max_length, int64_t batch_size,
                   const std::string& attack_test, int64_t target_label, const std::string& device,
                   const py::object& progress) {
  train::EvalSpec s;
  s.model = io::resolve_model(model_dir);
  s.data = data;
  s.max_length = max_length;
  s.batch_size = batch_size;
  s.attack_test = attack_test;
  s.target_label = target_label;
  auto dev = util::parse_device(device);
  auto run = with_progress(progress, [&] { return train::run_eval(s, dev); });
  json j = report::eval_json(run.result, run.model.config.id2label);
  if (run.asr) j["asr"] = *run.asr;
  return py::make_tuple(j.dump(), run.result.logits);
}

}  // namespace fp_py

PYBIND11_MODULE(_core, m) {
  using namespace fp_py;
  m.doc() = "finepurify's C++ library (use the functions of the finepurify package)";
  g_error_type = py::reinterpret_borrow<py::object>(
      PyErr_NewExceptionWithDoc("finepurify._core.Error", "A finepurify library error (kind, exit_code, message)",
                                PyExc_RuntimeError, nullptr));
  m.attr("Error") = g_error_type;
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      py::object exc = g_error_type(e.what());
      exc.attr("kind") = error_kind_name(e.kind());
      exc.attr("exit_code") = error_exit_code(e.kind());
      PyErr_SetObject(g_error_type.ptr(), exc.ptr());
    }
  });
  m.def("defend", &fp_py::defend, py::arg("options"), py::arg("out"), py::arg("overwrite"), py::arg("command"),
        py::arg("device"), py::arg("progress"));
  m.def("scan", &fp_py::scan, py::arg("options"), py::arg("out"), py::arg("device"), py::arg("progress"));
  m.def("attack", &fp_py::attack, py::arg("options"), py::arg("out"), py::arg("overwrite"), py::arg("device"), py::arg("progress"));
  m.def("finetune", &fp_py::finetune, py::arg("options"), py::arg("out"), py::arg("overwrite"), py::arg("device"),
        py::arg("progress"));
  m.def("evaluate", &fp_py::evaluate, py::arg("model"), py::arg("data"), py::arg("max_length"), py::arg("batch_size"),
        py::arg("attack_test"), py::arg("target_label"), py::arg("device"), py::arg("progress"));
  m.def("option_keys", [](const std::string& command) {
    std::vector<std::string> keys;
    auto add = [&](const auto& fields) {
      for (auto& f : fields) keys.push_back(f.key);
    };
    if (command == "purify") add(purify::purify_fields());
    else if (command == "defend") add(purify::defense_fields());
    else if (command == "scan") add(purify::scan_fields());
    else if (command == "attack") add(attack::attack_fields());
    else if (command == "finetune") add(train::finetune_fields());
    else throw Error(ErrorKind::InvalidArgument, "no command '" + command + "'");
    return keys;
  });
  m.def("version", [] { return std::string(FINEPURIFY_VERSION); });
}
