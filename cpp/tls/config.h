// What a TLS endpoint is configured with: the names Python's ssl module
// uses, and IceSSL's VerifyPeer levels. Plain data, no OpenSSL types, so the
// core and the binding can carry it without the OpenSSL headers.
#pragma once

#include <stdexcept>
#include <string>

namespace aiocomm::tls {

struct Config {
  std::string certfile;  // PEM chain, leaf first; empty: no certificate
  std::string keyfile;   // PEM private key; empty: taken from certfile
  std::string cafile;    // PEM trust anchors; empty: OpenSSL's default paths
  std::string password;  // of an encrypted key
  // 0: verify nothing; 1: a server asks for a client certificate and a
  // client verifies the server; 2: a server also requires one.
  int verify_peer = 2;
  bool check_hostname = true;  // a client matches the server's name or address
  std::string min_version = "TLSv1.2";  // "TLSv1.2" or "TLSv1.3"
};

// A configuration that cannot be used, or a handshake that failed; the text
// carries OpenSSL's reason.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Whether this build has a TLS engine (false without OpenSSL).
bool available() noexcept;

}  // namespace aiocomm::tls
