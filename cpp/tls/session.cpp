// A TLS session over two memory BIOs: OpenSSL never sees a socket, so the
// connection decides when and on which thread bytes move.
#include "tls/session.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>

#include <climits>
#include <vector>

#include "tls/handles.h"

namespace aiocomm::tls {

namespace {

// Seen by message_callback (OpenSSL's "init finished" is already false
// when it sees a renegotiation's hello).
struct Watch {
  bool established = false;
  bool renegotiation = false;  // the peer tried to handshake again
};

}  // namespace

struct Session::Handles {
  SslPtr ssl;
  BIO* in = nullptr;   // owned by ssl
  BIO* out = nullptr;  // owned by ssl
  std::vector<std::uint8_t> pending;  // drained from `out`, not yet sent
  std::size_t pending_offset = 0;
  Watch watch;
};

namespace {

bool is_address(const std::string& host) {
  in6_addr scratch{};
  return inet_pton(AF_INET, host.c_str(), &scratch) == 1 ||
         inet_pton(AF_INET6, host.c_str(), &scratch) == 1;
}

// A ClientHello reaching an established server, or a HelloRequest an
// established client, asks for a renegotiation (TLS 1.2). SSL_OP_NO_
// RENEGOTIATION only declines it with a warning and carries on; we end the
// session instead, so a peer that tries gets its connection closed. (TLS
// 1.3's post-handshake messages, tickets and key updates, pass.)
void message_callback(int write_p, int, int content_type, const void* buf, std::size_t len,
                      SSL* ssl, void* arg) {
  auto* watch = static_cast<Watch*>(arg);
  if (write_p || content_type != SSL3_RT_HANDSHAKE || len == 0 || !watch->established) return;
  auto type = static_cast<const unsigned char*>(buf)[0];
  bool server = SSL_is_server(ssl) == 1;
  if ((server && type == SSL3_MT_CLIENT_HELLO) || (!server && type == SSL3_MT_HELLO_REQUEST)) {
    watch->renegotiation = true;
  }
}

std::string name_text(const X509_NAME* name) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  if (!bio || !name) return {};
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
  char* data = nullptr;
  long size = BIO_get_mem_data(bio.get(), &data);
  return size > 0 ? std::string(data, static_cast<std::size_t>(size)) : std::string();
}

std::string ip_text(const ASN1_OCTET_STRING* ip) {
  char text[INET6_ADDRSTRLEN] = {};
  int length = ASN1_STRING_length(ip);
  const unsigned char* bytes = ASN1_STRING_get0_data(ip);
  if (length == 4) inet_ntop(AF_INET, bytes, text, sizeof text);
  if (length == 16) inet_ntop(AF_INET6, bytes, text, sizeof text);
  return text;
}

std::vector<std::string> alt_names(X509* cert) {
  std::vector<std::string> out;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (!names) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    auto text = [](const ASN1_IA5STRING* s) {
      return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                         static_cast<std::size_t>(ASN1_STRING_length(s)));
    };
    switch (name->type) {
      case GEN_DNS: out.push_back("DNS:" + text(name->d.dNSName)); break;
      case GEN_EMAIL: out.push_back("email:" + text(name->d.rfc822Name)); break;
      case GEN_URI: out.push_back("URI:" + text(name->d.uniformResourceIdentifier)); break;
      case GEN_IPADD: out.push_back("IP:" + ip_text(name->d.iPAddress)); break;
      default: break;
    }
  }
  GENERAL_NAMES_free(names);
  return out;
}

}  // namespace

