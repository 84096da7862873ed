// The Communicator handle: the only owner of the core. Its dealloc is where
// the original deadlock lived, so its rules are spelled out here:
//  - every call that can wait runs with the GIL released (without_gil);
//  - the last core reference is dropped with the GIL released: the core's
//    destructor joins native threads, and none may ever wait for the GIL
//    held by the thread that joins them (defence in depth: no native
//    thread of the library takes the GIL at all). On the main thread the
//    dealloc does so itself; on any other, which may be a daemon thread
//    that CPython ends mid-way at exit, the reaper's thread does (reaper.h);
//  - the end of destroy reaches Python through a descriptor the loop
//    watches (Communicator::destroyed_fd), never through a native thread
//    calling into Python;
//  - cores still alive when the interpreter has finalized are torn down by
//    a Py_AtExit hook, so no native thread runs into process exit.
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <system_error>
#include <vector>

#include "binding/bindings.h"
#include "binding/gil.h"
#include "binding/handle.h"
#include "binding/py_payload.h"
#include "binding/reaper.h"
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
  protocol::ByteView idf(reinterpret_cast<const std::uint8_t*>(prefix.data()), prefix.size());
  // A large immutable payload is written from where it lies (py_payload.h).
  if (auto lent = lend_payload(params.ptr(), self.graveyard())) {
    return self.core().invoke_lent(target.target, idf, operation, static_cast<std::uint8_t>(mode),
                                   to_context(context), std::move(lent), oneway, idempotent, defer);
  }
  PayloadView payload(params.ptr());
  return self.core().invoke(target.target, idf, operation, static_cast<std::uint8_t>(mode),
                            to_context(context), payload.get(), oneway, idempotent, defer);
}

py::tuple address_tuple(const platform::Address& a) { return py::make_tuple(a.host, a.port); }

// Hard-stops every core still registered and joins its threads. Touches no
// Python, so it may run after finalization. Any thread but a native one of
// a core; blocks for the joins.
void teardown_registered() noexcept {
  std::vector<std::shared_ptr<Core>> live;
  {
    std::lock_guard lock(registry_mutex);
    for (auto& w : registry) {
      if (auto c = w.lock()) live.push_back(std::move(c));
    }
    registry.clear();
  }
  for (auto& c : live) c->teardown();
  // One of these may be the last reference: the caller holds no GIL.
  live.clear();
}

// atexit (Python's): while the interpreter is whole.
void teardown_all() { without_gil(teardown_registered); }

// Py_AtExit: after finalization, for the cores created after the atexit
// hook ran (from a later atexit handler, a finalizer, a daemon thread) and
// never destroyed nor collected. Their threads never touch Python, so they
// were harmless until now; they must not run into process exit.
void teardown_at_exit() {
  Reaper::instance().stop_and_join();
  teardown_registered();
}

}  // namespace

Handle::Handle(PyInbox& inbox, const core::Options& options)
    : core_(std::make_shared<Core>(options, inbox.inbox)),
      futures_(inbox.futures),
      graveyard_(inbox.bodies->graveyard()) {
  remember(core_);
}

Handle::~Handle() {
  auto last = std::move(core_);
  if (!last) return;
  if (!release_gil_on_dealloc.load()) {
    last.reset();  // the original bug, seeded by the tests: the join waits here, GIL held
    return;
  }
  if (PyThread_get_thread_ident() != main_thread_ident.load()) {
    // Another thread may be a daemon thread, which CPython ends if it
    // re-takes the GIL once finalization has begun: never here, in a
    // noexcept frame (see reaper.h). The reaper joins instead.
    Reaper::instance().adopt(std::move(last));
  } else if (PyGILState_Check() && !interpreter_finalizing()) {
    without_gil([&] { last.reset(); });
  } else {
    // Finalizing: no native thread may take the GIL any more (the only
    // function that lets one checks first), so the join cannot wait for us.
    last.reset();
  }
}

