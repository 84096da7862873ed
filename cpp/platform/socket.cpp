#include "platform/socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>

#include <cerrno>
#include <cstring>
#include <system_error>

namespace aiocomm::platform {
namespace {

[[noreturn]] void fail(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

void tune(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

Address to_address(const sockaddr_storage& ss) {
  char text[INET6_ADDRSTRLEN] = {};
  Address out;
  if (ss.ss_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
    out.port = ntohs(in->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
    out.port = ntohs(in6->sin6_port);
  }
  out.host = text;
  return out;
}

}  // namespace

std::vector<ResolvedAddress> resolve(const std::string& host, int port, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  const bool any = host.empty() || host == "*";
  const char* node = any ? (passive ? "0.0.0.0" : "127.0.0.1") : host.c_str();
  std::string service = std::to_string(port);
  addrinfo* found = nullptr;
  int rc = ::getaddrinfo(node, service.c_str(), &hints, &found);
  if (rc != 0) {
    throw std::system_error(EHOSTUNREACH, std::generic_category(),
                            "cannot resolve '" + host + "': " + ::gai_strerror(rc));
  }
  std::vector<ResolvedAddress> out;
  for (addrinfo* ai = found; ai; ai = ai->ai_next) {
    ResolvedAddress r;
    std::memcpy(&r.storage, ai->ai_addr, ai->ai_addrlen);
    r.length = ai->ai_addrlen;
    out.push_back(r);
  }
  ::freeaddrinfo(found);
  return out;
}

UniqueFd listen_tcp(const std::string& host, int port, int backlog) {
  auto addresses = resolve(host, port, true);
  int last_errno = EADDRNOTAVAIL;
  for (const auto& a : addresses) {
    UniqueFd fd(::socket(a.storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) fail("socket");
    int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&a.storage), a.length) != 0 ||
        ::listen(fd.get(), backlog) != 0) {
      last_errno = errno;
      continue;
    }
    return fd;
  }
  errno = last_errno;
  fail(("cannot listen on " + host + ":" + std::to_string(port)).c_str());
}

UniqueFd accept_tcp(int listen_fd) {
  for (;;) {
    int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      tune(fd);
      return UniqueFd(fd);
    }
    if (errno == EINTR) continue;
    // A connection that died in the backlog is not the listener's failure.
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED || errno == EPROTO) {
      return UniqueFd();
    }
    fail("accept");
  }
}

UniqueFd start_connect(const ResolvedAddress& to, bool& in_progress) {
  UniqueFd fd(::socket(to.storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) fail("socket");
  tune(fd.get());
  in_progress = false;
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&to.storage), to.length) != 0) {
    if (errno != EINPROGRESS) fail("connect");
    in_progress = true;
  }
  return fd;
}

int connect_error(int fd) noexcept {
  int error = 0;
  socklen_t length = sizeof error;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) return errno;
  return error;
}

Address local_address(int fd) {
  sockaddr_storage ss{};
  socklen_t length = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &length) != 0) return {};
  return to_address(ss);
}

Address peer_address(int fd) {
  sockaddr_storage ss{};
  socklen_t length = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &length) != 0) return {};
  return to_address(ss);
}

bool has_input(int fd) noexcept {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

long read_some(int fd, std::span<std::uint8_t> into) noexcept {
  for (;;) {
    long n = ::recv(fd, into.data(), into.size(), 0);
    if (n >= 0 || errno != EINTR) return n;
  }
}

long read_vector(int fd, iovec* parts, int count) noexcept {
  msghdr message{};
  message.msg_iov = parts;
  message.msg_iovlen = static_cast<std::size_t>(count);
  for (;;) {
    long n = ::recvmsg(fd, &message, 0);
    if (n >= 0 || errno != EINTR) return n;
  }
}

long write_vector(int fd, const iovec* parts, int count) noexcept {
  msghdr message{};
  message.msg_iov = const_cast<iovec*>(parts);
  message.msg_iovlen = static_cast<std::size_t>(count);
  for (;;) {
    long n = ::sendmsg(fd, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0 || errno != EINTR) return n;
  }
}

}  // namespace aiocomm::platform
