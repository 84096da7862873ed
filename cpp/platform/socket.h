// Non-blocking TCP sockets. Every descriptor made here is non-blocking,
// close-on-exec and has Nagle off (RPC messages are small and latency-bound).
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "platform/unique_fd.h"

namespace aiocomm::platform {

struct Address {
  std::string host;  // numeric form
  int port = 0;
};

struct ResolvedAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
};

// Resolves host:port to TCP addresses (getaddrinfo; may block on DNS, so only
// I/O threads or the binding with the GIL released call it). Throws
// std::system_error on failure. "*" and "" mean every IPv4 interface.
std::vector<ResolvedAddress> resolve(const std::string& host, int port, bool passive);

// Binds and listens on host:port (port 0: ephemeral). Throws std::system_error.
UniqueFd listen_tcp(const std::string& host, int port, int backlog);

// Accepts one pending connection; an invalid fd when none is pending.
// Throws std::system_error on errors other than "nothing to accept".
UniqueFd accept_tcp(int listen_fd);

// Starts a non-blocking connect. `in_progress` tells whether completion must
// be awaited (writability, then connect_error()). Throws std::system_error.
UniqueFd start_connect(const ResolvedAddress& to, bool& in_progress);

// The pending error of a socket (0 when the connect succeeded).
int connect_error(int fd) noexcept;

// Whether bytes (or an end of stream) wait to be read, without reading them.
bool has_input(int fd) noexcept;

Address local_address(int fd);
Address peer_address(int fd);

// Thin wrappers that retry on EINTR and never raise SIGPIPE. They return the
// byte count, or -1 with errno set (EAGAIN when the socket is not ready).
long read_some(int fd, std::span<std::uint8_t> into) noexcept;
long read_vector(int fd, iovec* parts, int count) noexcept;  // fills parts in order
long write_vector(int fd, const iovec* parts, int count) noexcept;

}  // namespace aiocomm::platform
