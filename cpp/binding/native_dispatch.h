// The common request, dispatched without a Python frame of ours: a servant
// method (plain, or `async def` whose first step runs here) on an active
// adapter, called from the inbox's drain, its result queued for the batch's
// write. A typed servant's (generated from Slice) parameters are decoded and
// its result encoded here by its operation's codec; a default servant is
// found as the adapter finds it. Everything else (held or refused requests,
// built-in and unknown operations, ice_invoke, parameters that do not
// decode, exceptions, wrong results) goes to the Python runtime, which
// stays the reference for what a dispatch does.
#pragma once

#include <pybind11/pybind11.h>

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <unordered_map>

#include "binding/codec/operation.h"
#include "core/event.h"
#include "protocol/message.h"

namespace aiocomm::binding {

namespace py = pybind11;

class Handle;

class NativeDispatch {
 public:
  static constexpr std::size_t slot_count = 14;  // Current's __slots__

  // The Python pieces a dispatch is made of; see Runtime.__init__.
  void configure(py::object current_type, py::object current_var, py::tuple modes,
                 py::object finish, py::object resume);
  // Requests for `adapter_id` are dispatched natively while the adapter is
  // active; `servants` is its (identity, facet) -> servant dict, `defaults`
  // its category -> default servant dict (both live: later changes count).
  void activate(std::uint32_t adapter_id, py::object adapter, py::dict servants,
                py::dict defaults);
  void deactivate(std::uint32_t adapter_id);

  // The garbage collector's view: the servants may refer back to the
  // runtime that holds the inbox that holds them.
  int traverse(visitproc visit, void* arg);
  void clear();

  // Whether `e` may be dispatched here (try_dispatch may still decline it).
  bool dispatches(const core::Event& e) const {
    return configured_ && adapters_.contains(e.adapter_id);
  }
  // Dispatches `e` and returns true, or returns false and leaves it, untouched,
  // to the Python runtime. Loop thread, with the GIL, while `handle` lives.
  bool try_dispatch(core::Event& e, Handle& handle, PyObject* handle_object);
  // A KeyboardInterrupt or SystemExit a servant raised during this drain
  // (its request answered): raised again, set as the current Python error,
  // once the drain has delivered the rest. True when there was one.
  bool raise_kept_interrupt();
  bool has_kept_interrupt() const noexcept { return static_cast<bool>(interrupt_); }
  void keep_interrupt(PyObject* error);  // borrows `error`; keeps the first only
  // Servant calls under way here (a servant that reads stats counts itself).
  int calls_in_progress() const noexcept { return calls_in_progress_; }
  std::uint64_t dispatched() const noexcept { return dispatched_; }

 private:
  struct Adapter {
    py::object adapter;
    py::dict servants;
    py::dict defaults;
    py::object communicator;  // a weak reference to the adapter's communicator
  };
  PyObject* servant_for(const Adapter& adapter, PyObject* name, PyObject* category,
                        PyObject* facet);
  py::object operation_name(const std::string& operation);
  py::object make_current(const Adapter& adapter, const core::Event& e, PyObject* name,
                          PyObject* category, PyObject* facet, PyObject* operation,
                          PyObject* handle_object);
  void reset_current(PyObject* token);
  void reply(Handle& handle, const core::Event& e, PyObject* current, protocol::ByteView payload);
  // A typed servant's (one generated from Slice): its operation's codec
  // decodes the parameters and encodes the result, here.
  bool try_dispatch_typed(core::Event& e, Handle& handle, PyObject* handle_object,
                          const Adapter& adapter, PyObject* servant, PyObject* operations,
                          PyObject* name, PyObject* category, PyObject* facet);
  // Ends a typed dispatch with its servant's plain result or error.
  void conclude_typed(Handle& handle, const core::Event& e, PyObject* current,
                      PyObject* operation, const codec::Operation& codec, PyObject* op_object,
                      PyObject* servant, py::object result, py::object error);
  // aiocomm._typed_dispatch's native_async and native_error, imported on first use.
  bool load_typed_helpers();
  // Ends a dispatch with its servant's result or error: a bytes or None
  // result is replied to here, the rest goes to the runtime's finish.
  void conclude(Handle& handle, const core::Event& e, PyObject* current, py::object result,
                py::object error);
  void step_coroutine(Handle& handle, const core::Event& e, PyObject* current,
                      py::object coroutine);
  // Calls finish_ or resume_; what they raise is reported, or kept when it
  // is a KeyboardInterrupt or SystemExit.
  void call_runtime(const py::object& function, std::initializer_list<PyObject*> args);

  bool configured_ = false;
  int calls_in_progress_ = 0;
  std::uint64_t dispatched_ = 0;
  py::object interrupt_;
  py::object current_type_;
  py::object current_var_;
  py::tuple modes_;
  py::object finish_;  // Runtime._finish_native(current, result, error)
  py::object resume_;  // Runtime._resume_native(current, coroutine, yielded, context)
  // Current's slots, so a Current is made without its __init__.
  std::array<PyMemberDef*, slot_count> slots_{};
  std::unordered_map<std::uint32_t, Adapter> adapters_;
  // Operation names as interned strings: getattr with them skips hashing.
  std::unordered_map<std::string, py::object> operations_;
  py::object empty_;
  py::object encoding_1_1_;
  py::object typed_async_;  // native_async(result, operation, servant, name) -> coroutine
  py::object typed_error_;  // native_error(error, operation, servant, name) -> error
};

}  // namespace aiocomm::binding
