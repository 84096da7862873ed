// Tests of the Ice protocol 1.0 encoding and framing (protocol/buffer.h,
// protocol/message.h): primitives, header validation, the wire test vectors
// of docs/ice-protocol.md, every reply status, batches, and input that lies
// about its sizes.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <new>
#include <string>
#include <vector>

#include "protocol/buffer.h"
#include "protocol/message.h"
#include "tests/check.h"

// ------------------------------------------------------------------------
// An allocation probe: the binary's operator new records the largest single
// request while a probe is armed, so a test can show that a lying size was
// refused *before* anything was allocated for it. (Replacing the global
// operator new is allowed once per program; the sanitizers still see every
// block through malloc/free.)
namespace {
std::atomic<bool> probe_armed{false};
std::atomic<std::size_t> probe_largest{0};

void note_allocation(std::size_t n) noexcept {
  if (!probe_armed.load(std::memory_order_relaxed)) return;
  auto seen = probe_largest.load(std::memory_order_relaxed);
  while (n > seen && !probe_largest.compare_exchange_weak(seen, n, std::memory_order_relaxed)) {
  }
}

// Arms the probe for its lifetime; largest() is the biggest block asked for.
class AllocationProbe {
 public:
  AllocationProbe() {
    probe_largest = 0;
    probe_armed = true;
  }
  ~AllocationProbe() { probe_armed = false; }
  std::size_t largest() const { return probe_largest.load(); }
};
}  // namespace

