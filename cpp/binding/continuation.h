// The coroutine of an `async def` servant's task: it drives the servant's
// coroutine step by step for asyncio's Task (send, throw, close, as a
// coroutine would) and, when it ends, answers the request through the
// native dispatch. It stands where a Python wrapper coroutine would, minus
// the frames: the task's steps go straight to the servant's coroutine, and
// a reply that is bytes leaves without Python code of ours.
//
// It ends normally after answering, whatever the servant raised, so that
// the task holds no exception nobody retrieves; CancelledError,
// KeyboardInterrupt and SystemExit are raised on, once answered, as the
// task must see them.
#pragma once

#include <pybind11/pybind11.h>

#include "binding/native_dispatch.h"

namespace aiocomm::binding {

class Continuation {
 public:
  Continuation(NativeDispatch& dispatch, py::object handle, Request request, py::object current,
               py::object coroutine);

  // The coroutine protocol, for the task. `send` returns what the servant
  // yields (a future, or None for a bare yield) and raises StopIteration
  // once it has ended.
  py::object send(const py::object& value);
  py::object throw_(const py::object& error);
  void close();

  // Without eager tasks: the servant's first step, taken by the dispatch
  // before the task's own. If it suspends on a future, the task's first
  // step yields that future again, so that the task waits for it.
  void first_step();
  // The task could not be started: its coroutine is closed, unanswered.
  void abandon();
  void mark_suspended() noexcept { suspended_ = true; }

  bool finished() const noexcept { return finished_; }
  bool suspended() const noexcept { return suspended_; }
  const py::object& handle() const noexcept { return handle_; }
  const py::object& current() const noexcept { return current_; }
  const Request& request() const noexcept { return request_; }

  int traverse(visitproc visit, void* arg);
  void clear();

 private:
  // One step: `value` sent, or `error` thrown in. A new reference to what
  // the servant yielded, or null with StopIteration (ended, answered) or
  // the exception to raise on set.
  PyObject* advance(PyObject* value, PyObject* error);

  NativeDispatch* dispatch_;  // lives in owner_
  py::object owner_;   // the inbox
  py::object handle_;  // the communicator's handle (kept alive until answered)
  Request request_;
  py::object current_;
  py::object coroutine_;
  py::object pending_;  // what the first step yielded (without eager tasks)
  bool yield_pending_ = false;
  bool suspended_ = false;
  bool finished_ = false;
};

void bind_continuation(py::module_& m);

}  // namespace aiocomm::binding
