// The GIL rules of the binding, in one place. Nothing outside this file
// takes, re-takes or releases the GIL by hand (tests/test_gil_rules.py greps
// cpp/ for it):
//  - native threads (the reactors, the timer, the lifecycle thread) never
//    take the GIL in the library. The one function that lets them,
//    take_gil_on_native_thread(), counts every take, so
//    native_gil_acquisitions is the whole truth; only the _testing hooks
//    call it today.
//  - a Python thread that waits releases the GIL through without_gil(),
//    whose re-take is safe while the interpreter is finalizing.
#pragma once

#include <pybind11/pybind11.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <type_traits>
#include <utility>

namespace aiocomm::binding {

namespace py = pybind11;

// How many times a native (non-Python) thread took the GIL.
inline std::atomic<std::uint64_t> native_gil_acquisitions{0};

// Set by a native thread just before it blocks on the GIL (test hook).
inline std::atomic<bool> native_thread_waiting_for_gil{false};

// When false, the dealloc path keeps the GIL while it drops the last core
// reference: the original deadlock. Only the _testing module turns it off.
inline std::atomic<bool> release_gil_on_dealloc{true};

// The thread that runs Py_Finalize (Py_RunMain's: the main thread), recorded
// when the module is imported. Set once, before any other thread can read it.
inline std::atomic<unsigned long> main_thread_ident{0};

inline bool interpreter_finalizing() noexcept {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing() != 0;
#else
  return _Py_IsFinalizing() != 0;
#endif
}

// The only way a native thread takes the GIL. Any thread that Python did
// not start and that does not hold the GIL; blocks until the GIL is free.
// Runs `f` with the GIL held and returns true; once the interpreter is
// finalizing, runs nothing and returns false (taking the GIL then would
// hang, or end the thread by pthread_exit through our noexcept frames). A
// small window remains between that check and the take, which is why the
// library itself never calls this: only test hooks do.
template <class F>
bool take_gil_on_native_thread(F&& f) noexcept {
  if (interpreter_finalizing()) return false;
  native_gil_acquisitions.fetch_add(1, std::memory_order_relaxed);
  native_thread_waiting_for_gil.store(true);
  PyGILState_STATE state = PyGILState_Ensure();
  native_thread_waiting_for_gil.store(false);
  std::forward<F>(f)();
  PyGILState_Release(state);
  return true;
}

// Re-takes the GIL released by without_gil(). A Python thread other than
// the finalizing one that re-takes the GIL after finalization began is ended
// by CPython 3.11-3.13 with pthread_exit; the forced unwind through a
// noexcept frame (pybind11's gil_scoped_release destructor, the dealloc)
// aborts the whole process. Such a thread is a daemon thread whose Python
// work is over anyway: it parks here, without the GIL, until the process
// exits. Not a destructor, so that if finalization starts between the check
// and the take, the forced unwind passes through (pybind11's dispatcher
// rethrows it) instead of aborting.
inline void retake_gil(PyThreadState* state) {
  if (interpreter_finalizing() && PyThread_get_thread_ident() != main_thread_ident.load()) {
    for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
  }
  PyEval_RestoreThread(state);
}

// Runs `f` without the GIL, on a Python thread that holds it, and re-takes
// the GIL after (see retake_gil). Blocks as long as `f` does. Exceptions
// from `f` pass through, with the GIL held again.
template <class F>
decltype(auto) without_gil(F&& f) {
  PyThreadState* state = PyEval_SaveThread();
  if constexpr (std::is_void_v<std::invoke_result_t<F>>) {
    try {
      std::forward<F>(f)();
    } catch (...) {
      retake_gil(state);
      throw;
    }
    retake_gil(state);
  } else {
    std::invoke_result_t<F> result = [&] {
      try {
        return std::forward<F>(f)();
      } catch (...) {
        retake_gil(state);
        throw;
      }
    }();
    retake_gil(state);
    return result;
  }
}

// A Python reference that native code may hold and drop on any thread: the
// drop takes the GIL (counted, through take_gil_on_native_thread), or leaks
// the reference once the interpreter is finalizing (touching Python then
// would hang or kill the thread). Only the _testing hooks use it today.
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
    take_gil_on_native_thread([object] { Py_DECREF(object); });
  }

 private:
  PyObject* object_;
};

}  // namespace aiocomm::binding
