// The inbox's wake-up descriptor: readable exactly while a push from another
// thread is untaken, never left readable with nothing to take (the loop's
// reader would spin), and never read when nothing wrote it.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "check.h"
#include "core/inbox.h"

namespace {

using aiocomm::core::Event;
using aiocomm::core::Inbox;

bool readable_fd(int fd, int timeout_ms = 0) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) == 1;
}

bool readable(const Inbox& inbox, int timeout_ms = 0) { return readable_fd(inbox.fd(), timeout_ms); }

Event numbered(std::int32_t n) {
  Event e;
  e.request_id = n;
  return e;
}

}  // namespace

TEST(inbox_push_wakes_and_take_clears) {
  Inbox inbox;
  CHECK(!readable(inbox));
  inbox.push(numbered(1));
  CHECK(readable(inbox));
  std::vector<Event> out;
  inbox.take_all(out);
  CHECK_EQ(out.size(), 1u);
  CHECK(!readable(inbox));
}

TEST(inbox_loop_push_leaves_descriptor_alone) {
  // What the loop pushes itself it takes next: no wake-up, nothing to clear.
  Inbox inbox;
  std::vector<Event> events;
  events.push_back(numbered(1));
  inbox.push_all(events, false);
  CHECK(!readable(inbox));
  std::vector<Event> out;
  inbox.take_all(out);
  CHECK_EQ(out.size(), 1u);
  CHECK(!readable(inbox));
  CHECK_EQ(inbox.wakeups(), 0u);
}

TEST(inbox_concurrent_pushes_all_taken_and_descriptor_settles) {
  // A producer thread against a loop that takes whenever woken (and
  // sometimes without a wake-up, as after its own reads): every event
  // arrives, in order, and once all are taken the descriptor is quiet.
  Inbox inbox;
  constexpr int count = 20000;
  std::thread producer([&] {
    for (int i = 0; i < count; ++i) inbox.push(numbered(i));
  });
  std::vector<Event> got;
  int spins = 0;
  while (static_cast<int>(got.size()) < count && spins < 10'000'000) {
    ++spins;
    if (spins % 3 != 0) readable(inbox, 50);  // woken, or a take of its own
    std::vector<Event> batch;
    inbox.take_all(batch);
    for (auto& e : batch) got.push_back(std::move(e));
  }
  producer.join();
  std::vector<Event> rest;
  inbox.take_all(rest);
  for (auto& e : rest) got.push_back(std::move(e));
  REQUIRE(static_cast<int>(got.size()) == count);
  bool ordered = true;
  for (int i = 0; i < count; ++i) ordered = ordered && got[static_cast<std::size_t>(i)].request_id == i;
  CHECK(ordered);
  // At most one stale wake-up may remain (a write that landed after the
  // last take's check); the next take clears it, and nothing stays readable.
  if (readable(inbox)) {
    std::vector<Event> none;
    inbox.take_all(none);
    CHECK(none.empty());
  }
  CHECK(!readable(inbox));
}

TEST(inbox_ready_sockets_names_the_ready_connections) {
  int one[2];
  int two[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, one) == 0);
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, two) == 0);
  Inbox inbox;
  std::array<aiocomm::platform::PollEvent, 8> events{};
  auto id_of = [](const aiocomm::platform::PollEvent& e) {
    return static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(e.token));
  };
  CHECK(inbox.ready_sockets(events).empty());
  // One socket: named without asking the poller, once its poller is readable.
  inbox.watch_socket(one[0], 7);
  CHECK(!readable_fd(inbox.sockets_fd()));
  CHECK(::write(one[1], "x", 1) == 1);
  CHECK(readable_fd(inbox.sockets_fd()));
  auto ready = inbox.ready_sockets(events);
  REQUIRE(ready.size() == 1);
  CHECK_EQ(id_of(ready[0]), 7u);
  char byte;
  CHECK(::read(one[0], &byte, 1) == 1);
  // Read: the outer poller checks again and no longer reports it.
  CHECK(!readable_fd(inbox.sockets_fd()));
  // Two: the poller says which.
  inbox.watch_socket(two[0], 9);
  CHECK(::write(two[1], "y", 1) == 1);
  ready = inbox.ready_sockets(events);
  REQUIRE(ready.size() == 1);
  CHECK_EQ(id_of(ready[0]), 9u);
  CHECK(::read(two[0], &byte, 1) == 1);
  inbox.unwatch_socket(two[0]);
  inbox.unwatch_socket(one[0]);
  CHECK(inbox.ready_sockets(events).empty());
  for (int fd : {one[0], one[1], two[0], two[1]}) ::close(fd);
}
