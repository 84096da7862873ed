// A connection's lifecycle: connecting (endpoint by endpoint), validation,
// graceful and abortive close, and the timers that watch each phase. The
// read and write paths live in connection_read.cpp and connection_write.cpp,
// the loop's share of reading in loop_reads.cpp.
#include "core/connection.h"

#include <cerrno>
#include <cstring>
#include <system_error>

#include "core/clock.h"
#include "core/inbox.h"

namespace aiocomm::core {
namespace {

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

}  // namespace

Connection::Connection(ConnectionHost& host, Reactor& reactor, std::uint64_t id, Role role,
                       std::uint32_t adapter_id, std::shared_ptr<const Target> target,
                       std::shared_ptr<const tls::Context> tls)
    : host_(host),
      reactor_(reactor),
      id_(id),
      role_(role),
      adapter_id_(adapter_id),
      target_(std::move(target)),
      tls_context_(std::move(tls)) {
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
    if (tls_context_) {
      // The client speaks first (its hello); the Ice protocol waits for the
      // handshake, and connect_timeout bounds it.
      reactor_.watch(fd_.get(), platform::poll_read, shared_from_this());
    } else {
      activate_server();
      reactor_.watch(fd_.get(), platform::poll_read | platform::poll_write, shared_from_this());
    }
  }
  if (tls_context_) {
    start_tls("");
    return;
  }
  offer_to_loop();
}

void Connection::activate_server() {
  // A server speaks first: validate-connection, then requests may flow.
  state_ = State::active;
  enqueue_locked(Queued{validate_message(), 0, 0});
  want_write_ = true;
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

// A connect that hangs (a host that is down drops the SYN) moves on to the
// next address or endpoint as a refused one does, each with a whole
// connect_timeout: a dead replica must not keep the living ones from being
// tried. Only the last one's timeout fails the connection.
void Connection::connect_timed_out() {
  if (!target_) return;  // only a client has endpoints to move on to
  bool more = false;
  {
    std::lock_guard lock(mutex_);
    if (state_ != State::connecting) return;
    // Stale: posted before an attempt that started since.
    if (now_nanos() - connect_started_.load() <= to_nanos(host_.options().connect_timeout)) return;
    more = address_index_ < addresses_.size() || endpoint_index_ < target_->endpoints.size();
    if (more) {
      last_connect_error_ = "connect timed out";
      if (fd_) {
        reactor_.unwatch(fd_.get(), this);
        fd_.reset();
      }
      connect_started_ = now_nanos();
    }
  }
  if (!more) {
    close_now(CloseKind::connect_timeout, "connect timed out (" + target_->key + ")");
    return;
  }
  // unwatch() released our registration; keep ourselves alive meanwhile.
  auto self = shared_from_this();
  try_next_endpoint();
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
  if (handshaking_) {
    handshake_step();
    return;
  }
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
    if (bits & (platform::poll_write | platform::poll_error)) {
      const auto& endpoint = target_->endpoints[trying_endpoint_];
      if (endpoint.secure) {
        start_tls(endpoint.host);
      } else {
        on_connected();
      }
    }
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
  direct_.reset();   // a reply half read never completes now
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
      // Before the socket closes, so the alert is the last thing on it.
      if (tls_) end_tls_locked(kind);
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
      // A client's attempt may move on to its next endpoint; a server's
      // connection in its TLS handshake (no target) just ends, below.
      if (target_ && now - connect_started_.load() > to_nanos(options.connect_timeout)) {
        reactor_.post([self = shared_from_this()] { self->connect_timed_out(); });
        return;
      }
      [[fallthrough]];
    case State::validating:
      if (now - connect_started_.load() > to_nanos(options.connect_timeout)) {
        abort(CloseKind::connect_timeout,
              target_ ? "connect timed out (" + target_->key + ")"
                      : std::string("the client did not finish the TLS handshake in time"));
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