void* operator new(std::size_t n) {
  note_allocation(n);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

// ------------------------------------------------------------------------
namespace {

using namespace aiocomm::protocol;

// "49 63 65 50" -> bytes.
Bytes hex(std::string_view text) {
  Bytes out;
  int nibble = -1;
  for (char c : text) {
    int v;
    if (c >= '0' && c <= '9') {
      v = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      v = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      v = c - 'A' + 10;
    } else {
      continue;
    }
    if (nibble < 0) {
      nibble = v;
    } else {
      out.push_back(static_cast<std::uint8_t>(nibble << 4 | v));
      nibble = -1;
    }
  }
  return out;
}

ByteView view(const Bytes& b) { return ByteView(b.data(), b.size()); }
ByteView body_of(const Bytes& message) { return view(message).subspan(header_size); }

Bytes concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

Bytes int32_bytes(std::int32_t v) {
  Bytes out;
  Writer(out).int32(v);
  return out;
}

// A header for `type` declaring `size`, with the given overrides.
Bytes header(std::uint8_t type, std::int32_t size, std::uint8_t compression = 0) {
  Bytes out = {'I', 'c', 'e', 'P', 1, 0, 1, 0, type, compression};
  Writer(out).int32(size);
  return out;
}

constexpr std::size_t max_1mib = 1 << 20;

const char* const validate_hex = "49 63 65 50 01 00 01 00 03 00 0e 00 00 00";
const char* const ping_hex =
    "49 63 65 50 01 00 01 00 00 00 2b 00 00 00 01 00 00 00 05 68 65 6c 6c 6f 00 00 08 69 63 65 5f "
    "70 69 6e 67 02 00 06 00 00 00 01 01";
const char* const ping_reply_hex =
    "49 63 65 50 01 00 01 00 02 00 19 00 00 00 01 00 00 00 00 06 00 00 00 01 01";

// The fields of a request after its request id (what a batch carries).
Bytes request_fields(const Identity& id, const std::string& facet, std::string_view op,
                     std::uint8_t mode, const Context& ctx, ByteView params) {
  Bytes message;
  auto idf = encode_identity_facet(id, facet);
  encode_request(message, 7, view(idf), op, mode, ctx, {1, 1}, params);
  return Bytes(message.begin() + header_size + 4, message.end());
}

}  // namespace

// ------------------------------------------------------------ primitives

TEST(writer_int32_is_little_endian) {
  Bytes out;
  Writer w(out);
  w.int32(0x01020304);
  w.int32(-1);
  w.int32(std::numeric_limits<std::int32_t>::min());
  CHECK_EQ(out, hex("04 03 02 01 ff ff ff ff 00 00 00 80"));
  CHECK_EQ(load_int32(out.data()), 0x01020304);
  CHECK_EQ(load_int32(out.data() + 4), -1);
  CHECK_EQ(load_int32(out.data() + 8), std::numeric_limits<std::int32_t>::min());
  std::uint8_t b[4];
  store_int32(b, 0x7f00ff01);
  CHECK_EQ(Bytes(b, b + 4), hex("01 ff 00 7f"));
}

TEST(writer_size_short_and_long_forms) {
  struct Case {
    std::size_t value;
    const char* bytes;
  };
  const Case cases[] = {
      {0, "00"},
      {1, "01"},
      {254, "fe"},
      {255, "ff ff 00 00 00"},
      {256, "ff 00 01 00 00"},
      {100000, "ff a0 86 01 00"},
      {0x7fffffff, "ff ff ff ff 7f"},
  };
  for (const auto& c : cases) {
    Bytes out;
    Writer(out).size(c.value);
    CHECK_EQ(out, hex(c.bytes));
  }
}

TEST(reader_size_round_trips_with_enough_bytes_left) {
  for (std::size_t value : {std::size_t{0}, std::size_t{1}, std::size_t{254}, std::size_t{255},
                            std::size_t{256}, std::size_t{70000}}) {
    Bytes out;
    Writer(out).size(value);
    out.resize(out.size() + value, 0xab);  // the elements the size announces
    Reader r(view(out));
    CHECK_EQ(r.size(), value);
    CHECK_EQ(r.remaining(), value);
  }
}

TEST(reader_size_accepts_non_canonical_long_form) {
  // Ice writers always use the short form below 255, but the long form is
  // still a valid encoding of a small size.
  auto in = hex("ff 05 00 00 00 61 62 63 64 65");
  Reader r(view(in));
  CHECK_EQ(r.size(), 5u);
  CHECK_EQ(r.remaining(), 5u);
}

TEST(reader_rejects_negative_sizes) {
  for (const char* text : {"ff ff ff ff ff", "ff 00 00 00 80", "ff fe ff ff ff"}) {
    auto in = hex(text);
    Reader r(view(in));
    CHECK_THROWS(ProtocolError, r.size());
  }
}

TEST(reader_rejects_sizes_beyond_the_message) {
  {
    auto in = hex("0a 00 00 00 00 00 00 00 00 00");  // 10, then 9 bytes
    Reader r(view(in));
    CHECK_THROWS(ProtocolError, r.size());
  }
  {
    auto in = hex("0a 00 00 00 00 00 00 00 00 00 00");  // 10, then exactly 10
    Reader r(view(in));
    CHECK_EQ(r.size(), 10u);
  }
  {
    auto in = hex("ff ff ff ff 7f 00 00");  // INT32_MAX, then 2 bytes
    Reader r(view(in));
    CHECK_THROWS(ProtocolError, r.size());
  }
  {
    auto in = hex("fe");  // 254, nothing after it
    Reader r(view(in));
    CHECK_THROWS(ProtocolError, r.size());
  }
}

TEST(reader_rejects_truncation) {
  {
    Bytes none;
    Reader r(view(none));
    CHECK(r.at_end());
    CHECK_THROWS(ProtocolError, r.byte());
    CHECK_THROWS(ProtocolError, r.int32());
    CHECK_THROWS(ProtocolError, r.size());
    CHECK_THROWS(ProtocolError, r.string());
    CHECK_THROWS(ProtocolError, r.raw(1));
    CHECK_EQ(r.raw(0).size(), 0u);
  }
  {
    auto in = hex("01 02 03");
    Reader r(view(in));
    CHECK_THROWS(ProtocolError, r.int32());
    CHECK_EQ(r.remaining(), 3u);  // a failed read consumes nothing
  }
  {
    auto in = hex("ff 10 00 00");  // long form cut short
    Reader r(view(in));
    CHECK_THROWS(ProtocolError, r.size());
  }
  {
    auto in = hex("05 68 65 6c 6c");  // "hell" of a 5-byte string
    Reader r(view(in));
    CHECK_THROWS(ProtocolError, r.string());
  }
  {
    auto in = hex("02 01 61 05 62");  // sequence of 2: "a", then a cut string
    Reader r(view(in));
    CHECK_THROWS(ProtocolError, r.string_sequence());
  }
}

TEST(strings_round_trip) {
  const std::string long_text(300, 'x');
  const std::string utf8 = "h\xc3\xa9llo \xe2\x9c\x93";  // "héllo ✓", 10 bytes
  Bytes out;
  Writer w(out);
  w.string("");
  w.string("hello");
  w.string(long_text);
  w.string(utf8);
  w.string(std::string("a\0b", 3));

  CHECK_EQ(out[0], 0);
  CHECK_EQ(Bytes(out.begin() + 1, out.begin() + 7), hex("05 68 65 6c 6c 6f"));
  CHECK_EQ(Bytes(out.begin() + 7, out.begin() + 12), hex("ff 2c 01 00 00"));

  Reader r(view(out));
  CHECK_EQ(r.string(), "");
  CHECK_EQ(r.string(), "hello");
  CHECK_EQ(r.string(), long_text);
  auto u = r.string();
  CHECK_EQ(u, utf8);
  CHECK_EQ(u.size(), 10u);
  CHECK_EQ(r.string(), std::string("a\0b", 3));
  CHECK(r.at_end());
}

TEST(string_sequences_round_trip) {
  for (const std::vector<std::string>& seq :
       {std::vector<std::string>{}, std::vector<std::string>{"one"},
        std::vector<std::string>{"a", "", std::string(400, 'z')}}) {
    Bytes out;
    Writer(out).string_sequence(seq);
    Reader r(view(out));
    CHECK_EQ(r.string_sequence(), seq);
    CHECK(r.at_end());
  }
}

TEST(writer_position_and_patch) {
  Bytes out = {9, 9};
  Writer w(out);
  CHECK_EQ(w.position(), 2u);
  auto at = w.position();
  w.int32(0);
  w.byte(0x55);
  w.patch_int32(at, 0x11223344);
  CHECK_EQ(out, hex("09 09 44 33 22 11 55"));
  w.raw(view(hex("aa bb")));
  CHECK_EQ(w.position(), 9u);
}

// ---------------------------------------------------------------- header

TEST(parse_header_accepts_every_known_type) {
  for (std::uint8_t type = 0; type <= 4; ++type) {
    auto h = parse_header(view(header(type, 14)), max_1mib);
    CHECK_EQ(h.type, static_cast<MessageType>(type));
    CHECK_EQ(h.compression, 0);
    CHECK_EQ(h.size, 14);
  }
  // Status 1 ("I accept compressed replies") is not compression.
  auto h = parse_header(view(header(0, 100, 1)), max_1mib);
  CHECK_EQ(h.compression, 1);
  CHECK_EQ(h.size, 100);
  // Only the first 14 bytes matter: a header followed by its body parses.
  auto whole = hex(ping_hex);
  auto ping = parse_header(view(whole), max_1mib);
  CHECK_EQ(ping.type, MessageType::request);
  CHECK_EQ(ping.size, 43);
}

TEST(parse_header_rejects_truncated_header) {
  auto h = header(3, 14);
  for (std::size_t n = 0; n < header_size; ++n) {
    CHECK_THROWS(ProtocolError, parse_header(ByteView(h.data(), n), max_1mib));
  }
}

TEST(parse_header_rejects_bad_magic) {
  for (std::size_t i = 0; i < 4; ++i) {
    auto h = header(3, 14);
    h[i] ^= 0x20;  // "icep", "IcEP"...: magic is case-sensitive
    CHECK_THROWS(ProtocolError, parse_header(view(h), max_1mib));
  }
  auto http = Bytes{'G', 'E', 'T', ' ', '/', ' ', 'H', 'T', 'T', 'P', '/', '1', '.', '1'};
  CHECK_THROWS(ProtocolError, parse_header(view(http), max_1mib));
}

TEST(parse_header_rejects_other_protocol_versions) {
  for (auto [major, minor] : {std::pair{1, 1}, std::pair{2, 0}, std::pair{0, 0}, std::pair{0, 1}}) {
    auto h = header(3, 14);
    h[4] = static_cast<std::uint8_t>(major);
    h[5] = static_cast<std::uint8_t>(minor);
    CHECK_THROWS(ProtocolError, parse_header(view(h), max_1mib));
  }
}

TEST(parse_header_rejects_other_header_encodings) {
  for (auto [major, minor] : {std::pair{1, 1}, std::pair{2, 0}, std::pair{0, 0}}) {
    auto h = header(3, 14);
    h[6] = static_cast<std::uint8_t>(major);
    h[7] = static_cast<std::uint8_t>(minor);
    CHECK_THROWS(ProtocolError, parse_header(view(h), max_1mib));
  }
}

TEST(parse_header_rejects_unknown_types) {
  for (int type : {5, 6, 127, 255}) {
    CHECK_THROWS(ProtocolError,
                 parse_header(view(header(static_cast<std::uint8_t>(type), 14)), max_1mib));
  }
}

TEST(parse_header_rejects_compression) {
  CHECK_THROWS(ProtocolError, parse_header(view(header(0, 100, 2)), max_1mib));
  CHECK_THROWS(ProtocolError, parse_header(view(header(0, 100, 3)), max_1mib));
  CHECK_THROWS(ProtocolError, parse_header(view(header(0, 100, 255)), max_1mib));
}

TEST(parse_header_rejects_sizes_below_the_header) {
  for (std::int32_t size : {13, 1, 0, -1, -14, std::numeric_limits<std::int32_t>::min()}) {
    CHECK_THROWS(ProtocolError, parse_header(view(header(3, size)), max_1mib));
  }
}

TEST(parse_header_rejects_sizes_above_the_maximum) {
  CHECK_EQ(parse_header(view(header(0, 1 << 20)), max_1mib).size, 1 << 20);
  CHECK_THROWS(ProtocolError, parse_header(view(header(0, (1 << 20) + 1)), max_1mib));
  CHECK_THROWS(ProtocolError,
               parse_header(view(header(0, std::numeric_limits<std::int32_t>::max())), max_1mib));
  CHECK_EQ(parse_header(view(header(0, 100)), 100).size, 100);
  CHECK_THROWS(ProtocolError, parse_header(view(header(0, 101)), 100));
  // A maximum below the header size admits nothing but is not an error of its own.
  CHECK_THROWS(ProtocolError, parse_header(view(header(3, 14)), 13));
}

// ----------------------------------------------------------- test vectors

TEST(vector_validate_connection) {
  CHECK_EQ(validate_connection_message(), hex(validate_hex));
  CHECK_EQ(close_connection_message(), hex("49 63 65 50 01 00 01 00 04 00 0e 00 00 00"));
  auto h = parse_header(view(hex(validate_hex)), max_1mib);
  CHECK_EQ(h.type, MessageType::validate_connection);
  CHECK_EQ(h.size, 14);
}

TEST(vector_ice_ping_request_encodes_exactly) {
  auto idf = encode_identity_facet(Identity{"hello", ""}, "");
  CHECK_EQ(idf, hex("05 68 65 6c 6c 6f 00 00"));
  Bytes out;
  encode_request(out, 1, view(idf), "ice_ping", 2, Context{}, EncodingVersion{1, 1}, ByteView{});
  CHECK_EQ(out.size(), 43u);
  CHECK_EQ(out, hex(ping_hex));

  // Appended after other bytes, the message and its size field are the same.
  Bytes appended = {0xde, 0xad};
  encode_request(appended, 1, view(idf), "ice_ping", 2, Context{}, EncodingVersion{1, 1},
                 ByteView{});
  CHECK_EQ(Bytes(appended.begin() + 2, appended.end()), hex(ping_hex));
  CHECK_EQ(appended[0], 0xde);
}

TEST(vector_ice_ping_request_decodes) {
  auto message = hex(ping_hex);
  auto h = parse_header(view(message), max_1mib);
  CHECK_EQ(h.type, MessageType::request);
  CHECK_EQ(h.size, 43);
  auto req = decode_request(body_of(message));
  CHECK_EQ(req.request_id, 1);
  CHECK_EQ(req.identity.name, "hello");
  CHECK_EQ(req.identity.category, "");
  CHECK_EQ(req.facet, "");
  CHECK_EQ(req.operation, "ice_ping");
  CHECK_EQ(req.mode, 2);
  CHECK(req.context.empty());
  CHECK_EQ(req.encoding.major, 1);
  CHECK_EQ(req.encoding.minor, 1);
  CHECK_EQ(req.params.size(), 0u);
}

TEST(vector_ice_ping_reply_encodes_and_decodes) {
  Bytes out;
  encode_reply_payload(out, 1, ReplyStatus::ok, EncodingVersion{1, 1}, ByteView{});
  CHECK_EQ(out.size(), 25u);
  CHECK_EQ(out, hex(ping_reply_hex));

  auto message = hex(ping_reply_hex);
  auto h = parse_header(view(message), max_1mib);
  CHECK_EQ(h.type, MessageType::reply);
  CHECK_EQ(h.size, 25);
  auto reply = decode_reply(body_of(message));
  CHECK_EQ(reply.request_id, 1);
  CHECK_EQ(reply.status, 0);
  CHECK_EQ(reply.encoding.major, 1);
  CHECK_EQ(reply.encoding.minor, 1);
  CHECK_EQ(reply.payload.size(), 0u);
  CHECK_EQ(reply.message, "");
}

// ---------------------------------------------------------------- replies

TEST(reply_payload_statuses_round_trip) {
  const auto payload = hex("01 02 03 04 05");
  for (auto status : {ReplyStatus::ok, ReplyStatus::user_exception}) {
    for (auto encoding : {EncodingVersion{1, 0}, EncodingVersion{1, 1}}) {
      Bytes out;
      encode_reply_payload(out, 42, status, encoding, view(payload));
      CHECK_EQ(parse_header(view(out), max_1mib).size, static_cast<std::int32_t>(out.size()));
      auto reply = decode_reply(body_of(out));
      CHECK_EQ(reply.request_id, 42);
      CHECK_EQ(reply.status, static_cast<std::uint8_t>(status));
      CHECK_EQ(reply.encoding.major, encoding.major);
      CHECK_EQ(reply.encoding.minor, encoding.minor);
      CHECK_EQ(Bytes(reply.payload.begin(), reply.payload.end()), payload);
    }
  }
}

TEST(reply_not_exist_statuses_round_trip) {
  for (auto status : {ReplyStatus::object_not_exist, ReplyStatus::facet_not_exist,
                      ReplyStatus::operation_not_exist}) {
    for (const std::string facet : {"", "admin"}) {
      Bytes out;
      encode_reply_not_exist(out, 9, status, Identity{"name", "cat"}, facet, "op");
      auto reply = decode_reply(body_of(out));
      CHECK_EQ(reply.request_id, 9);
      CHECK_EQ(reply.status, static_cast<std::uint8_t>(status));
      CHECK_EQ(reply.identity.name, "name");
      CHECK_EQ(reply.identity.category, "cat");
      CHECK_EQ(reply.facet, facet);
      CHECK_EQ(reply.operation, "op");
      CHECK_EQ(reply.payload.size(), 0u);
    }
  }
  // The exact layout: id, status, name, category, facet sequence, operation.
  Bytes out;
  encode_reply_not_exist(out, 1, ReplyStatus::object_not_exist, Identity{"a", "b"}, "f", "op");
  CHECK_EQ(Bytes(out.begin() + header_size, out.end()),
           hex("01 00 00 00 02 01 61 01 62 01 01 66 02 6f 70"));
}

TEST(reply_message_statuses_round_trip) {
  const std::string long_text(1000, 'e');
  for (int status : {5, 6, 7, 8, 9, 10, 11, 200, 255}) {
    for (const std::string& text : {std::string(), std::string("it broke"), long_text}) {
      Bytes out;
      encode_reply_message(out, -5, static_cast<std::uint8_t>(status), text);
      auto reply = decode_reply(body_of(out));
      CHECK_EQ(reply.request_id, -5);
      CHECK_EQ(reply.status, status);
      CHECK_EQ(reply.message, text);
    }
  }
}

TEST(decode_reply_rejects_malformed_bodies) {
  Bytes ok;
  encode_reply_payload(ok, 1, ReplyStatus::ok, EncodingVersion{1, 1}, view(hex("aa")));
  auto body = Bytes(ok.begin() + header_size, ok.end());
  // Every strict prefix is truncated.
  for (std::size_t n = 0; n < body.size(); ++n) {
    CHECK_THROWS(ProtocolError, decode_reply(ByteView(body.data(), n)));
  }
  // Trailing bytes.
  auto trailing = concat({body, hex("00")});
  CHECK_THROWS(ProtocolError, decode_reply(view(trailing)));
  // Encapsulation sizes below 6, beyond the message, or negative.
  CHECK_THROWS(ProtocolError, decode_reply(view(hex("01 00 00 00 00 05 00 00 00 01 01"))));
  CHECK_THROWS(ProtocolError, decode_reply(view(hex("01 00 00 00 00 08 00 00 00 01 01 aa"))));
  CHECK_THROWS(ProtocolError, decode_reply(view(hex("01 00 00 00 00 ff ff ff ff 01 01"))));
  // An encoding major other than 1.
  CHECK_THROWS(ProtocolError, decode_reply(view(hex("01 00 00 00 00 06 00 00 00 02 00"))));
  // A "does not exist" reply with a two-element facet path.
  CHECK_THROWS(ProtocolError, decode_reply(view(hex("01 00 00 00 02 01 61 00 02 01 66 01 67 01 6f"))));
  // A message reply cut inside its string.
  CHECK_THROWS(ProtocolError, decode_reply(view(hex("01 00 00 00 07 05 61 62"))));
}

// --------------------------------------------------------------- requests

TEST(request_round_trip_with_context_facet_and_params) {
  const Context ctx = {{"k1", "v1"}, {"", ""}, {"long", std::string(300, 'v')}, {"k1", "dup"}};
  const auto params = hex("10 20 30");
  auto idf = encode_identity_facet(Identity{"obj", "cat"}, "fac");
  for (std::uint8_t mode : {0, 1, 2}) {
    for (std::int32_t id : {0, 1, 123456, std::numeric_limits<std::int32_t>::max()}) {
      Bytes out;
      encode_request(out, id, view(idf), "doIt", mode, ctx, EncodingVersion{1, 0}, view(params));
      auto h = parse_header(view(out), max_1mib);
      CHECK_EQ(h.type, MessageType::request);
      CHECK_EQ(h.size, static_cast<std::int32_t>(out.size()));
      auto req = decode_request(body_of(out));
      CHECK_EQ(req.request_id, id);
      CHECK_EQ(req.identity.name, "obj");
      CHECK_EQ(req.identity.category, "cat");
      CHECK_EQ(req.facet, "fac");
      CHECK_EQ(req.operation, "doIt");
      CHECK_EQ(req.mode, mode);
      CHECK(req.context == ctx);  // order and duplicates kept as sent
      CHECK_EQ(req.encoding.major, 1);
      CHECK_EQ(req.encoding.minor, 0);
      CHECK_EQ(Bytes(req.params.begin(), req.params.end()), params);
    }
  }
}

TEST(request_head_plus_params_is_the_whole_request) {
  // A request whose params are written from elsewhere (a lent payload):
  // its head announces them, and head + params is byte for byte the
  // request encode_request makes, whatever the sizes' encodings.
  const Context ctx = {{"k", std::string(300, 'v')}};
  auto idf = encode_identity_facet(Identity{"obj", "cat"}, "fac");
  for (std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{254}, std::size_t{255},
                           std::size_t{70000}}) {
    Bytes params(size);
    for (std::size_t i = 0; i < size; ++i) params[i] = static_cast<std::uint8_t>(i * 13 + 1);
    Bytes whole;
    encode_request(whole, 42, view(idf), "doIt", 1, ctx, EncodingVersion{1, 1}, view(params));
    Bytes head;
    encode_request_head(head, 42, view(idf), "doIt", 1, ctx, EncodingVersion{1, 1}, size);
    CHECK_EQ(head.size() + size, whole.size());
    head.insert(head.end(), params.begin(), params.end());
    CHECK(head == whole);
  }
}

