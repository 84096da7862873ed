// One I/O thread: an epoll loop that runs readiness handlers and tasks
// posted from other threads. Handlers run on this thread only.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "platform/poller.h"
#include "platform/wakeup.h"

namespace aiocomm::core {

// Something with a descriptor a Reactor watches.
class IoHandler {
 public:
  virtual ~IoHandler() = default;
  // Reactor thread. `bits` are platform::PollBits.
  virtual void on_ready(std::uint32_t bits) = 0;
};

class Reactor {
 public:
  Reactor();
  ~Reactor();  // stops and joins if still running
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  void start();
  // Runs the tasks already posted, then stops the thread and joins it.
  // Handlers still registered are released. Never from this reactor's thread.
  void stop_and_join();

  // Any thread. Runs `task` on the reactor thread, in posting order. A task
  // posted once the reactor stopped is dropped (and destroyed); returns false.
  bool post(std::function<void()> task);

  // Any thread but a timer callback: runs `task` on the reactor thread and
  // waits for it; runs it right here when called on the reactor thread or
  // once the reactor has stopped (nothing else runs its handlers then).
  void run_sync(const std::function<void()>& task);

  bool on_reactor_thread() const noexcept { return std::this_thread::get_id() == thread_id_; }

  // Reactor thread only. The reactor keeps `handler` alive while watched.
  void watch(int fd, std::uint32_t interest, std::shared_ptr<IoHandler> handler);
  // Any thread: changes the interest of a watched descriptor.
  void rewatch(int fd, std::uint32_t interest, IoHandler* handler);
  // Reactor thread only. The handler is released after the current batch
  // of events, so an event already fetched for it is simply skipped.
  void unwatch(int fd, IoHandler* handler);

 private:
  void run();

  platform::Poller poller_;
  platform::Wakeup wakeup_;
  std::thread thread_;
  std::atomic<std::thread::id> thread_id_{};
  std::atomic<bool> stopping_{false};

  std::mutex tasks_mutex_;
  std::vector<std::function<void()>> tasks_;
  bool accepting_tasks_ = true;

  std::unordered_map<IoHandler*, std::shared_ptr<IoHandler>> watched_;
  std::vector<std::shared_ptr<IoHandler>> released_;
};

}  // namespace aiocomm::core
