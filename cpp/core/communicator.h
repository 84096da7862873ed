// The communicator: owns the I/O threads, the timer thread, the sockets and
// connections, and the lifecycle that ends them. Pure C++: the binding
// layer adapts it to Python and is the only code that knows about the GIL.
//
// Threads: the loop thread (whoever calls invoke/send_reply), one reactor
// thread per io_threads, the timer thread, and a lifecycle thread started by
// begin_destroy(). None of them owns a reference to the Communicator; its
// owner (the binding) does, and the destructor joins them all.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/acceptor.h"
#include "core/connection.h"
#include "core/inbox.h"
#include "core/options.h"
#include "core/outgoing.h"
#include "core/reactor.h"
#include "core/timer.h"
#include "platform/wakeup.h"

namespace aiocomm::core {

// Thrown by every operation that starts new work once destroy has begun.
class DestroyedError : public std::runtime_error {
 public:
  DestroyedError() : std::runtime_error("the communicator has been destroyed") {}
};

// Thrown when a message to send would exceed message_size_max: the peer
// would close the connection for it, so it is refused before it is sent.
class MessageSizeError : public std::length_error {
 public:
  using std::length_error::length_error;
};

struct AdapterAddress {
  std::uint32_t id = 0;
  platform::Address address;
};

struct InvokeResult {
  std::int32_t id = 0;   // twoway: the request id; oneway: a negative tracking id
  bool written = false;  // oneway only: already on the wire, no `sent` event follows
};

class Communicator final : public ConnectionHost {
 public:
  using Completion = std::function<void()>;

  // Starts the reactor and timer threads. Throws std::system_error.
  Communicator(Options options, std::shared_ptr<Inbox> inbox);
  // teardown(), then frees. Never waits for the event loop.
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  // --- object adapters (any thread; non-blocking) ---
  // Binds host:port now (port 0: ephemeral). Throws std::system_error or DestroyedError.
  // `secure`: an ssl endpoint; needs a TLS configuration with a
  // certificate (set_tls), else throws tls::Error.
  AdapterAddress create_adapter(const std::string& host, int port, bool secure = false);

  // --- TLS (any thread; loads files, so may block on disk) ---
  // Replaces the TLS configuration: connections made or accepted from now
  // on use it, established ones keep theirs. Throws tls::Error.
  void set_tls(const tls::Config& config);
  // Stops accepting; its connections close gracefully once their dispatches end.
  void deactivate_adapter(std::uint32_t adapter_id);
  // Deactivates every adapter. Idempotent.
  void shutdown();

  // --- invocations (any thread; non-blocking) ---
  // Encodes and sends (or queues) a request. Throws DestroyedError or
  // MessageSizeError.
  // With `defer`, the request joins the current batch (see flush_deferred).
  InvokeResult invoke(const std::shared_ptr<const Target>& target, protocol::ByteView identity_facet,
                      std::string_view operation, std::uint8_t mode,
                      const protocol::Context& context, protocol::ByteView params, bool oneway,
                      bool idempotent, bool defer = false);
  // The same, for a payload lent rather than copied: the request is queued
  // as its encoded head plus these bytes, which stay referenced until the
  // request is written and can no longer be retried (its reply, failure or
  // cancel, or a oneway's write), then the owner is let go on whichever
  // thread that happens (see PayloadOwner). Counted in stats() as
  // borrowed_request_bodies. (Named apart: invoke(..., {}, ...) stays unambiguous.)
  InvokeResult invoke_lent(const std::shared_ptr<const Target>& target,
                           protocol::ByteView identity_facet, std::string_view operation,
                           std::uint8_t mode, const protocol::Context& context,
                           std::shared_ptr<const PayloadOwner> params, bool oneway,
                           bool idempotent, bool defer = false);
  // Forgets a twoway invocation (timed out or abandoned); a late reply is dropped.
  void cancel(std::int32_t request_id);

  // --- dispatch results (any thread; non-blocking) ---
  // Each request event is ended by exactly one of these two calls. A reply
  // larger than message_size_max is replaced by an "unknown local
  // exception" reply saying so.
  void send_reply(std::uint64_t connection_id, std::shared_ptr<const protocol::Bytes> message,
                  bool defer = false);
  void finish_dispatch(std::uint64_t connection_id);
  // Ends a request event whose dispatch is given up (still running past
  // close_timeout): no reply, and its connection is aborted, because a
  // graceful close would tell the caller the request was never dispatched.
  void abandon_dispatch(std::uint64_t connection_id);

  // --- write coalescing (one caller at a time: the loop thread) ---
  // Deferred sends queue without a system call; this writes each touched
  // connection's queue with one writev. The loop calls it once per batch.
  void flush_deferred();
  // Loop thread: reads the connections whose sockets the inbox's poller
  // reports ready (see Connection::read_by_loop). Never blocks.
  void read_ready_sockets();
  std::optional<std::pair<platform::Address, platform::Address>> connection_addresses(
      std::uint64_t connection_id);
  // The TLS peer of a connection; null over TCP or once it is gone.
  std::shared_ptr<const tls::PeerInfo> connection_tls(std::uint64_t connection_id);

