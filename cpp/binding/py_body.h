// Reply bodies read straight into the `bytes` objects Python receives (see
// core::BodyMaker). The loop thread makes them while it reads its own
// connections, holding the GIL; from then on the object is plain memory to
// the core: a reactor that takes the reading over may fill it, and an event
// carries it to the drain, which hands the very object to Python.
//
// Reference counts move only with the GIL. An owner destroyed elsewhere (a
// reactor closing a connection with a body half read, a communicator freed
// on the reaper thread) buries its object; the loop releases the buried on
// its next drain or next body. Buried objects whose graveyard dies without
// the GIL (the inbox outlived by its communicator, at exit) are leaked, a
// few bodies at most, rather than released on a thread that may not.
#pragma once

#include <Python.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "core/event.h"

namespace aiocomm::binding {

// Objects whose last owner let go on a thread without the GIL.
class Graveyard {
 public:
  Graveyard() = default;
  Graveyard(const Graveyard&) = delete;
  Graveyard& operator=(const Graveyard&) = delete;
  ~Graveyard();  // releases with the GIL, else leaks (see above)

  // Any thread, with or without the GIL.
  void bury(PyObject* object);
  // Any thread: lets go of a reference an owner held, at once where this
  // thread may (may_release_here), else by burying it; never blocks, never
  // takes the GIL. Out of memory off the loop thread, it leaks the object,
  // the only safe end.
  void release(PyObject* object) noexcept;
  // GIL held: releases everything buried so far.
  void release_all() noexcept;

 private:
  std::mutex mutex_;
  std::vector<PyObject*> buried_;
  // Whether buried_ may hold anything: the loop checks it per body, so
  // without taking the lock in the common case of nothing buried.
  std::atomic<bool> any_{false};
};

// A `bytes` object of the body's size, written in place by the reader.
class PyBodyOwner final : public core::BodyOwner {
 public:
  PyBodyOwner(PyObject* bytes, std::shared_ptr<Graveyard> graveyard) noexcept
      : object_(bytes), graveyard_(std::move(graveyard)) {}
  PyBodyOwner(const PyBodyOwner&) = delete;
  PyBodyOwner& operator=(const PyBodyOwner&) = delete;
  ~PyBodyOwner() override;  // any thread (see above)

  std::span<std::uint8_t> bytes() noexcept override;
  // GIL held: the object, whose reference passes to the caller.
  PyObject* release() noexcept { return std::exchange(object_, nullptr); }

 private:
  PyObject* object_;
  std::shared_ptr<Graveyard> graveyard_;
};

// Installed on the inbox by PyInbox. make() runs on the loop thread with
// the GIL (Communicator::read_ready_sockets is called from Python and
// keeps it); called otherwise it declines, and the pooled path is taken.
class PyBodyMaker final : public core::BodyMaker {
 public:
  std::shared_ptr<core::BodyOwner> make(std::size_t size) noexcept override;
  // GIL held (the drain): releases what owners buried.
  void release_buried() noexcept { graveyard_->release_all(); }
  // Shared with the request payloads the communicator lends (py_payload.h),
  // so one drain releases both.
  const std::shared_ptr<Graveyard>& graveyard() const noexcept { return graveyard_; }

 private:
  std::shared_ptr<Graveyard> graveyard_ = std::make_shared<Graveyard>();
};

// Any thread: whether it holds the GIL, so may release a reference now.
bool may_release_here() noexcept;

}  // namespace aiocomm::binding
