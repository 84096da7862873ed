// libFuzzer target: the TLS session layer (tls/session.h) fed hostile
// ciphertext, the way a connection feeds it what a peer sent.
//
// The first byte picks who we are and how far the handshake got:
//   0  a server, the input is the client's flight(s);
//   1  a server requiring a client certificate (VerifyPeer 2), likewise;
//   2  a client that sent its ClientHello, the input is the server's answer;
//   3  a server fed a real ClientHello (made once, at start-up) with the
//      input's (offset, byte) pairs written over it: the parser's depths that
//      random bytes rarely reach;
//   4  an established server (a real in-memory handshake), the input arriving
//      as records after it: the record layer, alerts, a renegotiation.
// The rest is cut into feeds by one length byte each, so records can arrive
// split as they do from a socket. Every call must end in ok, want_input,
// closed or failed with a reason: a sanitizer report, a leak, an exception
// or a failure without a reason is a bug.
//
// The certificates are made at start-up (an EC key, self-signed) into a
// temporary directory: the target needs no files of the tree.
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <unistd.h>

#include "tls/context.h"
#include "tls/session.h"

namespace {

using aiocomm::tls::Config;
using aiocomm::tls::Context;
using aiocomm::tls::Session;
using Status = Session::Status;

[[noreturn]] void invariant_failed(const char* what) {
  std::fprintf(stderr, "fuzz_tls: invariant failed: %s\n", what);
  std::abort();
}

struct PkeyFree {
  void operator()(EVP_PKEY* k) const noexcept { EVP_PKEY_free(k); }
};
struct X509Free {
  void operator()(X509* x) const noexcept { X509_free(x); }
};
struct FileClose {
  void operator()(std::FILE* f) const noexcept { std::fclose(f); }
};

// A self-signed P-256 certificate for "localhost", its key beside it.
void make_certificate(const std::filesystem::path& cert, const std::filesystem::path& key) {
  std::unique_ptr<EVP_PKEY, PkeyFree> pkey(EVP_EC_gen("P-256"));
  std::unique_ptr<X509, X509Free> x509(X509_new());
  if (!pkey || !x509) invariant_failed("cannot make a key");
  X509_set_version(x509.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x509.get()), 1);
  X509_gmtime_adj(X509_getm_notBefore(x509.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x509.get()), 3600L * 24 * 365);
  X509_set_pubkey(x509.get(), pkey.get());
  X509_NAME* name = X509_get_subject_name(x509.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
  X509_set_issuer_name(x509.get(), name);
  if (X509_sign(x509.get(), pkey.get(), EVP_sha256()) <= 0) invariant_failed("cannot sign");
  std::unique_ptr<std::FILE, FileClose> c(std::fopen(cert.c_str(), "w"));
  std::unique_ptr<std::FILE, FileClose> k(std::fopen(key.c_str(), "w"));
  if (!c || !k || PEM_write_X509(c.get(), x509.get()) != 1 ||
      PEM_write_PrivateKey(k.get(), pkey.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    invariant_failed("cannot write the certificate");
  }
}

struct World {
  std::shared_ptr<const Context> server;         // VerifyPeer 0
  std::shared_ptr<const Context> server_strict;  // VerifyPeer 2
  std::shared_ptr<const Context> client;         // verifies the server
  std::vector<std::uint8_t> client_hello;
};

World* world = nullptr;

// Moves one session's output into the other, until neither has any.
void pump(Session& from, Session& to) {
  auto out = from.output();
  if (out.empty()) return;
  if (!to.feed(out)) invariant_failed("feed failed");
  from.consume_output(out.size());
}

// A client and a server that finished their handshake in memory.
bool establish(Session& client, Session& server) {
  for (int round = 0; round < 20; ++round) {
    auto c = client.handshake();
    pump(client, server);
    auto s = server.handshake();
    pump(server, client);
    if (c == Status::failed || s == Status::failed) return false;
    if (c == Status::ok && s == Status::ok && !client.has_output() && !server.has_output()) {
      return true;
    }
  }
  return false;
}

void check(Session& session, Status status) {
  if (status == Status::failed && session.error().empty()) invariant_failed("a failure without a reason");
}

// Feeds `input` to `session` in pieces, advancing the handshake (or reading,
// once established) after each, as the connection does; stops at a failure.
void drive(Session& session, std::span<const std::uint8_t> input) {
  std::array<std::uint8_t, 4096> plain{};
  while (!input.empty()) {
    std::size_t take = input[0] == 0 ? input.size() - 1 : std::min<std::size_t>(input[0], input.size() - 1);
    input = input.subspan(1);
    if (!session.feed(input.first(take))) return;
    input = input.subspan(take);
    for (int step = 0; step < 64; ++step) {  // bounded, as the reactor's loop is
      Status status;
      if (!session.handshake_done()) {
        status = session.handshake();
      } else {
        auto result = session.read(plain);
        if (result.bytes > plain.size()) invariant_failed("read more than asked");
        status = result.status;
      }
      session.consume_output(session.output().size());
      check(session, status);
      if (status == Status::failed || status == Status::closed) return;
      if (status == Status::want_input) break;
      if (session.handshake_done() && !session.buffered()) break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  auto dir = std::filesystem::temp_directory_path() / ("aiocomm-fuzz-tls-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  auto cert = dir / "cert.pem", key = dir / "key.pem";
  make_certificate(cert, key);
  static World w;
  Config server{cert, key, cert, "", 0, true, "TLSv1.2"};
  Config strict = server;
  strict.verify_peer = 2;
  Config client{"", "", cert, "", 1, true, "TLSv1.2"};
  w.server = Context::create(server);
  w.server_strict = Context::create(strict);
  w.client = Context::create(client);
  // The contexts have read the files: nothing is left behind.
  std::filesystem::remove_all(dir);
  Session hello(w.client, Session::Role::client, "localhost");
  if (hello.handshake() != Status::want_input) invariant_failed("no ClientHello");
  auto out = hello.output();
  w.client_hello.assign(out.begin(), out.end());
  world = &w;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  std::span<const std::uint8_t> input(data + 1, size - 1);
  try {
    switch (data[0] % 5) {
      case 0: {
        Session server(world->server, Session::Role::server, "");
        drive(server, input);
        break;
      }
      case 1: {
        Session server(world->server_strict, Session::Role::server, "");
        drive(server, input);
        break;
      }
      case 2: {
        Session client(world->client, Session::Role::client, "localhost");
        if (client.handshake() != Status::want_input) invariant_failed("client did not wait");
        client.consume_output(client.output().size());
        drive(client, input);
        break;
      }
      case 3: {
        std::vector<std::uint8_t> hello = world->client_hello;
        for (std::size_t i = 0; i + 2 < input.size(); i += 3) {
          std::size_t at = (static_cast<std::size_t>(input[i]) << 8 | input[i + 1]) % hello.size();
          hello[at] = input[i + 2];
        }
        Session server(world->server, Session::Role::server, "");
        std::vector<std::uint8_t> framed{0};  // one feed: the whole hello
        framed.insert(framed.end(), hello.begin(), hello.end());
        drive(server, framed);
        break;
      }
      default: {
        Session client(world->client, Session::Role::client, "localhost");
        Session server(world->server, Session::Role::server, "");
        if (!establish(client, server)) invariant_failed("the in-memory handshake failed");
        drive(server, input);
        break;
      }
    }
  } catch (const aiocomm::tls::Error& e) {
    // Only a session that cannot be made throws; these can always be made.
    std::fprintf(stderr, "fuzz_tls: %s\n", e.what());
    invariant_failed("tls::Error from a session");
  }
  return 0;
}
