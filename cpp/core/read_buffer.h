// The bytes a connection has read but not yet parsed. Memory is allocated
// uninitialized, so an idle connection's buffer costs only the pages that
// were written, and it is released once empty and idle.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>

#include "protocol/buffer.h"

namespace aiocomm::core {

class ReadBuffer {
 public:
  // Room after the unparsed bytes, at least `at_least` long: compacts to the
  // front or grows (doubling) as needed.
  std::span<std::uint8_t> free_space(std::size_t at_least) {
    if (capacity_ - end_ < at_least) {
      if (begin_ > 0 && capacity_ - size() >= at_least) {
        compact();
      } else {
        reallocate(std::max(capacity_ * 2, size() + at_least));
      }
    }
    return {storage_.get() + end_, capacity_ - end_};
  }
  void commit(std::size_t n) noexcept { end_ += n; }

  protocol::ByteView unparsed() const noexcept { return {storage_.get() + begin_, size()}; }
  void consume(std::size_t n) noexcept {
    begin_ += n;
    if (begin_ == end_) begin_ = end_ = 0;
  }
  std::size_t size() const noexcept { return end_ - begin_; }
  std::size_t capacity() const noexcept { return capacity_; }

  // Makes sure a whole message of `message_size` bytes, starting with the
  // unparsed bytes, fits without moving again.
  void reserve_message(std::size_t message_size) {
    if (capacity_ < message_size) {
      reallocate(message_size);
    } else if (capacity_ - begin_ < message_size) {
      compact();
    }
  }

  // Frees the memory when nothing is left to parse.
  void release_if_empty() noexcept {
    if (size() != 0) return;
    storage_.reset();
    capacity_ = begin_ = end_ = 0;
  }

 private:
  void compact() noexcept {
    std::memmove(storage_.get(), storage_.get() + begin_, size());
    end_ = size();
    begin_ = 0;
  }
  void reallocate(std::size_t capacity) {
    auto bigger = std::make_unique_for_overwrite<std::uint8_t[]>(capacity);
    if (size() > 0) std::memcpy(bigger.get(), storage_.get() + begin_, size());
    end_ = size();
    begin_ = 0;
    storage_ = std::move(bigger);
    capacity_ = capacity;
  }

  std::unique_ptr<std::uint8_t[]> storage_;
  std::size_t capacity_ = 0;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

}  // namespace aiocomm::core
