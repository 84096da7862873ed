// What one request costs the server's loop: the servant's own call, and
// little else. The Python runtime's dispatch spends about 2 µs on lookups,
// a Current built by __init__, bookkeeping and the reply call; this path
// does the same lookups in C, fills the Current's slots directly and
// queues the reply without returning to Python.
#include "binding/native_dispatch.h"

#include <structmember.h>

#include <exception>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <vector>

#include "binding/builtin_operations.h"
#include "binding/continuation.h"
#include "binding/handle.h"
#include "binding/py_body.h"
#include "binding/raised.h"
#include "protocol/message.h"

namespace aiocomm::binding {
namespace {

// Current's slots, in the order slots_ keeps them.
constexpr const char* current_slots[] = {
    "_addresses", "_category", "_connection_id", "_handle", "_identity", "_name", "_released",
    "adapter",    "context",   "encoding",       "facet",   "mode",      "operation", "request_id"};
static_assert(std::size(current_slots) == NativeDispatch::slot_count);
constexpr std::size_t released_slot = 6;
constexpr std::size_t adapter_slot = 7;

// A new reference to `name` on `object`, or null when it has none; never
// leaves an error set.
PyObject* optional_attr(PyObject* object, PyObject* name) {
  PyObject* value = nullptr;
#if PY_VERSION_HEX >= 0x030D0000
  int found = PyObject_GetOptionalAttr(object, name, &value);
#else
  int found = _PyObject_LookupAttr(object, name, &value);
#endif
  if (found < 0) PyErr_Clear();
  return value;
}

py::object str_of(const std::string& text) {
  PyObject* s = PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()), nullptr);
  if (s == nullptr) PyErr_Clear();
  return py::reinterpret_steal<py::object>(s);
}

py::object lenient_str_of(const std::string& text) {
  PyObject* s = PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()), "replace");
  if (s == nullptr) PyErr_Clear();
  return py::reinterpret_steal<py::object>(s);
}

// What a codec call threw, as the Python exception it stands for (a new
// reference), or null when it returned.
template <typename F>
PyObject* error_of(F&& f) {
  try {
    f();
    return nullptr;
  } catch (py::error_already_set& error) {
    error.restore();
  } catch (const codec::MarshalError& error) {
    try {
      codec::raise_marshal_error(error);
    } catch (py::error_already_set& raised) {
      raised.restore();
    }
  } catch (py::builtin_exception& error) {
    error.set_error();
  } catch (const std::length_error& error) {
    PyErr_SetString(PyExc_ValueError, error.what());
  } catch (const std::exception& error) {
    PyErr_SetString(PyExc_RuntimeError, error.what());
  }
  return take_raised();
}

}  // namespace

void NativeDispatch::configure(PyObject* owner, py::object current_type, py::object current_var,
                               py::tuple modes, py::object finish, py::object continued,
                               py::object unauthorized, py::object flush_soon, Tasks tasks) {
  owner_ = owner;
  for (std::size_t i = 0; i < slot_count; ++i) {
    py::object descriptor = current_type.attr(current_slots[i]);
    if (!PyObject_TypeCheck(descriptor.ptr(), &PyMemberDescr_Type)) {
      throw py::type_error(std::string("Current.") + current_slots[i] + " is not a slot");
    }
    slots_[i] = reinterpret_cast<PyMemberDescrObject*>(descriptor.ptr())->d_member;
  }
  current_type_ = std::move(current_type);
  current_var_ = std::move(current_var);
  modes_ = std::move(modes);
  finish_ = std::move(finish);
  continued_ = std::move(continued);
  flush_soon_ = std::move(flush_soon);
  unauthorized_ = std::move(unauthorized);
  tasks_ = std::move(tasks);
  tasks_.kwnames = py::make_tuple("loop", "context");
  tasks_.call_soon = tasks_.loop.attr("call_soon");
  empty_ = py::str("");
  encoding_1_1_ = py::make_tuple(1, 1);
  configured_ = true;
}

void NativeDispatch::add_adapter(std::uint32_t adapter_id, py::object adapter, py::dict servants,
                                 py::dict defaults, py::object authorize) {
  // Typed parameters decode against the adapter's channel (proxies in them bind to it).
  static PyObject* channel_attr = PyUnicode_InternFromString("_channel");
  auto channel = py::reinterpret_steal<py::object>(optional_attr(adapter.ptr(), channel_attr));
  auto entry = std::make_shared<Adapter>();
  entry->adapter = std::move(adapter);
  entry->servants = std::move(servants);
  entry->defaults = std::move(defaults);
  entry->authorize = std::move(authorize);
  entry->channel = std::move(channel);
  adapters_.insert_or_assign(adapter_id, std::move(entry));
}

