// What native threads hand to the event loop. An Event is plain data: the
// loop turns it into Python objects when it drains the inbox.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "core/out_message.h"
#include "protocol/message.h"

namespace aiocomm::core {

enum class EventKind : std::uint8_t {
  reply,    // an answer to a twoway invocation: request_id, code (reply status), ...
  request,  // a request to dispatch on the loop
  failed,   // an invocation failed without a reply: request_id, code (ErrorCode), text
  sent,     // a queued oneway invocation has been written: request_id
  log,      // a message for the `aiocomm` logger: code (LogLevel), text
  closed,   // the communicator is gone; nothing follows this event
};

// Why an invocation failed without a reply. The Python layer maps each to
// its exception class.
enum class ErrorCode : std::uint8_t {
  connection_refused = 1,
  connection_lost = 2,
  connect_timeout = 3,
  destroyed = 4,
  protocol = 5,
  tls = 6,  // the TLS handshake or a TLS record failed (OpenSSL's reason in text)
};

enum class LogLevel : std::uint8_t { debug = 10, info = 20, warning = 30, error = 40 };

// A body's storage owned outside the pooled buffers: the binding's owner is
// the very `bytes` object Python receives, so the reader that fills it
// saves the copy from a pooled body into a new object. Destroyed on any
// thread (an owner that cannot be released there defers its release).
class BodyOwner {
 public:
  virtual ~BodyOwner() = default;
  // The writable storage, exactly the body's size. Whoever owns the owner
  // (the reader until the body is whole, then the event) writes it.
  virtual std::span<std::uint8_t> bytes() noexcept = 0;
};

// Makes body owners. Installed once on the inbox, before any connection
// reads (Inbox::set_body_maker). Called only by the loop thread while it
// reads its own connections (Connection::read_by_loop), never by a reactor.
class BodyMaker {
 public:
  // An owner for a body of `size` bytes, or null for the pooled path. Never throws.
  virtual std::shared_ptr<BodyOwner> make(std::size_t size) noexcept = 0;

 protected:
  ~BodyMaker() = default;
};

struct Event {
  EventKind kind = EventKind::log;
  std::uint8_t code = 0;
  std::int32_t request_id = 0;
  std::uint64_t connection_id = 0;
  std::uint32_t adapter_id = 0;
  std::string text;       // failure or log message; a reply's message
  protocol::Bytes body;   // a reply's payload, a request's params
  // A reply's payload or a request's params instead of `body` (then
  // empty), when a BodyMaker made it. Shared so that an Event stays
  // copyable (the C++ tests copy them); the library never copies one that
  // holds a body.
  std::shared_ptr<BodyOwner> owned_body;
  // A request's header, or a "does not exist" reply's target.
  protocol::Identity identity;
  std::string facet;
  std::string operation;
  std::uint8_t mode = 0;
  protocol::Context context;
  protocol::EncodingVersion encoding;
  // A reply's request, kept for a retry until now: released with the event,
  // on the loop thread that allocated it. Freed on a reactor thread instead,
  // every request's memory would change threads, and the loop's allocator
  // would take its slow path on every call; and a borrowed payload (its
  // tail) is released there with the GIL at hand, not deferred.
  OutMessage request;
};

}  // namespace aiocomm::core