TEST(request_context_layout) {
  auto idf = encode_identity_facet(Identity{"o", ""}, "");
  Bytes out;
  encode_request(out, 1, view(idf), "x", 0, Context{{"a", "b"}, {"cd", ""}},
                 EncodingVersion{1, 1}, ByteView{});
  CHECK_EQ(Bytes(out.begin() + header_size, out.end()),
           hex("01 00 00 00 01 6f 00 00 01 78 00 02 01 61 01 62 02 63 64 00 06 00 00 00 01 01"));
}

TEST(identity_and_facet_encoding) {
  CHECK_EQ(encode_identity_facet(Identity{"", ""}, ""), hex("00 00 00"));
  CHECK_EQ(encode_identity_facet(Identity{"n", "c"}, "f"), hex("01 6e 01 63 01 01 66"));
}

TEST(request_facets_zero_or_one_element) {
  auto build = [](const char* facet_hex) {
    // id 1, identity "o", facet as given, op "x", mode 0, no context, empty params.
    return concat({hex("01 00 00 00 01 6f 00"), hex(facet_hex), hex("01 78 00 00 06 00 00 00 01 01")});
  };
  CHECK_EQ(decode_request(view(build("00"))).facet, "");
  CHECK_EQ(decode_request(view(build("01 01 66"))).facet, "f");
  CHECK_EQ(decode_request(view(build("01 00"))).facet, "");  // one empty element
  CHECK_THROWS(ProtocolError, decode_request(view(build("02 01 66 01 67"))));
  CHECK_THROWS(ProtocolError, decode_request(view(build("02 00 00"))));
}

