// The reaper: a thread that drops the last reference to a collected
// communicator's core, so that a Python dealloc never waits for the core's
// threads to join, and never releases and re-takes the GIL.
//
// Why not release the GIL in the dealloc and join there: the dealloc is a
// destructor (noexcept). On CPython 3.11-3.13 a thread that re-takes the GIL
// once the interpreter is finalizing is ended with pthread_exit, and its
// forced unwind through a noexcept frame aborts the process: a daemon
// thread collecting a communicator at exit would crash the exit. Handing
// the core over takes one short lock and no GIL; the reaper's thread never
// touches Python.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/communicator.h"

namespace aiocomm::binding {

class Reaper {
 public:
  // The process's reaper. Its thread starts with the first adoption.
  static Reaper& instance();

  Reaper() = default;
  Reaper(const Reaper&) = delete;
  Reaper& operator=(const Reaper&) = delete;
  ~Reaper() { stop_and_join(); }

  // Takes `core` and drops it on the reaper's thread (teardown, joins).
  // Any thread, with or without the GIL; never blocks but for a short lock.
  // After stop_and_join(), drops it here instead.
  void adopt(std::shared_ptr<core::Communicator> core);
  // Drops what is left and joins the thread. Idempotent. Any thread but the
  // reaper's; blocks for the joins. Touches no Python (Py_AtExit may call it).
  void stop_and_join() noexcept;

 private:
  void run();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<std::shared_ptr<core::Communicator>> cores_;
  bool stopped_ = false;
  std::thread thread_;
};

}  // namespace aiocomm::binding
