// libFuzzer target: the binding's typed decoder (cpp/binding/codec, Python's
// aiocomm._core.codec) over every type descriptor of the test Slice files.
//
// The decoder builds Python objects, so this target embeds CPython: it is
// linked with the binding's sources and libpython, registers the extension
// in-process as aiocomm._core, and hands each input to the Python half,
// cpp/fuzz/typed_harness.py. That loads tests/slice/interop_aio_only.ice
// (with interop.ice), tests/codec/Codec.ice and tests/slice/everything.ice
// with aiocomm.slice and lists every descriptor's decode (structs, enums,
// sequences, dictionaries, class graphs, proxies, builtins, and every
// operation's decode_in / decode_out / decode_exception), sorted by name.
//
// An input is a selector (1 byte; 2 once there are more than 256 targets),
// taken modulo the number of targets, then the bytes to decode. Decoding
// either succeeds -- then the value re-encodes, decodes again and encodes to
// the same bytes -- or raises aiocomm.MarshalError. Any other exception is a
// bug (printed, then abort()), and so is a sanitizer report or an allocation
// above -malloc_limit_mb.
//
// Environment:
//   AIOCOMM_FUZZ_TYPED_SEEDS=DIR  write the seed corpus (valid encodings of
//                                 every target, from the codec's encoders) to
//                                 DIR and exit
//   AIOCOMM_FUZZ_TYPED_ONLY=NAME  fuzz or replay that one target (regressions)
//   AIOCOMM_FUZZ_TYPED_LIST=1     print the targets and exit
//
// Python allocates through malloc (PyPreConfig, as PYTHONMALLOC=malloc) so
// ASan sees every object. The interpreter is never finalized: libFuzzer
// exits from inside the run loop.
#include <pybind11/embed.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

namespace py = pybind11;

extern "C" PyObject* PyInit__core();

namespace {

struct Target {
  std::string name;
  py::object check;
};

struct State {
  std::vector<Target> targets;
  std::size_t width = 1;
  py::object marshal_error;
  py::object harness_module;
};

std::optional<State>& state() {
  static std::optional<State> s;
  return s;
}

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "fuzz_typed: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

// aiocomm._core built from the sources linked into this executable.
void register_core() {
  PyObject* made = PyInit__core();
  if (!made) throw py::error_already_set();
  py::object module;
  if (PyObject_TypeCheck(made, &PyModuleDef_Type)) {
    // Multi-phase initialization (PEP 489): create and execute it as the
    // import system would an extension module.
    auto* def = reinterpret_cast<PyModuleDef*>(made);
    py::object spec = py::module_::import("importlib.machinery").attr("ModuleSpec")("aiocomm._core", py::none());
    PyObject* m = PyModule_FromDefAndSpec(def, spec.ptr());
    if (!m) throw py::error_already_set();
    module = py::reinterpret_steal<py::object>(m);
    module.attr("__spec__") = spec;  // as importlib sets it (pybind11's exec reads it)
    if (PyModule_ExecDef(m, def) != 0) throw py::error_already_set();
  } else {
    module = py::reinterpret_steal<py::object>(made);
  }
  py::module_::import("sys").attr("modules")["aiocomm._core"] = module;
}

void destroy_at_exit() {
  // Joins the harness communicator's I/O thread before static destructors run.
  auto& s = state();
  if (!s) return;
  try {
    s->harness_module.attr("destroy")();
  } catch (const py::error_already_set& e) {
    std::fprintf(stderr, "fuzz_typed: destroy at exit: %s\n", e.what());
  }
}

void start(const char* argv0) {
  PyPreConfig pre;
  PyPreConfig_InitIsolatedConfig(&pre);
  pre.allocator = PYMEM_ALLOCATOR_MALLOC;
  PyStatus status = Py_PreInitialize(&pre);
  if (PyStatus_Exception(status)) fail("Py_PreInitialize failed");

  PyConfig config;
  PyConfig_InitIsolatedConfig(&config);
  config.install_signal_handlers = 0;  // libFuzzer's, not Python's
  config.write_bytecode = 0;           // leave the source tree clean
  status = PyConfig_SetBytesString(&config, &config.program_name, argv0);
  if (!PyStatus_Exception(status)) status = Py_InitializeFromConfig(&config);
  PyConfig_Clear(&config);
  if (PyStatus_Exception(status)) fail("Py_InitializeFromConfig failed");

  // The source tree's package (never an installed aiocomm), its extension
  // from this executable.
  py::list path = py::module_::import("sys").attr("path");
  path.insert(0, AIOCOMM_SOURCE_DIR "/cpp/fuzz");
  path.insert(0, AIOCOMM_SOURCE_DIR);
  register_core();

  auto& s = state().emplace();
  s.marshal_error = py::module_::import("aiocomm").attr("MarshalError");
  s.harness_module = py::module_::import("typed_harness");
  py::object harness = s.harness_module.attr("harness")();
  std::atexit(destroy_at_exit);

  if (const char* dir = std::getenv("AIOCOMM_FUZZ_TYPED_SEEDS")) {
    auto n = harness.attr("write_seeds")(dir).cast<int>();
    std::printf("fuzz_typed: %d seeds for %zu targets in %s\n", n, py::len(harness.attr("entries")), dir);
    std::exit(0);
  }
  const char* only = std::getenv("AIOCOMM_FUZZ_TYPED_ONLY");
  s.width = harness.attr("selector_width")().cast<std::size_t>();
  for (auto item : harness.attr("targets")(only ? py::object(py::str(only)) : py::object(py::none()))) {
    auto t = item.cast<py::tuple>();
    s.targets.push_back(Target{t[0].cast<std::string>(), t[1]});
  }
  if (std::getenv("AIOCOMM_FUZZ_TYPED_LIST")) {
    for (std::size_t i = 0; i < s.targets.size(); ++i) std::printf("%zu %s\n", i, s.targets[i].name.c_str());
    std::exit(0);
  }
  std::fprintf(stderr, "fuzz_typed: %zu targets (Python %s)\n", s.targets.size(), Py_GetVersion());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  try {
    start(*argc > 0 ? (*argv)[0] : "fuzz_typed");
  } catch (py::error_already_set& e) {
    e.restore();
    PyErr_Print();  // with the cause (an extension's init error is chained)
    fail("could not start");
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto& s = *state();
  if (size < s.width) return 0;
  std::size_t selector = data[0];
  if (s.width == 2) selector = selector << 8 | data[1];
  const Target& target = s.targets[selector % s.targets.size()];
  py::bytes payload(reinterpret_cast<const char*>(data + s.width), size - s.width);
  try {
    target.check(payload);
  } catch (py::error_already_set& e) {
    if (e.matches(s.marshal_error)) return 0;
    fail(target.name + " raised " + e.what());
  }
  return 0;
}
