#include "binding/continuation.h"

#include "binding/raised.h"

namespace aiocomm::binding {

namespace {

PyTypeObject* continuation_type = nullptr;

Continuation* as_continuation(PyObject* self) { return reinterpret_cast<Continuation*>(self); }

PyObject* cancelled_error() {
  static PyObject* type = [] {
    PyObject* module = PyImport_ImportModule("asyncio");
    PyObject* found = module != nullptr ? PyObject_GetAttrString(module, "CancelledError") : nullptr;
    Py_XDECREF(module);
    if (found == nullptr) PyErr_Clear();
    return found;  // kept for the process
  }();
  return type;
}

// What the task must see raised once the request is answered.
bool raised_on(PyObject* error) {
  PyObject* cancelled = cancelled_error();
  return is_interrupt(error) || (cancelled != nullptr && PyErr_GivenExceptionMatches(error, cancelled));
}

// One step of the servant's coroutine: `value` sent, or `error` thrown in.
}  // namespace

PySendResult step_continuation(Continuation* self, PyObject* value, PyObject* error,
                               PyObject** out) {
  *out = nullptr;
  if (self->finished) {
    if (error != nullptr) {
      reraise(Py_NewRef(error));
      return PYGEN_ERROR;
    }
    *out = Py_NewRef(Py_None);
    return PYGEN_RETURN;
  }
  if (self->yield_pending && error == nullptr) {
    // The task's first step, after ours suspended on a future: wait for it.
    self->yield_pending = false;
    *out = self->pending;
    self->pending = nullptr;
    return PYGEN_NEXT;
  }
  self->yield_pending = false;
  Py_CLEAR(self->pending);
  PyObject* result = nullptr;
  PySendResult sent;
  self->dispatch->count_call(1);
  if (error == nullptr) {
    sent = PyIter_Send(self->coroutine, value, &result);
  } else {
    static PyObject* throw_name = PyUnicode_InternFromString("throw");
    result = PyObject_CallMethodOneArg(self->coroutine, throw_name, error);
    if (result != nullptr) {
      sent = PYGEN_NEXT;
    } else if (PyErr_ExceptionMatches(PyExc_StopIteration)) {
      PyObject* stop = take_raised();
      result = PyObject_GetAttrString(stop, "value");
      Py_DECREF(stop);
      sent = result != nullptr ? PYGEN_RETURN : PYGEN_ERROR;
    } else {
      sent = PYGEN_ERROR;
    }
  }
  self->dispatch->count_call(-1);
  if (sent == PYGEN_NEXT) {
    *out = result;
    return PYGEN_NEXT;
  }
  self->finished = true;
  auto returned = py::reinterpret_steal<py::object>(sent == PYGEN_RETURN ? result : nullptr);
  auto raised = py::reinterpret_steal<py::object>(sent == PYGEN_ERROR ? take_raised() : nullptr);
  // The servant's frame is done with: so is what it kept.
  Py_CLEAR(self->coroutine);
  self->dispatch->conclude_continued(self->handle, self->request, self->current, self->suspended,
                                     returned ? std::move(returned) : py::none(), raised);
  if (raised && raised_on(raised.ptr())) {
    reraise(raised.release().ptr());
    return PYGEN_ERROR;
  }
  *out = Py_NewRef(Py_None);
  return PYGEN_RETURN;
}

namespace {

PySendResult advance(Continuation* self, PyObject* value, PyObject* error, PyObject** out) {
  return step_continuation(self, value, error, out);
}

// The loop's call after a bare yield: the next step, standing in again.
PyObject* call(PyObject* self, PyObject*, PyObject*) {
  return as_continuation(self)->dispatch->resume(as_continuation(self));
}

PySendResult am_send(PyObject* self, PyObject* arg, PyObject** result) {
  return advance(as_continuation(self), arg, nullptr, result);
}

PyObject* iternext(PyObject* self) {
  PyObject* out = nullptr;
  PySendResult sent = advance(as_continuation(self), Py_None, nullptr, &out);
  if (sent == PYGEN_NEXT) return out;
  if (sent == PYGEN_RETURN) {
    PyErr_SetNone(PyExc_StopIteration);
    Py_DECREF(out);
  }
  return nullptr;
}

PyObject* ended(PySendResult sent, PyObject* out) {
  if (sent == PYGEN_NEXT) return out;
  if (sent == PYGEN_RETURN) {
    PyErr_SetObject(PyExc_StopIteration, out);
    Py_DECREF(out);
  }
  return nullptr;
}

PyObject* send(PyObject* self, PyObject* value) {
  PyObject* out = nullptr;
  PySendResult sent = advance(as_continuation(self), value, nullptr, &out);
  return ended(sent, out);
}

PyObject* throw_(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs < 1 || nargs > 3) {
    PyErr_SetString(PyExc_TypeError, "throw expects an exception");
    return nullptr;
  }
  PyObject* error = args[0];
  py::object made;
  if (PyExceptionClass_Check(error)) {
    made = py::reinterpret_steal<py::object>(
        PyObject_CallNoArgs(error));  // throw(Type) as a coroutine takes it
    if (!made) return nullptr;
    error = made.ptr();
  }
  if (!PyExceptionInstance_Check(error)) {
    PyErr_SetString(PyExc_TypeError, "throw expects an exception");
    return nullptr;
  }
  PyObject* out = nullptr;
  PySendResult sent = advance(as_continuation(self), nullptr, error, &out);
  return ended(sent, out);
}

PyObject* close(PyObject* raw, PyObject*) {
  auto* self = as_continuation(raw);
  self->finished = true;
  Py_CLEAR(self->pending);
  if (self->coroutine != nullptr) {
    // Unanswered: destroy's close_timeout abandons the dispatch.
    PyObject* coroutine = self->coroutine;
    self->coroutine = nullptr;
    PyObject* closed = PyObject_CallMethod(coroutine, "close", nullptr);
    Py_DECREF(coroutine);
    if (closed == nullptr) return nullptr;
    Py_DECREF(closed);
  }
  Py_RETURN_NONE;
}

// The stand-in's task API: passed on to the task once there is one.

PyObject* call_task(Continuation* self, const char* name, PyObject* const* args, Py_ssize_t nargs) {
  PyObject* method = PyObject_GetAttrString(self->task, name);
  if (method == nullptr) return nullptr;
  PyObject* result = PyObject_Vectorcall(method, args, static_cast<std::size_t>(nargs), nullptr);
  Py_DECREF(method);
  return result;
}

PyObject* cancel(PyObject* raw, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  auto* self = as_continuation(raw);
  if (self->task != nullptr) {
    PyObject* method = PyObject_GetAttrString(self->task, "cancel");
    if (method == nullptr) return nullptr;
    PyObject* result = PyObject_Vectorcall(method, args, static_cast<std::size_t>(nargs), kwnames);
    Py_DECREF(method);
    return result;
  }
  if (self->finished) Py_RETURN_FALSE;
  // Delivered, as a task would, at the servant's next step.
  ++self->cancels;
  self->must_cancel = true;
  Py_RETURN_TRUE;
}

PyObject* cancelling(PyObject* raw, PyObject*) {
  auto* self = as_continuation(raw);
  if (self->task != nullptr) return call_task(self, "cancelling", nullptr, 0);
  return PyLong_FromSsize_t(self->cancels);
}

PyObject* uncancel(PyObject* raw, PyObject*) {
  auto* self = as_continuation(raw);
  if (self->task != nullptr) return call_task(self, "uncancel", nullptr, 0);
  if (self->cancels > 0) --self->cancels;
  return PyLong_FromSsize_t(self->cancels);
}

PyObject* done(PyObject* raw, PyObject*) {
  auto* self = as_continuation(raw);
  if (self->task != nullptr) return call_task(self, "done", nullptr, 0);
  return PyBool_FromLong(self->finished);
}

PyObject* cancelled(PyObject* raw, PyObject*) {
  auto* self = as_continuation(raw);
  if (self->task != nullptr) return call_task(self, "cancelled", nullptr, 0);
  Py_RETURN_FALSE;
}

PyObject* get_loop(PyObject* raw, PyObject*) { return Py_NewRef(as_continuation(raw)->loop); }

PyObject* get_name(PyObject* raw, PyObject*) {
  auto* self = as_continuation(raw);
  if (self->task != nullptr) return call_task(self, "get_name", nullptr, 0);
  return PyUnicode_FromFormat("aiocomm-dispatch-%d", static_cast<int>(self->request.request_id));
}

PyObject* get_coro(PyObject* raw, PyObject*) {
  auto* self = as_continuation(raw);
  return Py_NewRef(self->coroutine != nullptr ? self->coroutine : Py_None);
}

PyObject* await(PyObject* self) { return Py_NewRef(self); }

int traverse(PyObject* raw, visitproc visit, void* arg) {
  auto* self = as_continuation(raw);
  Py_VISIT(Py_TYPE(raw));
  Py_VISIT(self->owner);
  Py_VISIT(self->handle);
  Py_VISIT(self->current);
  Py_VISIT(self->coroutine);
  Py_VISIT(self->context);
  Py_VISIT(self->pending);
  Py_VISIT(self->task);
  Py_VISIT(self->loop);
  return 0;
}

int clear(PyObject* raw) {
  auto* self = as_continuation(raw);
  self->finished = true;
  Py_CLEAR(self->pending);
  Py_CLEAR(self->coroutine);
  Py_CLEAR(self->context);
  Py_CLEAR(self->task);
  Py_CLEAR(self->current);
  Py_CLEAR(self->handle);
  Py_CLEAR(self->loop);
  Py_CLEAR(self->owner);
  return 0;
}

void dealloc(PyObject* raw) {
  PyObject_GC_UnTrack(raw);
  clear(raw);
  PyTypeObject* type = Py_TYPE(raw);
  type->tp_free(raw);
  Py_DECREF(type);
}

PyMethodDef methods[] = {
    {"send", send, METH_O, "Resume the servant's coroutine (the task's step)."},
    {"throw", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(throw_)), METH_FASTCALL,
     "Raise an exception where the servant's coroutine waits."},
    {"close", close, METH_NOARGS, nullptr},
    {"cancel", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(cancel)),
     METH_FASTCALL | METH_KEYWORDS, "As Task.cancel."},
    {"cancelling", cancelling, METH_NOARGS, "As Task.cancelling."},
    {"uncancel", uncancel, METH_NOARGS, "As Task.uncancel."},
    {"done", done, METH_NOARGS, "As Task.done."},
    {"cancelled", cancelled, METH_NOARGS, "As Task.cancelled."},
    {"get_loop", get_loop, METH_NOARGS, nullptr},
    {"get_name", get_name, METH_NOARGS, nullptr},
    {"get_coro", get_coro, METH_NOARGS, nullptr},
    {nullptr, nullptr, 0, nullptr}};