void NativeDispatch::activate(std::uint32_t adapter_id, Handle* handle, PyObject* handle_object) {
  auto found = adapters_.find(adapter_id);
  if (found == adapters_.end() || found->second->state != State::holding) return;
  auto adapter = found->second;
  adapter->state = State::active;
  // Each is dispatched as if it arrived now: a servant may deactivate the
  // adapter on the way, and the rest are then refused.
  while (!adapter->held.empty()) {
    core::Event e = std::move(adapter->held.front());
    adapter->held.pop_front();
    if (handle != nullptr) dispatch(e, *handle, handle_object);
  }
}

void NativeDispatch::deactivate(std::uint32_t adapter_id, Handle* handle) {
  auto found = adapters_.find(adapter_id);
  if (found == adapters_.end()) return;
  found->second->state = State::deactivated;
  refuse_all(std::exchange(found->second->held, {}), handle);
}

void NativeDispatch::refuse_held(std::uint32_t adapter_id, Handle* handle) {
  auto found = adapters_.find(adapter_id);
  if (found != adapters_.end()) refuse_all(std::exchange(found->second->held, {}), handle);
}

void NativeDispatch::remove_adapter(std::uint32_t adapter_id) {
  auto found = adapters_.find(adapter_id);
  if (found == adapters_.end()) return;
  auto adapter = std::move(found->second);  // its servants go after the map is consistent
  adapters_.erase(found);
}

void NativeDispatch::refuse_all(std::deque<core::Event> held, Handle* handle) {
  if (handle == nullptr) return;
  for (auto& e : held) refuse(*handle, e, protocol::ReplyStatus::object_not_exist);
}

void NativeDispatch::refuse(Handle& handle, const core::Event& e, protocol::ReplyStatus status) {
  try {
    if (e.request_id == 0) {
      handle.core().finish_dispatch(e.connection_id);
      return;
    }
    auto reply = std::make_shared<protocol::Bytes>();
    protocol::encode_reply_not_exist(*reply, e.request_id, status, e.identity, e.facet, e.operation);
    handle.core().send_reply(e.connection_id, std::move(reply), true);  // leaves with the batch
  } catch (const std::exception& error) {
    PyErr_SetString(PyExc_RuntimeError, error.what());
    PyErr_WriteUnraisable(nullptr);
  }
}

int NativeDispatch::traverse(visitproc visit, void* arg) {
  Py_VISIT(current_type_.ptr());
  Py_VISIT(current_var_.ptr());
  Py_VISIT(modes_.ptr());
  Py_VISIT(finish_.ptr());
  Py_VISIT(continued_.ptr());
  Py_VISIT(flush_soon_.ptr());
  if (int visited = in_flight_.traverse(visit, arg)) return visited;
  Py_VISIT(unauthorized_.ptr());
  Py_VISIT(tasks_.loop.ptr());
  Py_VISIT(tasks_.task_type.ptr());
  Py_VISIT(tasks_.current_task.ptr());
  Py_VISIT(tasks_.enter_task.ptr());
  Py_VISIT(tasks_.leave_task.ptr());
  Py_VISIT(tasks_.call_soon.ptr());
  for (auto& [id, adapter] : adapters_) {
    Py_VISIT(adapter->adapter.ptr());
    Py_VISIT(adapter->servants.ptr());
    Py_VISIT(adapter->defaults.ptr());
    Py_VISIT(adapter->authorize.ptr());
    Py_VISIT(adapter->channel.ptr());
  }
  Py_VISIT(typed_async_.ptr());
  Py_VISIT(typed_error_.ptr());
  Py_VISIT(undecodable_.ptr());
  return 0;
}

void NativeDispatch::clear() {
  configured_ = false;
  interrupt_ = py::object();
  adapters_.clear();
  typed_async_ = py::object();
  typed_error_ = py::object();
  undecodable_ = py::object();
  unauthorized_ = py::object();
  finish_ = py::object();
  continued_ = py::object();
  flush_soon_ = py::object();
  in_flight_.clear();
  tasks_ = Tasks();
  modes_ = py::tuple();
  current_var_ = py::object();
  current_type_ = py::object();
}

PyObject* NativeDispatch::servant_for(const Adapter& adapter, PyObject* name, PyObject* category,
                                      PyObject* facet) {
  // The adapter's keys are (Identity, facet), and an Identity is a tuple:
  // a plain (name, category) tuple finds it.
  PyObject* identity = PyTuple_Pack(2, name, category);
  if (identity == nullptr) return nullptr;
  PyObject* key = PyTuple_Pack(2, identity, facet);
  Py_DECREF(identity);
  if (key == nullptr) return nullptr;
  PyObject* servant = PyDict_GetItemWithError(adapter.servants.ptr(), key);  // borrowed
  Py_DECREF(key);
  if (servant != nullptr || PyErr_Occurred()) return servant;
  // As the adapter's _locate: a default servant for the category, then the
  // catch-all one; never for a facet.
  if (PyUnicode_GET_LENGTH(facet) != 0 || PyDict_GET_SIZE(adapter.defaults.ptr()) == 0) return nullptr;
  servant = PyDict_GetItemWithError(adapter.defaults.ptr(), category);
  if (servant != nullptr || PyErr_Occurred() || PyUnicode_GET_LENGTH(category) == 0) return servant;
  return PyDict_GetItemWithError(adapter.defaults.ptr(), empty_.ptr());
}

