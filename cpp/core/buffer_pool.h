// Recycled byte buffers for message-sized allocations (1 KiB to 64 KiB):
// encoded requests and replies, and the bodies the reactor parses for the
// loop.
//
// Why not plain malloc: glibc serves these sizes outside its per-thread
// cache, so each allocation takes an arena lock and first consolidates the
// small chunks freed since the last one, and a body allocated on a reactor
// thread and freed on the loop crosses arenas. On a 4 KiB echo that was a
// fifth of the CPU per call. Buffers under 1 KiB stay with malloc, whose
// thread cache serves them well.
//
// Retention is bounded per size class (retained_per_class bytes), so a burst
// of large messages cannot leave the pool holding more than a few MiB. A
// pooled buffer is allocated at its class's full size, so any buffer of a
// class serves any request of it; the price is that a message in flight may
// hold up to twice its size (a 33 KiB body takes a 64 KiB buffer).
#pragma once

#include <array>
#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

#include "protocol/buffer.h"

namespace aiocomm::core {

class BufferPool : public std::enable_shared_from_this<BufferPool> {
 public:
  static constexpr std::size_t min_pooled = 1024;
  static constexpr std::size_t max_pooled = 64 * 1024;
  static constexpr std::size_t retained_per_class = 256 * 1024;

  // An empty buffer with room for at least `capacity` bytes. Any thread.
  protocol::Bytes take(std::size_t capacity);
  // Hands a buffer back; kept for reuse if its size class has room, freed
  // otherwise. Any thread.
  void give(protocol::Bytes&& buffer) noexcept;

  // An empty message buffer with room for `capacity` bytes, whose storage
  // returns to this pool when its last owner lets go, on whatever thread.
  std::shared_ptr<protocol::Bytes> make_message(std::size_t capacity);

  // Buffers held for reuse, and their bytes (for tests and stats).
  std::size_t retained_buffers() const;
  std::size_t retained_bytes() const;

 private:
  // Classes are powers of two: class k holds capacities in [1 KiB << k, 2 KiB << k).
  static constexpr std::size_t class_count = 7;  // 1 KiB ... 64 KiB
  struct SizeClass {
    mutable std::mutex mutex;
    std::vector<protocol::Bytes> free;
  };

  std::array<SizeClass, class_count> classes_;
};

}  // namespace aiocomm::core
