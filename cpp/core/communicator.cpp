#include "core/communicator.h"

#include <algorithm>
#include <array>
#include <limits>

namespace aiocomm::core {
namespace {

using Clock = std::chrono::steady_clock;

// How often the timer looks at every connection: fine enough that a
// heartbeat leaves at most idle_timeout * 5/8 after the last write (well
// before a peer with the same idle timeout gives up), coarse enough to cost
// nothing when idle.
Clock::duration scan_interval(const Options& o) {
  auto shortest = std::min({o.idle_timeout / 8, o.connect_timeout / 4, o.close_timeout / 4,
                            o.read_timeout / 4});
  return std::clamp<Clock::duration>(shortest, std::chrono::milliseconds(5),
                                     std::chrono::milliseconds(1000));
}

ErrorCode error_for(CloseKind kind) {
  switch (kind) {
    case CloseKind::refused:
      return ErrorCode::connection_refused;
    case CloseKind::connect_timeout:
      return ErrorCode::connect_timeout;
    case CloseKind::protocol_error:
      return ErrorCode::protocol;
    case CloseKind::tls_failed:
      return ErrorCode::tls;
    default:
      return ErrorCode::connection_lost;
  }
}

}  // namespace

Communicator::Communicator(Options options, std::shared_ptr<Inbox> inbox)
    : options_(std::move(options)), inbox_(std::move(inbox)) {
  int count = std::max(1, options_.io_threads);
  for (int i = 0; i < count; ++i) reactors_.push_back(std::make_unique<Reactor>());
  for (auto& r : reactors_) r->start();
  timer_.start();
  timer_.schedule(scan_interval(options_), [this] { scan_connections(); });
}

Communicator::~Communicator() { teardown(); }

Reactor& Communicator::pick_reactor() {
  auto i = next_reactor_.fetch_add(1, std::memory_order_relaxed);
  return *reactors_[i % reactors_.size()];
}

// ---------------------------------------------------------------- adapters

AdapterAddress Communicator::create_adapter(const std::string& host, int port, bool secure) {
  if (destroying()) throw DestroyedError();
  if (secure && !tls_context()->has_certificate()) {
    throw tls::Error("an ssl endpoint needs a certificate: give the communicator a TLS "
                     "configuration with certfile and keyfile");
  }
  std::uint32_t id;
  {
    std::lock_guard lock(registry_mutex_);
    id = next_adapter_id_++;
  }
  auto acceptor = std::make_shared<Acceptor>(
      host, port, [this, id](platform::UniqueFd fd) { accept(id, std::move(fd)); });
  AdapterAddress result{id, acceptor->address()};
  {
    std::lock_guard lock(registry_mutex_);
    adapters_.emplace(id, Adapter{acceptor, false, secure});
  }
  reactors_.front()->post([this, acceptor] { reactors_.front()->watch(acceptor->fd(), platform::poll_read, acceptor); });
  return result;
}

void Communicator::deactivate_adapter(std::uint32_t adapter_id) {
  std::shared_ptr<Acceptor> acceptor;
  std::vector<std::shared_ptr<Connection>> to_close;
  {
    std::lock_guard lock(registry_mutex_);
    auto it = adapters_.find(adapter_id);
    if (it == adapters_.end() || it->second.deactivated) return;
    it->second.deactivated = true;
    acceptor = std::move(it->second.acceptor);
    for (auto& [id, conn] : connections_) {
      if (conn->role() == Connection::Role::server && conn->adapter_id() == adapter_id) {
        to_close.push_back(conn);
      }
    }
  }
  // The listening socket closes on its reactor thread, where it is watched,
  // and before this returns: once deactivated, the port refuses.
  reactors_.front()->run_sync([&] {
    reactors_.front()->unwatch(acceptor->fd(), acceptor.get());
    acceptor->close();
  });
  acceptor.reset();
  for (auto& conn : to_close) conn->close_when_idle();
}

void Communicator::shutdown() {
  std::vector<std::uint32_t> ids;
  {
    std::lock_guard lock(registry_mutex_);
    for (auto& [id, adapter] : adapters_) ids.push_back(id);
  }
  for (auto id : ids) deactivate_adapter(id);
}

void Communicator::accept(std::uint32_t adapter_id, platform::UniqueFd fd) {
  if (destroying()) return;  // fd closes here
  auto& reactor = pick_reactor();
  bool secure;
  {
    std::lock_guard lock(registry_mutex_);
    auto it = adapters_.find(adapter_id);
    if (it == adapters_.end() || it->second.deactivated) return;
    secure = it->second.secure;
  }
  std::shared_ptr<const tls::Context> context;
  if (secure) {
    std::lock_guard lock(tls_mutex_);
    context = tls_;  // the configuration of the moment: a reload applies from here
  }
  auto connection = std::make_shared<Connection>(*this, reactor, next_connection_id_++,
                                                 Connection::Role::server, adapter_id, nullptr,
                                                 std::move(context));
  {
    std::lock_guard lock(registry_mutex_);
    auto it = adapters_.find(adapter_id);
    if (it == adapters_.end() || it->second.deactivated) return;
    connections_.emplace(connection->id(), connection);
  }
  auto holder = std::make_shared<platform::UniqueFd>(std::move(fd));
  reactor.post([connection, holder] { connection->start_server(std::move(*holder)); });
}

// ------------------------------------------------------------- invocations

std::shared_ptr<Connection> Communicator::client_connection(
    const std::shared_ptr<const Target>& target) {
  std::shared_ptr<Connection> connection;
  {
    std::lock_guard lock(registry_mutex_);
    // An established connection to any of the endpoints, in order; else one
    // already connecting for this very target. Not another target's attempt
    // still connecting: it may be refused, while this target has other
    // endpoints to try.
    for (const auto& endpoint : target->endpoints) {
      auto it = client_connections_.find(endpoint.key);
      if (it == client_connections_.end()) continue;
      auto& candidate = it->second;
      bool own = target->endpoints.size() == 1 || candidate->target() == target;
      if ((own || candidate->state() != Connection::State::connecting) && candidate->usable()) {
        return candidate;
      }
    }
    auto it = client_connections_.find(target->key);
    if (it != client_connections_.end() && it->second->usable()) return it->second;
    connection = std::make_shared<Connection>(*this, pick_reactor(), next_connection_id_++,
                                              Connection::Role::client, 0, target);
    client_connections_[target->key] = connection;
    connections_.emplace(connection->id(), connection);
  }
  connection->begin_connect();
  return connection;
}

InvokeResult Communicator::invoke(const std::shared_ptr<const Target>& target,
                                  protocol::ByteView identity_facet, std::string_view operation,
                                  std::uint8_t mode, const protocol::Context& context,
                                  protocol::ByteView params, bool oneway, bool idempotent,
                                  bool defer) {
  if (destroying()) throw DestroyedError();
  auto message = buffers_->make_message(64 + operation.size() + params.size());
  protocol::encode_request(*message, 0, identity_facet, operation, mode, context, {1, 1}, params);
  check_request_size(message->size());
  return send_request(target, std::move(message), nullptr, oneway, idempotent, defer);
}

InvokeResult Communicator::invoke_lent(const std::shared_ptr<const Target>& target,
                                       protocol::ByteView identity_facet,
                                       std::string_view operation, std::uint8_t mode,
                                       const protocol::Context& context,
                                       std::shared_ptr<const PayloadOwner> params, bool oneway,
                                       bool idempotent, bool defer) {
  if (destroying()) throw DestroyedError();
  const std::size_t params_size = params->bytes().size();
  // Checked before encoding: a size past the int32 fields is refused here.
  check_request_size(params_size);
  auto head = buffers_->make_message(64 + operation.size() + identity_facet.size());
  protocol::encode_request_head(*head, 0, identity_facet, operation, mode, context, {1, 1},
                                params_size);
  check_request_size(head->size() + params_size);
  connection_stats_.borrowed_request_bodies.fetch_add(1, std::memory_order_relaxed);
  return send_request(target, std::move(head), std::move(params), oneway, idempotent, defer);
}

void Communicator::check_request_size(std::size_t size) const {
  if (size > options_.message_size_max) {
    throw MessageSizeError("the request (" + std::to_string(size) +
                           " bytes) exceeds message_size_max (" +
                           std::to_string(options_.message_size_max) + " bytes)");
  }
}

InvokeResult Communicator::send_request(const std::shared_ptr<const Target>& target,
                                        std::shared_ptr<protocol::Bytes> message,
                                        std::shared_ptr<const PayloadOwner> tail, bool oneway,
                                        bool idempotent, bool defer) {
  if (oneway) {
    auto tracking = next_oneway_id_.fetch_sub(1, std::memory_order_relaxed);
    if (tracking == std::numeric_limits<std::int32_t>::min()) next_oneway_id_ = -1;
    OutMessage shared(std::move(message), std::move(tail));
    // A connection found closing is replaced once; a second failure is real.
    for (int attempt = 0;; ++attempt) {
      auto connection = client_connection(target);
      bool written = false;
      if (send_on(connection, shared, tracking, defer, &written)) return {tracking, written};
      auto [kind, reason] = connection->close_cause();
      if (attempt == 1 || kind == CloseKind::refused || kind == CloseKind::connect_timeout ||
          kind == CloseKind::tls_failed) {
        fail(tracking, error_for(kind), reason);
        break;
      }
    }
    return {tracking, false};
  }

  auto connection = client_connection(target);
  auto& request = *message;
  OutMessage shared(std::move(message), std::move(tail));
  auto id = outgoing_.add(Outgoing{connection->id(), shared, target, idempotent, false}, request);
  if (!send_on(connection, shared, 0, defer)) on_send_refused(id, *connection, true);
  return {id, false};
}

bool Communicator::send_on(const std::shared_ptr<Connection>& connection, OutMessage message,
                           std::int32_t sent_id, bool defer, bool* written) {
  if (defer) {
    auto started = connection->send_deferred(std::move(message), sent_id);
    if (!started) return false;
    if (*started) deferred_.push_back(connection);
    return true;
  }
  auto result = connection->send(std::move(message), sent_id);
  if (written) *written = result == Connection::SendResult::written;
  return result != Connection::SendResult::closed;
}

void Communicator::read_ready_sockets() {
  std::array<platform::PollEvent, 64> events;
  for (const auto& event : inbox_->ready_sockets(events)) {
    auto id = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(event.token));
    std::shared_ptr<Connection> connection;
    {
      std::lock_guard lock(registry_mutex_);
      auto it = connections_.find(id);
      if (it == connections_.end()) continue;  // closed since: already unwatched
      connection = it->second;
    }
    connection->read_by_loop();
  }
}