void bind_communicator(py::module_& m) {
  py::class_<PyTarget>(m, "Target")
      .def(py::init([](std::string key,
                       const std::vector<std::tuple<std::string, int, bool>>& endpoints) {
             auto target = std::make_shared<core::Target>();
             target->key = std::move(key);
             for (const auto& [host, port, secure] : endpoints) {
               target->endpoints.push_back({host, port, secure});
             }
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
           [](Handle& self, const std::string& host, int port, bool secure) {
             // Name resolution may block.
             auto a = without_gil([&] { return self.core().create_adapter(host, port, secure); });
             return py::make_tuple(a.id, a.address.host, a.address.port);
           },
           py::arg("host"), py::arg("port"), py::arg("secure") = false)
      .def("set_tls",
           [](Handle& self, std::string certfile, std::string keyfile, std::string cafile,
              std::string password, int verify_peer, bool check_hostname,
              std::string min_version) {
             tls::Config config{std::move(certfile), std::move(keyfile), std::move(cafile),
                                std::move(password), verify_peer, check_hostname,
                                std::move(min_version)};
             // Reads files.
             without_gil([&] { self.core().set_tls(config); });
           },
           py::arg("certfile"), py::arg("keyfile"), py::arg("cafile"), py::arg("password"),
           py::arg("verify_peer"), py::arg("check_hostname"), py::arg("min_version"))
      // Both wait for a reactor thread to close listening sockets: without the GIL.
      .def("deactivate_adapter",
           [](Handle& self, std::uint32_t id) {
             without_gil([&] { self.core().deactivate_adapter(id); });
           })
      .def("shutdown", [](Handle& self) { without_gil([&] { self.core().shutdown(); }); })
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
      .def("flush_deferred",
           [](Handle& self) {
             self.set_flush_arranged(false);
             self.core().flush_deferred();
           })
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
      .def("connection_tls",
           [](Handle& self, std::uint64_t connection_id) -> py::object {
             auto peer = self.core().connection_tls(connection_id);
             if (!peer) return py::none();
             py::list names;
             for (const auto& name : peer->alt_names) names.append(name);
             return py::make_tuple(
                 peer->subject, peer->issuer, py::tuple(names),
                 py::bytes(reinterpret_cast<const char*>(peer->der.data()), peer->der.size()),
                 peer->cipher, peer->protocol);
           })
      .def("connection_addresses",
           [](Handle& self, std::uint64_t connection_id) -> py::object {
             auto addresses = self.core().connection_addresses(connection_id);
             if (!addresses) return py::none();
             return py::make_tuple(address_tuple(addresses->first), address_tuple(addresses->second));
           })
      // No completion: the loop learns of the end by watching destroyed_fd.
      .def("begin_destroy",
           [](Handle& self, bool wait_for_dispatches) {
             return self.core().begin_destroy(nullptr, wait_for_dispatches);
           },
           py::arg("wait_for_dispatches"))
      .def("destroy_blocking",
           [](Handle& self, bool wait_for_dispatches) {
             without_gil([&] {
               self.core().begin_destroy(nullptr, wait_for_dispatches);
               self.core().wait_destroyed();
             });
           },
           py::arg("wait_for_dispatches"))
      .def("teardown", [](Handle& self) { without_gil([&] { self.core().teardown(); }); })
      .def_property_readonly("destroying", [](Handle& self) { return self.core().destroying(); })
      // Destroy has finished: every native thread is joined. The lifecycle
      // thread is past its last step once the phase says so; it is joined
      // here, without the GIL, if nobody has yet.
      .def_property_readonly("destroyed",
                             [](Handle& self) {
                               if (!self.core().destroyed()) return false;
                               without_gil([&] { self.core().wait_destroyed(); });
                               return true;
                             })
      .def_property_readonly("destroyed_fd",
                             [](Handle& self) { return self.core().destroyed_fd(); })
      .def("stats", [](Handle& self) {
        py::dict d;
        for (const auto& [name, value] : self.core().stats()) d[py::str(name)] = value;
        d["native_gil_acquisitions"] = native_gil_acquisitions.load();
        return d;
      });

  m.def("teardown_all", &teardown_all,
        "Hard-stop every live communicator and join its threads (atexit).");
  // Py_AtExit keeps at most 32 functions; without a slot, cores created
  // after the atexit hook keep running into exit as they did before.
  Py_AtExit(teardown_at_exit);
  m.def("encode_identity_facet",
        [](const std::string& name, const std::string& category, const std::string& facet) {
          auto b = protocol::encode_identity_facet({name, category}, facet);
          return py::bytes(reinterpret_cast<const char*>(b.data()), b.size());
        });
  m.def("native_gil_acquisitions", [] { return native_gil_acquisitions.load(); });
}

}  // namespace aiocomm::binding
