#include "protocol/message.h"

#include <algorithm>

namespace aiocomm::protocol {
namespace {

constexpr std::uint8_t magic[4] = {'I', 'c', 'e', 'P'};

void encapsulation(Writer& w, EncodingVersion encoding, ByteView content) {
  w.int32(static_cast<std::int32_t>(content.size() + 6));
  w.byte(encoding.major);
  w.byte(encoding.minor);
  w.raw(content);
}

ByteView read_encapsulation(Reader& r, EncodingVersion& encoding) {
  auto size = r.int32();
  if (size < 6) throw ProtocolError("encapsulation size " + std::to_string(size) + " below 6");
  encoding.major = r.byte();
  encoding.minor = r.byte();
  if (encoding.major != 1) {
    throw ProtocolError("unsupported encoding " + std::to_string(encoding.major) + "." +
                        std::to_string(encoding.minor));
  }
  return r.raw(static_cast<std::size_t>(size) - 6);
}

Identity read_identity(Reader& r) {
  Identity id;
  id.name = r.string();
  id.category = r.string();
  return id;
}

std::string read_facet(Reader& r) {
  auto facets = r.string_sequence();
  if (facets.size() > 1) throw ProtocolError("a facet path has more than one element");
  return facets.empty() ? std::string() : std::move(facets.front());
}

void write_facet(Writer& w, const std::string& facet) {
  if (facet.empty()) {
    w.size(0);
  } else {
    w.size(1);
    w.string(facet);
  }
}

// The request body after its request id.
Request read_request_fields(Reader& r) {
  Request req;
  req.identity = read_identity(r);
  req.facet = read_facet(r);
  req.operation = r.string();
  req.mode = r.byte();
  if (req.mode > 2) throw ProtocolError("unknown operation mode " + std::to_string(req.mode));
  auto pairs = r.size();
  req.context.reserve(std::min(pairs, r.remaining() / 2));  // a pair takes >= 2 bytes
  for (std::size_t i = 0; i < pairs; ++i) {
    auto key = r.string();
    auto value = r.string();
    req.context.emplace_back(std::move(key), std::move(value));
  }
  req.params = read_encapsulation(r, req.encoding);
  return req;
}

}  // namespace

Header parse_header(ByteView bytes, std::size_t size_max) {
  if (bytes.size() < header_size) throw ProtocolError("truncated message header");
  for (int i = 0; i < 4; ++i) {
    if (bytes[i] != magic[i]) throw ProtocolError("bad magic: not an Ice protocol message");
  }
  if (bytes[4] != 1 || bytes[5] != 0) {
    throw ProtocolError("unsupported protocol version " + std::to_string(bytes[4]) + "." +
                        std::to_string(bytes[5]));
  }
  if (bytes[6] != 1 || bytes[7] != 0) {
    throw ProtocolError("unsupported header encoding " + std::to_string(bytes[6]) + "." +
                        std::to_string(bytes[7]));
  }
  if (bytes[8] > 4) throw ProtocolError("unknown message type " + std::to_string(bytes[8]));
  Header h{static_cast<MessageType>(bytes[8]), bytes[9], load_int32(bytes.data() + 10)};
  if (h.compression == 2) throw ProtocolError("compressed messages are not supported");
  if (h.compression > 2) {
    throw ProtocolError("unknown compression status " + std::to_string(h.compression));
  }
  if (h.size < static_cast<std::int32_t>(header_size)) {
    throw ProtocolError("message size " + std::to_string(h.size) + " is below the header size");
  }
  if (static_cast<std::size_t>(h.size) > size_max) {
    throw ProtocolError("message size " + std::to_string(h.size) + " exceeds the maximum of " +
                        std::to_string(size_max) + " bytes");
  }
  return h;
}

void begin_message(Bytes& out, MessageType type) {
  out.insert(out.end(), {magic[0], magic[1], magic[2], magic[3], 1, 0, 1, 0,
                         static_cast<std::uint8_t>(type), 0, 0, 0, 0, 0});
}

void finish_message(Bytes& out, std::size_t start) {
  store_int32(out.data() + start + 10, static_cast<std::int32_t>(out.size() - start));
}

Bytes validate_connection_message() {
  Bytes out;
  begin_message(out, MessageType::validate_connection);
  finish_message(out);
  return out;
}

Bytes close_connection_message() {
  Bytes out;
  begin_message(out, MessageType::close_connection);
  finish_message(out);
  return out;
}

Bytes encode_identity_facet(const Identity& identity, const std::string& facet) {
  Bytes out;
  Writer w(out);
  w.string(identity.name);
  w.string(identity.category);
  write_facet(w, facet);
  return out;
}

namespace {

// Everything of a request before its params' bytes.
void request_front(Writer& w, std::int32_t request_id, ByteView identity_facet,
                   std::string_view operation, std::uint8_t mode, const Context& context,
                   EncodingVersion encoding, std::size_t params_size) {
  w.int32(request_id);
  w.raw(identity_facet);
  w.string(operation);
  w.byte(mode);
  w.size(context.size());
  for (const auto& [key, value] : context) {
    w.string(key);
    w.string(value);
  }
  w.int32(static_cast<std::int32_t>(params_size + 6));
  w.byte(encoding.major);
  w.byte(encoding.minor);
}

}  // namespace

void encode_request(Bytes& out, std::int32_t request_id, ByteView identity_facet,
                    std::string_view operation, std::uint8_t mode, const Context& context,
                    EncodingVersion encoding, ByteView params) {
  auto start = out.size();
  begin_message(out, MessageType::request);
  Writer w(out);
  request_front(w, request_id, identity_facet, operation, mode, context, encoding, params.size());
  w.raw(params);
  finish_message(out, start);
}

void encode_request_head(Bytes& out, std::int32_t request_id, ByteView identity_facet,
                         std::string_view operation, std::uint8_t mode, const Context& context,
                         EncodingVersion encoding, std::size_t params_size) {
  begin_message(out, MessageType::request);
  Writer w(out);
  request_front(w, request_id, identity_facet, operation, mode, context, encoding, params_size);
  store_int32(out.data() + 10, static_cast<std::int32_t>(out.size() + params_size));
}

Request decode_request(ByteView body) {
  Reader r(body);
  auto id = r.int32();
  Request req = read_request_fields(r);
  req.request_id = id;
  if (!r.at_end()) throw ProtocolError("trailing bytes after a request");
  return req;
}

std::vector<Request> decode_batch_request(ByteView body) {
  Reader r(body);
  auto count = r.int32();
  if (count < 0 || static_cast<std::size_t>(count) > r.remaining()) {
    throw ProtocolError("invalid batch request count " + std::to_string(count));
  }
  std::vector<Request> out;
  // A request takes at least 12 bytes (five 1-byte sizes and the mode, a
  // 6-byte encapsulation header): never reserve more than the bytes can hold.
  out.reserve(std::min(static_cast<std::size_t>(count), r.remaining() / 12));
  for (std::int32_t i = 0; i < count; ++i) out.push_back(read_request_fields(r));
  if (!r.at_end()) throw ProtocolError("trailing bytes after a batch request");
  return out;
}

Reply decode_reply(ByteView body) {
  Reader r(body);
  Reply reply;
  reply.request_id = r.int32();
  reply.status = r.byte();
  switch (static_cast<ReplyStatus>(reply.status)) {
    case ReplyStatus::ok:
    case ReplyStatus::user_exception:
      reply.payload = read_encapsulation(r, reply.encoding);
      break;
    case ReplyStatus::object_not_exist:
    case ReplyStatus::facet_not_exist:
    case ReplyStatus::operation_not_exist:
      reply.identity = read_identity(r);
      reply.facet = read_facet(r);
      reply.operation = r.string();
      break;
    default:
      reply.message = r.string();
      break;
  }
  if (!r.at_end()) throw ProtocolError("trailing bytes after a reply");
  return reply;
}

void encode_reply_payload(Bytes& out, std::int32_t request_id, ReplyStatus status,
                          EncodingVersion encoding, ByteView payload) {
  auto start = out.size();
  out.reserve(start + reply_payload_size(payload.size()));  // one allocation
  begin_message(out, MessageType::reply);
  Writer w(out);
  w.int32(request_id);
  w.byte(static_cast<std::uint8_t>(status));
  encapsulation(w, encoding, payload);
  finish_message(out, start);
}

void encode_reply_not_exist(Bytes& out, std::int32_t request_id, ReplyStatus status,
                            const Identity& identity, const std::string& facet,
                            const std::string& operation) {
  auto start = out.size();
  begin_message(out, MessageType::reply);
  Writer w(out);
  w.int32(request_id);
  w.byte(static_cast<std::uint8_t>(status));
  w.string(identity.name);
  w.string(identity.category);
  write_facet(w, facet);
  w.string(operation);
  finish_message(out, start);
}

void encode_reply_message(Bytes& out, std::int32_t request_id, std::uint8_t status,
                          std::string_view message) {
  auto start = out.size();
  begin_message(out, MessageType::reply);
  Writer w(out);
  w.int32(request_id);
  w.byte(status);
  w.string(message);
  finish_message(out, start);
}

}  // namespace aiocomm::protocol
