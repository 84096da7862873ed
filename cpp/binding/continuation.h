// The rest of an `async def` servant's dispatch after its first step, and
// the stand-in for its task during that step.
//
// The drain takes a coroutine servant's first step itself, with no Task:
// most end there (no I/O of their own) and are answered like a plain
// method, with no loop turn. During that step the Continuation is
// asyncio's current task, answering what structured concurrency asks of
// one (cancel, cancelling, uncancel, done), so that asyncio.timeout and
// TaskGroup work from the first line. A servant that suspends gets a real
// Task, whose coroutine is the Continuation: it drives the servant's
// coroutine from the point it reached (first waiting for the future it
// suspended on), forwards what was asked of the stand-in, and answers the
// request natively when the servant ends. It is a C type with am_send, so
// the task's steps cost no Python frame of ours.
#pragma once

#include <Python.h>

#include "binding/native_dispatch.h"

namespace aiocomm::binding {

// A new Continuation (a new reference), or null with an error set.
PyObject* new_continuation(NativeDispatch& dispatch, PyObject* handle, const Request& request,
                           PyObject* current, PyObject* coroutine);
// The servant's first step, `continuation` standing as the current task
// (the dispatch has entered the dispatch's context). PYGEN_RETURN: ended
// and answered. PYGEN_NEXT: suspended, `*yielded` is what it yielded (a
// new reference). PYGEN_ERROR: an exception to raise on, answered.
PySendResult first_step(PyObject* continuation, PyObject** yielded);
// After a first step that suspended: `task` runs the rest, and anything
// asked of the stand-in is passed on to it.
bool continue_as(PyObject* continuation, PyObject* task, PyObject* yielded);
// Closes a continuation whose task could not be made (its servant's
// coroutine closed, unanswered: the caller answers).
void abandon_continuation(PyObject* continuation);

void bind_continuation(py::module_& m);

}  // namespace aiocomm::binding
