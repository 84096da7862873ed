// A listening socket of an object adapter. Accepts on its reactor thread and
// hands each new socket to the communicator, which makes it a connection.
#pragma once

#include <cstdint>
#include <functional>

#include "core/reactor.h"
#include "platform/socket.h"
#include "platform/unique_fd.h"

namespace aiocomm::core {

class Acceptor final : public IoHandler {
 public:
  using OnAccept = std::function<void(platform::UniqueFd)>;

  // Binds at once (throws std::system_error); starts accepting once watched.
  Acceptor(const std::string& host, int port, OnAccept on_accept);

  int fd() const noexcept { return fd_.get(); }
  // Reactor thread, after unwatch: closes the listening socket now, so the
  // port refuses new connections at once.
  void close() noexcept { fd_.reset(); }
  const platform::Address& address() const noexcept { return address_; }
  void on_ready(std::uint32_t bits) override;

 private:
  platform::UniqueFd fd_;
  platform::Address address_;
  OnAccept on_accept_;
};

}  // namespace aiocomm::core
