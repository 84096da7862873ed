// Draining the inbox: native events become Python named tuples, on the loop
// thread, in one batch per wake-up.
#include <pybind11/stl.h>

#include <initializer_list>
#include <stdexcept>

#include "binding/bindings.h"
#include "binding/handle.h"

namespace aiocomm::binding {
namespace {

using core::Event;
using core::EventKind;

py::bytes to_bytes(const protocol::Bytes& b) {
  return py::bytes(reinterpret_cast<const char*>(b.data()), b.size());
}

// An event's body as the `bytes` Python receives: the object it was read
// into when the body maker made one (no copy), else a copy of the pooled body.
py::object body_object(Event& e) {
  if (e.owned_body) {
    // Every owner comes from the inbox's PyBodyMaker (bindings.h).
    auto* owner = static_cast<PyBodyOwner*>(e.owned_body.get());
    return py::reinterpret_steal<py::object>(owner->release());
  }
  return to_bytes(e.body);
}

// Text from a peer that only informs (messages, contexts): bytes that are
// not UTF-8 become U+FFFD rather than an error that would end the drain.
py::str lenient_str(const std::string& text) {
  PyObject* s = PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()), "replace");
  if (s == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(s);
}

// The events that reach Python, as named tuples (struct sequences: made
// as cheaply as tuples, read by name). Events that end an invocation carry its
// future when the table held it. Their type says their kind. See
// aiocomm/_core.pyi.
struct EventTypes {
  PyTypeObject* reply = nullptr;
  PyTypeObject* failed = nullptr;
  PyTypeObject* sent = nullptr;
  PyTypeObject* log = nullptr;
  PyTypeObject* closed = nullptr;
};

EventTypes& event_types() {
  static EventTypes types;
  return types;
}

PyTypeObject* new_event_type(PyStructSequence_Desc& desc) {
  PyTypeObject* type = PyStructSequence_NewType(&desc);
  if (type == nullptr) throw py::error_already_set();
  return type;
}

// The field tables must outlive their types: static.
PyStructSequence_Field reply_fields[] = {
    {"request_id", nullptr}, {"status", "the reply status"},
    {"payload", "the reply's body (a user exception's encoding)"},
    {"detail", "(name, category, facet, operation) for 2-4, the message for > 4, else None"},
    {"future", "the invocation's future, when the inbox held it"}, {nullptr, nullptr}};
PyStructSequence_Field failed_fields[] = {
    {"request_id", nullptr}, {"code", "core::ErrorCode"}, {"text", nullptr},
    {"future", nullptr}, {nullptr, nullptr}};
PyStructSequence_Field sent_fields[] = {
    {"request_id", nullptr}, {"future", nullptr}, {nullptr, nullptr}};
PyStructSequence_Field log_fields[] = {
    {"level", "a logging level"}, {"text", nullptr}, {nullptr, nullptr}};
PyStructSequence_Field closed_fields[] = {
    {"futures", "the futures the inbox still held"}, {nullptr, nullptr}};
PyStructSequence_Desc reply_desc = {"aiocomm._core.ReplyEvent", "A reply that ends an invocation.",
                                    reply_fields, 5};
PyStructSequence_Desc failed_desc = {"aiocomm._core.FailedEvent",
                                     "An invocation that failed without a reply.", failed_fields, 4};
PyStructSequence_Desc sent_desc = {"aiocomm._core.SentEvent", "A queued oneway, written.",
                                   sent_fields, 2};
PyStructSequence_Desc log_desc = {"aiocomm._core.LogEvent", "A message for the aiocomm logger.",
                                  log_fields, 2};
PyStructSequence_Desc closed_desc = {"aiocomm._core.ClosedEvent",
                                     "The communicator is gone; nothing follows.", closed_fields, 1};

// A new event of `type` from `items` (each a new reference, stolen).
py::object make_event(PyTypeObject* type, std::initializer_list<py::object> items) {
  auto event = py::reinterpret_steal<py::object>(PyStructSequence_New(type));
  if (!event) throw py::error_already_set();
  Py_ssize_t i = 0;
  for (const auto& item : items) PyStructSequence_SetItem(event.ptr(), i++, Py_NewRef(item.ptr()));
  return event;
}

py::object to_event(Event& e, FutureTable& futures) {
  const auto& types = event_types();
  switch (e.kind) {
    case EventKind::reply: {
      py::object detail = py::none();
      if (e.code >= 2 && e.code <= 4) {
        detail = py::make_tuple(lenient_str(e.identity.name), lenient_str(e.identity.category),
                                lenient_str(e.facet), lenient_str(e.operation));
      } else if (e.code > 4) {
        detail = lenient_str(e.text);
      }
      return make_event(types.reply, {py::int_(e.request_id), py::int_(e.code), body_object(e),
                                      detail, futures.take(e.request_id)});
    }
    case EventKind::failed:
      return make_event(types.failed, {py::int_(e.request_id), py::int_(e.code),
                                       lenient_str(e.text), futures.take(e.request_id)});
    case EventKind::sent:
      return make_event(types.sent, {py::int_(e.request_id), futures.take(e.request_id)});
    case EventKind::log:
      return make_event(types.log, {py::int_(e.code), lenient_str(e.text)});
    case EventKind::closed:
      return make_event(types.closed, {futures.take_all()});
    case EventKind::request:
      break;  // dispatched natively (NativeDispatch), never delivered
  }
  throw std::logic_error("an event of no kind");
}

// Completes a future with a successful reply, unless it is already done
// (cancelled by its caller). Errors are reported, never raised: the rest of
// the batch must still be delivered.
void complete(PyObject* future, PyObject* value) {
  static PyObject* done_name = PyUnicode_InternFromString("done");
  static PyObject* set_result_name = PyUnicode_InternFromString("set_result");
  PyObject* done = PyObject_CallMethodNoArgs(future, done_name);
  if (done == Py_False) {
    PyObject* result = PyObject_CallMethodOneArg(future, set_result_name, value);
    Py_XDECREF(result);
  }
  Py_XDECREF(done);
  if (PyErr_Occurred()) PyErr_WriteUnraisable(future);
}

// `handle` (None once collected) sends the replies of the requests, all
// dispatched here; `deliver` takes the events that are left to Python, in
// order: those gathered so far go to it before each request's dispatch, so
// that a servant sees what arrived before its request. Every event taken is delivered:
// a KeyboardInterrupt or SystemExit from a servant (its request answered)
// is raised only once the whole batch has been.
py::list drain(PyInbox& self, const py::object& handle_object, const py::object& deliver) {
  std::vector<Event> events;
  self.inbox->take_all(events);
  self.bodies->release_buried();
  auto& futures = *self.futures;
  Handle* handle = handle_object.is_none() ? nullptr : &handle_object.cast<Handle&>();
  auto hand_over = [&](py::list batch) {
    try {
      deliver(std::move(batch));
    } catch (py::error_already_set& interrupt) {
      // _deliver raises nothing else: keep it for the end.
      self.dispatch.keep_interrupt(interrupt.value().ptr());
    }
  };
  py::list out;
  for (auto& e : events) {
    if (e.kind == EventKind::reply && e.code == 0) {
      // The hot path: a successful reply to a call whose future we hold.
      py::object future = futures.take(e.request_id);
      if (!future.is_none()) {
        complete(future.ptr(), body_object(e).ptr());
        continue;
      }
    } else if (e.kind == EventKind::request) {
      // Without a handle the communicator is gone, and its connections with it.
      if (handle == nullptr) continue;
      if (PyList_GET_SIZE(out.ptr()) > 0) hand_over(std::exchange(out, py::list()));
      self.dispatch.dispatch(e, *handle, handle_object.ptr());
      continue;
    }
    out.append(to_event(e, futures));
  }
  // The bodies were copied into Python objects: their buffers go back to
  // the pool for the reactor's next reads.
  if (handle != nullptr) {
    for (auto& e : events) handle->core().buffers().give(std::move(e.body));
  }
  if (self.dispatch.has_kept_interrupt()) {
    if (PyList_GET_SIZE(out.ptr()) > 0) hand_over(std::exchange(out, py::list()));
    self.dispatch.raise_kept_interrupt();
    throw py::error_already_set();
  }
  return out;
}

}  // namespace

