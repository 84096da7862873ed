// The Communicator handle: the only owner of the core. Its dealloc is where
// the original deadlock lived, so its rules are spelled out here:
//  - every call that can wait runs with the GIL released;
//  - the last core reference is dropped with the GIL released, because the
//    core's destructor joins native threads that may be waiting for the GIL;
//  - destroy completions run on the lifecycle thread and take the GIL once,
//    never after the interpreter began finalizing.
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <system_error>
#include <vector>

#include "binding/bindings.h"
#include "binding/gil.h"
#include "binding/handle.h"
#include "core/communicator.h"

namespace aiocomm::binding {
namespace {

using Core = core::Communicator;

// Live cores, for the atexit teardown. Weak: the registry owns nothing.
std::mutex registry_mutex;
std::vector<std::weak_ptr<Core>> registry;

void remember(const std::shared_ptr<Core>& c) {
  std::lock_guard lock(registry_mutex);
  std::erase_if(registry, [](const auto& w) { return w.expired(); });
  registry.push_back(c);
}

struct PyTarget {
  std::shared_ptr<const core::Target> target;
};

std::chrono::milliseconds millis(double seconds) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::max(0.0, seconds) * 1000.0));
}

protocol::Context to_context(const py::object& context) {
  protocol::Context out;
  if (context.is_none()) return out;
  for (auto item : py::reinterpret_borrow<py::dict>(context)) {
    out.emplace_back(item.first.cast<std::string>(), item.second.cast<std::string>());
  }
  return out;
}

// A payload's bytes, borrowed for the duration of a call: bytes directly,
// any other object through the buffer protocol.
class PayloadView {
 public:
  explicit PayloadView(PyObject* payload) {
    if (PyBytes_CheckExact(payload)) {
      view_ = protocol::ByteView(reinterpret_cast<const std::uint8_t*>(PyBytes_AS_STRING(payload)),
                                 static_cast<std::size_t>(PyBytes_GET_SIZE(payload)));
      return;
    }
    if (PyObject_GetBuffer(payload, &buffer_, PyBUF_C_CONTIGUOUS) < 0) {
      PyErr_Clear();
      throw py::value_error("payload must be a contiguous buffer");
    }
    held_ = true;
    view_ = protocol::ByteView(static_cast<const std::uint8_t*>(buffer_.buf),
                               static_cast<std::size_t>(buffer_.len));
  }
  PayloadView(const PayloadView&) = delete;
  PayloadView& operator=(const PayloadView&) = delete;
  ~PayloadView() {
    if (held_) PyBuffer_Release(&buffer_);
  }
  protocol::ByteView get() const noexcept { return view_; }

 private:
  Py_buffer buffer_{};
  bool held_ = false;
  protocol::ByteView view_;
};

core::InvokeResult invoke_core(Handle& self, const PyTarget& target, const py::bytes& identity_facet,
                               std::string_view operation, int mode, const py::object& context,
                               const py::handle& params, bool oneway, bool idempotent, bool defer) {
  std::string_view prefix = identity_facet;
  PayloadView payload(params.ptr());
  return self.core().invoke(
      target.target,
      protocol::ByteView(reinterpret_cast<const std::uint8_t*>(prefix.data()), prefix.size()),
      operation, static_cast<std::uint8_t>(mode), to_context(context), payload.get(), oneway,
      idempotent, defer);
}

py::tuple address_tuple(const platform::Address& a) { return py::make_tuple(a.host, a.port); }

core::Communicator::Completion completion_for(py::object callback) {
  auto ref = std::make_shared<NativeRef>(std::move(callback));
  return [ref] {
    if (interpreter_finalizing()) return;  // ref leaks on purpose
    native_thread_waiting_for_gil.store(true);
    native_gil_acquisitions.fetch_add(1, std::memory_order_relaxed);
    PyGILState_STATE state = PyGILState_Ensure();
    native_thread_waiting_for_gil.store(false);
    PyObject* result = PyObject_CallNoArgs(ref->get());
    if (result == nullptr) {
      // The callback reports its own errors; nothing may escape a native thread.
      PyErr_Clear();
    }
    Py_XDECREF(result);
    ref->reset();
    PyGILState_Release(state);
  };
}

void teardown_all() {
  std::vector<std::shared_ptr<Core>> live;
  {
    std::lock_guard lock(registry_mutex);
    for (auto& w : registry) {
      if (auto c = w.lock()) live.push_back(std::move(c));
    }
    registry.clear();
  }
  py::gil_scoped_release release;
  for (auto& c : live) c->teardown();
  // Dropped with the GIL released: one of these may be the last reference.
  live.clear();
}

}  // namespace

