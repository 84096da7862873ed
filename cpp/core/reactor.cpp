#include "core/reactor.h"

#include <array>
#include <future>

namespace aiocomm::core {

Reactor::Reactor() { poller_.add(wakeup_.fd(), platform::poll_read, nullptr); }

Reactor::~Reactor() { stop_and_join(); }

void Reactor::start() {
  thread_ = std::thread([this] { run(); });
}

void Reactor::stop_and_join() {
  if (!thread_.joinable()) return;
  stopping_.store(true);
  wakeup_.notify();
  thread_.join();
}

bool Reactor::post(std::function<void()> task) {
  bool was_empty;
  {
    std::lock_guard lock(tasks_mutex_);
    if (!accepting_tasks_) return false;
    was_empty = tasks_.empty();
    tasks_.push_back(std::move(task));
  }
  if (was_empty) wakeup_.notify();
  return true;
}

void Reactor::run_sync(const std::function<void()>& task) {
  if (on_reactor_thread()) {
    task();
    return;
  }
  auto done = std::make_shared<std::promise<void>>();
  auto finished = done->get_future();
  if (!post([&task, done] {
        task();
        done->set_value();
      })) {
    task();
    return;
  }
  finished.wait();
}

void Reactor::watch(int fd, std::uint32_t interest, std::shared_ptr<IoHandler> handler) {
  IoHandler* key = handler.get();
  poller_.add(fd, interest, key);
  watched_[key] = std::move(handler);
}

void Reactor::rewatch(int fd, std::uint32_t interest, IoHandler* handler) {
  poller_.modify(fd, interest, handler);
}

void Reactor::unwatch(int fd, IoHandler* handler) {
  poller_.remove(fd);
  auto it = watched_.find(handler);
  if (it != watched_.end()) {
    released_.push_back(std::move(it->second));
    watched_.erase(it);
  }
}

void Reactor::run() {
  thread_id_.store(std::this_thread::get_id());
  std::array<platform::PollEvent, 128> events;
  std::vector<std::function<void()>> batch;
  for (;;) {
    auto ready = poller_.wait(events, -1);
    for (const auto& ev : ready) {
      if (ev.token == nullptr) {
        wakeup_.drain();
        continue;
      }
      auto* handler = static_cast<IoHandler*>(ev.token);
      if (watched_.contains(handler)) handler->on_ready(ev.bits);
    }
    {
      std::lock_guard lock(tasks_mutex_);
      batch.swap(tasks_);
    }
    for (auto& task : batch) task();
    batch.clear();
    released_.clear();
    if (stopping_.load()) break;
  }
  // Tasks posted while stopping still run (they may carry failures to
  // report); later ones are refused by post().
  {
    std::lock_guard lock(tasks_mutex_);
    accepting_tasks_ = false;
    batch.swap(tasks_);
  }
  for (auto& task : batch) task();
  batch.clear();
  watched_.clear();
  released_.clear();
}

}  // namespace aiocomm::core
