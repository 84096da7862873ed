// The pieces of the _core extension module, one per file.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <unordered_map>

#include "binding/native_dispatch.h"
#include "binding/py_body.h"
#include "core/inbox.h"

namespace aiocomm::binding {

namespace py = pybind11;

// Futures of twoway invocations, completed natively while draining: a reply
// costs no Python frame. The loop thread only, with the GIL; destroyed only
// by Python deallocs (so with the GIL).
class FutureTable {
 public:
  void put(std::int32_t request_id, py::object future) {
    futures_.insert_or_assign(request_id, std::move(future));
  }
  // The future filed under `request_id`, or None.
  py::object take(std::int32_t request_id) {
    auto node = futures_.extract(request_id);
    return node.empty() ? py::none() : std::move(node.mapped());
  }
  py::list take_all() {
    py::list out;
    for (auto& [id, future] : futures_) out.append(std::move(future));
    futures_.clear();
    return out;
  }
  std::size_t size() const noexcept { return futures_.size(); }

 private:
  std::unordered_map<std::int32_t, py::object> futures_;
};

// The Python-visible inbox. Shared by the communicator (which fills it) and
// the loop's reader callback (which drains it), so the descriptor the loop
// watches stays open until the loop lets go of it, whatever happens to the
// communicator.
struct PyInbox {
  PyInbox() { inbox->set_body_maker(bodies); }

  // Reply bodies the loop reads are made as the `bytes` Python receives.
  std::shared_ptr<PyBodyMaker> bodies = std::make_shared<PyBodyMaker>();
  std::shared_ptr<core::Inbox> inbox = std::make_shared<core::Inbox>();
  std::shared_ptr<FutureTable> futures = std::make_shared<FutureTable>();
  NativeDispatch dispatch;
};

void bind_inbox(py::module_& m);
void bind_communicator(py::module_& m);
void bind_testing(py::module_& m);

}  // namespace aiocomm::binding