py::object NativeDispatch::operation_name(const std::string& operation) {
  auto found = operations_.find(operation);
  if (found != operations_.end()) return found->second;
  py::object name = str_of(operation);
  if (!name) return name;
  PyObject* interned = name.release().ptr();
  PyUnicode_InternInPlace(&interned);
  name = py::reinterpret_steal<py::object>(interned);
  // A peer choosing names cannot grow this without bound.
  if (operations_.size() < 4096) operations_.emplace(operation, name);
  return name;
}

py::object NativeDispatch::make_current(const Adapter& adapter, const core::Event& e,
                                        PyObject* name, PyObject* category, PyObject* facet,
                                        PyObject* operation, PyObject* handle_object) {
  auto* type = reinterpret_cast<PyTypeObject*>(current_type_.ptr());
  // Its __init__ is skipped: every slot is set here, as __init__ would.
  auto current = py::reinterpret_steal<py::object>(type->tp_alloc(type, 0));
  if (!current) return current;
  py::object context = py::reinterpret_steal<py::object>(PyDict_New());
  for (const auto& [key, value] : e.context) {
    // A context only informs: what is not UTF-8 becomes U+FFFD.
    py::object k = lenient_str_of(key), v = lenient_str_of(value);
    if (!context || !k || !v || PyDict_SetItem(context.ptr(), k.ptr(), v.ptr()) < 0) {
      PyErr_Clear();
      return py::object();
    }
  }
  py::object encoding = (e.encoding.major == 1 && e.encoding.minor == 1)
                            ? encoding_1_1_
                            : py::make_tuple(e.encoding.major, e.encoding.minor);
  auto connection_id = py::int_(e.connection_id);
  auto request_id = py::int_(e.request_id);
  // In the order of current_slots.
  PyObject* const values[slot_count] = {
      Py_None,  category, connection_id.ptr(), handle_object, Py_None,
      name,     Py_False, adapter.adapter.ptr(), context.ptr(), encoding.ptr(),
      facet,    PyTuple_GET_ITEM(modes_.ptr(), e.mode), operation, request_id.ptr(),
  };
  char* base = reinterpret_cast<char*>(current.ptr());
  bool ok = true;
  for (std::size_t i = 0; ok && i < slot_count; ++i) {
    ok = PyMember_SetOne(base, slots_[i], values[i]) == 0;
  }
  if (!ok) {
    PyErr_Clear();
    return py::object();
  }
  return current;
}

void NativeDispatch::reply(Handle& handle, const Request& e, PyObject* current,
                           protocol::ByteView payload) {
  // A servant that destroyed its own communicator has let its dispatch go.
  PyObject* released = PyMember_GetOne(reinterpret_cast<const char*>(current), slots_[released_slot]);
  bool let_go = released == Py_True;
  Py_XDECREF(released);
  if (released == nullptr) PyErr_Clear();
  if (let_go) return;
  // Answered: nothing may end this dispatch again (see Runtime._answer).
  if (PyMember_SetOne(reinterpret_cast<char*>(current), slots_[released_slot], Py_True) < 0) {
    PyErr_Clear();
  }
  try {
    if (e.request_id == 0) {
      handle.core().finish_dispatch(e.connection_id);
      return;
    }
    auto message = handle.core().buffers().make_message(protocol::reply_payload_size(payload.size()));
    protocol::encode_reply_payload(*message, e.request_id, protocol::ReplyStatus::ok, e.encoding,
                                   payload);
    // The drain is a batch: its replies leave together when it ends (a
    // continuation's, when the runtime says; see Runtime._continued).
    handle.core().send_reply(e.connection_id, std::move(message), true);
  } catch (const std::exception& error) {
    PyErr_SetString(PyExc_RuntimeError, error.what());
    PyErr_WriteUnraisable(current);
  }
}

void NativeDispatch::dispatch(core::Event& e, Handle& handle, PyObject* handle_object) {
  if (!configured_) return;  // torn down by the collector, with its communicator
  auto found = adapters_.find(e.adapter_id);
  // Shared: the servant may remove its own adapter while it runs.
  std::shared_ptr<Adapter> adapter = found == adapters_.end() ? nullptr : found->second;
  const bool destroying = handle.core().destroying();
  if (adapter != nullptr && adapter->state == State::holding && !destroying) {
    adapter->held.push_back(std::move(e));  // activate() dispatches it
    return;
  }
  if (adapter == nullptr || adapter->state != State::active || destroying) {
    // Refused as Ice refuses a request for a deactivated adapter: the
    // object does not exist here (a client with a locator may retry).
    refuse(handle, e, protocol::ReplyStatus::object_not_exist);
    return;
  }
  dispatch_to(*adapter, e, handle, handle_object);
}

