// The TLS engine over memory: two sessions shuttle bytes between each other
// (no socket), with certificates the tests make in a temporary directory.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#if AIOCOMM_HAVE_TLS
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#endif

#include "check.h"
#include "pki.h"
#include "tls/config.h"
#include "tls/context.h"
#include "tls/session.h"

#if AIOCOMM_HAVE_TLS

using aiocomm::tls::Config;
using aiocomm::tls::Context;
using aiocomm::tls::Session;

namespace {

std::string file(const char* name) { return aiocomm::tests::pki_file(name); }

Config server_config(int verify_peer = 0) {
  Config c;
  c.certfile = file("server.pem");
  c.keyfile = file("server.key");
  c.cafile = file("ca.pem");
  c.verify_peer = verify_peer;
  return c;
}

Config client_config(const char* ca = "ca.pem") {
  Config c;
  c.cafile = file(ca);
  c.verify_peer = 2;
  return c;
}

// Moves output of each into the other until both are done or one fails.
// Returns whether both finished.
bool run_handshake(Session& client, Session& server) {
  for (int i = 0; i < 20; ++i) {
    auto c = client.handshake();
    auto out = client.output();
    server.feed(out);
    client.consume_output(out.size());
    auto s = server.handshake();
    out = server.output();
    client.feed(out);
    server.consume_output(out.size());
    if (c == Session::Status::failed || s == Session::Status::failed) return false;
    if (c == Session::Status::ok && s == Session::Status::ok && !client.has_output()) return true;
  }
  return false;
}

std::string transfer(Session& from, Session& to, const std::string& text) {
  REQUIRE(from.write({reinterpret_cast<const std::uint8_t*>(text.data()), text.size()}));
  auto out = from.output();
  to.feed(out);
  from.consume_output(out.size());
  std::string got;
  std::vector<std::uint8_t> buffer(64 * 1024);
  for (;;) {
    auto r = to.read(buffer);
    if (r.status != Session::Status::ok) break;
    got.append(reinterpret_cast<const char*>(buffer.data()), r.bytes);
  }
  return got;
}

}  // namespace

