// The queue from native threads to the event loop. Producers never block on
// the consumer and never touch Python: they append under a short lock and
// make the wake-up descriptor readable only when the queue goes from empty
// to non-empty, so a burst of deliveries costs the loop one wake-up.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <unordered_map>
#include <vector>

#include "core/event.h"
#include "platform/poller.h"
#include "platform/wakeup.h"

namespace aiocomm::core {

class Inbox {
 public:
  Inbox() = default;

  // The descriptor the loop watches (loop.add_reader).
  int fd() const noexcept { return wakeup_.fd(); }

  // Any thread. Never blocks beyond the queue lock.
  void push(Event&& event);
  // `wake` false: the caller is the loop thread, which drains next.
  void push_all(std::vector<Event>& events, bool wake = true);

  // Installs the maker of reply bodies the loop reads (see BodyMaker).
  // Before any connection of this inbox exists: read without a lock after.
  void set_body_maker(std::shared_ptr<BodyMaker> maker) noexcept { body_maker_ = std::move(maker); }
  // The loop thread while it reads: the maker, or null.
  BodyMaker* body_maker() const noexcept { return body_maker_.get(); }

  // The loop thread: appends everything queued so far to `out`, in order.
  void take_all(std::vector<Event>& out);

  // The sockets the loop reads itself (see Connection::read_by_loop): the
  // loop watches sockets_fd(), and asks which connections are ready. Any
  // thread registers; a connection unwatches before it closes its socket.
  int sockets_fd() const noexcept { return sockets_.fd(); }
  void watch_socket(int fd, std::uint64_t connection_id);
  void unwatch_socket(int fd) noexcept;
  // Loop thread, never blocks: the ids of the connections with input,
  // perhaps including some without (their reads find nothing). With one
  // socket watched it is that one, without asking the poller: sockets_fd()
  // was readable, and a poller that watches a poller checks again that the
  // socket has input before it reports it again, so nothing is lost and
  // nothing reported for ever (an epoll_wait saved per request at one in
  // flight).
  std::span<platform::PollEvent> ready_sockets(std::span<platform::PollEvent> out);

  // When the loop last took events: a loop that drains is not blocked.
  std::int64_t last_take_nanos() const noexcept { return last_take_.load(std::memory_order_relaxed); }

  std::uint64_t wakeups() const noexcept { return wakeups_.load(std::memory_order_relaxed); }
  std::uint64_t delivered() const noexcept { return delivered_.load(std::memory_order_relaxed); }

 private:
  // Makes the descriptor readable (any thread, after a push to an empty queue).
  void wake() noexcept;

  platform::Wakeup wakeup_;
  std::atomic<bool> notified_{false};  // wakeup_ was written since take_all last read it
  // The sockets in `sockets_` (fd -> connection id); registrations come
  // from any thread.
  std::mutex watched_mutex_;
  std::unordered_map<int, std::uint64_t> watched_;
  platform::Poller sockets_;
  std::shared_ptr<BodyMaker> body_maker_;
  std::mutex mutex_;
  std::vector<Event> queue_;
  std::atomic<std::int64_t> last_take_{0};
  std::atomic<std::uint64_t> wakeups_{0};
  std::atomic<std::uint64_t> delivered_{0};
};

}  // namespace aiocomm::core