void Communicator::flush_deferred() {
  auto batch = std::move(deferred_);
  deferred_.clear();
  for (auto& connection : batch) connection->flush();
}

void Communicator::on_send_refused(std::int32_t request_id, Connection& closed, bool may_retry) {
  // The connection closed between lookup and send. Whoever takes the entry
  // first reports it: the close's sweep, or us.
  auto entry = outgoing_.take(request_id);
  if (!entry) return;
  auto [kind, reason] = closed.close_cause();
  if (may_retry && kind != CloseKind::refused && kind != CloseKind::connect_timeout &&
      kind != CloseKind::tls_failed) {
    send_outgoing(request_id, std::move(*entry));
  } else {
    fail(request_id, error_for(kind), reason);
  }
}

void Communicator::send_outgoing(std::int32_t request_id, Outgoing outgoing) {
  if (destroying()) {
    fail(request_id, ErrorCode::destroyed, "the communicator has been destroyed");
    return;
  }
  auto connection = client_connection(outgoing.target);
  auto message = outgoing.message;
  outgoing.connection_id = connection->id();
  outgoing_.put(request_id, std::move(outgoing));
  if (connection->send(message) == Connection::SendResult::closed) {
    on_send_refused(request_id, *connection, false);
  }
}

void Communicator::cancel(std::int32_t request_id) { outgoing_.take(request_id); }

