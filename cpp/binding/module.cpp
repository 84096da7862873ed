// aiocomm._core: the native half of aiocomm. Private; the Python package
// re-exports what users need.
#include <cerrno>
#include <system_error>

#include "binding/bindings.h"
#include "binding/codec/types.h"
#include "binding/continuation.h"
#include "binding/gil.h"
#include "core/communicator.h"

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
  m.doc() = "aiocomm native core (private)";
  py::register_exception<aiocomm::core::DestroyedError>(m, "DestroyedError", PyExc_RuntimeError);
  py::register_exception<aiocomm::core::MessageSizeError>(m, "MessageSizeError", PyExc_ValueError);
  // A TLS configuration that cannot be used (the Python layer re-raises it).
  py::register_exception<aiocomm::tls::Error>(m, "TLSConfigError", PyExc_ValueError);
  m.attr("TLS_AVAILABLE") = aiocomm::tls::available();
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const std::system_error& e) {
      PyErr_SetObject(PyExc_OSError, py::make_tuple(e.code().value(), e.what()).ptr());
    }
  });
  // The thread that will finalize the interpreter, for the GIL rules (gil.h).
  aiocomm::binding::main_thread_ident.store(
      py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>());
  aiocomm::binding::bind_inbox(m);
  aiocomm::binding::bind_continuation(m);
  aiocomm::binding::bind_communicator(m);
  aiocomm::binding::bind_testing(m);
  auto codec = m.def_submodule("codec", "Ice encoding 1.1 codec over type descriptors");
  aiocomm::binding::codec::bind(codec);
}
