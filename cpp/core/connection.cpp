#include "core/connection.h"

#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

#include "core/clock.h"
#include "core/inbox.h"

namespace aiocomm::core {
namespace {

using protocol::MessageType;

std::int64_t to_nanos(std::chrono::milliseconds d) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
}

const std::shared_ptr<const protocol::Bytes>& validate_message() {
  static const auto message =
      std::make_shared<const protocol::Bytes>(protocol::validate_connection_message());
  return message;
}

const std::shared_ptr<const protocol::Bytes>& close_message() {
  static const auto message =
      std::make_shared<const protocol::Bytes>(protocol::close_connection_message());
  return message;
}

constexpr std::size_t read_chunk = 64 * 1024;
constexpr int max_iov = 64;

}  // namespace

Connection::Connection(ConnectionHost& host, Reactor& reactor, std::uint64_t id, Role role,
                       std::uint32_t adapter_id, std::shared_ptr<const Target> target)
    : host_(host),
      reactor_(reactor),
      id_(id),
      role_(role),
      adapter_id_(adapter_id),
      target_(std::move(target)) {
  auto now = now_nanos();
  last_read_ = now;
  last_write_ = now;
  connect_started_ = now;
}

Connection::~Connection() = default;

Connection::State Connection::state() { return state_.load(std::memory_order_acquire); }

bool Connection::usable() {
  std::lock_guard lock(mutex_);
  return state_ != State::closed && state_ != State::closing && !close_requested_;
}

bool Connection::dispatching() {
  std::lock_guard lock(mutex_);
  return dispatches_in_flight_ > 0;
}

bool Connection::was_validated() {
  std::lock_guard lock(mutex_);
  return validated_;
}

std::pair<CloseKind, std::string> Connection::close_cause() {
  std::lock_guard lock(mutex_);
  return {close_kind_, close_reason_};
}

platform::Address Connection::local_address() {
  std::lock_guard lock(mutex_);
  return local_;
}

platform::Address Connection::peer_address() {
  std::lock_guard lock(mutex_);
  return peer_;
}

void Connection::start_server(platform::UniqueFd fd) {
  {
    std::lock_guard lock(mutex_);
    fd_ = std::move(fd);
    local_ = platform::local_address(fd_.get());
    peer_ = platform::peer_address(fd_.get());
    // A server speaks first: validate-connection, then requests may flow.
    state_ = State::active;
    enqueue_locked(Queued{validate_message(), 0, 0});
    want_write_ = true;
    reactor_.watch(fd_.get(), platform::poll_read | platform::poll_write, shared_from_this());
  }
  offer_to_loop();
}

void Connection::begin_connect() {
  reactor_.post([self = shared_from_this()] { self->start_client(); });
}

void Connection::start_client() {
  connect_started_ = now_nanos();
  try_next_endpoint();
}

void Connection::try_next_endpoint() {
  for (;;) {
    if (address_index_ >= addresses_.size()) {
      if (endpoint_index_ >= target_->endpoints.size()) break;
      trying_endpoint_ = endpoint_index_;
      const auto& ep = target_->endpoints[endpoint_index_++];
      try {
        addresses_ = platform::resolve(ep.host, ep.port, false);
      } catch (const std::system_error& e) {
        last_connect_error_ = e.what();
        addresses_.clear();
      }
      address_index_ = 0;
      continue;
    }
    const auto& address = addresses_[address_index_++];
    try {
      bool in_progress = false;
      auto fd = platform::start_connect(address, in_progress);
      std::lock_guard lock(mutex_);
      if (state_ == State::closed) return;
      fd_ = std::move(fd);
      // Even a connect that completed at once (loopback can) is finished by
      // the writability event, so both paths go through on_ready().
      reactor_.watch(fd_.get(), platform::poll_write, shared_from_this());
      return;
    } catch (const std::system_error& e) {
      last_connect_error_ = e.what();
    }
  }
  close_now(CloseKind::refused,
            "connection refused (" + target_->key + "): " + last_connect_error_);
}

