// Monotonic time as plain nanoseconds: what the core keeps in atomics
// (last read, last write, ...) and compares across threads.
#pragma once

#include <chrono>
#include <cstdint>

namespace aiocomm::core {

inline std::int64_t now_nanos() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace aiocomm::core
