// Draining the inbox: native events become Python tuples, on the loop
// thread, in one batch per wake-up.
#include <pybind11/stl.h>

#include "binding/bindings.h"

namespace aiocomm::binding {
namespace {

using core::Event;
using core::EventKind;

py::bytes to_bytes(const protocol::Bytes& b) {
  return py::bytes(reinterpret_cast<const char*>(b.data()), b.size());
}

py::dict to_dict(const protocol::Context& context) {
  py::dict d;
  for (const auto& [key, value] : context) d[py::str(key)] = py::str(value);
  return d;
}

// Event tuples; the first item is the kind (see aiocomm/_core.pyi).
py::tuple to_tuple(Event& e) {
  switch (e.kind) {
    case EventKind::reply: {
      py::object detail = py::none();
      if (e.code >= 2 && e.code <= 4) {
        detail = py::make_tuple(e.identity.name, e.identity.category, e.facet, e.operation);
      } else if (e.code > 4) {
        detail = py::str(e.text);
      }
      return py::make_tuple(0, e.request_id, e.code, to_bytes(e.body), detail);
    }
    case EventKind::request:
      return py::make_tuple(1, e.connection_id, e.adapter_id, e.request_id, e.identity.name,
                            e.identity.category, e.facet, e.operation, e.mode,
                            to_dict(e.context),
                            py::make_tuple(e.encoding.major, e.encoding.minor), to_bytes(e.body));
    case EventKind::failed:
      return py::make_tuple(2, e.request_id, e.code, e.text);
    case EventKind::sent:
      return py::make_tuple(3, e.request_id);
    case EventKind::log:
      return py::make_tuple(4, e.code, e.text);
    case EventKind::closed:
      return py::make_tuple(5);
  }
  return py::make_tuple(-1);
}

py::list drain(PyInbox& self) {
  std::vector<Event> events;
  self.inbox->take_all(events);
  py::list out(events.size());
  for (std::size_t i = 0; i < events.size(); ++i) out[i] = to_tuple(events[i]);
  return out;
}

}  // namespace

void bind_inbox(py::module_& m) {
  py::class_<PyInbox>(m, "Inbox")
      .def(py::init<>())
      .def_property_readonly("fd", [](const PyInbox& self) { return self.inbox->fd(); })
      .def("drain", &drain,
           "Take every event queued so far, in order (loop thread).");
}

}  // namespace aiocomm::binding