void Communicator::fail(std::int32_t request_id, ErrorCode code, std::string text) {
  Event event;
  event.kind = EventKind::failed;
  event.request_id = request_id;
  event.code = static_cast<std::uint8_t>(code);
  event.text = std::move(text);
  inbox_->push(std::move(event));
}

// --------------------------------------------------------------- dispatch

void Communicator::dispatch_started() { dispatches_.fetch_add(1, std::memory_order_relaxed); }

void Communicator::dispatch_ended() {
  if (dispatches_.fetch_sub(1) == 1 && destroying()) {
    // Taking the lock orders this notify after the waiter's predicate check.
    std::lock_guard lock(lifecycle_mutex_);
    lifecycle_changed_.notify_all();
  }
}

void Communicator::send_reply(std::uint64_t connection_id,
                              std::shared_ptr<const protocol::Bytes> message, bool defer) {
  std::shared_ptr<Connection> connection;
  {
    std::lock_guard lock(registry_mutex_);
    auto it = connections_.find(connection_id);
    if (it != connections_.end()) connection = it->second;
  }
  if (connection) {
    if (message && message->size() > options_.message_size_max) {
      auto request_id = protocol::load_int32(message->data() + protocol::header_size);
      log(LogLevel::error, "reply to request " + std::to_string(request_id) + " (" +
                               std::to_string(message->size()) +
                               " bytes) exceeds message_size_max; sent an error instead");
      auto error = std::make_shared<protocol::Bytes>();
      protocol::encode_reply_message(
          *error, request_id, static_cast<std::uint8_t>(protocol::ReplyStatus::unknown_local_exception),
          "the reply exceeds the server's message_size_max (" +
              std::to_string(options_.message_size_max) + " bytes)");
      message = std::move(error);
    }
    if (message) send_on(connection, std::move(message), 0, defer);
    connection->dispatch_finished();
  }
  dispatch_ended();
}