TEST(decode_request_rejects_malformed_bodies) {
  auto message = hex(ping_hex);
  auto body = Bytes(message.begin() + header_size, message.end());
  for (std::size_t n = 0; n < body.size(); ++n) {
    CHECK_THROWS(ProtocolError, decode_request(ByteView(body.data(), n)));
  }
  CHECK_THROWS(ProtocolError, decode_request(view(concat({body, hex("00")}))));
  // Unknown operation mode 3.
  // Body layout: id 0-3, "hello" 4-9, category 10, facet 11, "ice_ping" 12-20,
  // mode 21, context 22, encapsulation size 23-26, encoding 27-28.
  REQUIRE(body.size() == 29);
  auto bad_mode = body;
  CHECK_EQ(body[21], 2);
  bad_mode[21] = 3;
  CHECK_THROWS(ProtocolError, decode_request(view(bad_mode)));
  // Encapsulation with encoding 2.0.
  auto bad_encoding = body;
  bad_encoding[27] = 2;
  bad_encoding[28] = 0;
  CHECK_THROWS(ProtocolError, decode_request(view(bad_encoding)));
  // Encapsulation size 5.
  auto small_encaps = body;
  CHECK_EQ(body[23], 6);
  small_encaps[23] = 5;
  CHECK_THROWS(ProtocolError, decode_request(view(small_encaps)));
}

