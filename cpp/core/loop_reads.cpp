// The loop reading its own connections. A reply that the reactor reads
// costs two wake-ups before Python sees it: the reactor's, then the loop's
// through the inbox. When the loop polls the socket itself it costs one,
// as in a pure-asyncio protocol, and under load the loop picks up whatever
// arrived while it worked without any wake-up at all. The sockets sit in a
// poller of the inbox's (one descriptor for the loop to watch, owned with
// the inbox), not in the loop's own: a socket is then unwatched and closed
// on native threads whenever it must be, with no help from the loop. The
// reactor stays the reader of last resort: see the members in connection.h.
#include "core/clock.h"
#include "core/connection.h"
#include "core/inbox.h"

namespace aiocomm::core {

void Connection::offer_to_loop() {
  // A TLS connection too, once its handshake is done (it is offered only
  // then): the loop then decrypts the records it reads, as it encrypts
  // those it writes. Left to the reactor, every batch of records cost a
  // reactor wake-up and a hand-over to the loop, and TLS ran at 0.44x of
  // plain TCP's calls/s (16 B, 64 in flight, uvloop) against 0.92x read
  // here. The handshake, certificate checks and a stalled or hostile peer
  // before it never reach the loop; a blocked loop hands the reading back
  // as over TCP; loop_reads=False leaves every TLS read to the I/O threads
  // (the loop still encrypts what it flushes, as it sends tcp bytes itself).
  if (!host_.options().loop_reads) return;
  std::lock_guard lock(mutex_);
  if (!fd_ || state_ != State::active || loop_watched_ || loop_retired_) return;
  try {
    host_.inbox().watch_socket(fd_.get(), id_);
    loop_watched_ = true;
    give_reading_to_loop_locked();
  } catch (const std::exception&) {
    // The kernel refused (out of memory): the reactor keeps reading.
    loop_retired_ = true;
  }
}

void Connection::read_by_loop() {
  loop_read_at_.store(now_nanos(), std::memory_order_relaxed);
  if (!loop_reads_.load(std::memory_order_acquire) && !give_reading_to_loop()) return;
  std::unique_lock read_lock(read_mutex_, std::try_to_lock);
  // The reactor is reading (it had the reading until now) or closing.
  if (!read_lock || read_ended()) return;
  if (paused()) {
    std::lock_guard lock(mutex_);
    retire_loop_reads_locked();
    return;
  }
  reading_on_loop_ = true;
  read_rounds();
  reading_on_loop_ = false;
}

bool Connection::give_reading_to_loop() {
  std::lock_guard lock(mutex_);
  if (loop_retired_ || !loop_watched_ || !fd_ || state_ == State::closed) return false;
  if (!reading_) {
    retire_loop_reads_locked();
    return false;
  }
  give_reading_to_loop_locked();
  return true;
}

void Connection::give_reading_to_loop_locked() {
  loop_reads_ = true;
  sentinel_armed_ = true;
  update_interest_locked();
}

void Connection::retire_loop_reads_locked() {
  loop_retired_ = true;
  loop_reads_ = false;
  if (loop_watched_ && fd_) host_.inbox().unwatch_socket(fd_.get());
  loop_watched_ = false;
  update_interest_locked();
}

bool Connection::on_sentinel() {
  std::int64_t fired_at = now_nanos();
  {
    std::lock_guard lock(mutex_);
    if (!loop_reads_) return false;  // handed back meanwhile: read
    sentinel_armed_ = false;
    update_interest_locked();
  }
  host_.schedule(loop_grace, [weak = weak_from_this(), fired_at] {
    if (auto self = weak.lock()) self->check_loop_alive(fired_at);
  });
  return true;
}

void Connection::check_loop_alive(std::int64_t fired_at) {
  std::lock_guard lock(mutex_);
  if (!loop_reads_ || !fd_ || state_ == State::closed) return;
  // Input the sentinel saw and that is gone was read by the loop, perhaps
  // just before the sentinel looked.
  bool loop_ran = loop_read_at_.load(std::memory_order_relaxed) >= fired_at ||
                  !platform::has_input(fd_.get());
  if (loop_ran) {
    sentinel_armed_ = true;
  } else {
    loop_reads_ = false;
    handed_over_at_ = now_nanos();
    host_.connection_stats().read_handovers.fetch_add(1, std::memory_order_relaxed);
  }
  update_interest_locked();
}

}  // namespace aiocomm::core