bool NativeDispatch::authorized(const Adapter& adapter, PyObject* current) {
  PyObject* verdict = PyObject_CallOneArg(adapter.authorize.ptr(), current);
  if (verdict == Py_True) {
    Py_DECREF(verdict);
    return true;
  }
  // Refused, fail-closed: the runtime says why (and logs what is not a plain
  // refusal). A KeyboardInterrupt from the hook is raised once it answered.
  auto error = py::reinterpret_steal<py::object>(verdict == nullptr ? take_raised() : nullptr);
  auto kept = py::reinterpret_steal<py::object>(verdict);
  if (error && is_interrupt(error.ptr())) keep_interrupt(error.ptr());
  call_runtime(unauthorized_, {current, kept ? kept.ptr() : Py_None, error ? error.ptr() : Py_None});
  return false;
}

void NativeDispatch::dispatch_to(const Adapter& adapter, core::Event& e, Handle& handle,
                                 PyObject* handle_object) {
  // Names a servant or method is selected by must decode exactly: what is
  // not UTF-8 cannot match anything registered.
  py::object name = str_of(e.identity.name);
  py::object category = e.identity.category.empty() ? empty_ : str_of(e.identity.category);
  py::object facet = e.facet.empty() ? empty_ : str_of(e.facet);
  py::object operation = operation_name(e.operation);
  if (!name || !category) return refuse(handle, e, protocol::ReplyStatus::object_not_exist);
  if (!facet) return refuse(handle, e, protocol::ReplyStatus::facet_not_exist);
  if (!operation || e.mode >= PyTuple_GET_SIZE(modes_.ptr())) {
    return refuse(handle, e, protocol::ReplyStatus::operation_not_exist);
  }
  py::object current = make_current(adapter, e, name.ptr(), category.ptr(), facet.ptr(),
                                    operation.ptr(), handle_object);
  if (!current) {
    // Out of memory: the request cannot be dispatched, and must not hang.
    PyErr_Clear();
    return refuse(handle, e, protocol::ReplyStatus::object_not_exist);
  }
  if (!adapter.authorize.is_none() && !authorized(adapter, current.ptr())) return;

  PyObject* found_servant = servant_for(adapter, name.ptr(), category.ptr(), facet.ptr());
  if (found_servant == nullptr) {
    PyErr_Clear();
    // A facet of an object that exists is a missing facet, as Ice says.
    bool object_exists = PyUnicode_GET_LENGTH(facet.ptr()) != 0 &&
                         servant_for(adapter, name.ptr(), category.ptr(), empty_.ptr()) != nullptr;
    PyErr_Clear();
    return refuse(handle, e, object_exists ? protocol::ReplyStatus::facet_not_exist
                                           : protocol::ReplyStatus::object_not_exist);
  }
  auto servant = py::reinterpret_borrow<py::object>(found_servant);
  const protocol::ByteView params = params_of(e);

  if (is_builtin_operation(e.operation)) {
    protocol::Bytes out;
    PyObject* error = error_of([&] {
      try {
        if (!answer_builtin(servant.ptr(), e.operation, params, out)) throw py::error_already_set();
      } catch (const protocol::ProtocolError& bad) {
        throw codec::MarshalError(std::string("cannot decode the parameters of ") + e.operation +
                                  ": " + bad.what());
      }
    });
    if (error == nullptr) {
      reply(handle, e, current.ptr(), protocol::ByteView(out.data(), out.size()));
    } else {
      conclude(handle, e, current.ptr(), py::none(), py::reinterpret_steal<py::object>(error));
    }
    return;
  }
  // Typed servants (generated from Slice) carry their operations' codecs on
  // their type.
  static PyObject* ice_operations = PyUnicode_InternFromString("_ice_operations");
  if (PyObject* typed = optional_attr(reinterpret_cast<PyObject*>(Py_TYPE(servant.ptr())),
                                      ice_operations)) {
    auto operations = py::reinterpret_steal<py::object>(typed);
    return dispatch_typed(e, handle, handle_object, adapter, current.ptr(), servant.ptr(),
                          operations.ptr(),
                          operation.ptr());
  }
  // A blobject (ice_invoke) takes every operation; otherwise the method
  // named as the operation, never a private one.
  static PyObject* ice_invoke = PyUnicode_InternFromString("ice_invoke");
  auto method = py::reinterpret_steal<py::object>(optional_attr(servant.ptr(), ice_invoke));
  if (!method && !e.operation.empty() && e.operation[0] != '_') {
    // Not a probe: a lookup that fails otherwise than with AttributeError
    // (a dynamic servant's __getattr__) is the servant's error.
    method = py::reinterpret_steal<py::object>(PyObject_GetAttr(servant.ptr(), operation.ptr()));
    if (!method && !PyErr_ExceptionMatches(PyExc_AttributeError)) {
      return conclude(handle, e, current.ptr(), py::none(),
                      py::reinterpret_steal<py::object>(take_raised()));
    }
    PyErr_Clear();
  }
  if (!method || !PyCallable_Check(method.ptr())) {
    return refuse(handle, e, protocol::ReplyStatus::operation_not_exist);
  }
  // The very object the params were read into, when they were (no copy).
  auto params_bytes = py::reinterpret_steal<py::object>(
      e.owned_body ? static_cast<PyBodyOwner*>(e.owned_body.get())->release()
                   : PyBytes_FromStringAndSize(reinterpret_cast<const char*>(params.data()),
                                               static_cast<Py_ssize_t>(params.size())));
  PyObject* token = params_bytes ? PyContextVar_Set(current_var_.ptr(), current.ptr()) : nullptr;
  if (token == nullptr) {
    conclude(handle, e, current.ptr(), py::none(), py::reinterpret_steal<py::object>(take_raised()));
    return;
  }
  PyObject* args[] = {params_bytes.ptr(), current.ptr()};
  ++calls_in_progress_;
  ++dispatched_;
  PyObject* result = PyObject_Vectorcall(method.ptr(), args, 2, nullptr);
  --calls_in_progress_;
  if (result != nullptr && PyCoro_CheckExact(result)) {
    step_coroutine(handle, e, current.ptr(), handle_object, py::reinterpret_steal<py::object>(result));
  } else {
    PyObject* error = result == nullptr ? take_raised() : nullptr;
    conclude(handle, e, current.ptr(), py::reinterpret_steal<py::object>(result),
             py::reinterpret_steal<py::object>(error));
  }
  reset_current(token);
}

