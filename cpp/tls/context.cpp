// Builds the client and server SSL_CTX of one configuration.
#include "tls/context.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <cstring>

#include "tls/handles.h"

namespace aiocomm::tls {

bool available() noexcept { return true; }

std::string drain_errors(const std::string& fallback) {
  std::string text;
  while (unsigned long code = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof buffer);
    if (!text.empty()) text += "; ";
    text += buffer;
  }
  return text.empty() ? fallback : text;
}

namespace {

int password_callback(char* into, int size, int, void* user) {
  const auto* password = static_cast<const std::string*>(user);
  if (password == nullptr || size <= 0) return 0;
  auto n = std::min<std::size_t>(password->size(), static_cast<std::size_t>(size));
  std::memcpy(into, password->data(), n);
  return static_cast<int>(n);
}

[[noreturn]] void raise(const std::string& what) {
  throw Error(what + ": " + drain_errors("unknown OpenSSL error"));
}

int version_of(const std::string& name) {
  if (name == "TLSv1.2") return TLS1_2_VERSION;
  if (name == "TLSv1.3") return TLS1_3_VERSION;
  throw Error("min_version must be \"TLSv1.2\" or \"TLSv1.3\", not \"" + name + "\"");
}

SslCtxPtr make_ctx(const Config& config, bool server, std::string* password) {
  SslCtxPtr ctx(SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()));
  if (!ctx) raise("cannot create a TLS context");
  SSL_CTX_set_min_proto_version(ctx.get(), version_of(config.min_version));
  // Renegotiation is how a peer would restart authentication mid-stream;
  // an RPC connection has no use for it, so it is refused outright.
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  if (server) {
    // No session resumption: each connection authenticates afresh, and no
    // ticket is written after the handshake (output nobody asked for).
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx.get(), SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx.get(), 0);
    static const unsigned char id[] = "aiocomm";
    SSL_CTX_set_session_id_context(ctx.get(), id, sizeof id - 1);
  }
  // Partial writes never happen with memory buffers, but a record's buffer
  // may move between retries.
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_default_passwd_cb(ctx.get(), password_callback);
  SSL_CTX_set_default_passwd_cb_userdata(ctx.get(), password);
  if (!config.certfile.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx.get(), config.certfile.c_str()) != 1) {
      raise("cannot load certfile " + config.certfile);
    }
    const auto& keyfile = config.keyfile.empty() ? config.certfile : config.keyfile;
    if (SSL_CTX_use_PrivateKey_file(ctx.get(), keyfile.c_str(), SSL_FILETYPE_PEM) != 1) {
      raise("cannot load keyfile " + keyfile);
    }
    if (SSL_CTX_check_private_key(ctx.get()) != 1) {
      raise("keyfile " + keyfile + " does not match certfile " + config.certfile);
    }
  } else if (!config.keyfile.empty()) {
    throw Error("keyfile given without certfile");
  }
  if (!config.cafile.empty()) {
    if (SSL_CTX_load_verify_locations(ctx.get(), config.cafile.c_str(), nullptr) != 1) {
      raise("cannot load cafile " + config.cafile);
    }
    if (server) {
      // Tells clients which authorities the server accepts.
      if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(config.cafile.c_str())) {
        SSL_CTX_set_client_CA_list(ctx.get(), names);
      }
    }
  } else if (SSL_CTX_set_default_verify_paths(ctx.get()) != 1) {
    raise("cannot load the default trust anchors");
  }
  int mode = SSL_VERIFY_NONE;
  if (server) {
    if (config.verify_peer >= 1) mode = SSL_VERIFY_PEER;
    if (config.verify_peer >= 2) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  } else if (config.verify_peer >= 1) {
    mode = SSL_VERIFY_PEER;
  }
  SSL_CTX_set_verify(ctx.get(), mode, nullptr);
  ERR_clear_error();
  return ctx;
}

}  // namespace

Context::Context(Key, Config config, std::unique_ptr<Handles> handles)
    : config_(std::move(config)), handles_(std::move(handles)) {}

Context::~Context() = default;

std::shared_ptr<const Context> Context::create(const Config& config) {
  if (config.verify_peer < 0 || config.verify_peer > 2) {
    throw Error("verify_peer must be 0, 1 or 2");
  }
  ERR_clear_error();
  auto handles = std::make_unique<Handles>();
  handles->password = config.password;
  handles->client = make_ctx(config, false, &handles->password);
  handles->server = make_ctx(config, true, &handles->password);
  return std::make_shared<const Context>(Key{}, config, std::move(handles));
}

}  // namespace aiocomm::tls
