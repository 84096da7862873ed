// The GIL rules of the binding, in one place. Native threads run without
// the GIL; the few places that take it go through here, so they are counted
// and never run once the interpreter is finalizing.
#pragma once

#include <pybind11/pybind11.h>

#include <atomic>
#include <cstdint>

namespace aiocomm::binding {

namespace py = pybind11;

// How many times a native (non-Python) thread took the GIL.
inline std::atomic<std::uint64_t> native_gil_acquisitions{0};

// Set by a native thread just before it blocks on the GIL (test hook).
inline std::atomic<bool> native_thread_waiting_for_gil{false};

// When false, the dealloc path keeps the GIL while it drops the last core
// reference: the original deadlock. Only the _testing module turns it off.
inline std::atomic<bool> release_gil_on_dealloc{true};

inline bool interpreter_finalizing() noexcept {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing() != 0;
#else
  return _Py_IsFinalizing() != 0;
#endif
}

// A Python reference that native code may hold and drop on any thread: the
// drop takes the GIL, or leaks the reference once the interpreter is
// finalizing (touching Python then would hang or kill the thread).
class NativeRef {
 public:
  explicit NativeRef(py::object object) : object_(object.release().ptr()) {}
  NativeRef(const NativeRef&) = delete;
  NativeRef& operator=(const NativeRef&) = delete;
  ~NativeRef() { reset(); }

  PyObject* get() const noexcept { return object_; }

  void reset() noexcept {
    PyObject* object = object_;
    object_ = nullptr;
    if (object == nullptr || interpreter_finalizing()) return;
    if (PyGILState_Check()) {
      Py_DECREF(object);
      return;
    }
    native_gil_acquisitions.fetch_add(1, std::memory_order_relaxed);
    PyGILState_STATE state = PyGILState_Ensure();
    Py_DECREF(object);
    PyGILState_Release(state);
  }

 private:
  PyObject* object_;
};

}  // namespace aiocomm::binding