Handle::Handle(PyInbox& inbox, const core::Options& options)
    : core_(std::make_shared<Core>(options, inbox.inbox)), futures_(inbox.futures) {
  remember(core_);
}

Handle::~Handle() {
  auto last = std::move(core_);
  if (!last) return;
  // While finalizing, atexit has already joined every native thread, and
  // nothing can be waiting for the GIL.
  if (release_gil_on_dealloc.load() && PyGILState_Check() && !interpreter_finalizing()) {
    py::gil_scoped_release release;
    last.reset();
  } else {
    last.reset();
  }
}

void bind_communicator(py::module_& m) {
  py::class_<PyTarget>(m, "Target")
      .def(py::init([](std::string key, const std::vector<std::pair<std::string, int>>& endpoints) {
             auto target = std::make_shared<core::Target>();
             target->key = std::move(key);
             for (const auto& [host, port] : endpoints) target->endpoints.push_back({host, port});
             return PyTarget{std::move(target)};
           }),
           py::arg("key"), py::arg("endpoints"))
      .def_property_readonly("key", [](const PyTarget& t) { return t.target->key; });

  py::class_<Handle>(m, "Communicator")
      .def(py::init([](PyInbox& inbox, int io_threads, std::size_t message_size_max,
                       double idle_timeout, double connect_timeout, double close_timeout,
                       double read_timeout, bool loop_reads) {
             if (interpreter_finalizing()) {
               throw std::runtime_error("the interpreter is shutting down");
             }
             core::Options options;
             options.io_threads = io_threads;
             options.message_size_max = message_size_max;
             options.idle_timeout = millis(idle_timeout);
             options.connect_timeout = millis(connect_timeout);
             options.close_timeout = millis(close_timeout);
             options.read_timeout = millis(read_timeout);
             options.loop_reads = loop_reads;
             return std::make_unique<Handle>(inbox, options);
           }),
           py::arg("inbox"), py::arg("io_threads"), py::arg("message_size_max"),
           py::arg("idle_timeout"), py::arg("connect_timeout"), py::arg("close_timeout"),
           py::arg("read_timeout"), py::arg("loop_reads") = false)
      .def("create_adapter",
           [](Handle& self, const std::string& host, int port) {
             core::AdapterAddress a;
             {
               py::gil_scoped_release release;  // name resolution may block
               a = self.core().create_adapter(host, port);
             }
             return py::make_tuple(a.id, a.address.host, a.address.port);
           })
      // Both wait for a reactor thread to close listening sockets: without the GIL.
      .def("deactivate_adapter", [](Handle& self, std::uint32_t id) { self.core().deactivate_adapter(id); },
           py::call_guard<py::gil_scoped_release>())
      .def("shutdown", [](Handle& self) { self.core().shutdown(); },
           py::call_guard<py::gil_scoped_release>())
      .def("invoke",
           [](Handle& self, const PyTarget& target, const py::bytes& identity_facet,
              std::string_view operation, int mode, const py::object& context, const py::handle& params,
              bool oneway, bool idempotent, bool defer, py::object future) {
             auto result = invoke_core(self, target, identity_facet, operation, mode, context, params,
                                       oneway, idempotent, defer);
             // File the future before any reply can be drained (the drain
             // runs on this same thread, later).
             if (!result.written && !future.is_none()) self.futures().put(result.id, std::move(future));
             return py::make_tuple(result.id, result.written);
           },
           py::arg("target"), py::arg("identity_facet"), py::arg("operation"), py::arg("mode"),
           py::arg("context"), py::arg("params"), py::arg("oneway"), py::arg("idempotent"),
           py::arg("defer") = false, py::arg("future") = py::none())
      // The common invocation in one call: a twoway request whose future the
      // inbox holds and completes (no timeout, so no timer of Python's).
      .def("call",
           [](Handle& self, const PyTarget& target, const py::bytes& identity_facet,
              std::string_view operation, int mode, const py::object& context,
              const py::handle& params, bool idempotent, bool defer,
              const py::object& create_future) {
             py::object future = create_future();
             auto result = invoke_core(self, target, identity_facet, operation, mode, context, params,
                                       false, idempotent, defer);
             // Filed before any reply can be drained (on this thread, later).
             self.futures().put(result.id, future);
             return future;
           })
      .def("flush_deferred", [](Handle& self) { self.core().flush_deferred(); })
      // Non-blocking reads on the loop thread, which holds the GIL: a thread
      // that is reading the same socket is never waited for.
      .def("read_ready_sockets", [](Handle& self) { self.core().read_ready_sockets(); },
           "Read the connections whose sockets are ready (loop thread), into the inbox.")
      .def("cancel", [](Handle& self, std::int32_t id) { self.core().cancel(id); })
      .def("reply",
           [](Handle& self, std::uint64_t connection_id, std::int32_t request_id, int status,
              std::pair<int, int> encoding, const py::handle& payload, bool defer) {
             PayloadView view(payload.ptr());
             auto message = self.core().buffers().make_message(
                 protocol::reply_payload_size(view.get().size()));
             protocol::encode_reply_payload(
                 *message, request_id, static_cast<protocol::ReplyStatus>(status),
                 {static_cast<std::uint8_t>(encoding.first), static_cast<std::uint8_t>(encoding.second)},
                 view.get());
             self.core().send_reply(connection_id, std::move(message), defer);
           },
           py::arg("connection_id"), py::arg("request_id"), py::arg("status"), py::arg("encoding"),
           py::arg("payload"), py::arg("defer") = false)
      .def("reply_not_exist",
           [](Handle& self, std::uint64_t connection_id, std::int32_t request_id, int status,
              std::string name, std::string category, std::string facet, std::string operation,
              bool defer) {
             auto message = std::make_shared<protocol::Bytes>();
             protocol::encode_reply_not_exist(*message, request_id,
                                              static_cast<protocol::ReplyStatus>(status),
                                              {std::move(name), std::move(category)}, facet,
                                              operation);
             self.core().send_reply(connection_id, std::move(message), defer);
           },
           py::arg("connection_id"), py::arg("request_id"), py::arg("status"), py::arg("name"),
           py::arg("category"), py::arg("facet"), py::arg("operation"), py::arg("defer") = false)
      .def("reply_message",
           [](Handle& self, std::uint64_t connection_id, std::int32_t request_id, int status,
              std::string_view text, bool defer) {
             auto message = std::make_shared<protocol::Bytes>();
             protocol::encode_reply_message(*message, request_id, static_cast<std::uint8_t>(status), text);
             self.core().send_reply(connection_id, std::move(message), defer);
           },
           py::arg("connection_id"), py::arg("request_id"), py::arg("status"), py::arg("text"),
           py::arg("defer") = false)
      .def("finish_dispatch",
           [](Handle& self, std::uint64_t connection_id) { self.core().finish_dispatch(connection_id); })
      .def("abandon_dispatch",
           [](Handle& self, std::uint64_t connection_id) { self.core().abandon_dispatch(connection_id); })
      .def("connection_addresses",
           [](Handle& self, std::uint64_t connection_id) -> py::object {
             auto addresses = self.core().connection_addresses(connection_id);
             if (!addresses) return py::none();
             return py::make_tuple(address_tuple(addresses->first), address_tuple(addresses->second));
           })
      .def("begin_destroy",
           [](Handle& self, py::object on_done, bool wait_for_dispatches) {
             return self.core().begin_destroy(completion_for(std::move(on_done)), wait_for_dispatches);
           },
           py::arg("on_done"), py::arg("wait_for_dispatches"))
      .def("destroy_blocking",
           [](Handle& self, bool wait_for_dispatches) {
             py::gil_scoped_release release;
             self.core().begin_destroy(nullptr, wait_for_dispatches);
             self.core().wait_destroyed();
           },
           py::arg("wait_for_dispatches"))
      .def("teardown",
           [](Handle& self) {
             py::gil_scoped_release release;
             self.core().teardown();
           })
      .def_property_readonly("destroying", [](Handle& self) { return self.core().destroying(); })
      .def_property_readonly("destroyed", [](Handle& self) { return self.core().destroyed(); })
      .def("stats", [](Handle& self) {
        py::dict d;
        for (const auto& [name, value] : self.core().stats()) d[py::str(name)] = value;
        d["native_gil_acquisitions"] = native_gil_acquisitions.load();
        return d;
      });

  m.def("teardown_all", &teardown_all,
        "Hard-stop every live communicator and join its threads (atexit).");
  m.def("encode_identity_facet",
        [](const std::string& name, const std::string& category, const std::string& facet) {
          auto b = protocol::encode_identity_facet({name, category}, facet);
          return py::bytes(reinterpret_cast<const char*>(b.data()), b.size());
        });
  m.def("native_gil_acquisitions", [] { return native_gil_acquisitions.load(); });
}

}  // namespace aiocomm::binding
