// TLS under a connection: the handshake, before the Ice protocol starts,
// then every byte through the session. It runs where the plain socket calls
// would: the handshake always on the reactor thread; reads wherever the
// connection is read (the loop's reads when loop_reads is on, see
// loop_reads.cpp, else the reactor); writes on whichever thread holds
// writing_ (the loop's flush among them: it encrypts what it sends, as over
// TCP it sends it). tls_mutex_ serializes the session between reader and
// writer; once the connection is up it covers only the crypto (no system
// call runs under it), so neither side waits for the other's recv or send.
// (The handshake keeps it throughout: nobody else reads or writes yet.)
#include <cerrno>
#include <cstring>

#include "core/connection.h"
#include "core/inbox.h"

namespace aiocomm::core {
namespace {

// A socket read's worth of ciphertext: a whole record (16 KiB and its
// overhead) and then some.
constexpr std::size_t tls_input_chunk = 32 * 1024;
// Plaintext gathered per record: small messages share records, and a
// record is at most 16 KiB.
constexpr std::size_t tls_record = 16 * 1024;
// Plaintext encrypted per transport_write call, so one writer does not
// hold the session for long.
constexpr std::size_t tls_write_max = 256 * 1024;

}  // namespace

void Connection::start_tls(const std::string& host) {
  std::unique_ptr<tls::Session> session;
  try {
    auto context = tls_context_ ? tls_context_ : host_.tls_context();
    tls_context_.reset();  // the session keeps what it needs
    session = std::make_unique<tls::Session>(
        std::move(context),
        role_ == Role::client ? tls::Session::Role::client : tls::Session::Role::server, host);
  } catch (const std::exception& e) {
    fail_tls(e.what());
    return;
  }
  {
    // Under mutex_: threads that later see the connection active (under
    // the same lock) see the session too.
    std::lock_guard lock(mutex_);
    tls_ = std::move(session);
  }
  tls_in_.resize(tls_input_chunk);
  handshaking_ = true;
  handshake_step();
}

void Connection::fail_tls(const std::string& reason) {
  handshaking_ = false;
  close_now(CloseKind::tls_failed, "TLSError: " + reason);
}

void Connection::handshake_step() {
  std::string failure;
  bool done = false;
  bool want_write = false;
  {
    std::lock_guard tls_lock(tls_mutex_);
    const int fd = fd_.get();
    // Bounded: a peer that streams bytes cannot hold this thread; what is
    // left in the socket wakes us again.
    for (int round = 0; round < 16; ++round) {
      auto status = tls_->handshake();
      int error = send_tls_output_locked(fd);
      if (error != 0 && error != EAGAIN) {
        failure = "connection lost during the TLS handshake: " + std::string(std::strerror(error));
        break;
      }
      if (status == tls::Session::Status::failed) {
        failure = tls_->error();
        break;
      }
      if (status == tls::Session::Status::ok) {
        done = true;
        break;
      }
      long n = platform::read_some(fd, tls_in_);
      if (n > 0) {
        if (!tls_->feed(std::span<const std::uint8_t>(tls_in_).first(static_cast<std::size_t>(n)))) {
          failure = tls_->error();
          break;
        }
        continue;
      }
      if (n == 0) {
        failure = "the peer closed the connection during the TLS handshake";
      } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
        failure = "connection lost during the TLS handshake: " + std::string(std::strerror(errno));
      }
      break;
    }
    want_write = tls_output_pending_.load();
  }
  if (!failure.empty()) {
    fail_tls(failure);
    return;
  }
  // Finished once our last flight is on the wire too.
  if (done && !want_write) {
    finish_handshake();
    return;
  }
  std::lock_guard lock(mutex_);
  if (state_ == State::closed || !fd_) return;
  reactor_.rewatch(fd_.get(), platform::poll_read | (want_write ? platform::poll_write : 0u), this);
}

