// The inbox's wake-up descriptor: readable exactly while a push from another
// thread is untaken, never left readable with nothing to take (the loop's
// reader would spin), and never read when nothing wrote it.
#include <poll.h>

#include <atomic>
#include <thread>
#include <vector>

#include "check.h"
#include "core/inbox.h"

namespace {

using aiocomm::core::Event;
using aiocomm::core::Inbox;

bool readable(const Inbox& inbox, int timeout_ms = 0) {
  pollfd p{inbox.fd(), POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) == 1;
}

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
