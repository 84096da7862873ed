// The queue from native threads to the event loop. Producers never block on
// the consumer and never touch Python: they append under a short lock and
// make the wake-up descriptor readable only when the queue goes from empty
// to non-empty, so a burst of deliveries costs the loop one wake-up.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

#include "core/event.h"
#include "platform/wakeup.h"

namespace aiocomm::core {

class Inbox {
 public:
  Inbox() = default;

  // The descriptor the loop watches (loop.add_reader).
  int fd() const noexcept { return wakeup_.fd(); }

  // Any thread. Never blocks beyond the queue lock.
  void push(Event&& event);
  void push_all(std::vector<Event>& events);

  // The loop thread: appends everything queued so far to `out`, in order.
  void take_all(std::vector<Event>& out);

  std::uint64_t wakeups() const noexcept { return wakeups_.load(std::memory_order_relaxed); }
  std::uint64_t delivered() const noexcept { return delivered_.load(std::memory_order_relaxed); }

 private:
  platform::Wakeup wakeup_;
  std::mutex mutex_;
  std::vector<Event> queue_;
  std::atomic<std::uint64_t> wakeups_{0};
  std::atomic<std::uint64_t> delivered_{0};
};

}  // namespace aiocomm::core
