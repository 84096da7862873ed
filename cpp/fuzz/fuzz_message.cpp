// libFuzzer target: the Ice message parser on arbitrary bytes.
//
// The input is read as a stream of messages, the way a connection reads its
// socket: parse_header() on the next 14 bytes, then the body decoder for the
// message type (decode_request, decode_batch_request, decode_reply) on the
// body the header announces (or on what is left, when the input ends
// early). Every decoder either succeeds or throws ProtocolError; anything
// else escaping is a bug (libFuzzer reports the uncaught exception), and so
// is any sanitizer report.
//
// What decodes is checked too: a decoded request, batch or reply encoded
// again with the library's own encoders must decode to the same values, and
// parse_header() must only accept what its contract says it accepts.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "protocol/buffer.h"
#include "protocol/message.h"

namespace {

using namespace aiocomm::protocol;

constexpr std::size_t size_max = 1 << 20;

[[noreturn]] void invariant_failed(const char* what) {
  std::fprintf(stderr, "fuzz_message: invariant failed: %s\n", what);
  std::abort();
}

#define EXPECT(cond)                        \
  do {                                      \
    if (!(cond)) invariant_failed(#cond);   \
  } while (0)

bool same_request_fields(const Request& a, const Request& b) {
  return a.identity.name == b.identity.name && a.identity.category == b.identity.category &&
         a.facet == b.facet && a.operation == b.operation && a.mode == b.mode &&
         a.context == b.context && a.encoding.major == b.encoding.major &&
         a.encoding.minor == b.encoding.minor && a.params.size() == b.params.size() &&
         std::equal(a.params.begin(), a.params.end(), b.params.begin());
}

ByteView body_of(const Bytes& message) {
  return ByteView(message.data() + header_size, message.size() - header_size);
}

void check_header_of(const Bytes& message, MessageType type) {
  auto h = parse_header(ByteView(message), size_max);
  EXPECT(h.type == type);
  EXPECT(static_cast<std::size_t>(h.size) == message.size());
}

void roundtrip_request(const Request& req) {
  Bytes out;
  encode_request(out, req.request_id, encode_identity_facet(req.identity, req.facet),
                 req.operation, req.mode, req.context, req.encoding, req.params);
  check_header_of(out, MessageType::request);
  auto again = decode_request(body_of(out));
  EXPECT(again.request_id == req.request_id);
  EXPECT(same_request_fields(req, again));
}

// There is no batch encoder in the library (batches are only received), so
// this writes one from the same primitives the request encoder uses.
void roundtrip_batch(const std::vector<Request>& batch) {
  Bytes out;
  begin_message(out, MessageType::batch_request);
  Writer w(out);
  w.int32(static_cast<std::int32_t>(batch.size()));
  for (const auto& req : batch) {
    w.raw(ByteView(encode_identity_facet(req.identity, req.facet)));
    w.string(req.operation);
    w.byte(req.mode);
    w.size(req.context.size());
    for (const auto& [k, v] : req.context) {
      w.string(k);
      w.string(v);
    }
    w.int32(static_cast<std::int32_t>(req.params.size() + 6));
    w.byte(req.encoding.major);
    w.byte(req.encoding.minor);
    w.raw(req.params);
  }
  finish_message(out);
  check_header_of(out, MessageType::batch_request);
  auto again = decode_batch_request(body_of(out));
  EXPECT(again.size() == batch.size());
  for (std::size_t i = 0; i < batch.size(); ++i) EXPECT(same_request_fields(batch[i], again[i]));
}

void roundtrip_reply(const Reply& reply) {
  Bytes out;
  switch (reply.status) {
    case 0:
    case 1:
      encode_reply_payload(out, reply.request_id, static_cast<ReplyStatus>(reply.status),
                           reply.encoding, reply.payload);
      break;
    case 2:
    case 3:
    case 4:
      encode_reply_not_exist(out, reply.request_id, static_cast<ReplyStatus>(reply.status),
                             reply.identity, reply.facet, reply.operation);
      break;
    default:
      encode_reply_message(out, reply.request_id, reply.status, reply.message);
      break;
  }
  check_header_of(out, MessageType::reply);
  auto again = decode_reply(body_of(out));
  EXPECT(again.request_id == reply.request_id);
  EXPECT(again.status == reply.status);
  EXPECT(again.encoding.major == reply.encoding.major);
  EXPECT(again.encoding.minor == reply.encoding.minor);
  EXPECT(again.payload.size() == reply.payload.size() &&
         std::equal(again.payload.begin(), again.payload.end(), reply.payload.begin()));
  EXPECT(again.identity.name == reply.identity.name);
  EXPECT(again.identity.category == reply.identity.category);
  EXPECT(again.facet == reply.facet);
  EXPECT(again.operation == reply.operation);
  EXPECT(again.message == reply.message);
}

// One message at the front of `in`; returns how many bytes it took (0: stop).
std::size_t one_message(ByteView in) {
  Header h;
  try {
    h = parse_header(in, size_max);
  } catch (const ProtocolError&) {
    return 0;
  }
  // What parse_header accepts: the contract in message.h.
  EXPECT(in[0] == 'I' && in[1] == 'c' && in[2] == 'e' && in[3] == 'P');
  EXPECT(in[4] == 1 && in[5] == 0 && in[6] == 1 && in[7] == 0);
  EXPECT(static_cast<std::uint8_t>(h.type) <= 4);
  EXPECT(h.compression <= 1);
  EXPECT(h.size >= static_cast<std::int32_t>(header_size));
  EXPECT(static_cast<std::size_t>(h.size) <= size_max);

  auto size = std::min<std::size_t>(static_cast<std::size_t>(h.size), in.size());
  auto body = in.subspan(header_size, size - header_size);
  try {
    switch (h.type) {
      case MessageType::request: {
        auto req = decode_request(body);
        EXPECT(req.mode <= 2);
        EXPECT(req.encoding.major == 1);
        roundtrip_request(req);
        break;
      }
      case MessageType::batch_request: {
        auto batch = decode_batch_request(body);
        EXPECT(batch.size() <= body.size());
        roundtrip_batch(batch);
        break;
      }
      case MessageType::reply:
        roundtrip_reply(decode_reply(body));
        break;
      case MessageType::validate_connection:
      case MessageType::close_connection:
        break;
    }
  } catch (const ProtocolError&) {
    // Malformed body: the connection closes; the next message is not read.
    return 0;
  }
  return size;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Each decoder on its own, on the raw input as a body: the fuzzer need not
  // find a valid header to reach them.
  ByteView all(data, size);
  try {
    (void)decode_request(all);
  } catch (const ProtocolError&) {
  }
  try {
    (void)decode_batch_request(all);
  } catch (const ProtocolError&) {
  }
  try {
    (void)decode_reply(all);
  } catch (const ProtocolError&) {
  }
  // Then as a stream of whole messages.
  ByteView in = all;
  while (in.size() >= header_size) {
    auto used = one_message(in);
    if (used == 0) break;
    in = in.subspan(used);
  }
  return 0;
}
