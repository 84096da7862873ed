// The write path: encoded messages queued under mutex_, written with
// writev by whichever thread finds the socket writable (the caller's, or
// the reactor once the kernel pushes back), in slices under load.
#include <sys/uio.h>

#include <cerrno>
#include <cstring>

#include "core/clock.h"
#include "core/connection.h"
#include "core/inbox.h"

namespace aiocomm::core {
namespace {

constexpr int max_iov = 64;

// Appends the unwritten rest of `message` (from `offset`) to `parts`, as
// its head's rest and its tail's rest; returns the new count.
int add_parts(const OutMessage& message, std::size_t offset, iovec* parts, int count) {
  const std::size_t head = message.head_size();
  if (offset < head) {
    parts[count].iov_base = const_cast<std::uint8_t*>(message.head->data() + offset);
    parts[count].iov_len = head - offset;
    ++count;
    offset = head;
  }
  auto tail = message.tail_bytes();
  if (offset - head < tail.size()) {
    parts[count].iov_base = const_cast<std::uint8_t*>(tail.data() + (offset - head));
    parts[count].iov_len = tail.size() - (offset - head);
    ++count;
  }
  return count;
}

}  // namespace

Connection::SendResult Connection::send(OutMessage message, std::int32_t sent_id) {
  std::vector<Event> sent;
  SendResult result;
  bool failed = false;
  {
    std::unique_lock lock(mutex_);
    if (state_ == State::closed || close_sent_) return SendResult::closed;
    enqueue_locked(Queued{std::move(message), 0, sent_id});
    if (state_ != State::active || want_write_) {
      // Not writable yet, or the reactor is already waiting to write.
      result = SendResult::queued;
    } else {
      bool alone = queue_.size() == 1;
      failed = !flush_locked(lock, sent);
      result = queue_.empty() ? SendResult::written : SendResult::queued;
      if (!failed) {
        if (result == SendResult::written && alone) {
          host_.connection_stats().direct_writes.fetch_add(1, std::memory_order_relaxed);
          // The caller learns "written" from the result; no event is needed.
          sent.clear();
        }
        batch_open_ = false;
        update_interest_locked();
      }
    }
  }
  host_.inbox().push_all(sent);
  if (failed) {
    abort(CloseKind::lost, "connection lost while writing: " + std::string(std::strerror(errno)));
    // Queued: the close reports the failure of what was queued.
    return SendResult::queued;
  }
  return result;
}

std::optional<bool> Connection::send_deferred(OutMessage message, std::int32_t sent_id) {
  std::vector<Event> sent;
  bool started = false;
  {
    std::unique_lock lock(mutex_);
    if (state_ == State::closed || close_sent_) return std::nullopt;
    std::size_t size = message.size();
    enqueue_locked(Queued{std::move(message), 0, sent_id});
    started = !batch_open_;
    batch_open_ = true;
    if (started) {
      slice_count_ = 0;
      slice_size_ = 0;
    }
    slice_size_ += size;
    if (++slice_count_ >= slice_messages || slice_size_ >= slice_bytes) {
      write_slice_locked(lock, sent);
    }
  }
  host_.inbox().push_all(sent);
  return started;
}

void Connection::write_slice_locked(std::unique_lock<std::mutex>& lock, std::vector<Event>& sent) {
  slice_count_ = 0;
  slice_size_ = 0;
  // A failed write is left for the batch's flush(), which reports it.
  if (state_ == State::active && !want_write_) flush_locked(lock, sent);
}

void Connection::flush() {
  std::vector<Event> sent;
  bool failed = false;
  {
    std::unique_lock lock(mutex_);
    batch_open_ = false;
    if (state_ != State::active && state_ != State::closing) return;
    if (want_write_) return;  // the reactor writes when the socket has room
    failed = !flush_locked(lock, sent);
    if (!failed) update_interest_locked();
  }
  host_.inbox().push_all(sent);
  if (failed) abort(CloseKind::lost, "connection lost while writing: " + std::string(std::strerror(errno)));
}

bool Connection::flush_locked(std::unique_lock<std::mutex>& lock, std::vector<Event>& sent) {
  if (!fd_ || (state_ != State::active && state_ != State::closing)) return true;
  // One writer at a time, and it writes without the lock: a writev of a
  // large batch (on loopback it runs the peer's receive path too) would
  // otherwise stall every thread that queues a message or parses a reply.
  // A thread that finds a write under way leaves its messages queued; the
  // writer takes them before it lets go.
  if (writing_) return true;
  writing_ = true;
  const int fd = fd_.get();
  auto& stats = host_.connection_stats();
  int error = 0;
  while (!queue_.empty() || tls_output_pending_.load(std::memory_order_relaxed)) {
    // Only the writer removes from the queue, so these buffers stay put
    // while the lock is released; others may only append.
    iovec parts[max_iov];
    int count = 0;
    // Two parts per message at most (head, borrowed tail); a message whose
    // tail does not fit goes whole in the next round.
    for (auto it = queue_.begin(); it != queue_.end() && count + 2 <= max_iov; ++it) {
      count = add_parts(it->data, it->offset, parts, count);
    }
    lock.unlock();
    stats.write_calls.fetch_add(1, std::memory_order_relaxed);
    long n = transport_write(fd, parts, count);
    if (n < 0) error = errno;
    lock.lock();
    if (n < 0) {
      if (error == EAGAIN || error == EWOULDBLOCK) error = 0;
      break;
    }
    touch_write();
    auto written = static_cast<std::size_t>(n);
    while (written > 0 && !queue_.empty()) {
      auto& front = queue_.front();
      std::size_t left = front.data.size() - front.offset;
      if (written < left) {
        front.offset += written;
        if (front.pressure) pressure_bytes_ -= written;
        written = 0;
        break;
      }
      written -= left;
      if (front.pressure) pressure_bytes_ -= left;
      stats.messages_out.fetch_add(1, std::memory_order_relaxed);
      if (front.sent_id != 0) {
        Event event;
        event.kind = EventKind::sent;
        event.request_id = front.sent_id;
        sent.push_back(std::move(event));
      }
      queue_.pop_front();
    }
    if (!queue_.empty() && queue_.front().offset > 0) break;  // socket full
  }
  writing_ = false;
  write_done_.notify_all();
  errno = error;  // for the caller's message
  return error == 0;
}

void Connection::enqueue_locked(Queued queued) {
  // Our own requests do not count: stopping reading cannot shrink them, it
  // stops the replies that let the peer take them. Counted, a client with
  // more than the high mark of requests queued (64 calls of 1 MiB in
  // flight) stopped reading replies while the server, its replies queued
  // past the mark, stopped reading requests: both waited for ever.
  const auto& head = *queued.data.head;
  auto type = head.size() > 8 ? static_cast<protocol::MessageType>(head[8])
                              : protocol::MessageType::validate_connection;
  queued.pressure = type != protocol::MessageType::request &&
                    type != protocol::MessageType::batch_request;
  if (queued.pressure) pressure_bytes_ += queued.data.size() - queued.offset;
  queue_.push_back(std::move(queued));
}

void Connection::update_interest_locked() {
  if (!fd_ || state_ == State::connecting || state_ == State::closed) return;
  // Back-pressure with hysteresis: stop reading while the peer leaves too
  // much unread or too many of its requests are being dispatched, so one
  // peer cannot make us buffer without bound.
  if (reading_ && (pressure_bytes_ > queue_high_water || dispatches_in_flight_ > dispatch_high_water)) {
    reading_ = false;
    host_.connection_stats().read_pauses.fetch_add(1, std::memory_order_relaxed);
  } else if (!reading_ && pressure_bytes_ < queue_low_water &&
             dispatches_in_flight_ < dispatch_low_water) {
    reading_ = true;
    // What TLS holds decrypted is not the kernel's to report.
    if (tls_) post_tls_read();
  }
  // Data of an open batch is the loop's to flush; the reactor waits for
  // writability only for what a flush could not write.
  // Nor while another thread is writing: its caller settles the interest
  // when the write ends, and a writable socket would wake the reactor in
  // vain until then.
  bool want = (!queue_.empty() || tls_output_pending_.load(std::memory_order_relaxed)) &&
              !batch_open_ && !writing_ &&
              (state_ == State::active || state_ == State::closing);
  bool watch_read = reading_ && (!loop_reads_ || sentinel_armed_);
  if (want == want_write_ && watch_read == read_watched_) return;
  want_write_ = want;
  read_watched_ = watch_read;
  host_.connection_stats().interest_changes.fetch_add(1, std::memory_order_relaxed);
  reactor_.rewatch(fd_.get(), (watch_read ? platform::poll_read : 0u) | (want ? platform::poll_write : 0u),
                   this);
}

void Connection::touch_write() noexcept { last_write_ = now_nanos(); }

}  // namespace aiocomm::core