Session::Session(std::shared_ptr<const Context> context, Role role, const std::string& host)
    : context_(std::move(context)), handles_(std::make_unique<Handles>()) {
  const auto& ctx = context_->handles();
  handles_->ssl.reset(SSL_new(role == Role::client ? ctx.client.get() : ctx.server.get()));
  if (!handles_->ssl) throw Error("cannot create a TLS session: " + drain_errors("out of memory"));
  SSL* ssl = handles_->ssl.get();
  handles_->in = BIO_new(BIO_s_mem());
  handles_->out = BIO_new(BIO_s_mem());
  if (!handles_->in || !handles_->out) {
    BIO_free(handles_->in);
    BIO_free(handles_->out);
    throw Error("cannot create TLS buffers: " + drain_errors("out of memory"));
  }
  // An empty input buffer means "retry later", never end of stream.
  BIO_set_mem_eof_return(handles_->in, -1);
  SSL_set_bio(ssl, handles_->in, handles_->out);
  SSL_set_msg_callback(ssl, message_callback);
  SSL_set_msg_callback_arg(ssl, &handles_->watch);
  if (role == Role::client) {
    SSL_set_connect_state(ssl);
    const auto& config = context_->config();
    if (!host.empty() && host != "*") {
      bool address = is_address(host);
      if (!address) SSL_set_tlsext_host_name(ssl, host.c_str());
      if (config.verify_peer >= 1 && config.check_hostname) {
        auto* param = SSL_get0_param(ssl);
        int ok = address ? X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str())
                         : X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0);
        if (ok != 1) throw Error("cannot check the host name " + host + ": " + drain_errors("?"));
      }
    }
  } else {
    SSL_set_accept_state(ssl);
  }
}

Session::~Session() = default;

Session::Status Session::fail(int code, const char* during) {
  SSL* ssl = handles_->ssl.get();
  std::string reason;
  if (handles_->watch.renegotiation) {
    reason = "the peer attempted a renegotiation";
  } else if (code == SSL_ERROR_SSL || code == SSL_ERROR_SYSCALL) {
    reason = drain_errors(code == SSL_ERROR_SYSCALL ? "unexpected end of the TLS stream"
                                                    : "TLS protocol error");
  } else {
    reason = "OpenSSL error " + std::to_string(code);
  }
  long verify = SSL_get_verify_result(ssl);
  if (verify != X509_V_OK) {
    reason += std::string(" (certificate verification: ") +
              X509_verify_cert_error_string(verify) + ")";
  }
  error_ = std::string(during) + ": " + reason;
  failed_ = true;
  ERR_clear_error();
  return Status::failed;
}

Session::Status Session::handshake() {
  ERR_clear_error();
  int r = SSL_do_handshake(handles_->ssl.get());
  if (r == 1) {
    handles_->watch.established = true;
    return Status::ok;
  }
  int code = SSL_get_error(handles_->ssl.get(), r);
  if (code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE) return Status::want_input;
  return fail(code, "TLS handshake failed");
}

bool Session::handshake_done() const noexcept { return SSL_is_init_finished(handles_->ssl.get()); }

bool Session::feed(std::span<const std::uint8_t> ciphertext) {
  while (!ciphertext.empty()) {
    int chunk = static_cast<int>(std::min<std::size_t>(ciphertext.size(), INT_MAX));
    int n = BIO_write(handles_->in, ciphertext.data(), chunk);
    if (n <= 0) {
      error_ = "cannot buffer TLS input: out of memory";
      return false;
    }
    ciphertext = ciphertext.subspan(static_cast<std::size_t>(n));
  }
  return true;
}

std::span<const std::uint8_t> Session::output() {
  auto& h = *handles_;
  std::size_t waiting = BIO_ctrl_pending(h.out);
  if (waiting > 0) {
    if (h.pending_offset == h.pending.size()) {
      h.pending.clear();
      h.pending_offset = 0;
    }
    auto at = h.pending.size();
    h.pending.resize(at + waiting);
    int n = BIO_read(h.out, h.pending.data() + at, static_cast<int>(waiting));
    h.pending.resize(at + static_cast<std::size_t>(n > 0 ? n : 0));
  }
  return std::span<const std::uint8_t>(h.pending).subspan(h.pending_offset);
}

void Session::consume_output(std::size_t bytes) {
  auto& h = *handles_;
  h.pending_offset = std::min(h.pending.size(), h.pending_offset + bytes);
  if (h.pending_offset == h.pending.size()) {
    h.pending.clear();
    h.pending_offset = 0;
  }
}

void Session::take_output(std::vector<std::uint8_t>& into) {
  auto& h = *handles_;
  into.insert(into.end(), h.pending.begin() + static_cast<std::ptrdiff_t>(h.pending_offset),
              h.pending.end());
  h.pending.clear();
  h.pending_offset = 0;
  std::size_t waiting = BIO_ctrl_pending(h.out);
  if (waiting == 0) return;
  auto at = into.size();
  into.resize(at + waiting);
  int n = BIO_read(h.out, into.data() + at, static_cast<int>(waiting));
  into.resize(at + static_cast<std::size_t>(n > 0 ? n : 0));
}

