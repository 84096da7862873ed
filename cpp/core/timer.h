// The communicator's timer thread: one-shot callbacks at deadlines.
// Callbacks run on the timer thread with no timer lock held; they must be
// short and must not block (they post work to reactors or the inbox).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

namespace aiocomm::core {

class Timer {
 public:
  using Clock = std::chrono::steady_clock;
  using Id = std::uint64_t;

  Timer() = default;
  ~Timer();  // stops and joins
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  void start();
  // Drops every pending callback, stops the thread and joins it. Never from
  // a timer callback.
  void stop_and_join();

  // Any thread. Returns the callback's id; 0 when the timer is stopped.
  Id schedule(Clock::duration delay, std::function<void()> callback);

 private:
  void run();

  std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::pair<Clock::time_point, Id>, std::function<void()>> pending_;
  Id next_id_ = 1;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace aiocomm::core
