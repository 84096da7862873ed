// The runtime's count of dispatches in flight, the one implementation of
// it: a continuation that suspends (continuation.h) is added to the
// runtime's sets, and removed when it ends, with no Python frame; the
// runtime's own dispatches (tasks, exceptions, abandon) go through
// Inbox.dispatch_started / dispatch_ended to the same code. The sets stay
// the runtime's (Runtime.dispatching and Runtime.by_adapter, read by
// in_flight, dispatches_of, abandon and wait_idle); Python is called only
// to wake who waits for them to empty (Runtime._wake_idle_waiters), when
// someone does.
//
// Loop thread, with the GIL. Both ends are idempotent: abandon() may end a
// dispatch before its servant does.
#pragma once

#include <pybind11/pybind11.h>

namespace aiocomm::binding {

namespace py = pybind11;

class InFlight {
 public:
  // `dispatching`: every dispatch in flight; `by_adapter`: adapter -> its
  // set of them; `waiters`: key (adapter, or None for all) -> who waits
  // for it to empty; `wake(key)` wakes those. All the runtime's.
  void configure(py::set dispatching, py::dict by_adapter, py::dict waiters, py::object wake);
  // `current` (its adapter `adapter`, or None) is in flight. Never raises:
  // a failure is reported as unraisable (no memory; the count is then low).
  void start(PyObject* current, PyObject* adapter);
  // `current` has ended; its waiters are woken once what they wait for is
  // empty. Never raises.
  void end(PyObject* current, PyObject* adapter);

  int traverse(visitproc visit, void* arg);
  void clear();

 private:
  void wake_if_waited(PyObject* key);

  // Null until configured, and once cleared.
  py::object dispatching_;  // a set
  py::object by_adapter_;   // a dict of sets
  py::object waiters_;      // a dict
  py::object wake_;
};

}  // namespace aiocomm::binding