TEST(tls_handshake_and_records_between_two_sessions) {
  auto server_ctx = Context::create(server_config());
  auto client_ctx = Context::create(client_config());
  Session server(server_ctx, Session::Role::server, "");
  Session client(client_ctx, Session::Role::client, "localhost");
  REQUIRE(run_handshake(client, server));
  CHECK(client.handshake_done());
  CHECK_EQ(client.protocol(), std::string("TLSv1.3"));
  CHECK(!client.cipher().empty());
  CHECK_EQ(transfer(client, server, "ping"), std::string("ping"));
  // Larger than a record (16 KiB): read() gathers several records.
  std::string big(100'000, 'x');
  CHECK_EQ(transfer(server, client, big), big);
  CHECK(!client.buffered());
}

// A graceful end: close() queues close_notify behind what was written, the
// peer reads the bytes and then the end (not an error), answers with its
// own, and neither waits for the other.
TEST(tls_close_sends_close_notify_and_the_peers_reads_as_the_end) {
  Session server(Context::create(server_config()), Session::Role::server, "");
  Session client(Context::create(client_config()), Session::Role::client, "localhost");
  // Before the handshake there is no session to end: nothing is queued.
  CHECK(!client.close());
  CHECK(!client.has_output());
  REQUIRE(run_handshake(client, server));

  std::string last = "last words";
  REQUIRE(client.write({reinterpret_cast<const std::uint8_t*>(last.data()), last.size()}));
  REQUIRE(client.close());
  CHECK(!client.close());  // once
  auto out = client.output();
  server.feed(out);
  client.consume_output(out.size());
  std::vector<std::uint8_t> buffer(1024);
  auto r = server.read(buffer);
  CHECK(r.status == Session::Status::ok);
  CHECK_EQ(std::string(reinterpret_cast<const char*>(buffer.data()), r.bytes), last);
  // The end came with the bytes: a reader must come back for it even if
  // the socket stays quiet (the peer may wait for our answer).
  CHECK(server.buffered());
  r = server.read(buffer);
  CHECK(r.status == Session::Status::closed);
  CHECK(server.peer_closed());
  CHECK(server.read(buffer).status == Session::Status::closed);  // and stays so
  CHECK(server.error().empty());

  // The answer; the first closer reads it as the end too.
  REQUIRE(server.close());
  out = server.output();
  REQUIRE(!out.empty());
  client.feed(out);
  server.consume_output(out.size());
  CHECK(client.read(buffer).status == Session::Status::closed);
  CHECK(client.peer_closed());
}

// A record that fails to authenticate right after good ones: read() gives
// the good bytes first, then the failure with OpenSSL's reason, and leaves
// OpenSSL's per-thread error queue empty each time (the loop's thread
// shares it with Python's ssl module).
TEST(tls_a_forged_record_after_good_bytes_fails_the_next_read_and_leaves_no_errors_queued) {
  Session server(Context::create(server_config()), Session::Role::server, "");
  Session client(Context::create(client_config()), Session::Role::client, "localhost");
  REQUIRE(run_handshake(client, server));
  std::string good = "good bytes";
  REQUIRE(client.write({reinterpret_cast<const std::uint8_t*>(good.data()), good.size()}));
  auto out = client.output();
  std::vector<std::uint8_t> wire(out.begin(), out.end());
  client.consume_output(out.size());
  // An application-data record of 64 bytes that no key made.
  wire.insert(wire.end(), {0x17, 0x03, 0x03, 0x00, 0x40});
  for (int i = 0; i < 64; ++i) wire.push_back(static_cast<std::uint8_t>(i));
  server.feed(wire);
  std::vector<std::uint8_t> buffer(1024);
  auto r = server.read(buffer);
  CHECK(r.status == Session::Status::ok);
  CHECK_EQ(std::string(reinterpret_cast<const char*>(buffer.data()), r.bytes), good);
  CHECK_EQ(ERR_peek_error(), 0UL);
  r = server.read(buffer);
  CHECK(r.status == Session::Status::failed);
  CHECK_EQ(r.bytes, std::size_t{0});
  CHECK(!server.error().empty());
  CHECK_EQ(ERR_peek_error(), 0UL);
  CHECK(server.read(buffer).status == Session::Status::failed);  // and stays so
}

TEST(tls_a_failed_session_sends_no_close_notify) {
  Session server(Context::create(server_config()), Session::Role::server, "");
  std::vector<std::uint8_t> noise(300, 0x16);
  server.feed(noise);
  REQUIRE(server.handshake() == Session::Status::failed);
  auto alert = server.output();  // OpenSSL's own fatal alert, if any
  server.consume_output(alert.size());
  CHECK(!server.close());
  CHECK(!server.has_output());
}

TEST(tls_client_refuses_a_server_of_another_ca) {
  auto server_cfg = server_config();
  server_cfg.certfile = file("other-server.pem");
  server_cfg.keyfile = file("other-server.key");
  Session server(Context::create(server_cfg), Session::Role::server, "");
  Session client(Context::create(client_config()), Session::Role::client, "localhost");
  CHECK(!run_handshake(client, server));
  CHECK(client.error().find("certificate verify failed") != std::string::npos);
  CHECK(client.error().find("unable to get local issuer certificate") != std::string::npos);
}

TEST(tls_hostname_check) {
  auto server_ctx = Context::create(server_config());
  {
    Session server(server_ctx, Session::Role::server, "");
    Session client(Context::create(client_config()), Session::Role::client, "example.org");
    CHECK(!run_handshake(client, server));
    CHECK(client.error().find("mismatch") != std::string::npos);
  }
  {  // an address is matched against the IP subject alternative names
    Session server(server_ctx, Session::Role::server, "");
    Session client(Context::create(client_config()), Session::Role::client, "127.0.0.1");
    CHECK(run_handshake(client, server));
  }
  {  // check_hostname off: the chain alone is verified
    auto cfg = client_config();
    cfg.check_hostname = false;
    Session server(server_ctx, Session::Role::server, "");
    Session client(Context::create(cfg), Session::Role::client, "example.org");
    CHECK(run_handshake(client, server));
  }
}

TEST(tls_server_requires_a_client_certificate) {
  auto server_ctx = Context::create(server_config(2));
  {
    Session server(server_ctx, Session::Role::server, "");
    Session client(Context::create(client_config()), Session::Role::client, "localhost");
    CHECK(!run_handshake(client, server));
    CHECK(server.error().find("certificate") != std::string::npos);
  }
  {  // mutual authentication, with an encrypted client key
    auto cfg = client_config();
    cfg.certfile = file("client.pem");
    cfg.keyfile = file("client-enc.key");
    cfg.password = "secret";
    Session server(server_ctx, Session::Role::server, "");
    Session client(Context::create(cfg), Session::Role::client, "localhost");
    CHECK(run_handshake(client, server));
    CHECK_EQ(transfer(client, server, "hello"), std::string("hello"));
  }
}

TEST(tls_garbage_fails_the_handshake_without_crashing) {
  Session server(Context::create(server_config()), Session::Role::server, "");
  std::string garbage = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  server.feed({reinterpret_cast<const std::uint8_t*>(garbage.data()), garbage.size()});
  CHECK(server.handshake() == Session::Status::failed);
  CHECK(!server.error().empty());
}

TEST(tls_configuration_errors_name_the_file) {
  auto cfg = server_config();
  cfg.certfile = file("missing.pem");
  try {
    Context::create(cfg);
    CHECK(false);
  } catch (const aiocomm::tls::Error& e) {
    CHECK(std::string(e.what()).find("missing.pem") != std::string::npos);
  }
  cfg = client_config();
  cfg.certfile = file("client.pem");
  cfg.keyfile = file("client-enc.key");
  cfg.password = "wrong";
  CHECK_THROWS(aiocomm::tls::Error, Context::create(cfg));
  cfg.min_version = "SSLv3";
  CHECK_THROWS(aiocomm::tls::Error, Context::create(cfg));
}

// A TLS 1.2 peer written with OpenSSL directly: our sessions cannot
// renegotiate, so this is what asks for one.
TEST(tls_a_renegotiation_attempt_fails_the_session) {
  using CtxPtr = std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)>;
  using SslPtr = std::unique_ptr<SSL, decltype(&SSL_free)>;
  CtxPtr ctx(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
  REQUIRE(ctx != nullptr);
  SSL_CTX_set_max_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  SslPtr peer(SSL_new(ctx.get()), SSL_free);
  BIO* peer_in = BIO_new(BIO_s_mem());
  BIO* peer_out = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(peer_in, -1);
  SSL_set_bio(peer.get(), peer_in, peer_out);
  SSL_set_connect_state(peer.get());
  Session server(Context::create(server_config()), Session::Role::server, "");

  std::vector<std::uint8_t> buffer(64 * 1024);
  auto shuttle = [&] {  // peer -> server -> peer
    int n;
    while ((n = BIO_read(peer_out, buffer.data(), static_cast<int>(buffer.size()))) > 0) {
      server.feed({buffer.data(), static_cast<std::size_t>(n)});
    }
    auto status = server.handshake_done() ? server.read(buffer).status : server.handshake();
    auto out = server.output();
    BIO_write(peer_in, out.data(), static_cast<int>(out.size()));
    server.consume_output(out.size());
    return status;
  };
  for (int i = 0; i < 10 && !(SSL_is_init_finished(peer.get()) && server.handshake_done()); ++i) {
    SSL_do_handshake(peer.get());
    shuttle();
  }
  REQUIRE(server.handshake_done());
  CHECK_EQ(server.protocol(), std::string("TLSv1.2"));
  REQUIRE(SSL_renegotiate(peer.get()) == 1);
  SSL_do_handshake(peer.get());
  CHECK(shuttle() == Session::Status::failed);
  CHECK(server.error().find("renegotiation") != std::string::npos);
}

#else

TEST(tls_unavailable_says_what_is_missing) {
  CHECK(!aiocomm::tls::available());
  CHECK_THROWS(aiocomm::tls::Error, aiocomm::tls::Context::create({}));
}

#endif