void Connection::finish_handshake() {
  handshaking_ = false;
  std::shared_ptr<const tls::PeerInfo> peer;
  {
    std::lock_guard tls_lock(tls_mutex_);
    peer = std::make_shared<const tls::PeerInfo>(tls_->peer_info());
  }
  {
    std::lock_guard lock(mutex_);
    tls_peer_ = std::move(peer);
  }
  if (role_ == Role::client) {
    on_connected();
  } else {
    {
      std::lock_guard lock(mutex_);
      if (state_ == State::closed) return;
      activate_server();
      read_watched_ = true;
      reactor_.rewatch(fd_.get(), platform::poll_read | platform::poll_write, this);
    }
    offer_to_loop();  // as start_server does for tcp: the handshake is over
  }
  // Application data that came with the peer's last flight.
  if (state() != State::closed && tls_buffered()) on_readable();
}

std::shared_ptr<const tls::PeerInfo> Connection::tls_peer() {
  std::lock_guard lock(mutex_);
  return tls_peer_;
}

void Connection::post_tls_read() {
  reactor_.post([self = shared_from_this()] {
    if (self->state() != State::closed) self->on_readable();
  });
}

bool Connection::tls_buffered() {
  std::lock_guard tls_lock(tls_mutex_);
  return tls_ && tls_->buffered();
}

long Connection::transport_read(std::span<std::uint8_t> into) {
  if (!tls_) return platform::read_some(fd_.get(), into);
  // The socket calls run without tls_mutex_, which only covers the
  // crypto: a writer on another thread (the loop's flush, GIL held) then
  // waits microseconds for it, never for a recv (measured: with the recv
  // under the lock, 3 futex calls per reactor wake-up against 0.6 over
  // plain TCP).
  std::size_t total = 0;
  bool drained = false;  // a short recv: the kernel has nothing more now
  for (;;) {
    tls::Session::ReadResult result;
    {
      std::lock_guard tls_lock(tls_mutex_);
      result = tls_->read(into.subspan(total));
      if (result.status == tls::Session::Status::failed && total + result.bytes == 0) {
        read_failure_ = tls_->error();
      }
    }
    total += result.bytes;
    if (total == into.size()) return static_cast<long>(total);
    if (result.status == tls::Session::Status::failed) {
      if (total > 0) return static_cast<long>(total);
      errno = EPROTO;
      return -1;
    }
    if (result.status == tls::Session::Status::closed) return static_cast<long>(total);
    // The session wants more ciphertext. After a short recv, asking again
    // would only get EAGAIN: the poller reports what arrives next.
    if (drained) {
      if (total > 0) return static_cast<long>(total);
      errno = EAGAIN;
      return -1;
    }
    long n = platform::read_some(fd_.get(), tls_in_);
    if (n > 0) {
      drained = static_cast<std::size_t>(n) < tls_in_.size();
      bool fed;
      {
        std::lock_guard tls_lock(tls_mutex_);
        fed = tls_->feed(std::span<const std::uint8_t>(tls_in_).first(static_cast<std::size_t>(n)));
        if (!fed && total == 0) read_failure_ = tls_->error();
      }
      if (!fed) {
        if (total > 0) return static_cast<long>(total);
        errno = ENOMEM;
        return -1;
      }
      continue;
    }
    if (total > 0) return static_cast<long>(total);  // the end or error shows next time
    return n;  // 0 (end of stream) or -1 with errno
  }
}

