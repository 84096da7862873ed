#include "binding/in_flight.h"

namespace aiocomm::binding {

void InFlight::configure(py::set dispatching, py::dict by_adapter, py::dict waiters,
                         py::object wake) {
  dispatching_ = std::move(dispatching);
  by_adapter_ = std::move(by_adapter);
  waiters_ = std::move(waiters);
  wake_ = std::move(wake);
}

void InFlight::start(PyObject* current, PyObject* adapter) {
  if (!dispatching_) return;  // torn down by the collector
  if (PySet_Add(dispatching_.ptr(), current) < 0) {
    PyErr_WriteUnraisable(current);
    return;
  }
  if (adapter == Py_None) return;
  PyObject* of_adapter = PyDict_GetItemWithError(by_adapter_.ptr(), adapter);  // borrowed
  if (of_adapter == nullptr) {
    if (PyErr_Occurred()) {
      PyErr_WriteUnraisable(adapter);
      return;
    }
    auto made = py::reinterpret_steal<py::object>(PySet_New(nullptr));
    if (!made || PyDict_SetItem(by_adapter_.ptr(), adapter, made.ptr()) < 0) {
      PyErr_WriteUnraisable(adapter);
      return;
    }
    of_adapter = made.ptr();  // the dict holds it now
  }
  if (PySet_Add(of_adapter, current) < 0) PyErr_WriteUnraisable(current);
}

void InFlight::end(PyObject* current, PyObject* adapter) {
  if (!dispatching_) return;
  int found = PySet_Discard(dispatching_.ptr(), current);
  if (found <= 0) {
    // Already ended (abandoned by destroy or deactivate).
    if (found < 0) PyErr_WriteUnraisable(current);
    return;
  }
  // Held across the wakes: they run Python, which may drop the current.
  auto hold = py::reinterpret_borrow<py::object>(current);
  if (adapter != Py_None) {
    PyObject* of_adapter = PyDict_GetItemWithError(by_adapter_.ptr(), adapter);  // borrowed
    if (of_adapter != nullptr && PySet_Check(of_adapter)) {
      if (PySet_Discard(of_adapter, current) < 0) PyErr_WriteUnraisable(current);
      if (PySet_GET_SIZE(of_adapter) == 0) {
        if (PyDict_DelItem(by_adapter_.ptr(), adapter) < 0) PyErr_WriteUnraisable(adapter);
        wake_if_waited(adapter);
      }
    } else if (PyErr_Occurred()) {
      PyErr_WriteUnraisable(adapter);
    }
  }
  if (PySet_GET_SIZE(dispatching_.ptr()) == 0) wake_if_waited(Py_None);
}

void InFlight::wake_if_waited(PyObject* key) {
  // Most of the time nobody waits: no Python call.
  if (PyDict_GET_SIZE(waiters_.ptr()) == 0) return;
  int waited = PyDict_Contains(waiters_.ptr(), key);
  if (waited == 0) return;
  if (waited < 0) {
    PyErr_WriteUnraisable(key);
    return;
  }
  PyObject* done = PyObject_CallOneArg(wake_.ptr(), key);
  if (done == nullptr) PyErr_WriteUnraisable(wake_.ptr());
  Py_XDECREF(done);
}

int InFlight::traverse(visitproc visit, void* arg) {
  Py_VISIT(dispatching_.ptr());
  Py_VISIT(by_adapter_.ptr());
  Py_VISIT(waiters_.ptr());
  Py_VISIT(wake_.ptr());
  return 0;
}

void InFlight::clear() {
  dispatching_ = py::object();
  by_adapter_ = py::object();
  waiters_ = py::object();
  wake_ = py::object();
}

}  // namespace aiocomm::binding
