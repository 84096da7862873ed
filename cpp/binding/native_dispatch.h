// Every request is dispatched here, on the loop thread, from the inbox's
// drain (or, for requests an adapter held, from its activation): the one
// path for every servant form. The adapter's state decides first (holding:
// the request waits here; deactivated, unknown or destroying: "object does
// not exist"), then its authorize hook, then the servant's lookup as the
// adapter defines it (identity and facet, then default servants). Built-in
// operations are answered here from `type_ids`; a typed servant's
// (generated from Slice) parameters are decoded and its result encoded by
// its operation's codec; `ice_invoke` and plain methods get the raw params.
// An `async def` method's first step runs here too. A result that is bytes
// (or None, or encoded by the codec) is replied to here, without a Python
// frame of ours; the Python runtime is called only to end what is not:
// exceptions, wrong result types and refusals by the hook. A coroutine
// that suspends is continued here too (continuation.h), counted in the
// runtime's sets of dispatches in flight meanwhile (in_flight.h).
#pragma once

#include <pybind11/pybind11.h>

#include <array>
#include <cstdint>
#include <deque>
#include <initializer_list>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "binding/codec/operation.h"
#include "binding/in_flight.h"
#include "core/event.h"
#include "protocol/message.h"

namespace aiocomm::binding {

namespace py = pybind11;

class Handle;
struct Continuation;

// What a reply is addressed by.
struct Request {
  std::uint64_t connection_id = 0;
  std::int32_t request_id = 0;  // 0: a oneway
  protocol::EncodingVersion encoding;
  Request() = default;
  // Implicit: a request event is its own address.
  Request(const core::Event& e)  // NOLINT(google-explicit-constructor)
      : connection_id(e.connection_id), request_id(e.request_id), encoding(e.encoding) {}
};

// asyncio's pieces a coroutine servant's task is made of (continuation.h).
struct Tasks {
  py::object loop;
  py::object task_type;     // asyncio.Task
  py::object current_task;  // asyncio.current_task, and the C functions
  py::object enter_task;    // asyncio.tasks._enter_task and _leave_task use
  py::object leave_task;
  py::object kwnames;       // ("loop", "context"), for task_type
  py::object call_soon;     // loop.call_soon, bound once
};

class NativeDispatch {
 public:
  static constexpr std::size_t slot_count = 14;  // Current's __slots__

  // The Python pieces a dispatch is made of; see Runtime.__init__.
  // `owner` is the Python inbox this lives in (borrowed: a continuation
  // keeps it alive while its task runs).
  void configure(PyObject* owner, py::object current_type, py::object current_var,
                 py::tuple modes, py::object finish, py::object continued,
                 py::object unauthorized, py::object flush_soon, Tasks tasks);
  // The runtime's sets of dispatches in flight, which suspended
  // continuations join (in_flight.h).
  InFlight& in_flight() noexcept { return in_flight_; }
  // The runtime's own (a dispatch that ends in a task or an exception):
  // the same bookkeeping as a continuation's, with Current.adapter's key.
  void dispatch_started(PyObject* current) { in_flight_.start(current, adapter_of(current).ptr()); }
  void dispatch_ended(PyObject* current) { in_flight_.end(current, adapter_of(current).ptr()); }
  PyObject* owner() const noexcept { return owner_; }
  // An adapter, holding until activated: `servants` is its (identity, facet)
  // -> servant dict, `defaults` its category -> default servant dict (both
  // live: later changes count), `authorize` its hook or None.
  void add_adapter(std::uint32_t adapter_id, py::object adapter, py::dict servants,
                   py::dict defaults, py::object authorize);
  // Starts dispatching, beginning with the requests held so far, in order.
  void activate(std::uint32_t adapter_id, Handle* handle, PyObject* handle_object);
  // Refuses the held requests (dropped without `handle`: the connections
  // are gone), and every later one.
  void deactivate(std::uint32_t adapter_id, Handle* handle);
  // Refuses the held requests; the adapter keeps its state (destroy began:
  // what arrives from now on is refused as the communicator is destroying).
  void refuse_held(std::uint32_t adapter_id, Handle* handle);
  void remove_adapter(std::uint32_t adapter_id);

  // The garbage collector's view: the servants may refer back to the
  // runtime that holds the inbox that holds them.
  int traverse(visitproc visit, void* arg);
  void clear();

  // Dispatches, holds or refuses request `e`. Loop thread, with the GIL,
  // while `handle` lives; its replies join the batch (flushed by the caller).
  void dispatch(core::Event& e, Handle& handle, PyObject* handle_object);
  // A KeyboardInterrupt or SystemExit a servant raised during this drain
  // (its request answered): raised again, set as the current Python error,
  // once the drain has delivered the rest. True when there was one.
  bool raise_kept_interrupt();
  bool has_kept_interrupt() const noexcept { return static_cast<bool>(interrupt_); }
  void keep_interrupt(PyObject* error);  // borrows `error`; keeps the first only
  // Servant calls under way here (a servant that reads stats counts itself).
  int calls_in_progress() const noexcept { return calls_in_progress_; }
  // A continuation's servant coroutine ended (with `error`, or returning
  // `result`), in its first step or after it `suspended`.
  void conclude_continued(PyObject* handle_object, const Request& request, PyObject* current,
                          bool suspended, py::object result, py::object error);
  // A Continuation's step after a bare yield (the loop calls it): None, or
  // null with a KeyboardInterrupt or SystemExit set, answered.
  PyObject* resume(Continuation* continuation);
  // For continuations: their steps count as servant calls; their loop.
  void count_call(int delta) noexcept { calls_in_progress_ += delta; }
  PyObject* loop() const noexcept { return tasks_.loop.ptr(); }
  std::uint64_t dispatched() const noexcept { return dispatched_; }

