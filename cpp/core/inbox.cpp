#include "core/inbox.h"

#include "core/clock.h"

namespace aiocomm::core {

void Inbox::push(Event&& event) {
  bool was_empty;
  {
    std::lock_guard lock(mutex_);
    was_empty = queue_.empty();
    queue_.push_back(std::move(event));
  }
  if (was_empty) wake();
}

void Inbox::wake() noexcept {
  wakeups_.fetch_add(1, std::memory_order_relaxed);
  wakeup_.notify();
  // After the write: take_all reads the descriptor only when this is set,
  // and whichever take sees it reads what this write (and any before it)
  // made readable. A take that runs between the two skips the read; the
  // descriptor, still readable, wakes the loop once more and that take reads it.
  notified_.store(true, std::memory_order_release);
}

void Inbox::push_all(std::vector<Event>& events, bool wake) {
  if (events.empty()) return;
  bool was_empty;
  {
    std::lock_guard lock(mutex_);
    was_empty = queue_.empty();
    for (auto& e : events) queue_.push_back(std::move(e));
  }
  events.clear();
  if (was_empty && wake) this->wake();
}

void Inbox::watch_socket(int fd, std::uint64_t connection_id) {
  // The token is the id, not the connection: an event may outlive it.
  sockets_.add(fd, platform::poll_read, reinterpret_cast<void*>(static_cast<std::uintptr_t>(connection_id)));
  std::lock_guard lock(watched_mutex_);
  watched_.insert_or_assign(fd, connection_id);
}

void Inbox::unwatch_socket(int fd) noexcept {
  {
    std::lock_guard lock(watched_mutex_);
    watched_.erase(fd);
  }
  sockets_.remove(fd);
}

std::span<platform::PollEvent> Inbox::ready_sockets(std::span<platform::PollEvent> out) {
  if (out.empty()) return out;
  {
    std::lock_guard lock(watched_mutex_);
    if (watched_.empty()) return out.first(0);
    if (watched_.size() == 1) {
      auto id = watched_.begin()->second;
      out[0] = platform::PollEvent{reinterpret_cast<void*>(static_cast<std::uintptr_t>(id)),
                                   platform::poll_read};
      return out.first(1);
    }
  }
  return sockets_.wait(out, 0);
}

void Inbox::take_all(std::vector<Event>& out) {
  // Drain the descriptor before taking the queue: a push that lands after
  // the swap finds the queue empty and wakes us again, so nothing is missed.
  // Only when a push woke us: events the loop pushed itself (it reads its own
  // sockets) left it unwritten, and a read would be a syscall per request
  // that fails with EAGAIN.
  if (notified_.exchange(false, std::memory_order_acq_rel)) wakeup_.drain();
  last_take_.store(now_nanos(), std::memory_order_relaxed);
  std::lock_guard lock(mutex_);
  delivered_.fetch_add(queue_.size(), std::memory_order_relaxed);
  if (out.empty()) {
    out.swap(queue_);  // the common case: no copy, and the buffers are reused
  } else {
    for (auto& e : queue_) out.push_back(std::move(e));
    queue_.clear();
  }
}

}  // namespace aiocomm::core