PyType_Slot slots[] = {
    {Py_am_send, reinterpret_cast<void*>(am_send)},
    {Py_am_await, reinterpret_cast<void*>(await)},
    {Py_tp_iter, reinterpret_cast<void*>(await)},
    {Py_tp_iternext, reinterpret_cast<void*>(iternext)},
    {Py_tp_call, reinterpret_cast<void*>(call)},
    {Py_tp_methods, methods},
    {Py_tp_traverse, reinterpret_cast<void*>(traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(clear)},
    {Py_tp_dealloc, reinterpret_cast<void*>(dealloc)},
    {Py_tp_doc, const_cast<char*>("An async def servant's dispatch after its first step "
                                  "(see cpp/binding/continuation.h).")},
    {0, nullptr}};

PyType_Spec spec = {"aiocomm._core.Continuation", sizeof(Continuation), 0,
                    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, slots};

}  // namespace

PyObject* new_continuation(NativeDispatch& dispatch, PyObject* handle, const Request& request,
                           PyObject* current, PyObject* coroutine, PyObject* context) {
  auto* self = PyObject_GC_New(Continuation, continuation_type);
  if (self == nullptr) return nullptr;
  self->dispatch = &dispatch;
  self->owner = Py_XNewRef(dispatch.owner());
  self->handle = Py_NewRef(handle);
  self->current = Py_NewRef(current);
  self->coroutine = Py_NewRef(coroutine);
  self->context = Py_NewRef(context);
  self->pending = nullptr;
  self->task = nullptr;
  self->loop = Py_NewRef(dispatch.loop());
  self->request = request;
  self->cancels = 0;
  self->must_cancel = false;
  self->yield_pending = false;
  self->suspended = false;
  self->finished = false;
  PyObject_GC_Track(self);
  return reinterpret_cast<PyObject*>(self);
}

bool continue_as(Continuation* self, PyObject* task, PyObject* yielded) {
  self->task = Py_NewRef(task);
  self->yield_pending = true;
  Py_XSETREF(self->pending, Py_NewRef(yielded));
  if (self->must_cancel) {
    self->must_cancel = false;
    PyObject* done = PyObject_CallMethod(task, "cancel", nullptr);
    if (done == nullptr) return false;
    Py_DECREF(done);
  }
  return true;
}

void abandon_continuation(Continuation* continuation) {
  PyObject* closed = close(reinterpret_cast<PyObject*>(continuation), nullptr);
  if (closed == nullptr) PyErr_WriteUnraisable(reinterpret_cast<PyObject*>(continuation));
  Py_XDECREF(closed);
}

void bind_continuation(py::module_& m) {
  continuation_type = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&spec));
  if (continuation_type == nullptr) throw py::error_already_set();
  m.attr("Continuation") = py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(continuation_type));
}

}  // namespace aiocomm::binding