// ---------------------------------------------------------------- batches

TEST(batch_requests_zero_one_three) {
  CHECK(decode_batch_request(view(hex("00 00 00 00"))).empty());

  auto ping = request_fields(Identity{"hello", ""}, "", "ice_ping", 2, {}, {});
  auto one = decode_batch_request(view(concat({int32_bytes(1), ping})));
  REQUIRE(one.size() == 1);
  CHECK_EQ(one[0].request_id, 0);  // batched requests are oneway
  CHECK_EQ(one[0].identity.name, "hello");
  CHECK_EQ(one[0].operation, "ice_ping");
  CHECK_EQ(one[0].mode, 2);

  const auto p = hex("01 02");
  auto a = request_fields(Identity{"a", ""}, "", "opA", 0, {}, view(p));
  auto b = request_fields(Identity{"b", "cat"}, "fb", "opB", 1, {{"k", "v"}}, {});
  auto c = request_fields(Identity{"c", ""}, "", std::string(300, 'o'), 2, {}, view(p));
  const auto batch = concat({int32_bytes(3), a, b, c});  // params point into it
  auto three = decode_batch_request(view(batch));
  REQUIRE(three.size() == 3);
  CHECK_EQ(three[0].operation, "opA");
  CHECK_EQ(Bytes(three[0].params.begin(), three[0].params.end()), p);
  CHECK_EQ(three[1].identity.category, "cat");
  CHECK_EQ(three[1].facet, "fb");
  CHECK_EQ(three[1].mode, 1);
  REQUIRE(three[1].context.size() == 1);
  CHECK_EQ(three[1].context[0].first, "k");
  CHECK_EQ(three[1].context[0].second, "v");
  CHECK_EQ(three[2].operation, std::string(300, 'o'));
  for (const auto& r : three) CHECK_EQ(r.request_id, 0);
}

