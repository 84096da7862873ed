// The read path: socket bytes to parsed messages to inbox events. Runs on
// a reactor thread, or on the loop while it reads its own connections
// (loop_reads.cpp); read_mutex_ keeps the two apart.
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
    long n = transport_read(space);
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
    if (!read_failure_.empty()) {
      end_read(CloseKind::tls_failed, "TLSError: " + read_failure_);
      return;
    }
    end_read(CloseKind::lost, "connection lost: " + std::string(std::strerror(errno)));
    return;
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

bool Connection::paused() { return !reading_.load(std::memory_order_acquire); }

}  // namespace aiocomm::core
