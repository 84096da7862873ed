// Draining the inbox: native events become Python tuples, on the loop
// thread, in one batch per wake-up.
#include <pybind11/stl.h>

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

// A name that selects a servant or method must decode exactly; null if not.
py::object strict_str(const std::string& text) {
  PyObject* s = PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()), nullptr);
  if (s == nullptr) PyErr_Clear();
  return py::reinterpret_steal<py::object>(s);
}

py::dict to_dict(const protocol::Context& context) {
  py::dict d;
  for (const auto& [key, value] : context) d[lenient_str(key)] = lenient_str(value);
  return d;
}

// Event tuples; the first item is the kind (see aiocomm/_core.pyi). Events
// that end an invocation carry its future when the table held it. Null for
// a request whose names are not UTF-8: no servant can be registered under
// them (see refuse_undecodable).
py::object to_tuple(Event& e, FutureTable& futures) {
  switch (e.kind) {
    case EventKind::reply: {
      py::object detail = py::none();
      if (e.code >= 2 && e.code <= 4) {
        detail = py::make_tuple(lenient_str(e.identity.name), lenient_str(e.identity.category),
                                lenient_str(e.facet), lenient_str(e.operation));
      } else if (e.code > 4) {
        detail = lenient_str(e.text);
      }
      return py::make_tuple(0, e.request_id, e.code, body_object(e), detail,
                            futures.take(e.request_id));
    }
    case EventKind::request: {
      py::object name = strict_str(e.identity.name), category = strict_str(e.identity.category),
                 facet = strict_str(e.facet), operation = strict_str(e.operation);
      if (!name || !category || !facet || !operation) return py::object();
      return py::make_tuple(1, e.connection_id, e.adapter_id, e.request_id, name, category, facet,
                            operation, e.mode, to_dict(e.context),
                            py::make_tuple(e.encoding.major, e.encoding.minor), to_bytes(e.body));
    }
    case EventKind::failed:
      return py::make_tuple(2, e.request_id, e.code, lenient_str(e.text), futures.take(e.request_id));
    case EventKind::sent:
      return py::make_tuple(3, e.request_id, futures.take(e.request_id));
    case EventKind::log:
      return py::make_tuple(4, e.code, lenient_str(e.text));
    case EventKind::closed:
      return py::make_tuple(5, futures.take_all());
  }
  return py::make_tuple(-1);
}

// Answers a request whose identity, facet or operation is not UTF-8 the way
// a request for an unknown one is answered: no servant can match it.
void refuse_undecodable(const Event& e, Handle* handle) {
  if (handle == nullptr) return;  // the communicator is gone, and its connections
  auto valid = [](const std::string& text) { return strict_str(text).ptr() != nullptr; };
  if (e.request_id == 0) {
    handle->core().finish_dispatch(e.connection_id);
    return;
  }
  auto status = !valid(e.identity.name) || !valid(e.identity.category) ? protocol::ReplyStatus::object_not_exist
                : !valid(e.facet) ? protocol::ReplyStatus::facet_not_exist
                                  : protocol::ReplyStatus::operation_not_exist;
  auto reply = std::make_shared<protocol::Bytes>();
  protocol::encode_reply_not_exist(*reply, e.request_id, status, e.identity, e.facet, e.operation);
  handle->core().send_reply(e.connection_id, std::move(reply), true);  // leaves with the batch
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

// `handle` (None once collected) sends the replies of requests dispatched
// here; `deliver` takes the events that are left to Python, in order: those
// gathered so far go to it before each native dispatch, so that requests
// are dispatched in the order they arrived. Every event taken is delivered:
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
    } else if (e.kind == EventKind::request && handle != nullptr) {
      if (PyList_GET_SIZE(out.ptr()) > 0 && self.dispatch.dispatches(e)) {
        hand_over(std::exchange(out, py::list()));
      }
      if (self.dispatch.try_dispatch(e, *handle, handle_object.ptr())) continue;
    }
    py::object event = to_tuple(e, futures);
    if (!event) {
      refuse_undecodable(e, handle);
      continue;
    }
    out.append(std::move(event));
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
           "of successful replies, dispatch the common requests, return the other events.")
      .def("configure_dispatch",
           [](PyInbox& self, py::object current_type, py::object current_var, py::tuple modes,
              py::object finish, py::object resume) {
             self.dispatch.configure(std::move(current_type), std::move(current_var),
                                     std::move(modes), std::move(finish), std::move(resume));
           },
           py::arg("current_type"), py::arg("current_var"), py::arg("modes"), py::arg("finish"),
           py::arg("resume"))
      .def("activate_adapter",
           [](PyInbox& self, std::uint32_t adapter_id, py::object adapter, py::dict servants,
              py::dict defaults) {
             self.dispatch.activate(adapter_id, std::move(adapter), std::move(servants),
                                    std::move(defaults));
           })
      .def("deactivate_adapter",
           [](PyInbox& self, std::uint32_t adapter_id) { self.dispatch.deactivate(adapter_id); })
      .def("dispatching", [](const PyInbox& self) { return self.dispatch.calls_in_progress(); },
           "How many servant calls the native dispatch has under way.")
      .def("native_dispatches", [](const PyInbox& self) { return self.dispatch.dispatched(); },
           "How many requests the native dispatch has called a servant for.")
      .def("pending", [](const PyInbox& self) { return self.futures->size(); },
           "How many invocations' futures the native side holds.");
}

}  // namespace aiocomm::binding
