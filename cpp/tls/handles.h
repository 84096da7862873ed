// OpenSSL handles owned through unique_ptr (context.cpp and session.cpp only).
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "tls/context.h"

namespace aiocomm::tls {

struct SslCtxFree {
  void operator()(SSL_CTX* ctx) const noexcept { SSL_CTX_free(ctx); }
};
struct SslFree {
  void operator()(SSL* ssl) const noexcept { SSL_free(ssl); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;
using SslPtr = std::unique_ptr<SSL, SslFree>;

struct Context::Handles {
  SslCtxPtr client;
  SslCtxPtr server;
  // The key's password, where OpenSSL's callback finds it (set on both).
  std::string password;
};

// OpenSSL's queued errors as one line (emptied), or `fallback` when none.
std::string drain_errors(const std::string& fallback);

}  // namespace aiocomm::tls