void Connection::on_connected() {
  {
    std::lock_guard lock(mutex_);
    local_ = platform::local_address(fd_.get());
    peer_ = platform::peer_address(fd_.get());
    // A client sends nothing until the server's validate-connection arrives.
    state_ = State::validating;
    want_write_ = false;
    read_watched_ = true;
    reactor_.rewatch(fd_.get(), platform::poll_read, this);
  }
  host_.on_client_connected(shared_from_this(), target_->endpoints[trying_endpoint_]);
}

void Connection::on_ready(std::uint32_t bits) {
  State current = state();
  if (current == State::closed) return;
  if (current == State::connecting) {
    int error = platform::connect_error(fd_.get());
    if (error != 0) {
      last_connect_error_ = std::strerror(error);
      {
        std::lock_guard lock(mutex_);
        reactor_.unwatch(fd_.get(), this);
        fd_.reset();
      }
      // unwatch() released our registration; keep ourselves alive while
      // trying the next address.
      auto self = shared_from_this();
      try_next_endpoint();
      return;
    }
    if (bits & (platform::poll_write | platform::poll_error)) on_connected();
    return;
  }
  if ((bits & platform::poll_error) && paused()) {
    // A paused connection is not read, so a hang-up would be reported again
    // and again: the peer is gone, and so is the connection.
    close_now(CloseKind::lost, "connection lost while paused for back-pressure");
    return;
  }
  // While the loop reads, readability only tells the sentinel to check on it.
  if ((bits & platform::poll_read) && !(bits & platform::poll_error) &&
      loop_reads_.load(std::memory_order_acquire) && on_sentinel()) {
    bits &= ~platform::poll_read;
  }
  if (bits & (platform::poll_read | platform::poll_error)) {
    on_readable();
    if (state() == State::closed) return;
  }
  if (bits & platform::poll_write) {
    std::vector<Event> sent;
    bool ok;
    {
      std::unique_lock lock(mutex_);
      ok = flush_locked(lock, sent);
      update_interest_locked();
    }
    host_.inbox().push_all(sent);
    if (!ok) close_now(CloseKind::lost, "connection lost while writing: " + std::string(std::strerror(errno)));
  }
}

void Connection::on_readable() {
  std::lock_guard read_lock(read_mutex_);
  read_rounds();
  // Read for a stalled loop: give the reading back once it drains again.
  // Without loop reads this is never so: no lock taken per read for it.
  if (host_.options().loop_reads && !loop_reads_.load(std::memory_order_acquire) &&
      !read_ended()) {
    std::lock_guard lock(mutex_);
    if (loop_watched_ && !loop_retired_ && reading_ && state_ != State::closed &&
        host_.inbox().last_take_nanos() > handed_over_at_) {
      give_reading_to_loop_locked();
    }
  }
}

