#include "binding/reaper.h"

#include <utility>

namespace aiocomm::binding {

Reaper& Reaper::instance() {
  static Reaper reaper;
  return reaper;
}

void Reaper::adopt(std::shared_ptr<core::Communicator> core) {
  {
    std::lock_guard lock(mutex_);
    if (!stopped_) {
      cores_.push_back(std::move(core));
      if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
      wake_.notify_one();
      return;
    }
  }
  core.reset();  // after stop_and_join: nobody else would
}

void Reaper::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return stopped_ || !cores_.empty(); });
    auto batch = std::exchange(cores_, {});
    if (batch.empty() && stopped_) return;
    lock.unlock();
    batch.clear();  // each core's destructor tears it down and joins its threads
    lock.lock();
  }
}

void Reaper::stop_and_join() noexcept {
  std::thread thread;
  {
    std::lock_guard lock(mutex_);
    stopped_ = true;
    thread = std::move(thread_);
    wake_.notify_one();
  }
  if (thread.joinable() && thread.get_id() != std::this_thread::get_id()) thread.join();
}

}  // namespace aiocomm::binding
