// Writes the seed corpora of the fuzz targets: valid Ice messages of every
// type, made with the library's own encoders.
//
//   make_corpus <dir>   writes <dir>/message/<name> and <dir>/stream/<name>
//
// message/: one message per file (fuzz_message reads a stream of them, so the
// session_* files hold several). stream/: the same bytes behind one leading
// chunking byte (fuzz_server: 0 = one write, n = n bytes per write), as a
// client would send them to a server.
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "protocol/buffer.h"
#include "protocol/message.h"

namespace {

using namespace aiocomm::protocol;

Bytes bytes(std::string_view s) { return Bytes(s.begin(), s.end()); }

Bytes request(std::int32_t id, const Identity& identity, const std::string& facet,
              std::string_view op, std::uint8_t mode, const Context& ctx, Bytes params,
              EncodingVersion enc = {1, 1}) {
  Bytes out;
  encode_request(out, id, ByteView(encode_identity_facet(identity, facet)), op, mode, ctx, enc,
                 ByteView(params));
  return out;
}

// A batch request of `count` oneway requests (there is no library encoder).
Bytes batch(int count) {
  Bytes out;
  begin_message(out, MessageType::batch_request);
  Writer w(out);
  w.int32(count);
  for (int i = 0; i < count; ++i) {
    Identity id{"hello" + std::to_string(i), i % 2 ? "cat" : ""};
    w.raw(ByteView(encode_identity_facet(id, i == 2 ? "facet" : "")));
    w.string(i == 1 ? "ice_ping" : "say_hello");
    w.byte(static_cast<std::uint8_t>(i % 3));
    w.size(static_cast<std::size_t>(i));
    for (int k = 0; k < i; ++k) {
      w.string("k" + std::to_string(k));
      w.string("v" + std::to_string(k));
    }
    auto params = bytes(std::string(static_cast<std::size_t>(i) * 3, 'p'));
    w.int32(static_cast<std::int32_t>(params.size() + 6));
    w.byte(1);
    w.byte(1);
    w.raw(ByteView(params));
  }
  finish_message(out);
  return out;
}

Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

void write_file(const std::string& path, const Bytes& data) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || std::fwrite(data.data(), 1, data.size(), f) != data.size() || std::fclose(f) != 0) {
    std::perror(path.c_str());
    std::exit(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
    return 2;
  }
  std::string dir = argv[1];
  ::mkdir(dir.c_str(), 0755);
  ::mkdir((dir + "/message").c_str(), 0755);
  ::mkdir((dir + "/stream").c_str(), 0755);

  std::vector<std::pair<std::string, Bytes>> seeds;
  const Identity hello{"hello", ""};
  const Identity cat_hello{"hello", "demo"};

  seeds.emplace_back("validate", validate_connection_message());
  seeds.emplace_back("close", close_connection_message());
  seeds.emplace_back("request_ping", request(1, hello, "", "ice_ping", 0, {}, {}));
  seeds.emplace_back("request_oneway", request(0, hello, "", "say_hello", 0, {}, bytes("world")));
  seeds.emplace_back("request_idempotent", request(7, cat_hello, "", "get", 2, {}, bytes("x")));
  seeds.emplace_back("request_nonmutating", request(8, hello, "", "get", 1, {}, {}));
  seeds.emplace_back("request_context",
                     request(2, hello, "", "say_hello", 0, {{"user", "ann"}, {"trace", "1"}},
                             bytes("payload")));
  seeds.emplace_back("request_facet", request(3, cat_hello, "admin", "ice_isA", 2, {},
                                              bytes("\x0e::Demo::Hello")));
  seeds.emplace_back("request_facet_context",
                     request(4, cat_hello, "f", "op", 0, {{"a", ""}, {"", "b"}}, bytes("p")));
  seeds.emplace_back("request_encoding_1_0",
                     request(5, hello, "", "op", 0, {}, bytes("abc"), {1, 0}));
  {
    // A size written in its 5-byte form: a 300-byte operation name.
    seeds.emplace_back("request_long_name",
                       request(6, hello, "", std::string(300, 'o'), 0, {}, bytes("z")));
  }
  for (int n = 0; n <= 3; ++n) seeds.emplace_back("batch_" + std::to_string(n), batch(n));

  for (int status = 0; status <= 9; ++status) {
    Bytes out;
    auto name = "reply_status_" + std::to_string(status);
    if (status <= 1) {
      encode_reply_payload(out, 1, static_cast<ReplyStatus>(status), {1, 1},
                           ByteView(bytes(status == 0 ? "result" : "user exception")));
    } else if (status <= 4) {
      encode_reply_not_exist(out, 1, static_cast<ReplyStatus>(status), cat_hello,
                             status == 3 ? "facet" : "", "op");
    } else {
      encode_reply_message(out, 1, static_cast<std::uint8_t>(status == 8 ? 200 : status),
                           "something went wrong");
    }
    seeds.emplace_back(name, out);
  }
  {
    Bytes out;
    encode_reply_payload(out, 42, ReplyStatus::ok, {1, 0}, ByteView(Bytes{}));
    seeds.emplace_back("reply_empty_payload", out);
  }

  // Sessions: several messages back to back.
  Bytes session = cat({request(1, hello, "", "ice_ping", 0, {}, {}),
                       request(0, hello, "", "say_hello", 0, {{"k", "v"}}, bytes("w")), batch(2),
                       request(2, cat_hello, "f", "op", 2, {}, bytes("abc")),
                       validate_connection_message()});
  seeds.emplace_back("session_requests", session);
  seeds.emplace_back("session_then_close", cat({session, close_connection_message()}));

  for (const auto& [name, data] : seeds) {
    write_file(dir + "/message/" + name, data);
    // One write, and for some seeds also two bytes per write.
    Bytes whole = cat({Bytes{0x00}, data});
    write_file(dir + "/stream/" + name, whole);
    if (name.rfind("session", 0) == 0 || name == "request_context" || name == "batch_3") {
      write_file(dir + "/stream/" + name + "_chunked", cat({Bytes{0x02}, data}));
    }
  }
  std::printf("%zu message seeds written to %s\n", seeds.size(), dir.c_str());
  return 0;
}
