// What native threads hand to the event loop. An Event is plain data: the
// loop turns it into Python objects when it drains the inbox.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

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

struct Event {
  EventKind kind = EventKind::log;
  std::uint8_t code = 0;
  std::int32_t request_id = 0;
  std::uint64_t connection_id = 0;
  std::uint32_t adapter_id = 0;
  std::string text;       // failure or log message; a reply's message
  protocol::Bytes body;   // a reply's payload, a request's params
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
  // would take its slow path on every call.
  std::shared_ptr<const protocol::Bytes> request;
};

}  // namespace aiocomm::core