void Communicator::finish_dispatch(std::uint64_t connection_id) { send_reply(connection_id, nullptr); }

void Communicator::abandon_dispatch(std::uint64_t connection_id) {
  std::shared_ptr<Connection> connection;
  {
    std::lock_guard lock(registry_mutex_);
    auto it = connections_.find(connection_id);
    if (it != connections_.end()) connection = it->second;
  }
  // The connection keeps counting the dispatch: were it to reach zero now,
  // a deactivated adapter's connection would close gracefully before the
  // (posted) abort runs, and the caller would retry a request that ran.
  if (connection) connection->abort(CloseKind::local, "a dispatch on this connection was abandoned");
  dispatch_ended();
}

std::optional<std::pair<platform::Address, platform::Address>> Communicator::connection_addresses(
    std::uint64_t connection_id) {
  std::shared_ptr<Connection> connection;
  {
    std::lock_guard lock(registry_mutex_);
    auto it = connections_.find(connection_id);
    if (it == connections_.end()) return std::nullopt;
    connection = it->second;
  }
  return std::make_pair(connection->local_address(), connection->peer_address());
}

std::shared_ptr<const tls::PeerInfo> Communicator::connection_tls(std::uint64_t connection_id) {
  std::shared_ptr<Connection> connection;
  {
    std::lock_guard lock(registry_mutex_);
    auto it = connections_.find(connection_id);
    if (it == connections_.end()) return nullptr;
    connection = it->second;
  }
  return connection->tls_peer();
}

// ------------------------------------------------------------------- TLS

void Communicator::set_tls(const tls::Config& config) {
  auto context = tls::Context::create(config);
  std::lock_guard lock(tls_mutex_);
  tls_ = std::move(context);
}

std::shared_ptr<const tls::Context> Communicator::tls_context() {
  std::lock_guard lock(tls_mutex_);
  // No configuration given: a client verifies servers against the system's
  // trust anchors, as Python's ssl.create_default_context() does.
  if (!tls_) tls_ = tls::Context::create(tls::Config{});
  return tls_;
}

// ------------------------------------------------------------ connections

void Communicator::on_client_connected(const std::shared_ptr<Connection>& connection,
                                       const Endpoint& endpoint) {
  std::lock_guard lock(registry_mutex_);
  auto& slot = client_connections_[endpoint.key];
  if (!slot || !slot->usable()) slot = connection;
}

void Communicator::on_connection_closed(const std::shared_ptr<Connection>& connection,
                                        CloseKind kind, const std::string& reason) {
  {
    std::lock_guard lock(registry_mutex_);
    connections_.erase(connection->id());
    if (connection->role() == Connection::Role::client) {
      std::erase_if(client_connections_, [&](const auto& entry) { return entry.second == connection; });
    }
  }
  {
    std::lock_guard lock(lifecycle_mutex_);
    lifecycle_changed_.notify_all();
  }
  if (kind == CloseKind::protocol_error) {
    log(LogLevel::warning, "closing connection " + std::to_string(connection->id()) + ": " + reason);
  } else if (kind == CloseKind::idle || kind == CloseKind::lost || kind == CloseKind::tls_failed) {
    log(LogLevel::debug, "connection " + std::to_string(connection->id()) + ": " + reason);
  }
  if (connection->role() != Connection::Role::client) return;

  // A client writes nothing before the server's validate-connection: if
  // that never came, no request left and all may go again.
  // A failed TLS handshake is not retried: the next one would fail alike.
  const bool nothing_sent = !connection->was_validated() && kind != CloseKind::refused &&
                            kind != CloseKind::connect_timeout && kind != CloseKind::tls_failed;
  for (auto& [id, outgoing] : outgoing_.take_for_connection(connection->id())) {
    // Requests unanswered at a close-connection were never dispatched, so
    // any of them may go again; after a plain loss only idempotent ones.
    // Never sent: try again, a bounded number of times (a dying server's
    // accept queue can reset a connection or two before the port refuses).
    bool retry = !destroying() &&
                 (nothing_sent ? outgoing.unsent_retries < 2
                               : !outgoing.retried &&
                                     (kind == CloseKind::by_peer ||
                                      (kind == CloseKind::lost && outgoing.idempotent)));
    if (retry) {
      if (nothing_sent) {
        ++outgoing.unsent_retries;
      } else {
        outgoing.retried = true;
      }
      send_outgoing(id, std::move(outgoing));
    } else if (destroying()) {
      // Destroy is what ended the connection: say so, not what it looked like.
      fail(id, ErrorCode::destroyed, "the communicator has been destroyed");
    } else {
      fail(id, kind == CloseKind::by_peer ? ErrorCode::connection_lost : error_for(kind), reason);
    }
  }
}