TEST(batch_requests_bad_counts) {
  auto ping = request_fields(Identity{"hello", ""}, "", "ice_ping", 2, {}, {});
  CHECK_THROWS(ProtocolError, decode_batch_request(view(hex(""))));
  CHECK_THROWS(ProtocolError, decode_batch_request(view(hex("00 00 00"))));
  CHECK_THROWS(ProtocolError, decode_batch_request(view(concat({int32_bytes(-1), ping}))));
  CHECK_THROWS(ProtocolError,
               decode_batch_request(view(concat({int32_bytes(std::numeric_limits<std::int32_t>::min()), ping}))));
  CHECK_THROWS(ProtocolError, decode_batch_request(view(concat({int32_bytes(2), ping}))));  // one short
  CHECK_THROWS(ProtocolError, decode_batch_request(view(concat({int32_bytes(1), ping, ping}))));  // trailing
  CHECK_THROWS(ProtocolError, decode_batch_request(view(concat({int32_bytes(0), ping}))));  // trailing
}

// ------------------------------------------------------- sizes that lie

TEST(declared_100mb_string_is_rejected_without_allocating) {
  // A 40-byte request whose operation name claims 100 MB.
  auto body = concat({hex("01 00 00 00 05 68 65 6c 6c 6f 00 00"),
                      hex("ff"), int32_bytes(100'000'000),
                      hex("69 63 65 5f 70 69 6e 67 02 00 06 00 00 00 01 01")});
  auto message = concat({header(0, static_cast<std::int32_t>(header_size + body.size())), body});
  CHECK_EQ(parse_header(view(message), max_1mib).size, static_cast<std::int32_t>(message.size()));
  std::size_t largest;
  {
    AllocationProbe probe;
    CHECK_THROWS(ProtocolError, decode_request(body_of(message)));
    largest = probe.largest();
  }
  CHECK(largest < 64 * 1024);
}

