// The read path: socket bytes to parsed messages to inbox events. Runs on
// a reactor thread, or on the loop while it reads its own connections
// (loop_reads.cpp); read_mutex_ keeps the two apart.
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/clock.h"
#include "core/connection.h"
#include "core/inbox.h"

namespace aiocomm::core {
namespace {

using protocol::MessageType;

// Room for a whole chunk on each read; see read_rounds.
constexpr std::size_t read_chunk = 64 * 1024;

// Reply payloads (and request params) from this size up that the loop reads
// go into the body maker's owners (the `bytes` Python receives): one copy
// fewer, or two for a reply body read in place. Measured on replies (client
// CPU per call, 64 echoes in flight, uvloop, interleaved runs): 16 B, 1 KiB
// and 4 KiB cost the same either way within the noise (about 5%), so the
// owner costs no more than the pooled body it replaces; below 1 KiB the
// saved copy is nothing, and the pooled path there is plain malloc.
constexpr std::size_t owned_body_min = 1024;

}  // namespace

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
  // After a read that got nothing: false when reading ended (closed).
  auto read_failed = [&](long n) {
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
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
    } else if (!read_failure_.empty()) {
      end_read(CloseKind::tls_failed, "TLSError: " + read_failure_);
    } else {
      end_read(CloseKind::lost, "connection lost: " + std::string(std::strerror(errno)));
    }
    return false;
  };
  // Read what the socket has, a bounded amount per wake-up so one busy
  // connection cannot starve the others on this thread.
  for (int round = 0; round < 16; ++round) {
    if (paused()) break;  // back-pressure: the peer is not reading our replies
    if (direct_) {
      // The body's rest and, in the same call, what follows it.
      auto rest = direct_->owner->bytes().subspan(direct_->filled);
      auto after = tls_ ? std::span<std::uint8_t>() : read_buffer_.free_space(read_chunk);
      long n = read_direct_body(rest, after);
      if (n <= 0) {
        if (read_failed(n)) break;
        return;
      }
      last_read_ = now_nanos();
      auto got = static_cast<std::size_t>(n);
      auto into_body = std::min(got, rest.size());
      direct_->filled += into_body;
      if (got > into_body) read_buffer_.commit(got - into_body);
      if (direct_->filled == direct_->size) finish_direct_body();
      if (got > into_body && !parse_messages()) return;
      if (got < rest.size() + after.size()) break;  // the socket is empty
      continue;
    }
    // Room for a whole chunk each time: with 4 KiB messages streaming in,
    // a quarter chunk took three times the reads (173 against 61 per 1000
    // replies). Untouched pages of the buffer cost no memory.
    auto space = read_buffer_.free_space(read_chunk);
    stats.read_calls.fetch_add(1, std::memory_order_relaxed);
    if (reading_on_loop_) stats.loop_read_calls.fetch_add(1, std::memory_order_relaxed);
    long n = transport_read(space);
    if (n <= 0) {
      if (read_failed(n)) break;
      return;
    }
    read_buffer_.commit(static_cast<std::size_t>(n));
    last_read_ = now_nanos();
    if (!parse_messages()) return;
    // A short read emptied the socket: the poller is level-triggered and
    // reports what arrives next, so asking again would only get EAGAIN.
    if (static_cast<std::size_t>(n) < space.size()) break;
  }
  // Records already decrypted or received wait in the session, where the
  // poller cannot see them: read them on a later turn, as the kernel's
  // readability would for a plain socket.
  if (tls_ && !paused() && tls_buffered()) post_tls_read();
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
      if (header.type == MessageType::reply && start_direct_body(header, available)) {
        deliver_parsed();
        return true;
      }
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
  take_body(event, reply.payload);
  event.identity = std::move(reply.identity);
  event.facet = std::move(reply.facet);
  event.operation = std::move(reply.operation);
  event.text = std::move(reply.message);
  event.request = std::move(outgoing->message);
  parsed_.push_back(std::move(event));
}