void Communicator::scan_connections() {
  auto now = Clock::now();
  for (auto& connection : snapshot_connections()) connection->check_timers(now);
  timer_.schedule(scan_interval(options_), [this] { scan_connections(); });
}

std::vector<std::shared_ptr<Connection>> Communicator::snapshot_connections() {
  std::vector<std::shared_ptr<Connection>> out;
  std::lock_guard lock(registry_mutex_);
  out.reserve(connections_.size());
  for (auto& [id, connection] : connections_) out.push_back(connection);
  return out;
}

void Communicator::log(LogLevel level, std::string text) {
  Event event;
  event.kind = EventKind::log;
  event.code = static_cast<std::uint8_t>(level);
  event.text = std::move(text);
  inbox_->push(std::move(event));
}

// -------------------------------------------------------------- lifecycle

bool Communicator::begin_destroy(Completion on_done, bool wait_for_dispatches) {
  std::lock_guard lock(lifecycle_mutex_);
  if (phase_.load() == Phase::destroyed) return false;
  if (on_done) completions_.push_back(std::move(on_done));
  if (phase_.load() == Phase::alive) {
    phase_ = Phase::destroying;
    wait_for_dispatches_ = wait_for_dispatches;
    lifecycle_thread_ = std::thread([this] { run_destroy(); });
  } else if (!wait_for_dispatches) {
    // A later caller that cannot wait for the loop (no loop is running)
    // must not be held up by dispatches only the loop can finish.
    wait_for_dispatches_ = false;
    lifecycle_changed_.notify_all();
  }
  return true;
}

void Communicator::wait_destroyed() {
  std::unique_lock lock(lifecycle_mutex_);
  lifecycle_changed_.wait(lock, [&] { return phase_.load() == Phase::destroyed; });
  lock.unlock();
  // Destroy ends with the completions, on the lifecycle thread: join it so
  // they have all run (unless called from one of them).
  std::lock_guard join(join_mutex_);
  if (lifecycle_thread_.joinable() && lifecycle_thread_.get_id() != std::this_thread::get_id()) {
    lifecycle_thread_.join();
  }
}

