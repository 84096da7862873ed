// Ice protocol 1.0 messages: the 14-byte header, requests, batch requests
// and replies. Pure functions over bytes: no sockets, no threads.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "protocol/buffer.h"

namespace aiocomm::protocol {

inline constexpr std::size_t header_size = 14;

enum class MessageType : std::uint8_t {
  request = 0,
  batch_request = 1,
  reply = 2,
  validate_connection = 3,
  close_connection = 4,
};

enum class ReplyStatus : std::uint8_t {
  ok = 0,
  user_exception = 1,
  object_not_exist = 2,
  facet_not_exist = 3,
  operation_not_exist = 4,
  unknown_local_exception = 5,
  unknown_user_exception = 6,
  unknown_exception = 7,
};

struct Header {
  MessageType type;
  std::uint8_t compression;
  std::int32_t size;  // of the whole message, header included
};

struct EncodingVersion {
  std::uint8_t major = 1;
  std::uint8_t minor = 1;
};

struct Identity {
  std::string name;
  std::string category;
};

using Context = std::vector<std::pair<std::string, std::string>>;

// A decoded request. `params` is the encapsulation's content (after its
// 6-byte header) and points into the message it was decoded from.
struct Request {
  std::int32_t request_id = 0;  // 0: oneway
  Identity identity;
  std::string facet;
  std::string operation;
  std::uint8_t mode = 0;
  Context context;
  EncodingVersion encoding;
  ByteView params;
};

// A decoded reply. Which fields are set depends on the status: `payload`
// (encapsulation content) for ok and user exceptions; identity, facet and
// operation for the three "does not exist" statuses; `message` for the rest.
struct Reply {
  std::int32_t request_id = 0;
  std::uint8_t status = 0;
  EncodingVersion encoding;
  ByteView payload;
  Identity identity;
  std::string facet;
  std::string operation;
  std::string message;
};

// Validates the header at the front of `bytes` (at least header_size long):
// magic, protocol 1.0, header encoding 1.0, a known type, no compression, a
// size of at least 14 and at most `size_max`. Throws ProtocolError.
Header parse_header(ByteView bytes, std::size_t size_max);

// Header-only messages.
Bytes validate_connection_message();
Bytes close_connection_message();

// Appends a header with a size placeholder; finish_message() fills in the
// size of the message that begins at `start` and runs to the end of `out`.
void begin_message(Bytes& out, MessageType type);
void finish_message(Bytes& out, std::size_t start = 0);

// Identity and facet, encoded once per proxy and reused for every request.
Bytes encode_identity_facet(const Identity& identity, const std::string& facet);

// Appends a whole request message (header included).
void encode_request(Bytes& out, std::int32_t request_id, ByteView identity_facet,
                    std::string_view operation, std::uint8_t mode, const Context& context,
                    EncodingVersion encoding, ByteView params);
// Appends a request message but for its last `params_size` bytes, the
// params, which the sizes (message and encapsulation) already count: the
// params follow it on the wire from wherever they lie. `out` must be empty
// (the message size is written for a message that starts at 0).
void encode_request_head(Bytes& out, std::int32_t request_id, ByteView identity_facet,
                         std::string_view operation, std::uint8_t mode, const Context& context,
                         EncodingVersion encoding, std::size_t params_size);

// Body decoders: `body` is the message after its header.
Request decode_request(ByteView body);
std::vector<Request> decode_batch_request(ByteView body);
Reply decode_reply(ByteView body);

// Reply encoders, each appending a whole message.
// The size of the message encode_reply_payload writes for `payload_size` bytes:
// header, request id, status, encapsulation header, payload.
constexpr std::size_t reply_payload_size(std::size_t payload_size) {
  return header_size + 11 + payload_size;
}
void encode_reply_payload(Bytes& out, std::int32_t request_id, ReplyStatus status,
                          EncodingVersion encoding, ByteView payload);
void encode_reply_not_exist(Bytes& out, std::int32_t request_id, ReplyStatus status,
                            const Identity& identity, const std::string& facet,
                            const std::string& operation);
void encode_reply_message(Bytes& out, std::int32_t request_id, std::uint8_t status,
                          std::string_view message);

}  // namespace aiocomm::protocol
