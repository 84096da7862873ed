// A message to write: its encoded bytes, and for a large request the
// caller's payload after them, held by reference instead of copied in.
#pragma once

#include <cstddef>
#include <memory>

#include "protocol/buffer.h"

namespace aiocomm::core {

// Bytes someone else owns (the binding's: an immutable Python `bytes`),
// lent to the core until the owner is let go. The bytes never change while
// any reference lives. Destroyed on any thread, possibly under a
// connection's mutex: an owner that cannot release its storage there (no
// GIL) defers the release, and its destructor never blocks nor waits for
// another thread.
class PayloadOwner {
 public:
  virtual ~PayloadOwner() = default;
  // Any thread, without locks: the lent bytes, the same on every call.
  virtual protocol::ByteView bytes() const noexcept = 0;
};

// What the write queue, a retry entry and a reply event hold of a request.
// `head` is the encoded message whose size field counts `tail` too; a
// message without a tail is the whole of `head` (every reply, every small
// request). Cheap to copy: two shared pointers.
struct OutMessage {
  OutMessage() = default;
  // Implicit: a plain encoded message is the common case.
  OutMessage(std::shared_ptr<const protocol::Bytes> encoded) : head(std::move(encoded)) {}
  OutMessage(std::shared_ptr<protocol::Bytes> encoded) : head(std::move(encoded)) {}
  OutMessage(std::shared_ptr<const protocol::Bytes> encoded, std::shared_ptr<const PayloadOwner> lent)
      : head(std::move(encoded)), tail(std::move(lent)) {}

  std::shared_ptr<const protocol::Bytes> head;
  std::shared_ptr<const PayloadOwner> tail;  // null: no borrowed part

  explicit operator bool() const noexcept { return head != nullptr; }
  std::size_t head_size() const noexcept { return head->size(); }
  protocol::ByteView tail_bytes() const noexcept {
    return tail ? tail->bytes() : protocol::ByteView{};
  }
  std::size_t size() const noexcept { return head->size() + tail_bytes().size(); }
};

}  // namespace aiocomm::core