bool Session::has_output() {
  return handles_->pending_offset < handles_->pending.size() || BIO_ctrl_pending(handles_->out) > 0;
}

Session::ReadResult Session::read(std::span<std::uint8_t> into) {
  SSL* ssl = handles_->ssl.get();
  if (failed_) return {Status::failed, 0};  // reported with the bytes before it
  std::size_t total = 0;
  while (total < into.size()) {
    ERR_clear_error();
    std::size_t n = 0;
    int r = SSL_read_ex(ssl, into.data() + total, into.size() - total, &n);
    if (handles_->watch.renegotiation) return {fail(SSL_ERROR_SSL, "TLS error"), total};
    if (r == 1) {
      total += n;
      continue;
    }
    int code = SSL_get_error(ssl, r);
    if (code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE) {
      return {total > 0 ? Status::ok : Status::want_input, total};
    }
    if (code == SSL_ERROR_ZERO_RETURN) return {total > 0 ? Status::ok : Status::closed, total};
    // Recorded now, while OpenSSL's (per-thread) error queue holds the
    // reason, and emptied: the loop's thread shares that queue with
    // Python's ssl module. The bytes before the failure go first; the next
    // call reports it.
    fail(code, "TLS error");
    return {total > 0 ? Status::ok : Status::failed, total};
  }
  return {Status::ok, total};
}

bool Session::write(std::span<const std::uint8_t> plaintext) {
  SSL* ssl = handles_->ssl.get();
  while (!plaintext.empty()) {
    ERR_clear_error();
    std::size_t n = 0;
    if (SSL_write_ex(ssl, plaintext.data(), plaintext.size(), &n) != 1) {
      fail(SSL_get_error(ssl, 0), "TLS write failed");
      return false;
    }
    plaintext = plaintext.subspan(n);
  }
  return true;
}

bool Session::buffered() const noexcept {
  // Decrypted bytes, or ciphertext not yet looked at. Not SSL_has_pending:
  // it also counts a partial record, which only more input completes.
  // The peer's close_notify too: read() stopped at the bytes before it, and
  // a peer that waits for our answer sends nothing that would wake us.
  return SSL_pending(handles_->ssl.get()) > 0 || BIO_ctrl_pending(handles_->in) > 0 ||
         peer_closed();
}

bool Session::close() {
  SSL* ssl = handles_->ssl.get();
  if (failed_ || !SSL_is_init_finished(ssl) || (SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN)) {
    return false;
  }
  ERR_clear_error();
  // 0: our alert is written and the peer's has not come (we do not wait
  // for it); 1: the peer's had already come. Over a memory BIO the write
  // cannot be refused, so anything else is a real failure.
  int r = SSL_shutdown(ssl);
  ERR_clear_error();
  return r >= 0;
}

bool Session::peer_closed() const noexcept {
  return (SSL_get_shutdown(handles_->ssl.get()) & SSL_RECEIVED_SHUTDOWN) != 0;
}

std::string Session::protocol() const { return SSL_get_version(handles_->ssl.get()); }

PeerInfo Session::peer_info() const {
  PeerInfo info;
  info.protocol = protocol();
  info.cipher = cipher();
  // get1: a reference of our own, released by the unique_ptr.
  std::unique_ptr<X509, decltype(&X509_free)> cert(SSL_get1_peer_certificate(handles_->ssl.get()),
                                                   X509_free);
  if (!cert) return info;
  info.subject = name_text(X509_get_subject_name(cert.get()));
  info.issuer = name_text(X509_get_issuer_name(cert.get()));
  info.alt_names = alt_names(cert.get());
  int size = i2d_X509(cert.get(), nullptr);
  if (size > 0) {
    info.der.resize(static_cast<std::size_t>(size));
    unsigned char* into = info.der.data();
    i2d_X509(cert.get(), &into);
  }
  return info;
}

std::string Session::cipher() const {
  const char* name = SSL_get_cipher_name(handles_->ssl.get());
  return name ? name : "";
}

}  // namespace aiocomm::tls