void bind_inbox(py::module_& m) {
  auto& types = event_types();
  types.reply = new_event_type(reply_desc);
  types.failed = new_event_type(failed_desc);
  types.sent = new_event_type(sent_desc);
  types.log = new_event_type(log_desc);
  types.closed = new_event_type(closed_desc);
  m.attr("ReplyEvent") = py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(types.reply));
  m.attr("FailedEvent") = py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(types.failed));
  m.attr("SentEvent") = py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(types.sent));
  m.attr("LogEvent") = py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(types.log));
  m.attr("ClosedEvent") = py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(types.closed));

  // Collectable: the dispatch state holds adapters and servants, which may
  // hold the runtime that holds this inbox.
  py::class_<PyInbox>(m, "Inbox", py::custom_type_setup([](PyHeapTypeObject* heap_type) {
                        auto* type = &heap_type->ht_type;
                        type->tp_flags |= Py_TPFLAGS_HAVE_GC;
                        type->tp_traverse = [](PyObject* self, visitproc visit, void* arg) {
                          Py_VISIT(Py_TYPE(self));
                          return py::cast<PyInbox&>(py::handle(self)).dispatch.traverse(visit, arg);
                        };
                        type->tp_clear = [](PyObject* self) {
                          py::cast<PyInbox&>(py::handle(self)).dispatch.clear();
                          return 0;
                        };
                      }))
      .def(py::init<>())
      .def_property_readonly("fd", [](const PyInbox& self) { return self.inbox->fd(); })
      .def_property_readonly("sockets_fd", [](const PyInbox& self) { return self.inbox->sockets_fd(); },
                             "Readable while a socket the loop reads itself has input.")
      .def("drain", &drain, py::arg("handle"), py::arg("deliver"),
           "Deliver every event queued so far, in order (loop thread): complete the futures "
           "of successful replies, dispatch the requests, return the other events.")
      .def("configure_dispatch",
           [](py::object self, py::object current_type, py::object current_var, py::tuple modes,
              py::object finish, py::object continued, py::object unauthorized,
              py::object flush_soon, py::set dispatching, py::dict by_adapter,
              py::dict idle_waiters, py::object wake_idle, py::object loop,
              py::object task_type, py::object current_task, py::object enter_task,
              py::object leave_task) {
             Tasks tasks{std::move(loop),       std::move(task_type), std::move(current_task),
                         std::move(enter_task), std::move(leave_task), py::object(),
                         py::object()};
             auto& dispatch = self.cast<PyInbox&>().dispatch;
             dispatch.configure(self.ptr(), std::move(current_type), std::move(current_var),
                                std::move(modes), std::move(finish), std::move(continued),
                                std::move(unauthorized), std::move(flush_soon), std::move(tasks));
             dispatch.in_flight().configure(std::move(dispatching), std::move(by_adapter),
                                            std::move(idle_waiters), std::move(wake_idle));
           },
           py::arg("current_type"), py::arg("current_var"), py::arg("modes"), py::arg("finish"),
           py::arg("continued"), py::arg("unauthorized"), py::arg("flush_soon"),
           py::arg("dispatching"), py::arg("by_adapter"), py::arg("idle_waiters"),
           py::arg("wake_idle"), py::arg("loop"), py::arg("task_type"), py::arg("current_task"),
           py::arg("enter_task"), py::arg("leave_task"))
      .def("dispatch_started",
           [](PyInbox& self, py::object current) { self.dispatch.dispatch_started(current.ptr()); },
           py::arg("current"),
           "`current` is in flight (the runtime's sets; see configure_dispatch). Idempotent.")
      .def("dispatch_ended",
           [](PyInbox& self, py::object current) { self.dispatch.dispatch_ended(current.ptr()); },
           py::arg("current"),
           "`current` has ended; who waits for its adapter, or for all, to be idle is woken. "
           "Idempotent.")
      .def("add_adapter",
           [](PyInbox& self, std::uint32_t adapter_id, py::object adapter, py::dict servants,
              py::dict defaults, py::object authorize) {
             self.dispatch.add_adapter(adapter_id, std::move(adapter), std::move(servants),
                                       std::move(defaults), std::move(authorize));
           },
           "An adapter, holding its requests until activate_adapters.")
      .def("activate_adapters",
           [](PyInbox& self, const std::vector<std::uint32_t>& adapter_ids,
              const py::object& handle_object) {
             Handle* handle = handle_object.is_none() ? nullptr : &handle_object.cast<Handle&>();
             for (auto id : adapter_ids) self.dispatch.activate(id, handle, handle_object.ptr());
             // A KeyboardInterrupt from a held request's servant, every one answered.
             if (self.dispatch.raise_kept_interrupt()) throw py::error_already_set();
           },
           "Dispatch the requests held so far, in order, and every later one "
           "(their replies join the open batch).")
      .def("deactivate_adapter",
           [](PyInbox& self, std::uint32_t adapter_id, const py::object& handle_object) {
             Handle* handle = handle_object.is_none() ? nullptr : &handle_object.cast<Handle&>();
             self.dispatch.deactivate(adapter_id, handle);
           },
           "Refuse the held requests (dropped without a handle) and every later one.")
      .def("refuse_held",
           [](PyInbox& self, std::uint32_t adapter_id, const py::object& handle_object) {
             Handle* handle = handle_object.is_none() ? nullptr : &handle_object.cast<Handle&>();
             self.dispatch.refuse_held(adapter_id, handle);
           })
      .def("remove_adapter",
           [](PyInbox& self, std::uint32_t adapter_id) { self.dispatch.remove_adapter(adapter_id); })
      .def("dispatching", [](const PyInbox& self) { return self.dispatch.calls_in_progress(); },
           "How many servant calls the native dispatch has under way.")
      .def("native_dispatches", [](const PyInbox& self) { return self.dispatch.dispatched(); },
           "How many requests the native dispatch has called a servant for.")
      .def("pending", [](const PyInbox& self) { return self.futures->size(); },
           "How many invocations' futures the native side holds.");
}

}  // namespace aiocomm::binding
