#include "core/timer.h"

namespace aiocomm::core {

Timer::~Timer() { stop_and_join(); }

void Timer::start() {
  thread_ = std::thread([this] { run(); });
}

void Timer::stop_and_join() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (thread_.joinable()) thread_.join();
  // Callbacks are destroyed outside the lock: they may own things whose
  // destructors take other locks.
  decltype(pending_) dropped;
  {
    std::lock_guard lock(mutex_);
    dropped.swap(pending_);
  }
}

Timer::Id Timer::schedule(Clock::duration delay, std::function<void()> callback) {
  Id id;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return 0;
    id = next_id_++;
    auto when = Clock::now() + delay;
    pending_.emplace(std::make_pair(when, id), std::move(callback));
  }
  changed_.notify_all();
  return id;
}

void Timer::run() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    if (pending_.empty()) {
      changed_.wait(lock);
      continue;
    }
    auto first = pending_.begin();
    auto when = first->first.first;
    if (Clock::now() < when) {
      changed_.wait_until(lock, when);
      continue;
    }
    auto callback = std::move(first->second);
    pending_.erase(first);
    lock.unlock();
    callback();
    callback = nullptr;
    lock.lock();
  }
}

}  // namespace aiocomm::core
