// The communicator's settings, fixed at construction.
#pragma once

#include <chrono>
#include <cstddef>

namespace aiocomm::core {

struct Options {
  int io_threads = 1;
  std::size_t message_size_max = 1 << 20;
  // A connection that receives nothing for this long is closed; one that
  // has sent nothing for half of it sends a heartbeat (validate connection).
  std::chrono::milliseconds idle_timeout{60'000};
  std::chrono::milliseconds connect_timeout{10'000};
  // How long a graceful close waits for the peer to close its side.
  std::chrono::milliseconds close_timeout{10'000};
  // A message that has started to arrive must be complete within this time.
  std::chrono::milliseconds read_timeout{10'000};
  // The loop reads each active connection's socket itself while it is
  // responsive (see Connection::read_by_loop); off, reactors read them all.
  bool loop_reads = false;
};

}  // namespace aiocomm::core
