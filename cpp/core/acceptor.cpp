#include "core/acceptor.h"

#include <system_error>

namespace aiocomm::core {

Acceptor::Acceptor(const std::string& host, int port, OnAccept on_accept)
    : fd_(platform::listen_tcp(host, port, 511)),
      address_(platform::local_address(fd_.get())),
      on_accept_(std::move(on_accept)) {}

void Acceptor::on_ready(std::uint32_t) {
  // Bounded per wake-up so a connection storm cannot starve established
  // connections that share this reactor.
  for (int i = 0; i < 64; ++i) {
    platform::UniqueFd fd;
    try {
      fd = platform::accept_tcp(fd_.get());
    } catch (const std::system_error&) {
      return;  // EMFILE and friends: try again on the next readiness event
    }
    if (!fd) return;
    on_accept_(std::move(fd));
  }
}

}  // namespace aiocomm::core
