// The Communicator handle: the Python object that owns the core. Shared by
// the binding's files: the inbox's drain sends the replies of the requests
// it dispatches natively through it.
#pragma once

#include <memory>

#include "binding/bindings.h"
#include "core/communicator.h"

namespace aiocomm::binding {

class Handle {
 public:
  Handle(PyInbox& inbox, const core::Options& options);
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  // Drops the last core reference with the GIL released (py_communicator.cpp).
  ~Handle();

  core::Communicator& core() { return *core_; }
  FutureTable& futures() { return *futures_; }
  // Where lent request payloads let go without the GIL wait for the drain.
  const std::shared_ptr<Graveyard>& graveyard() const noexcept { return graveyard_; }

  // Whether replies queued now leave with a flush already arranged: the
  // runtime was asked (Runtime._flush_soon) and its batch ends with
  // flush_deferred, which clears it. Saves a continuation's reply a Python
  // call per request. Loop thread, with the GIL.
  bool flush_arranged() const noexcept { return flush_arranged_; }
  void set_flush_arranged(bool arranged) noexcept { flush_arranged_ = arranged; }

 private:
  bool flush_arranged_ = false;
  std::shared_ptr<core::Communicator> core_;
  std::shared_ptr<FutureTable> futures_;  // the inbox's: replies complete them
  std::shared_ptr<Graveyard> graveyard_;  // the inbox's body maker's
};

}  // namespace aiocomm::binding
