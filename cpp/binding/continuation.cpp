#include "binding/continuation.h"

#include <utility>

namespace aiocomm::binding {
namespace {

PyObject* take_error() {
#if PY_VERSION_HEX >= 0x030C0000
  return PyErr_GetRaisedException();
#else
  PyObject *type, *value, *traceback;
  PyErr_Fetch(&type, &value, &traceback);
  PyErr_NormalizeException(&type, &value, &traceback);
  if (traceback != nullptr && value != nullptr) PyException_SetTraceback(value, traceback);
  Py_XDECREF(type);
  Py_XDECREF(traceback);
  return value;
#endif
}

void restore_error(PyObject* error) {  // steals `error`
#if PY_VERSION_HEX >= 0x030C0000
  PyErr_SetRaisedException(error);
#else
  PyErr_Restore(Py_NewRef(reinterpret_cast<PyObject*>(Py_TYPE(error))), error,
                PyException_GetTraceback(error));
#endif
}

// What the task must see raised, once the request is answered.
bool raised_on(PyObject* error) {
  static PyObject* cancelled = [] {
    PyObject* module = PyImport_ImportModule("asyncio");
    PyObject* type = module != nullptr ? PyObject_GetAttrString(module, "CancelledError") : nullptr;
    Py_XDECREF(module);
    if (type == nullptr) PyErr_Clear();
    return type;  // kept for the process
  }();
  return PyErr_GivenExceptionMatches(error, PyExc_KeyboardInterrupt) ||
         PyErr_GivenExceptionMatches(error, PyExc_SystemExit) ||
         (cancelled != nullptr && PyErr_GivenExceptionMatches(error, cancelled));
}

}  // namespace

Continuation::Continuation(NativeDispatch& dispatch, py::object handle, Request request,
                           py::object current, py::object coroutine)
    : dispatch_(&dispatch),
      owner_(py::reinterpret_borrow<py::object>(dispatch.owner())),
      handle_(std::move(handle)),
      request_(request),
      current_(std::move(current)),
      coroutine_(std::move(coroutine)) {}

PyObject* Continuation::advance(PyObject* value, PyObject* error) {
  if (finished_) {
    if (error != nullptr) {
      restore_error(Py_NewRef(error));
    } else {
      PyErr_SetNone(PyExc_StopIteration);
    }
    return nullptr;
  }
  if (yield_pending_ && error == nullptr) {
    // The task's first step, after ours suspended on a future: wait for it.
    yield_pending_ = false;
    return pending_.release().ptr();
  }
  yield_pending_ = false;
  pending_ = py::object();
  PyObject* out = nullptr;
  PySendResult sent;
  ++dispatch_->calls_in_progress_;
  if (error == nullptr) {
    sent = PyIter_Send(coroutine_.ptr(), value, &out);
  } else {
    static PyObject* throw_name = PyUnicode_InternFromString("throw");
    out = PyObject_CallMethodOneArg(coroutine_.ptr(), throw_name, error);
    if (out != nullptr) {
      sent = PYGEN_NEXT;
    } else if (PyErr_ExceptionMatches(PyExc_StopIteration)) {
      PyObject* stop = take_error();
      out = PyObject_GetAttrString(stop, "value");
      Py_DECREF(stop);
      sent = out != nullptr ? PYGEN_RETURN : PYGEN_ERROR;
    } else {
      sent = PYGEN_ERROR;
    }
  }
  --dispatch_->calls_in_progress_;
  if (sent == PYGEN_NEXT) return out;

  finished_ = true;
  auto result = py::reinterpret_steal<py::object>(sent == PYGEN_RETURN ? out : nullptr);
  auto raised = py::reinterpret_steal<py::object>(sent == PYGEN_ERROR ? take_error() : nullptr);
  dispatch_->conclude_continued(*this, result ? result : py::none(), raised);
  // The servant's frame is gone: so is what it kept.
  coroutine_ = py::object();
  if (raised && raised_on(raised.ptr())) {
    restore_error(raised.release().ptr());
  } else {
    PyErr_SetNone(PyExc_StopIteration);
  }
  return nullptr;
}

py::object Continuation::send(const py::object& value) {
  PyObject* out = advance(value.ptr(), nullptr);
  if (out == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(out);
}

py::object Continuation::throw_(const py::object& error) {
  PyObject* out = advance(nullptr, error.ptr());
  if (out == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(out);
}

void Continuation::close() {
  if (finished_) return;
  finished_ = true;
  pending_ = py::object();
  if (coroutine_) {
    // Unanswered: destroy's close_timeout abandons the dispatch.
    py::object coroutine = std::move(coroutine_);
    coroutine.attr("close")();
  }
}

void Continuation::first_step() {
  PyObject* out = advance(Py_None, nullptr);
  if (out != nullptr) {
    pending_ = py::reinterpret_steal<py::object>(out);
    // A bare yield asks for one loop turn: the task's first step is it.
    yield_pending_ = !pending_.is_none();
    return;
  }
  if (PyErr_ExceptionMatches(PyExc_StopIteration)) {
    PyErr_Clear();  // ended, answered
    return;
  }
  throw py::error_already_set();  // a KeyboardInterrupt or SystemExit, answered
}

void Continuation::abandon() {
  finished_ = true;
  pending_ = py::object();
  if (coroutine_) {
    py::object coroutine = std::move(coroutine_);
    PyObject* closed = PyObject_CallMethod(coroutine.ptr(), "close", nullptr);
    if (closed == nullptr) PyErr_WriteUnraisable(coroutine.ptr());
    Py_XDECREF(closed);
  }
}

int Continuation::traverse(visitproc visit, void* arg) {
  Py_VISIT(owner_.ptr());
  Py_VISIT(handle_.ptr());
  Py_VISIT(current_.ptr());
  Py_VISIT(coroutine_.ptr());
  Py_VISIT(pending_.ptr());
  return 0;
}

void Continuation::clear() {
  pending_ = py::object();
  coroutine_ = py::object();
  current_ = py::object();
  handle_ = py::object();
  owner_ = py::object();
  finished_ = true;
}

void bind_continuation(py::module_& m) {
  // Collectable: a suspended servant's frame may hold its own task.
  py::class_<Continuation>(m, "Continuation", py::custom_type_setup([](PyHeapTypeObject* heap_type) {
                             auto* type = &heap_type->ht_type;
                             type->tp_flags |= Py_TPFLAGS_HAVE_GC;
                             type->tp_traverse = [](PyObject* self, visitproc visit, void* arg) {
                               Py_VISIT(Py_TYPE(self));
                               return py::cast<Continuation&>(py::handle(self)).traverse(visit, arg);
                             };
                             type->tp_clear = [](PyObject* self) {
                               py::cast<Continuation&>(py::handle(self)).clear();
                               return 0;
                             };
                           }))
      .def("send", &Continuation::send)
      .def("throw", &Continuation::throw_)
      .def("close", &Continuation::close)
      .def("__next__", [](Continuation& self) { return self.send(py::none()); })
      .def("__iter__", [](py::object self) { return self; })
      .def("__await__", [](py::object self) { return self; });
}

}  // namespace aiocomm::binding
