// libFuzzer target: arbitrary bytes from a client to a live server.
//
// One core Communicator serves an adapter on 127.0.0.1:0 for the whole run;
// this thread is its event loop (it drains the inbox and answers every
// twoway request with an echo of its params, ends every oneway with
// finish_dispatch). Each input is one client connection over loopback TCP:
//
//   input[0]      chunking: 0 = everything in one write, n = n bytes per write
//   input[1..]    the bytes the client sends; then it half-closes (SHUT_WR)
//
// Whatever the bytes, the server must not crash (ASan/UBSan watch it), must
// send only well-formed messages (validate-connection, replies,
// close-connection), must close the connection within a bounded time (it
// has seen EOF), and must then forget it: the communicator's live
// connection count and in-flight dispatch count return to zero. A
// violation aborts, which libFuzzer reports as a crash with the input.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/communicator.h"
#include "core/inbox.h"
#include "protocol/buffer.h"
#include "protocol/message.h"

namespace {

using namespace aiocomm;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Far above the real time (a few milliseconds), so only a real hang trips it.
constexpr auto close_deadline = 10s;

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "fuzz_server: %s\n", what.c_str());
  std::abort();
}

struct Server {
  std::shared_ptr<core::Inbox> inbox = std::make_shared<core::Inbox>();
  std::unique_ptr<core::Communicator> comm;
  int port = 0;
  std::vector<core::Event> events;

  Server() {
    core::Options options;
    options.message_size_max = 1 << 20;
    comm = std::make_unique<core::Communicator>(options, inbox);
    port = static_cast<int>(comm->create_adapter("127.0.0.1", 0).address.port);
  }

  // The event loop's work: answer what the server received.
  void drain() {
    events.clear();
    inbox->take_all(events);
    for (auto& e : events) {
      if (e.kind == core::EventKind::request) {
        if (e.request_id == 0) {
          comm->finish_dispatch(e.connection_id);
        } else {
          auto reply = std::make_shared<protocol::Bytes>();
          protocol::encode_reply_payload(*reply, e.request_id, protocol::ReplyStatus::ok,
                                         e.encoding, protocol::ByteView(e.body));
          comm->send_reply(e.connection_id, std::move(reply));
        }
      } else if (e.kind == core::EventKind::closed) {
        fail("the communicator reported closed while serving");
      }
    }
  }

  std::uint64_t stat(const char* name) {
    for (const auto& [key, value] : comm->stats()) {
      if (key == name) return value;
    }
    fail(std::string("no stat ") + name);
  }
};

Server& server() {
  static Server s;
  return s;
}

// What the server sent must be a sequence of well-formed messages of the
// kinds a server sends. The last one may be cut short: a connection closed
// for a protocol error is closed at once, queued bytes or not.
void check_server_output(const protocol::Bytes& out) {
  protocol::ByteView in(out);
  bool first = true;
  while (in.size() >= protocol::header_size) {
    protocol::Header h;
    try {
      h = protocol::parse_header(in, 1 << 20);
    } catch (const protocol::ProtocolError& e) {
      fail(std::string("the server sent a bad header: ") + e.what());
    }
    if (first && h.type != protocol::MessageType::validate_connection) {
      fail("the server did not start with validate-connection");
    }
    first = false;
    auto size = static_cast<std::size_t>(h.size);
    if (size > in.size()) return;  // cut short by the close
    auto body = in.subspan(protocol::header_size, size - protocol::header_size);
    switch (h.type) {
      case protocol::MessageType::reply:
        try {
          (void)protocol::decode_reply(body);
        } catch (const protocol::ProtocolError& e) {
          fail(std::string("the server sent a bad reply: ") + e.what());
        }
        break;
      case protocol::MessageType::validate_connection:
      case protocol::MessageType::close_connection:
        if (!body.empty()) fail("a header-only message with a body");
        break;
      default:
        fail("the server sent a message of type " + std::to_string(int(h.type)));
    }
    in = in.subspan(size);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  auto& s = server();
  const std::size_t chunk = data[0] == 0 ? size : data[0];
  const std::uint8_t* next = data + 1;
  const std::uint8_t* end = data + size;

  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(s.port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = -1;
  // Thousands of connections a second leave ports in TIME_WAIT; loopback
  // reuses them (tcp_tw_reuse=2, the default) after a second, so a
  // momentary shortage is waited out rather than reported.
  for (auto give_up = Clock::now() + close_deadline;;) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail(std::string("socket: ") + std::strerror(errno));
    int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    if (rc != 0 && errno == EINTR) {
      // libFuzzer's timer signal interrupted the call, and the connect goes
      // on without it: wait for its outcome.
      pollfd p{fd, POLLOUT, 0};
      int ready;
      while ((ready = ::poll(&p, 1, 10000)) < 0 && errno == EINTR) {
      }
      int outcome = 0;
      socklen_t length = sizeof outcome;
      if (ready > 0 && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &outcome, &length) == 0 &&
          outcome == 0) {
        rc = 0;
      }
      errno = outcome != 0 ? outcome : EINTR;
    }
    if (rc == 0) break;
    int error = errno;
    ::close(fd);
    if (error != EADDRNOTAVAIL || Clock::now() > give_up) {
      fail(std::string("connect: ") + std::strerror(error));
    }
    ::poll(nullptr, 0, 10);
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);

  protocol::Bytes received;
  bool write_open = true;
  bool closed = false;
  auto deadline = Clock::now() + close_deadline;
  if (next == end) {
    ::shutdown(fd, SHUT_WR);
    write_open = false;
  }
  while (!closed) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left <= 0ms) {
      fail("the server neither closed the connection nor stopped sending within " +
           std::to_string(close_deadline.count()) + " s of the client's EOF (" +
           std::to_string(received.size()) + " bytes received)");
    }
    pollfd p[2] = {{fd, static_cast<short>(POLLIN | (write_open ? POLLOUT : 0)), 0},
                   {s.inbox->fd(), POLLIN, 0}};
    ::poll(p, 2, static_cast<int>(left.count()));
    if (p[1].revents & POLLIN) s.drain();
    if (write_open && (p[0].revents & (POLLOUT | POLLERR | POLLHUP))) {
      auto n = ::send(fd, next, std::min<std::size_t>(chunk, end - next), MSG_NOSIGNAL);
      if (n > 0) next += n;
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        write_open = false;  // reset by the server: it closed first; fine
      } else if (n >= 0 && next == end) {
        ::shutdown(fd, SHUT_WR);
        write_open = false;
      }
    }
    if (p[0].revents & (POLLIN | POLLERR | POLLHUP)) {
      std::uint8_t buf[16384];
      for (;;) {
        auto n = ::recv(fd, buf, sizeof buf, 0);
        if (n > 0) {
          received.insert(received.end(), buf, buf + n);
          continue;
        }
        if (n < 0 && errno == EINTR) continue;  // libFuzzer's timer signal
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) closed = true;
        break;
      }
    }
  }
  ::close(fd);
  check_server_output(received);

  // The server forgets the connection: nothing stays live or in flight.
  deadline = Clock::now() + close_deadline;
  for (;;) {
    s.drain();
    if (s.stat("connections") == 0 && s.stat("dispatches_in_flight") == 0) break;
    if (Clock::now() > deadline) {
      fail("the closed connection is still registered (connections=" +
           std::to_string(s.stat("connections")) +
           ", dispatches_in_flight=" + std::to_string(s.stat("dispatches_in_flight")) + ")");
    }
    pollfd p{s.inbox->fd(), POLLIN, 0};
    ::poll(&p, 1, 1);
  }
  return 0;
}