  // --- lifecycle ---
  // Starts destroy on the lifecycle thread: shutdown, wait for in-flight
  // dispatches (when asked; close_timeout at most, then they are abandoned
  // and their connections aborted), fail outstanding invocations, close
  // connections gracefully, join every thread; then call `on_done` on the
  // lifecycle thread. False when destroy had already completed (on_done is not kept).
  bool begin_destroy(Completion on_done, bool wait_for_dispatches);
  // Blocks until destroy has completed. Never from a reactor or timer thread.
  void wait_destroyed();
  // Hard stop: abort connections, skip every wait that depends on the loop
  // or peers, join every thread. Idempotent; blocks only for joins.
  void teardown() noexcept;
  bool destroying() const noexcept { return phase_.load() != Phase::alive; }
  bool destroyed() const noexcept { return phase_.load() == Phase::destroyed; }
  // A descriptor that becomes readable once destroy has completed (phase
  // destroyed; completions may still be running) and then stays readable:
  // it is never drained. An event loop watches it to learn of the end of
  // destroy without any native thread touching the loop or Python. Any
  // thread; non-blocking. Valid while this Communicator lives: a watcher
  // that may outlive it watches a dup() of it.
  int destroyed_fd() const noexcept { return destroyed_signal_.fd(); }

  std::vector<std::pair<std::string, std::uint64_t>> stats();

  // ConnectionHost
  const Options& options() const override { return options_; }
  Inbox& inbox() override { return *inbox_; }
  OutgoingTable& outgoing() override { return outgoing_; }
  BufferPool& buffers() override { return *buffers_; }
  ConnectionStats& connection_stats() override { return connection_stats_; }
  void dispatch_started() override;
  void schedule(std::chrono::milliseconds delay, std::function<void()> callback) override {
    timer_.schedule(delay, std::move(callback));
  }
  void on_client_connected(const std::shared_ptr<Connection>& connection,
                           const Endpoint& endpoint) override;
  void on_connection_closed(const std::shared_ptr<Connection>& connection, CloseKind kind,
                            const std::string& reason) override;
  void log(LogLevel level, std::string text) override;
  std::shared_ptr<const tls::Context> tls_context() override;

 private:
  enum class Phase : std::uint8_t { alive, destroying, destroyed };
  struct Adapter {
    std::shared_ptr<Acceptor> acceptor;
    bool deactivated = false;
    bool secure = false;
  };
  // Guards tls_ (set_tls may race with connections starting).
  std::mutex tls_mutex_;
  std::shared_ptr<const tls::Context> tls_;

  Reactor& pick_reactor();
  std::shared_ptr<Connection> client_connection(const std::shared_ptr<const Target>& target);
  // send() or send_deferred(), the latter remembering the connection for
  // flush_deferred(). False when the connection was closed.
  bool send_on(const std::shared_ptr<Connection>& connection, OutMessage message,
               std::int32_t sent_id, bool defer, bool* written = nullptr);
  // Throws MessageSizeError when a request of `size` bytes exceeds message_size_max.
  void check_request_size(std::size_t size) const;
  // invoke's second half: files (twoway) and sends an encoded request,
  // `message` followed by `tail` when not null.
  InvokeResult send_request(const std::shared_ptr<const Target>& target,
                            std::shared_ptr<protocol::Bytes> message,
                            std::shared_ptr<const PayloadOwner> tail, bool oneway, bool idempotent,
                            bool defer);
  void accept(std::uint32_t adapter_id, platform::UniqueFd fd);
  void send_outgoing(std::int32_t request_id, Outgoing outgoing);
  void fail(std::int32_t request_id, ErrorCode code, std::string text);
  // A request met a connection that had already closed: fail it for the
  // connection's own reason, or try once more on a fresh connection.
  void on_send_refused(std::int32_t request_id, Connection& closed, bool may_retry);
  void dispatch_ended();
  void scan_connections();
  void run_destroy();
  std::vector<std::shared_ptr<Connection>> snapshot_connections();

  const Options options_;
  const std::shared_ptr<Inbox> inbox_;
  // Shared: a message it lent out may outlive the communicator.
  const std::shared_ptr<BufferPool> buffers_ = std::make_shared<BufferPool>();
  OutgoingTable outgoing_;
  ConnectionStats connection_stats_;
  std::atomic<std::int32_t> next_oneway_id_{-1};
  std::atomic<std::uint64_t> next_connection_id_{1};
  std::atomic<std::uint32_t> next_reactor_{0};
  std::atomic<std::int64_t> dispatches_{0};
  std::vector<std::shared_ptr<Connection>> deferred_;  // the loop thread's open batches

  std::mutex registry_mutex_;  // adapters_, connections_, client_connections_
  std::unordered_map<std::uint32_t, Adapter> adapters_;
  std::uint32_t next_adapter_id_ = 1;
  std::unordered_map<std::uint64_t, std::shared_ptr<Connection>> connections_;
  // Client connections by endpoint ("host/port"), and while connecting by
  // their target's key, so every proxy reaching an endpoint shares one.
  std::unordered_map<std::string, std::shared_ptr<Connection>> client_connections_;

  std::mutex lifecycle_mutex_;  // guards the fields below; cv waits on it
  std::condition_variable lifecycle_changed_;
  std::atomic<Phase> phase_{Phase::alive};
  bool abandon_waits_ = false;
  bool wait_for_dispatches_ = true;
  std::vector<Completion> completions_;
  std::thread lifecycle_thread_;
  std::mutex join_mutex_;  // serializes joining lifecycle_thread_
  platform::Wakeup destroyed_signal_;  // see destroyed_fd(); notified once, by run_destroy

  // Declared last: destroyed first, after teardown() joined them.
  Timer timer_;
  std::vector<std::unique_ptr<Reactor>> reactors_;
};

}  // namespace aiocomm::core