void Communicator::run_destroy() {
  // The order matters, and follows Ice's: stop taking work, let the work in
  // hand finish, fail what cannot finish, say goodbye to peers, stop threads.

  // 1. No new connections, no new dispatches.
  shutdown();

  // 2. In-flight dispatches finish on the loop and their replies go out,
  // for close_timeout at most: a servant that never returns, or a request
  // the loop never gets to, must not hold destroy for ever.
  bool dispatches_done;
  {
    std::unique_lock lock(lifecycle_mutex_);
    dispatches_done = lifecycle_changed_.wait_until(
        lock, Clock::now() + options_.close_timeout,
        [&] { return abandon_waits_ || !wait_for_dispatches_ || dispatches_.load() <= 0; });
  }
  if (!dispatches_done) {
    log(LogLevel::warning,
        "destroy: " + std::to_string(dispatches_.load()) + " dispatches still running after " +
            std::to_string(options_.close_timeout.count()) +
            " ms (close_timeout); abandoning their replies and aborting their connections");
  }

  // 3. Invocations still waiting for a reply will not get one.
  for (auto& [id, outgoing] : outgoing_.take_all()) {
    fail(id, ErrorCode::destroyed, "the communicator has been destroyed");
  }

  // 4. Close connections gracefully: close-connection, then the peer closes.
  // A connection still dispatching would wait for the loop before its
  // graceful close; when destroy does not wait for dispatches, abort it.
  bool keep_dispatches;
  {
    std::lock_guard lock(lifecycle_mutex_);
    keep_dispatches = dispatches_done && !abandon_waits_ && wait_for_dispatches_;
  }
  auto connections = snapshot_connections();
  for (auto& connection : connections) {
    if (!keep_dispatches && connection->dispatching()) {
      connection->abort(CloseKind::local, "the communicator has been destroyed");
    } else {
      connection->close_when_idle();
    }
  }
  connections.clear();
  {
    std::unique_lock lock(lifecycle_mutex_);
    auto deadline = Clock::now() + options_.close_timeout;
    lifecycle_changed_.wait_until(lock, deadline, [&] {
      if (abandon_waits_) return true;
      std::lock_guard registry(registry_mutex_);
      return connections_.empty();
    });
  }

  // 5. Stop the threads; what is left is closed hard.
  timer_.stop_and_join();
  for (auto& reactor : reactors_) reactor->stop_and_join();
  for (auto& connection : snapshot_connections()) {
    connection->close_now(CloseKind::local, "the communicator has been destroyed");
  }
  {
    std::lock_guard lock(registry_mutex_);
    adapters_.clear();
    client_connections_.clear();
    connections_.clear();
  }
  for (auto& [id, outgoing] : outgoing_.take_all()) {
    fail(id, ErrorCode::destroyed, "the communicator has been destroyed");
  }

  // 6. The loop learns that nothing more will come.
  Event closed;
  closed.kind = EventKind::closed;
  inbox_->push(std::move(closed));

  std::vector<Completion> completions;
  {
    std::lock_guard lock(lifecycle_mutex_);
    phase_ = Phase::destroyed;
    completions.swap(completions_);
    lifecycle_changed_.notify_all();
  }
  // Level-triggered and never drained: every loop that ever watches it,
  // now or later, sees it readable.
  destroyed_signal_.notify();
  for (auto& done : completions) done();
}

void Communicator::teardown() noexcept {
  bool run_here = false;
  {
    std::lock_guard lock(lifecycle_mutex_);
    abandon_waits_ = true;
    if (phase_.load() == Phase::alive) {
      phase_ = Phase::destroying;
      run_here = true;
    }
    lifecycle_changed_.notify_all();
  }
  if (run_here) {
    // Nobody awaits this destroy: run it here, without waiting for anyone.
    run_destroy();
  } else if (std::lock_guard join(join_mutex_); lifecycle_thread_.joinable()) {
    if (lifecycle_thread_.get_id() != std::this_thread::get_id()) {
      lifecycle_thread_.join();
    } else {
      // Only reachable if a completion dropped the owner's last reference
      // (the binding never lets it). The thread is past its last use of
      // `this`: it returns from that completion and exits, touching only
      // its own locals, so letting it finish on its own is safe.
      lifecycle_thread_.detach();
    }
  }
}

std::vector<std::pair<std::string, std::uint64_t>> Communicator::stats() {
  auto& c = connection_stats_;
  std::size_t live;
  {
    std::lock_guard lock(registry_mutex_);
    live = connections_.size();
  }
  return {
      {"connections", live},
      {"outgoing_pending", outgoing_.size()},
      {"dispatches_in_flight", static_cast<std::uint64_t>(std::max<std::int64_t>(0, dispatches_.load()))},
      {"inbox_wakeups", inbox_->wakeups()},
      {"inbox_delivered", inbox_->delivered()},
      {"messages_in", c.messages_in.load()},
      {"messages_out", c.messages_out.load()},
      {"read_calls", c.read_calls.load()},
      {"loop_read_calls", c.loop_read_calls.load()},
      {"read_handovers", c.read_handovers.load()},
      {"owned_bodies", c.owned_bodies.load()},
      {"direct_body_reads", c.direct_body_reads.load()},
      {"borrowed_request_bodies", c.borrowed_request_bodies.load()},
      {"write_calls", c.write_calls.load()},
      {"direct_writes", c.direct_writes.load()},
      {"heartbeats_sent", c.heartbeats_sent.load()},
      {"protocol_errors", c.protocol_errors.load()},
      {"read_pauses", c.read_pauses.load()},
      {"interest_changes", c.interest_changes.load()},
      {"pooled_buffer_bytes", buffers_->retained_bytes()},
  };
}

}  // namespace aiocomm::core
