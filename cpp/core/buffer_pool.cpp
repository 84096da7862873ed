#include "core/buffer_pool.h"

#include <bit>
#include <utility>

namespace aiocomm::core {

namespace {

// The class whose buffers all have at least `capacity` bytes.
std::size_t class_at_least(std::size_t capacity) {
  return static_cast<std::size_t>(std::bit_width((capacity - 1) / BufferPool::min_pooled));
}

// The class a buffer of `capacity` bytes can serve.
std::size_t class_of(std::size_t capacity) {
  return static_cast<std::size_t>(std::bit_width(capacity / BufferPool::min_pooled)) - 1;
}

// Owns a message's buffer and gives it back to the pool on destruction; the
// message pointer aliases `bytes`, so this is one allocation.
struct PooledMessage {
  PooledMessage(protocol::Bytes buffer, std::shared_ptr<BufferPool> owner)
      : bytes(std::move(buffer)), pool(std::move(owner)) {}
  ~PooledMessage() { pool->give(std::move(bytes)); }
  PooledMessage(const PooledMessage&) = delete;
  PooledMessage& operator=(const PooledMessage&) = delete;

  protocol::Bytes bytes;
  std::shared_ptr<BufferPool> pool;
};

}  // namespace

protocol::Bytes BufferPool::take(std::size_t capacity) {
  protocol::Bytes buffer;
  if (capacity < min_pooled || capacity > max_pooled) {
    buffer.reserve(capacity);
    return buffer;
  }
  auto index = class_at_least(capacity);
  auto& size_class = classes_[index];
  {
    std::lock_guard lock(size_class.mutex);
    if (!size_class.free.empty()) {
      buffer = std::move(size_class.free.back());
      size_class.free.pop_back();
      return buffer;
    }
  }
  // Allocate the class's full size, so the buffer is reusable for any
  // request of its class.
  buffer.reserve(min_pooled << index);
  return buffer;
}

void BufferPool::give(protocol::Bytes&& buffer) noexcept {
  auto capacity = buffer.capacity();
  if (capacity < min_pooled || capacity >= 2 * max_pooled) return;
  auto index = class_of(capacity);
  auto& size_class = classes_[index];
  auto kept_max = retained_per_class / (min_pooled << index);
  buffer.clear();
  std::lock_guard lock(size_class.mutex);
  if (size_class.free.size() >= kept_max) return;  // freed on leaving scope
  if (size_class.free.capacity() == 0) {
    try {
      size_class.free.reserve(kept_max);
    } catch (...) {
      return;
    }
  }
  size_class.free.push_back(std::move(buffer));  // cannot throw: reserved
}

std::shared_ptr<protocol::Bytes> BufferPool::make_message(std::size_t capacity) {
  if (capacity < min_pooled || capacity > max_pooled) {
    auto message = std::make_shared<protocol::Bytes>();
    message->reserve(capacity);
    return message;
  }
  auto owner = std::make_shared<PooledMessage>(take(capacity), shared_from_this());
  return {owner, &owner->bytes};
}

std::size_t BufferPool::retained_buffers() const {
  std::size_t count = 0;
  for (const auto& size_class : classes_) {
    std::lock_guard lock(size_class.mutex);
    count += size_class.free.size();
  }
  return count;
}

std::size_t BufferPool::retained_bytes() const {
  std::size_t bytes = 0;
  for (const auto& size_class : classes_) {
    std::lock_guard lock(size_class.mutex);
    for (const auto& buffer : size_class.free) bytes += buffer.capacity();
  }
  return bytes;
}

}  // namespace aiocomm::core