long Connection::transport_write(int fd, const iovec* parts, int count) {
  if (!tls_) return platform::write_vector(fd, parts, count);
  // Ciphertext of earlier writes goes first: records leave in order.
  if (int error = send_tls_pending(fd); error != 0) {
    errno = error;
    return -1;
  }
  std::size_t consumed = 0;
  bool ok = true;
  {
    // Only the crypto under the lock; the sendmsg below runs without it,
    // so the reactor decrypting replies never waits for our send (on
    // loopback a send runs the peer's receive path too).
    std::lock_guard tls_lock(tls_mutex_);
    for (int i = 0; i < count && consumed < tls_write_max && ok; ++i) {
      const auto* data = static_cast<const std::uint8_t*>(parts[i].iov_base);
      std::size_t left = parts[i].iov_len;
      while (left > 0 && consumed < tls_write_max) {
        std::size_t take = std::min(left, tls_record - tls_plain_.size());
        tls_plain_.insert(tls_plain_.end(), data, data + take);
        data += take;
        left -= take;
        consumed += take;
        if (tls_plain_.size() == tls_record) {
          ok = tls_->write(tls_plain_);
          tls_plain_.clear();
          if (!ok) break;
        }
      }
    }
    if (ok && !tls_plain_.empty()) ok = tls_->write(tls_plain_);
    tls_plain_.clear();
    // All the session holds, in order: a read may have queued some (a
    // TLS 1.3 key update's answer) before our records.
    if (ok) tls_->take_output(tls_send_);
  }
  if (!ok) {
    errno = EPROTO;
    return -1;
  }
  // The plaintext is taken even when the socket is full: its ciphertext
  // waits in tls_send_, and tls_output_pending_ has the writer come back.
  if (int error = send_tls_pending(fd); error != 0 && error != EAGAIN) {
    errno = error;
    return -1;
  }
  return static_cast<long>(consumed);
}

int Connection::send_tls_pending(int fd) {
  int result = 0;
  while (tls_sent_ < tls_send_.size()) {
    iovec part{tls_send_.data() + tls_sent_, tls_send_.size() - tls_sent_};
    long n = platform::write_vector(fd, &part, 1);
    if (n < 0) {
      result = errno == EWOULDBLOCK ? EAGAIN : errno;
      break;
    }
    tls_sent_ += static_cast<std::size_t>(n);
  }
  bool pending = tls_sent_ < tls_send_.size();
  if (!pending) {
    tls_send_.clear();
    tls_sent_ = 0;
  }
  tls_output_pending_.store(pending, std::memory_order_relaxed);
  return pending && result == 0 ? EAGAIN : result;
}

void Connection::end_tls_locked(CloseKind kind) {
  bool graceful = false;
  switch (kind) {
    case CloseKind::local:    // our graceful close, shutdown or destroy
    case CloseKind::by_peer:  // the answer to the peer's close-connection
    case CloseKind::idle:     // an idle connection ends in order, as in Ice
    case CloseKind::lost:     // see peer_closed() below
      graceful = true;
      break;
    case CloseKind::refused:
    case CloseKind::connect_timeout:
    case CloseKind::protocol_error:
    case CloseKind::tls_failed:
      break;  // abortive: a hostile or broken peer gets nothing more
  }
  if (!graceful) return;
  {
    std::lock_guard tls_lock(tls_mutex_);
    // A lost connection answers the peer's close_notify; after a bare FIN
    // or a socket error nobody would read ours.
    if (kind == CloseKind::lost && !tls_->peer_closed()) return;
    if (!tls_->close()) return;
    // Behind what a full socket left over, so the stream stays whole.
    tls_->take_output(tls_send_);
  }
  // What the socket takes now (it is non-blocking): a peer that does not
  // read loses the alert, as it would lose the FIN's data, and nobody
  // waits for its own close_notify.
  send_tls_pending(fd_.get());
}

int Connection::send_tls_output_locked(int fd) {
  int result = 0;
  for (;;) {
    auto out = tls_->output();
    if (out.empty()) break;
    iovec part{const_cast<std::uint8_t*>(out.data()), out.size()};
    long n = platform::write_vector(fd, &part, 1);
    if (n < 0) {
      result = errno == EWOULDBLOCK ? EAGAIN : errno;
      break;
    }
    tls_->consume_output(static_cast<std::size_t>(n));
  }
  tls_output_pending_.store(tls_->has_output(), std::memory_order_relaxed);
  if (result == 0 && tls_output_pending_.load(std::memory_order_relaxed)) result = EAGAIN;
  return result;
}

}  // namespace aiocomm::core