void NativeDispatch::dispatch_typed(core::Event& e, Handle& handle, PyObject* handle_object,
                                    const Adapter& adapter,
                                    PyObject* current, PyObject* servant, PyObject* operations,
                                    PyObject* operation) {
  PyObject* found = PyDict_Check(operations) ? PyDict_GetItemWithError(operations, operation) : nullptr;
  if (found == nullptr) {
    PyErr_Clear();
    return refuse(handle, e, protocol::ReplyStatus::operation_not_exist);
  }
  auto op_object = py::reinterpret_borrow<py::object>(found);
  const codec::Operation* op = nullptr;
  try {
    op = &op_object.cast<const codec::Operation&>();
  } catch (const std::exception&) {
    PyErr_Clear();
    return refuse(handle, e, protocol::ReplyStatus::operation_not_exist);
  }
  // The method is named as the operation, but where a Python keyword is escaped.
  static PyObject* ice_methods = PyUnicode_InternFromString("_ice_methods");
  auto method_name = py::reinterpret_borrow<py::object>(operation);
  if (PyObject* methods = optional_attr(reinterpret_cast<PyObject*>(Py_TYPE(servant)), ice_methods)) {
    auto hold = py::reinterpret_steal<py::object>(methods);
    if (PyDict_Check(methods)) {
      if (PyObject* renamed = PyDict_GetItemWithError(methods, operation)) {
        method_name = py::reinterpret_borrow<py::object>(renamed);
      } else {
        PyErr_Clear();
      }
    }
  }
  auto method = py::reinterpret_steal<py::object>(optional_attr(servant, method_name.ptr()));
  if (!method || !PyCallable_Check(method.ptr())) {
    return refuse(handle, e, protocol::ReplyStatus::operation_not_exist);
  }
  auto channel = py::reinterpret_steal<py::object>(
      adapter.channel ? PyObject_CallNoArgs(adapter.channel.ptr()) : nullptr);
  if (!channel || channel.ptr() == Py_None) {
    PyErr_Clear();  // the communicator is gone: so is the object
    return refuse(handle, e, protocol::ReplyStatus::object_not_exist);
  }
  py::tuple args;
  PyObject* undecodable = error_of([&] {
    auto params = params_of(e);
    args = op->decode_in_view(aiocomm::codec::ByteView(params.data(), params.size()),
                              channel.ptr());
  });
  channel = py::object();
  if (undecodable != nullptr) {
    // As Ice answers a request it cannot unmarshal: a local error of the server's.
    auto error = py::reinterpret_steal<py::object>(undecodable);
    if (load_typed_helpers()) {
      PyObject* helper_args[] = {operation, error.ptr()};
      auto mapped = py::reinterpret_steal<py::object>(
          PyObject_Vectorcall(undecodable_.ptr(), helper_args, 2, nullptr));
      if (mapped) {
        error = std::move(mapped);
      }
    }
    if (PyObject* failed = take_raised()) error = py::reinterpret_steal<py::object>(failed);
    return conclude(handle, e, current, py::none(), std::move(error));
  }
  PyObject* token = PyContextVar_Set(current_var_.ptr(), current);
  if (token == nullptr) {
    return conclude(handle, e, current, py::none(), py::reinterpret_steal<py::object>(take_raised()));
  }

  const auto count = static_cast<std::size_t>(PyTuple_GET_SIZE(args.ptr()));
  std::array<PyObject*, 8> few{};
  std::vector<PyObject*> many;
  PyObject** call_args = few.data();
  if (count + 1 > few.size()) {
    many.resize(count + 1);
    call_args = many.data();
  }
  for (std::size_t i = 0; i < count; ++i) {
    call_args[i] = PyTuple_GET_ITEM(args.ptr(), static_cast<Py_ssize_t>(i));
  }
  call_args[count] = current;
  ++calls_in_progress_;
  ++dispatched_;
  PyObject* result = PyObject_Vectorcall(method.ptr(), call_args, count + 1, nullptr);
  --calls_in_progress_;
  args = py::tuple();
  if (result == nullptr) {
    auto error = py::reinterpret_steal<py::object>(take_raised());
    conclude_typed(handle, e, current, operation, *op, op_object.ptr(), servant, py::object(),
                   std::move(error));
  } else if (PyCoro_CheckExact(result) ||
             (Py_TYPE(result)->tp_as_async != nullptr && Py_TYPE(result)->tp_as_async->am_await != nullptr)) {
    // Awaited by a coroutine of _typed_dispatch's that encodes its result
    // (and its user exceptions), the first step of which runs here.
    auto awaitable = py::reinterpret_steal<py::object>(result);
    py::object coroutine;
    if (load_typed_helpers()) {
      PyObject* helper_args[] = {awaitable.ptr(), op_object.ptr(), servant, operation};
      coroutine = py::reinterpret_steal<py::object>(
          PyObject_Vectorcall(typed_async_.ptr(), helper_args, 4, nullptr));
    }
    if (coroutine) {
      step_coroutine(handle, e, current, handle_object, std::move(coroutine));
    } else {
      auto error = py::reinterpret_steal<py::object>(take_raised());
      conclude(handle, e, current, py::none(), std::move(error));
    }
  } else {
    conclude_typed(handle, e, current, operation, *op, op_object.ptr(), servant,
                   py::reinterpret_steal<py::object>(result), py::object());
  }
  reset_current(token);
}