TEST(declared_huge_counts_are_rejected_without_allocating) {
  const auto huge = int32_bytes(100'000'000);
  const Bytes cases[] = {
      // facet sequence of 100M strings
      concat({hex("01 00 00 00 01 6f 00 ff"), huge, hex("00 01 78 00 00 06 00 00 00 01 01")}),
      // context of 100M pairs
      concat({hex("01 00 00 00 01 6f 00 00 01 78 00 ff"), huge, hex("00 00 06 00 00 00 01 01")}),
      // identity name of 100M bytes
      concat({hex("01 00 00 00 ff"), huge, hex("00 00 01 78 00 00 06 00 00 00 01 01")}),
      // params encapsulation of 100M bytes
      concat({hex("01 00 00 00 01 6f 00 00 01 78 00 00"), huge, hex("01 01 00 00")}),
  };
  for (const auto& body : cases) {
    std::size_t largest;
    {
      AllocationProbe probe;
      CHECK_THROWS(ProtocolError, decode_request(view(body)));
      largest = probe.largest();
    }
    CHECK(largest < 64 * 1024);
  }
  // A batch announcing 100M requests.
  std::size_t largest;
  {
    auto body = concat({huge, request_fields(Identity{"o", ""}, "", "x", 0, {}, {})});
    AllocationProbe probe;
    CHECK_THROWS(ProtocolError, decode_batch_request(view(body)));
    largest = probe.largest();
  }
  CHECK(largest < 64 * 1024);
  // A reply whose message claims 100M bytes.
  {
    auto body = concat({hex("01 00 00 00 07 ff"), huge, hex("61 62 63")});
    AllocationProbe probe;
    CHECK_THROWS(ProtocolError, decode_reply(view(body)));
    largest = probe.largest();
  }
  CHECK(largest < 64 * 1024);
}

TEST(allocation_probe_sees_allocations) {
  // The probe itself works: a real 1 MB string is seen.
  std::size_t largest;
  {
    AllocationProbe probe;
    std::string big(1 << 20, 'x');
    CHECK_EQ(big.size(), 1u << 20);
    largest = probe.largest();
  }
  CHECK(largest >= (1u << 20));
}