void Connection::read_rounds() {
  if (read_ended_) return;
  auto& stats = host_.connection_stats();
  // Read what the socket has, a bounded amount per wake-up so one busy
  // connection cannot starve the others on this thread.
  for (int round = 0; round < 16; ++round) {
    if (paused()) break;  // back-pressure: the peer is not reading our replies
    // Room for a whole chunk each time: with 4 KiB messages streaming in,
    // a quarter chunk took three times the reads (173 against 61 per 1000
    // replies). Untouched pages of the buffer cost no memory.
    auto space = read_buffer_.free_space(read_chunk);
    stats.read_calls.fetch_add(1, std::memory_order_relaxed);
    if (reading_on_loop_) stats.loop_read_calls.fetch_add(1, std::memory_order_relaxed);
    long n = platform::read_some(fd_.get(), space);
    if (n > 0) {
      read_buffer_.commit(static_cast<std::size_t>(n));
      last_read_ = now_nanos();
      if (!parse_messages()) return;
      // A short read emptied the socket: the poller is level-triggered and
      // reports what arrives next, so asking again would only get EAGAIN.
      if (static_cast<std::size_t>(n) < space.size()) break;
      continue;
    }
    if (n == 0) {
      bool graceful;
      {
        std::lock_guard lock(mutex_);
        graceful = close_sent_;
      }
      // After our close-connection, the peer closing its side is the
      // expected end of a graceful close.
      end_read(graceful ? CloseKind::local : CloseKind::lost,
                graceful ? "connection closed" : "connection lost: the peer closed the socket");
      return;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    end_read(CloseKind::lost, "connection lost: " + std::string(std::strerror(errno)));
    return;
  }
  // A buffer that grew for one large message does not stay large.
  if (read_buffer_.capacity() > 4 * read_chunk) read_buffer_.release_if_empty();
  read_buffer_held_ = read_buffer_.capacity() > 0;
}

bool Connection::parse_messages() {
  const auto size_max = host_.options().message_size_max;
  while (read_buffer_.size() >= protocol::header_size) {
    auto available = read_buffer_.unparsed();
    protocol::Header header;
    try {
      header = protocol::parse_header(available, size_max);
    } catch (const protocol::ProtocolError& e) {
      host_.connection_stats().protocol_errors.fetch_add(1, std::memory_order_relaxed);
      end_read(CloseKind::protocol_error, std::string("ProtocolError: ") + e.what());
      return false;
    }
    auto size = static_cast<std::size_t>(header.size);
    if (available.size() < size) {
      read_buffer_.reserve_message(size);  // bounded by message_size_max
      if (partial_since_.load() == 0) partial_since_ = now_nanos();
      deliver_parsed();
      return true;
    }
    partial_since_ = 0;
    host_.connection_stats().messages_in.fetch_add(1, std::memory_order_relaxed);
    try {
      handle_message(header.type, available.subspan(protocol::header_size, size - protocol::header_size));
    } catch (const protocol::ProtocolError& e) {
      host_.connection_stats().protocol_errors.fetch_add(1, std::memory_order_relaxed);
      end_read(CloseKind::protocol_error, std::string("ProtocolError: ") + e.what());
      return false;
    } catch (const std::exception& e) {
      // Whatever a message provokes (bad_alloc included) ends this
      // connection, never the reactor thread and with it the process.
      host_.connection_stats().protocol_errors.fetch_add(1, std::memory_order_relaxed);
      end_read(CloseKind::protocol_error,
                std::string("ProtocolError: the message could not be handled: ") + e.what());
      return false;
    }
    read_buffer_.consume(size);
    if (read_ended()) {
      deliver_parsed();
      return false;
    }
  }
  if (read_buffer_.size() > 0) {
    if (partial_since_.load() == 0) partial_since_ = now_nanos();
  } else {
    partial_since_ = 0;
  }
  deliver_parsed();
  return true;
}

void Connection::handle_message(MessageType type, protocol::ByteView body) {
  switch (type) {
    case MessageType::validate_connection: {
      std::vector<Event> sent;
      bool ok = true;
      {
        std::unique_lock lock(mutex_);
        if (state_ != State::validating) return;  // a heartbeat: receiving it was the point
        state_ = State::active;
        validated_ = true;
        ok = flush_locked(lock, sent);
        update_interest_locked();
      }
      host_.inbox().push_all(sent);
      if (!ok) {
        end_read(CloseKind::lost, "connection lost while writing");
        return;
      }
      offer_to_loop();
      return;
    }
    case MessageType::close_connection:
      end_read(CloseKind::by_peer, "connection closed by the peer");
      return;
    case MessageType::reply:
      handle_reply(body);
      return;
    case MessageType::request: {
      std::vector<protocol::Request> one;
      one.push_back(protocol::decode_request(body));
      handle_requests(std::move(one));
      return;
    }
    case MessageType::batch_request:
      handle_requests(protocol::decode_batch_request(body));
      return;
  }
}

void Connection::handle_reply(protocol::ByteView body) {
  auto reply = protocol::decode_reply(body);
  auto outgoing = host_.outgoing().take(reply.request_id);
  if (!outgoing) return;  // cancelled or timed out: the caller has moved on
  Event event;
  event.kind = EventKind::reply;
  event.request_id = reply.request_id;
  event.code = reply.status;
  event.connection_id = id_;
  event.encoding = reply.encoding;
  event.body = host_.buffers().take(reply.payload.size());
  event.body.assign(reply.payload.begin(), reply.payload.end());
  event.identity = std::move(reply.identity);
  event.facet = std::move(reply.facet);
  event.operation = std::move(reply.operation);
  event.text = std::move(reply.message);
  event.request = std::move(outgoing->message);
  parsed_.push_back(std::move(event));
}

void Connection::handle_requests(std::vector<protocol::Request> requests) {
  if (role_ == Role::client) {
    // No adapter serves this connection: answer "object does not exist",
    // as Ice does for a connection without an adapter.
    for (const auto& request : requests) {
      if (request.request_id == 0) continue;
      auto reply = std::make_shared<protocol::Bytes>();
      protocol::encode_reply_not_exist(*reply, request.request_id,
                                       protocol::ReplyStatus::object_not_exist, request.identity,
                                       request.facet, request.operation);
      send(std::move(reply));
    }
    return;
  }
  {
    std::lock_guard lock(mutex_);
    // Once a graceful close has begun, new requests are not dispatched; the
    // client learns it from close-connection and may retry them elsewhere.
    if (close_requested_ || state_ != State::active) return;
    dispatches_in_flight_ += static_cast<int>(requests.size());
    update_interest_locked();
  }
  for (auto& request : requests) {
    host_.dispatch_started();
    Event event;
    event.kind = EventKind::request;
    event.request_id = request.request_id;
    event.connection_id = id_;
    event.adapter_id = adapter_id_;
    event.identity = std::move(request.identity);
    event.facet = std::move(request.facet);
    event.operation = std::move(request.operation);
    event.mode = request.mode;
    event.context = std::move(request.context);
    event.encoding = request.encoding;
    event.body = host_.buffers().take(request.params.size());
    event.body.assign(request.params.begin(), request.params.end());
    parsed_.push_back(std::move(event));
  }
}

void Connection::deliver_parsed() { host_.inbox().push_all(parsed_, !reading_on_loop_); }

void Connection::end_read(CloseKind kind, const std::string& reason) {
  if (!reading_on_loop_) {
    close_now(kind, reason);
    return;
  }
  read_ended_ = true;
  deliver_parsed();
  abort(kind, reason);
}

bool Connection::read_ended() { return read_ended_ || state() == State::closed; }

Connection::SendResult Connection::send(std::shared_ptr<const protocol::Bytes> message,
                                        std::int32_t sent_id) {
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

std::optional<bool> Connection::send_deferred(std::shared_ptr<const protocol::Bytes> message,
                                              std::int32_t sent_id) {
  std::vector<Event> sent;
  bool started = false;
  {
    std::unique_lock lock(mutex_);
    if (state_ == State::closed || close_sent_) return std::nullopt;
    std::size_t size = message->size();
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
  while (!queue_.empty()) {
    // Only the writer removes from the queue, so these buffers stay put
    // while the lock is released; others may only append.
    iovec parts[max_iov];
    int count = 0;
    for (auto it = queue_.begin(); it != queue_.end() && count < max_iov; ++it, ++count) {
      parts[count].iov_base = const_cast<std::uint8_t*>(it->data->data() + it->offset);
      parts[count].iov_len = it->data->size() - it->offset;
    }
    lock.unlock();
    stats.write_calls.fetch_add(1, std::memory_order_relaxed);
    long n = platform::write_vector(fd, parts, count);
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
      std::size_t left = front.data->size() - front.offset;
      if (written < left) {
        front.offset += written;
        queued_bytes_ -= written;
        written = 0;
        break;
      }
      written -= left;
      queued_bytes_ -= left;
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
  queued_bytes_ += queued.data->size() - queued.offset;
  queue_.push_back(std::move(queued));
}

void Connection::update_interest_locked() {
  if (!fd_ || state_ == State::connecting || state_ == State::closed) return;
  // Back-pressure with hysteresis: stop reading while the peer leaves too
  // much unread or too many of its requests are being dispatched, so one
  // peer cannot make us buffer without bound.
  if (reading_ && (queued_bytes_ > queue_high_water || dispatches_in_flight_ > dispatch_high_water)) {
    reading_ = false;
    host_.connection_stats().read_pauses.fetch_add(1, std::memory_order_relaxed);
  } else if (!reading_ && queued_bytes_ < queue_low_water &&
             dispatches_in_flight_ < dispatch_low_water) {
    reading_ = true;
  }
  // Data of an open batch is the loop's to flush; the reactor waits for
  // writability only for what a flush could not write.
  // Nor while another thread is writing: its caller settles the interest
  // when the write ends, and a writable socket would wake the reactor in
  // vain until then.
  bool want = !queue_.empty() && !batch_open_ && !writing_ &&
              (state_ == State::active || state_ == State::closing);
  bool watch_read = reading_ && (!loop_reads_ || sentinel_armed_);
  if (want == want_write_ && watch_read == read_watched_) return;
  want_write_ = want;
  read_watched_ = watch_read;
  host_.connection_stats().interest_changes.fetch_add(1, std::memory_order_relaxed);
  reactor_.rewatch(fd_.get(), (watch_read ? platform::poll_read : 0u) | (want ? platform::poll_write : 0u),
                   this);
}

bool Connection::paused() { return !reading_.load(std::memory_order_acquire); }

void Connection::touch_write() noexcept { last_write_ = now_nanos(); }

void Connection::queue_close_locked() {
  if (close_sent_ || state_ == State::closed) return;
  close_sent_ = true;
  state_ = State::closing;
  closing_since_ = now_nanos();
  enqueue_locked(Queued{close_message(), 0, 0});
}

void Connection::close_when_idle() {
  std::vector<Event> sent;
  bool failed = false;
  bool never_active = false;
  {
    std::unique_lock lock(mutex_);
    if (state_ == State::closed || close_requested_) return;
    close_requested_ = true;
    if (state_ == State::connecting || state_ == State::validating) {
      never_active = true;
    } else if (role_ == Role::client || dispatches_in_flight_ == 0) {
      queue_close_locked();
      failed = !flush_locked(lock, sent);
      update_interest_locked();
    }
  }
  host_.inbox().push_all(sent);
  if (never_active) abort(CloseKind::local, "connection closed before it was established");
  if (failed) abort(CloseKind::lost, "connection lost while closing");
}

void Connection::dispatch_finished() {
  std::vector<Event> sent;
  bool failed = false;
  {
    std::unique_lock lock(mutex_);
    if (dispatches_in_flight_ > 0) --dispatches_in_flight_;
    if (close_requested_ && dispatches_in_flight_ == 0 && !close_sent_ &&
        state_ == State::active) {
      queue_close_locked();
      failed = !flush_locked(lock, sent);
    }
    update_interest_locked();
  }
  host_.inbox().push_all(sent);
  if (failed) abort(CloseKind::lost, "connection lost while closing");
}

void Connection::abort(CloseKind kind, std::string reason) {
  reactor_.post([self = shared_from_this(), kind, reason = std::move(reason)] {
    self->close_now(kind, reason);
  });
}

void Connection::close_now(CloseKind kind, const std::string& reason) {
  // A loop thread in the middle of a read finishes it first (it never
  // waits for anything, so this wait is short).
  std::lock_guard read_lock(read_mutex_);
  deliver_parsed();  // what arrived before the close is delivered before it
  std::deque<Queued> dropped;
  {
    std::unique_lock lock(mutex_);
    // A write under way on another thread uses the socket and the queue's
    // front without the lock; it is non-blocking, so this wait is short.
    write_done_.wait(lock, [this] { return !writing_; });
    if (state_ == State::closed) return;
    state_ = State::closed;
    close_kind_ = kind;
    close_reason_ = reason;
    dropped.swap(queue_);
    if (fd_) {
      reactor_.unwatch(fd_.get(), this);
      if (loop_watched_) host_.inbox().unwatch_socket(fd_.get());
      fd_.reset();
    }
  }
  // Queued oneways that never reached the wire fail like their connection.
  std::vector<Event> failures;
  for (const auto& q : dropped) {
    if (q.sent_id == 0) continue;
    Event event;
    event.kind = EventKind::failed;
    event.request_id = q.sent_id;
    event.code = static_cast<std::uint8_t>(kind == CloseKind::refused ? ErrorCode::connection_refused
                                           : kind == CloseKind::connect_timeout
                                               ? ErrorCode::connect_timeout
                                               : ErrorCode::connection_lost);
    event.text = reason;
    failures.push_back(std::move(event));
  }
  // Forget the connection first: whoever learns of a failure sees it gone.
  host_.on_connection_closed(shared_from_this(), kind, reason);
  host_.inbox().push_all(failures);
}

void Connection::check_timers(std::chrono::steady_clock::time_point now_point) {
  const auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(now_point.time_since_epoch()).count();
  const auto& options = host_.options();
  State current;
  {
    std::lock_guard lock(mutex_);
    current = state_;
  }
  switch (current) {
    case State::closed:
      return;
    case State::connecting:
    case State::validating:
      if (now - connect_started_.load() > to_nanos(options.connect_timeout)) {
        abort(CloseKind::connect_timeout, "connect timed out (" + target_->key + ")");
      }
      return;
    case State::closing:
      if (now - closing_since_.load() > to_nanos(options.close_timeout)) {
        abort(CloseKind::local, "graceful close timed out");
      }
      return;
    case State::active:
      break;
  }
  bool stale_batch;
  bool paused_here;
  {
    std::lock_guard lock(mutex_);
    stale_batch = batch_open_;
    paused_here = !reading_;
  }
  if (paused_here) {
    // We stopped reading (back-pressure): silence and half-read messages
    // are our doing, not the peer's. The clocks restart when reading does.
    auto restart = now_nanos();
    last_read_ = restart;
    if (partial_since_.load() != 0) partial_since_ = restart;
  }
  auto partial = partial_since_.load();
  if (partial != 0 && now - partial > to_nanos(options.read_timeout)) {
    host_.connection_stats().protocol_errors.fetch_add(1, std::memory_order_relaxed);
    abort(CloseKind::protocol_error,
          "ProtocolError: a message was still incomplete after the read timeout");
    return;
  }
  // A batch the loop opened but has not flushed since the last scan: the
  // loop is blocked. What it already computed still goes out.
  if (stale_batch && batch_seen_by_timer_.exchange(true)) {
    batch_seen_by_timer_ = false;
    flush();
  } else if (!stale_batch) {
    batch_seen_by_timer_ = false;
  }
  // A quiet connection gives its read buffer back (it is made again on the
  // next read), so idle connections cost little memory.
  if (read_buffer_held_.load() && now - last_read_.load() > to_nanos(std::chrono::seconds(1))) {
    read_buffer_held_ = false;
    reactor_.post([self = shared_from_this()] { self->read_buffer_.release_if_empty(); });
  }
  auto idle = to_nanos(options.idle_timeout);
  if (now - last_read_.load() > idle) {
    abort(CloseKind::idle, "connection idle for longer than the idle timeout");
    return;
  }
  if (now - last_write_.load() >= idle / 2) {
    host_.connection_stats().heartbeats_sent.fetch_add(1, std::memory_order_relaxed);
    touch_write();
    send(validate_message());
  }
}

}  // namespace aiocomm::core