void NativeDispatch::conclude_typed(Handle& handle, const Request& e, PyObject* current,
                                    PyObject* operation, const codec::Operation& op,
                                    PyObject* op_object, PyObject* servant, py::object result,
                                    py::object error) {
  if (!error) {
    codec::Encoder encoder;
    PyObject* failed = error_of([&] { op.encode_out_to(encoder, result); });
    if (failed == nullptr) {
      const auto& bytes = encoder.out.bytes();
      reply(handle, e, current, protocol::ByteView(bytes.data(), bytes.size()));
      return;
    }
    error = py::reinterpret_steal<py::object>(failed);  // the runtime answers it, as its own
  } else if (!is_interrupt(error.ptr())) {
    // A typed user exception leaves encoded; one the operation does not
    // declare, as UnknownUserError (see _typed_dispatch).
    py::object mapped;
    if (load_typed_helpers()) {
      PyObject* helper_args[] = {error.ptr(), op_object, servant, operation};
      mapped = py::reinterpret_steal<py::object>(
          PyObject_Vectorcall(typed_error_.ptr(), helper_args, 4, nullptr));
    }
    if (mapped) {
      error = std::move(mapped);
    } else if (PyObject* failed = take_raised()) {
      error = py::reinterpret_steal<py::object>(failed);
    }
  }
  conclude(handle, e, current, py::none(), std::move(error));
}

bool NativeDispatch::load_typed_helpers() {
  if (typed_async_ && typed_error_ && undecodable_) return true;
  auto module = py::reinterpret_steal<py::object>(PyImport_ImportModule("aiocomm._typed_dispatch"));
  if (!module) return false;
  typed_async_ = py::reinterpret_steal<py::object>(PyObject_GetAttrString(module.ptr(), "native_async"));
  if (!typed_async_) return false;
  typed_error_ = py::reinterpret_steal<py::object>(PyObject_GetAttrString(module.ptr(), "native_error"));
  if (!typed_error_) return false;
  undecodable_ = py::reinterpret_steal<py::object>(PyObject_GetAttrString(module.ptr(), "undecodable"));
  return static_cast<bool>(undecodable_);
}

