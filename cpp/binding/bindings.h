// The pieces of the _core extension module, one per file.
#pragma once

#include <pybind11/pybind11.h>

#include <memory>

#include "core/inbox.h"

namespace aiocomm::binding {

namespace py = pybind11;

// The Python-visible inbox. Shared by the communicator (which fills it) and
// the loop's reader callback (which drains it), so the descriptor the loop
// watches stays open until the loop lets go of it, whatever happens to the
// communicator.
struct PyInbox {
  std::shared_ptr<core::Inbox> inbox = std::make_shared<core::Inbox>();
};

void bind_inbox(py::module_& m);
void bind_communicator(py::module_& m);
void bind_testing(py::module_& m);

}  // namespace aiocomm::binding
