// The readiness poller behind every I/O thread. This is the one place that
// knows it is epoll; a kqueue twin would implement the same contract.
#pragma once

#include <cstdint>
#include <span>

#include "platform/unique_fd.h"

namespace aiocomm::platform {

// Interest and readiness bits, independent of the OS's own constants.
enum PollBits : std::uint32_t {
  poll_read = 1u << 0,
  poll_write = 1u << 1,
  poll_error = 1u << 2,  // error or hang-up: the owner should read to learn which
};

struct PollEvent {
  void* token;  // what the registrant passed to add()
  std::uint32_t bits;
};

class Poller {
 public:
  Poller();  // throws std::system_error when the kernel refuses

  // Registration calls are thread-safe (the kernel serialises them); the
  // caller guarantees `token` stays valid until remove() and the current
  // wait() batch are done.
  void add(int fd, std::uint32_t interest, void* token);
  void modify(int fd, std::uint32_t interest, void* token);
  void remove(int fd) noexcept;

  // Blocks up to timeout_ms (-1: forever). Returns the filled prefix of `out`.
  // Only its one owner calls it: an I/O thread, or the loop for the inbox's.
  std::span<PollEvent> wait(std::span<PollEvent> out, int timeout_ms);

  // Readable while a registered descriptor is ready: a poller can itself
  // be watched by another poller (an event loop's).
  int fd() const noexcept { return epoll_fd_.get(); }

 private:
  UniqueFd epoll_fd_;
};

}  // namespace aiocomm::platform