void NativeDispatch::conclude(Handle& handle, const Request& e, PyObject* current,
                              py::object result, py::object error) {
  if (!error && result.ptr() == Py_None) {
    reply(handle, e, current, {});
    return;
  }
  if (!error && PyBytes_CheckExact(result.ptr())) {
    reply(handle, e, current,
          protocol::ByteView(reinterpret_cast<const std::uint8_t*>(PyBytes_AS_STRING(result.ptr())),
                             static_cast<std::size_t>(PyBytes_GET_SIZE(result.ptr()))));
    return;
  }
  // A wrong type or an exception: the runtime answers it. It answers a
  // KeyboardInterrupt or SystemExit too, which is then raised once the
  // rest of the batch is delivered, as Python would.
  if (error && is_interrupt(error.ptr())) keep_interrupt(error.ptr());
  call_runtime(finish_, {current, result ? result.ptr() : Py_None,
                         error ? error.ptr() : Py_None});
}

// An `async def` servant's first step runs here, in a copy of the context,
// with a Continuation standing as its task (see continuation.h): most end
// in it, with no task and no loop turn, and are answered like a plain
// method. One that suspends goes on from where it stopped, in that same
// context, and the runtime counts it in flight until it ends.
void NativeDispatch::step_coroutine(Handle& handle, const Request& e, PyObject* current,
                                    PyObject* handle_object, py::object coroutine) {
  auto context = py::reinterpret_steal<py::object>(PyContext_CopyCurrent());
  auto continuation = py::reinterpret_steal<py::object>(
      context ? new_continuation(*this, handle_object, e, current, coroutine.ptr(), context.ptr())
              : nullptr);
  if (!continuation) {
    auto error = py::reinterpret_steal<py::object>(take_raised());
    PyObject* closed = PyObject_CallMethod(coroutine.ptr(), "close", nullptr);
    if (closed == nullptr) PyErr_Clear();
    Py_XDECREF(closed);
    conclude(handle, e, current, py::none(), std::move(error));
    return;
  }
  auto* c = reinterpret_cast<Continuation*>(continuation.ptr());
  PyObject* raised = take_step(c, nullptr);
  if (raised != nullptr) keep_interrupt(raised);  // answered; raised once the batch is
  Py_XDECREF(raised);
}

PyObject* NativeDispatch::resume(Continuation* c) {
  if (c->finished || !configured_) Py_RETURN_NONE;
  PyObject* cancel = nullptr;
  if (c->must_cancel) {
    c->must_cancel = false;
    cancel = PyObject_CallNoArgs(cancelled_error_type());
    if (cancel == nullptr) return nullptr;
  }
  PyObject* raised = take_step(c, cancel);
  Py_XDECREF(cancel);
  if (raised == nullptr) Py_RETURN_NONE;
  reraise(raised);  // a KeyboardInterrupt or SystemExit, answered: the loop stops
  return nullptr;
}

PyObject* NativeDispatch::take_step(Continuation* c, PyObject* error) {
  auto hold = py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(c));
  PyObject* yielded = nullptr;
  PySendResult sent = PYGEN_ERROR;
  py::object outer;
  // The stand-in is the current task; one already running (a servant's
  // activate() dispatching held requests) steps aside, as for an eager task.
  // Vectorcalls, not pybind11's calls: this runs twice per bare yield.
  PyObject* loop = tasks_.loop.ptr();
  auto call2 = [loop](const py::object& function, PyObject* task) {
    PyObject* args[] = {loop, task};
    auto done = py::reinterpret_steal<py::object>(PyObject_Vectorcall(function.ptr(), args, 2, nullptr));
    if (!done) throw py::error_already_set();
  };
  PyObject* failed = error_of([&] {
    outer = py::reinterpret_steal<py::object>(PyObject_CallOneArg(tasks_.current_task.ptr(), loop));
    if (!outer) throw py::error_already_set();
    if (!outer.is_none()) call2(tasks_.leave_task, outer.ptr());
    call2(tasks_.enter_task, hold.ptr());
  });
  if (failed == nullptr) {
    if (PyContext_Enter(c->context) == 0) {
      sent = step_continuation(c, Py_None, error, &yielded);
      if (sent == PYGEN_ERROR) failed = take_raised();
      if (PyContext_Exit(c->context) < 0) PyErr_WriteUnraisable(c->context);
    } else {
      failed = take_raised();
    }
    PyObject* restored = error_of([&] {
      call2(tasks_.leave_task, hold.ptr());
      if (outer && !outer.is_none()) call2(tasks_.enter_task, outer.ptr());
    });
    if (restored != nullptr) {
      reraise(restored);
      PyErr_WriteUnraisable(reinterpret_cast<PyObject*>(c));
    }
  }
  auto value = py::reinterpret_steal<py::object>(yielded);
  if (sent == PYGEN_RETURN) return nullptr;  // ended, answered
  if (sent == PYGEN_ERROR) {
    auto error_object = py::reinterpret_steal<py::object>(failed);
    if (!c->finished) {
      // Not the servant's: the step could not be taken. Answered here.
      abandon_continuation(c);
      conclude_continued(c->handle, c->request, c->current, c->suspended, py::none(),
                         std::move(error_object));
      return nullptr;
    }
    // The servant's, answered: a CancelledError ends here; an interrupt goes on.
    return error_object && is_interrupt(error_object.ptr()) ? error_object.release().ptr() : nullptr;
  }
  // Suspended: counted in flight from its first suspension until it ends.
  if (!c->suspended) {
    c->suspended = true;
    in_flight_.start(c->current, adapter_of(c->current).ptr());
  }
  PyObject* arranged = error_of([&] {
    if (value.is_none()) {
      // A bare yield asks for one loop turn: the next step after it.
      auto handle = py::reinterpret_steal<py::object>(
          PyObject_CallOneArg(tasks_.call_soon.ptr(), hold.ptr()));
      if (!handle) throw py::error_already_set();
    } else {
      // A future (or what a task makes of anything else): a task waits for it.
      PyObject* args[] = {hold.ptr(), tasks_.loop.ptr(), c->context};
      auto task = py::reinterpret_steal<py::object>(
          PyObject_Vectorcall(tasks_.task_type.ptr(), args, 1, tasks_.kwnames.ptr()));
      if (!task || !continue_as(c, task.ptr(), value.ptr())) throw py::error_already_set();
    }
  });
  if (arranged != nullptr) {
    abandon_continuation(c);
    conclude_continued(c->handle, c->request, c->current, c->suspended, py::none(),
                       py::reinterpret_steal<py::object>(arranged));
  }
  return nullptr;
}