void Connection::take_body(Event& event, protocol::ByteView payload) {
  auto* maker = reading_on_loop_ && payload.size() >= owned_body_min ? host_.inbox().body_maker()
                                                                     : nullptr;
  if (maker != nullptr) event.owned_body = maker->make(payload.size());
  if (event.owned_body) {
    // Copied once, into the object Python receives.
    std::memcpy(event.owned_body->bytes().data(), payload.data(), payload.size());
    host_.connection_stats().owned_bodies.fetch_add(1, std::memory_order_relaxed);
  } else {
    event.body = host_.buffers().take(payload.size());
    event.body.assign(payload.begin(), payload.end());
  }
}

bool Connection::start_direct_body(const protocol::Header& header, protocol::ByteView available) {
  // The reply's front: request id, status, then for ok and user
  // exceptions the encapsulation's size and encoding; the payload runs to
  // the message's end. Anything else takes the ordinary path, whose
  // decoder reports what is wrong.
  constexpr std::size_t front = protocol::header_size + 4 + 1 + 4 + 2;
  auto size = static_cast<std::size_t>(header.size);
  if (!reading_on_loop_ || size < front + owned_body_min || available.size() < front) return false;
  auto* maker = host_.inbox().body_maker();
  if (maker == nullptr) return false;
  const std::uint8_t* p = available.data() + protocol::header_size;
  std::uint8_t status = p[4];
  if (status != static_cast<std::uint8_t>(protocol::ReplyStatus::ok) &&
      status != static_cast<std::uint8_t>(protocol::ReplyStatus::user_exception)) {
    return false;
  }
  auto encapsulation = protocol::load_int32(p + 5);
  if (encapsulation < 0 || static_cast<std::size_t>(encapsulation) != size - front + 6 || p[9] != 1) {
    return false;
  }
  auto owner = maker->make(size - front);
  if (!owner) return false;
  // What was read past the front (at most a read's worth) is copied once;
  // the rest of the body is read in place.
  auto already = available.subspan(front);
  std::memcpy(owner->bytes().data(), already.data(), already.size());
  direct_ = DirectBody{size - front, already.size(), protocol::load_int32(p), status,
                       {p[9], p[10]}, std::move(owner)};
  read_buffer_.consume(available.size());
  if (partial_since_.load() == 0) partial_since_ = now_nanos();
  host_.connection_stats().owned_bodies.fetch_add(1, std::memory_order_relaxed);
  return true;
}

long Connection::read_direct_body(std::span<std::uint8_t> rest, std::span<std::uint8_t> after) {
  auto& stats = host_.connection_stats();
  stats.read_calls.fetch_add(1, std::memory_order_relaxed);
  stats.direct_body_reads.fetch_add(1, std::memory_order_relaxed);
  if (reading_on_loop_) stats.loop_read_calls.fetch_add(1, std::memory_order_relaxed);
  // Over TLS the session decrypts straight into the body; what follows it
  // is read on the next round.
  if (tls_ || after.empty()) return transport_read(rest);
  // One call for both, as many as one read into read_buffer_ took before:
  // a body read alone cost a second read per reply for what follows it.
  iovec parts[2] = {{rest.data(), rest.size()}, {after.data(), after.size()}};
  return platform::read_vector(fd_.get(), parts, 2);
}

void Connection::finish_direct_body() {
  DirectBody body = std::move(*direct_);
  direct_.reset();
  partial_since_ = 0;
  host_.connection_stats().messages_in.fetch_add(1, std::memory_order_relaxed);
  // Cancelled or timed out: the body is dropped (by its owner's rules).
  if (auto outgoing = host_.outgoing().take(body.request_id)) {
    Event event;
    event.kind = EventKind::reply;
    event.request_id = body.request_id;
    event.code = body.status;
    event.connection_id = id_;
    event.encoding = body.encoding;
    event.owned_body = std::move(body.owner);
    event.request = std::move(outgoing->message);
    parsed_.push_back(std::move(event));
  }
  deliver_parsed();
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
    take_body(event, request.params);
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

bool Connection::paused() { return !reading_.load(std::memory_order_acquire); }

}  // namespace aiocomm::core