 private:
  enum class State : std::uint8_t { holding, active, deactivated };
  struct Adapter {
    py::object adapter;
    py::dict servants;
    py::dict defaults;
    py::object authorize;     // None without a hook
    py::object channel;  // a weak reference to the adapter's channel (aiocomm/_channel.py)
    State state = State::holding;
    std::deque<core::Event> held;
  };
  PyObject* servant_for(const Adapter& adapter, PyObject* name, PyObject* category,
                        PyObject* facet);
  // A "does not exist" reply (status 2, 3 or 4), or a oneway's end.
  void refuse(Handle& handle, const core::Event& e, protocol::ReplyStatus status);
  void refuse_all(std::deque<core::Event> held, Handle* handle);
  // Asks the adapter's hook; a refusal is answered by the runtime.
  bool authorized(const Adapter& adapter, PyObject* current);
  void dispatch_to(const Adapter& adapter, core::Event& e, Handle& handle,
                   PyObject* handle_object);
  py::object operation_name(const std::string& operation);
  py::object make_current(const Adapter& adapter, const core::Event& e, PyObject* name,
                          PyObject* category, PyObject* facet, PyObject* operation,
                          PyObject* handle_object);
  void reset_current(PyObject* token);
  // A request's params: the object they were read into (py_body.h), else
  // the pooled body.
  static protocol::ByteView params_of(core::Event& e);
  // Current.adapter (a new reference; None when it cannot be read).
  py::object adapter_of(PyObject* current);
  void reply(Handle& handle, const Request& e, PyObject* current, protocol::ByteView payload);
  // A typed servant's (one generated from Slice): its operation's codec
  // decodes the parameters and encodes the result, here.
  void dispatch_typed(core::Event& e, Handle& handle, PyObject* handle_object,
                      const Adapter& adapter,
                      PyObject* current, PyObject* servant, PyObject* operations,
                      PyObject* operation);
  // Ends a typed dispatch with its servant's plain result or error.
  void conclude_typed(Handle& handle, const Request& e, PyObject* current,
                      PyObject* operation, const codec::Operation& codec, PyObject* op_object,
                      PyObject* servant, py::object result, py::object error);
  // aiocomm._typed_dispatch's native_async, native_error and undecodable,
  // imported on first use.
  bool load_typed_helpers();
  // Ends a dispatch with its servant's result or error: a bytes or None
  // result is replied to here, the rest goes to the runtime's finish.
  void conclude(Handle& handle, const Request& e, PyObject* current, py::object result,
                py::object error);
  void step_coroutine(Handle& handle, const Request& e, PyObject* current,
                      PyObject* handle_object, py::object coroutine);
  // One step standing in as the current task (with `error` thrown in, if
  // any), then what follows it: another step a loop turn later, or a task.
  // Returns a KeyboardInterrupt or SystemExit the servant raised (answered;
  // a new reference), else null.
  PyObject* take_step(Continuation* continuation, PyObject* error);
  PyObject* cancelled_error_type();
  // Calls a runtime method; what it raises is reported, or kept when it
  // is a KeyboardInterrupt or SystemExit.
  void call_runtime(const py::object& function, std::initializer_list<PyObject*> args);

  bool configured_ = false;
  PyObject* owner_ = nullptr;
  int calls_in_progress_ = 0;
  std::uint64_t dispatched_ = 0;
  py::object interrupt_;
  py::object current_type_;
  py::object current_var_;
  py::tuple modes_;
  py::object finish_;  // Runtime._finish_native(current, result, error)
  py::object continued_;  // Runtime._continued(current, result, error)
  py::object flush_soon_;  // Runtime._flush_soon(handle)
  InFlight in_flight_;
  Tasks tasks_;
  py::object unauthorized_;  // Runtime._unauthorized(current, verdict, error)
  // Current's slots, so a Current is made without its __init__.
  std::array<PyMemberDef*, slot_count> slots_{};
  // Shared: a servant may remove its own adapter while it runs.
  std::unordered_map<std::uint32_t, std::shared_ptr<Adapter>> adapters_;
  // Operation names as interned strings: getattr with them skips hashing.
  std::unordered_map<std::string, py::object> operations_;
  py::object empty_;
  py::object encoding_1_1_;
  py::object typed_async_;  // native_async(result, operation, servant, name) -> coroutine
  py::object typed_error_;  // native_error(error, operation, servant, name) -> error
  py::object undecodable_;
  py::object cancelled_error_;  // asyncio.CancelledError  // undecodable(name, marshal_error) -> UnknownLocalError
};

}  // namespace aiocomm::binding
