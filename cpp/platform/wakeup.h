// A level-triggered wake-up descriptor (eventfd). notify() never blocks: a
// full counter means "already woken", which is all a waiter needs to know.
#pragma once

#include "platform/unique_fd.h"

namespace aiocomm::platform {

class Wakeup {
 public:
  Wakeup();  // throws std::system_error

  int fd() const noexcept { return fd_.get(); }

  // Makes fd() readable. Any thread; non-blocking; async-signal-safe.
  void notify() noexcept;

  // Makes fd() unreadable again. Called by the thread that waits on it.
  void drain() noexcept;

 private:
  UniqueFd fd_;
};

}  // namespace aiocomm::platform
