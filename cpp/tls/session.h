// One connection's TLS state over memory buffers: ciphertext goes in with
// feed(), comes out with output()/consume_output(); plaintext comes out of
// read() and goes in with write(). No sockets and no threads here: the
// caller moves the bytes and serializes every call (one lock per session).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tls/context.h"

namespace aiocomm::tls {

// Who is at the other end of an established session, for a servant to
// decide by. Certificate fields are empty when the peer sent none.
struct PeerInfo {
  std::string subject;  // RFC 2253, e.g. "CN=client,O=Example"
  std::string issuer;
  std::vector<std::string> alt_names;  // "DNS:host", "IP:1.2.3.4", "email:...", "URI:..."
  std::vector<std::uint8_t> der;       // the peer's certificate
  std::string cipher;
  std::string protocol;  // "TLSv1.3"
};

class Session {
 public:
  enum class Role : std::uint8_t { client, server };
  enum class Status : std::uint8_t {
    ok,           // handshake finished / bytes read
    want_input,   // more ciphertext must be fed first
    closed,       // the peer sent close_notify
    failed,       // fatal: see error()
  };
  struct ReadResult {
    Status status;
    std::size_t bytes = 0;
  };

  // `host` is the name or address a client connected to: it is sent as SNI
  // (names only) and, with check_hostname, matched against the certificate.
  // Throws tls::Error.
  Session(std::shared_ptr<const Context> context, Role role, const std::string& host);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Advances the handshake with what was fed; ok once it is finished.
  Status handshake();
  bool handshake_done() const noexcept;

  // Ciphertext received from the peer; false when it cannot be buffered
  // (out of memory; see error()).
  bool feed(std::span<const std::uint8_t> ciphertext);
  // Ciphertext to send, in order (stable until consume_output/write/handshake).
  std::span<const std::uint8_t> output();
  void consume_output(std::size_t bytes);
  bool has_output();
  // Appends all of output() to `into` and empties it: for a caller that
  // sends from a buffer of its own, without the session's lock.
  void take_output(std::vector<std::uint8_t>& into);

  // Plaintext, after the handshake. read() fills `into` from whole records.
  ReadResult read(std::span<std::uint8_t> into);
  // Encrypts all of `plaintext` into output(); false (see error()) on failure.
  bool write(std::span<const std::uint8_t> plaintext);
  // Bytes fed or decrypted that read() has not returned yet, or the peer's
  // close_notify: a caller that waits for the socket to become readable
  // must read these first.
  bool buffered() const noexcept;

  // Graceful end: puts a close_notify alert into output(), after whatever
  // ciphertext is already there. One call, never waiting for the peer's
  // close_notify (a peer that does not answer must not hold anyone).
  // False, and nothing queued, when there is no session to end cleanly:
  // the handshake did not finish, the session failed, or it was already
  // closed.
  bool close();
  // Whether the peer's close_notify arrived (read() then returns closed):
  // the clean end of its stream, as a FIN is over TCP.
  bool peer_closed() const noexcept;

  // Why the last call failed: OpenSSL's reason, and the certificate
  // verification's when that was the cause.
  const std::string& error() const noexcept { return error_; }
  // After the handshake: "TLSv1.3", the cipher's name.
  std::string protocol() const;
  std::string cipher() const;
  // After the handshake.
  PeerInfo peer_info() const;

 private:
  Status fail(int code, const char* during);

  struct Handles;
  std::shared_ptr<const Context> context_;
  std::unique_ptr<Handles> handles_;
  std::string error_;
  bool failed_ = false;  // a fatal error: OpenSSL forbids a shutdown after one
};

}  // namespace aiocomm::tls