PyObject* NativeDispatch::cancelled_error_type() {
  if (!cancelled_error_) {
    cancelled_error_ = py::module_::import("asyncio").attr("CancelledError");
  }
  return cancelled_error_.ptr();
}

void NativeDispatch::conclude_continued(PyObject* handle_object, const Request& request,
                                        PyObject* current, bool suspended, py::object result,
                                        py::object error) {
  if (!configured_ || handle_object == nullptr || handle_object == Py_None) return;
  auto& handle = py::cast<Handle&>(py::handle(handle_object));
  if (!suspended) {
    conclude(handle, request, current, std::move(result), std::move(error));
    return;
  }
  if (error || (result.ptr() != Py_None && !PyBytes_CheckExact(result.ptr()))) {
    // An exception or a wrong result: the runtime answers it and ends it.
    call_runtime(continued_, {current, result ? result.ptr() : Py_None,
                              error ? error.ptr() : Py_None});
    return;
  }
  // The common case, with no Python frame: answered here, no longer in
  // flight, and its reply leaves with the batch the runtime ends (one call
  // to arrange it per batch, not per reply).
  conclude(handle, request, current, std::move(result), py::object());
  in_flight_.end(current, adapter_of(current).ptr());
  if (!handle.flush_arranged()) {
    handle.set_flush_arranged(true);
    call_runtime(flush_soon_, {handle_object});
  }
}

protocol::ByteView NativeDispatch::params_of(core::Event& e) {
  if (e.owned_body) {
    auto bytes = e.owned_body->bytes();
    return protocol::ByteView(bytes.data(), bytes.size());
  }
  return protocol::ByteView(e.body.data(), e.body.size());
}

py::object NativeDispatch::adapter_of(PyObject* current) {
  PyObject* adapter = PyMember_GetOne(reinterpret_cast<const char*>(current), slots_[adapter_slot]);
  if (adapter == nullptr) {
    PyErr_Clear();
    return py::none();
  }
  return py::reinterpret_steal<py::object>(adapter);
}

void NativeDispatch::call_runtime(const py::object& function, std::initializer_list<PyObject*> args) {
  PyObject* done = PyObject_Vectorcall(function.ptr(), std::data(args), args.size(), nullptr);
  if (done == nullptr) {
    PyObject* raised = take_raised();
    if (raised != nullptr && is_interrupt(raised)) {
      keep_interrupt(raised);  // an eager task re-raising it, already answered
      Py_DECREF(raised);
    } else if (raised != nullptr) {
      reraise(raised);  // steals it
      PyErr_WriteUnraisable(function.ptr());
    }
  }
  Py_XDECREF(done);
}

void NativeDispatch::keep_interrupt(PyObject* error) {
  if (!interrupt_) interrupt_ = py::reinterpret_borrow<py::object>(error);
}

bool NativeDispatch::raise_kept_interrupt() {
  if (!interrupt_) return false;
  reraise(interrupt_.release().ptr());
  return true;
}

void NativeDispatch::reset_current(PyObject* token) {
  if (PyContextVar_Reset(current_var_.ptr(), token) < 0) PyErr_WriteUnraisable(current_var_.ptr());
  Py_DECREF(token);
}

}  // namespace aiocomm::binding
