// The rest of an `async def` servant's dispatch after its first step, and
// the stand-in for its task during that step.
//
// The drain takes a coroutine servant's first step itself, with no Task:
// most end there (no I/O of their own) and are answered like a plain
// method, with no loop turn. During that step the Continuation is
// asyncio's current task, answering what structured concurrency asks of
// one (cancel, cancelling, uncancel, done), so that asyncio.timeout and
// TaskGroup work from the first line. A bare yield (asyncio.sleep(0)) is
// one loop turn: the Continuation, called by the loop, takes the next step
// the same way. A servant that awaits a future gets a real Task, whose
// coroutine is the Continuation: it drives the servant's coroutine from
// the point it reached (first waiting for that future), forwards what was
// asked of the stand-in, and answers the request natively when the
// servant ends. It is a C type with am_send, so the task's steps cost no
// Python frame of ours.
#pragma once

#include <Python.h>

#include <pybind11/pybind11.h>

#include "binding/native_dispatch.h"

namespace aiocomm::binding {

struct Continuation {
  PyObject_HEAD
  NativeDispatch* dispatch;  // lives in `owner`
  PyObject* owner;           // the inbox
  PyObject* handle;          // the communicator's handle, kept until answered
  PyObject* current;
  PyObject* coroutine;       // the servant's; null once it has ended
  PyObject* context;         // the dispatch's copy of the context
  PyObject* pending;         // what the last stand-in step yielded, for the task's first
  PyObject* task;            // the task running the rest, once the servant awaits a future
  PyObject* loop;
  Request request;
  Py_ssize_t cancels;        // asked of the stand-in (Task.cancelling)
  bool must_cancel;          // a cancel to deliver at the next step
  bool yield_pending;
  bool suspended;            // counted in flight by the runtime
  bool finished;
};

// A new Continuation (a new reference), or null with an error set.
PyObject* new_continuation(NativeDispatch& dispatch, PyObject* handle, const Request& request,
                           PyObject* current, PyObject* coroutine, PyObject* context);
// One step of the servant's coroutine: `value` sent, or `error` thrown in.
// PYGEN_RETURN: ended and answered. PYGEN_NEXT: suspended, `*yielded` is
// what it yielded (a new reference). PYGEN_ERROR: an exception to raise on
// (CancelledError, KeyboardInterrupt, SystemExit), answered.
PySendResult step_continuation(Continuation* continuation, PyObject* value, PyObject* error,
                               PyObject** yielded);
// After a step that yielded a future: `task` runs the rest, first waiting
// for that future; what was asked of the stand-in passes on to it.
bool continue_as(Continuation* continuation, PyObject* task, PyObject* yielded);
// Closes a continuation that cannot go on (its servant's coroutine closed,
// unanswered: the caller answers).
void abandon_continuation(Continuation* continuation);

void bind_continuation(py::module_& m);

}  // namespace aiocomm::binding
