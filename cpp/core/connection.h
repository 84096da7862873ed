// One Ice connection over TCP, client or server side: its state machine,
// message framing and write queue. Reading, parsing and closing happen on
// the connection's reactor thread; send() may be called from any thread and
// writes straight to the socket when nothing is queued, so a lone request
// or reply costs no thread hop.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/buffer_pool.h"
#include "core/event.h"
#include "core/options.h"
#include "core/outgoing.h"
#include "core/reactor.h"
#include "core/read_buffer.h"
#include "platform/socket.h"
#include "platform/unique_fd.h"
#include "protocol/message.h"
#include "tls/context.h"
#include "tls/session.h"

namespace aiocomm::core {

class Connection;
class Inbox;

// Why a connection ended; decides what happens to its outstanding requests.
enum class CloseKind : std::uint8_t {
  refused,           // never connected
  connect_timeout,   // never validated in time
  lost,              // the socket ended without a close-connection message
  by_peer,           // the peer sent close-connection: unanswered requests were not dispatched
  local,             // we closed it (graceful close finished, shutdown, destroy)
  protocol_error,    // the peer sent something malformed or too large
  idle,              // nothing received for the idle timeout
  tls_failed,        // the TLS handshake or a TLS record failed
};

// Counters exposed through Communicator.stats(); relaxed atomics.
struct ConnectionStats {
  std::atomic<std::uint64_t> messages_in{0};
  std::atomic<std::uint64_t> messages_out{0};
  std::atomic<std::uint64_t> read_calls{0};
  std::atomic<std::uint64_t> write_calls{0};
  std::atomic<std::uint64_t> direct_writes{0};   // written by the caller's thread
  std::atomic<std::uint64_t> heartbeats_sent{0};
  std::atomic<std::uint64_t> protocol_errors{0};
  std::atomic<std::uint64_t> read_pauses{0};      // back-pressure engaged
  std::atomic<std::uint64_t> interest_changes{0}; // epoll_ctl calls to (un)watch writes
  std::atomic<std::uint64_t> loop_read_calls{0};  // read_calls made by the loop thread
  std::atomic<std::uint64_t> read_handovers{0};   // the loop stalled: the reactor read for it
  std::atomic<std::uint64_t> owned_bodies{0};     // bodies read into a BodyMaker's owner
  std::atomic<std::uint64_t> direct_body_reads{0};  // reads straight into such a body
  // Requests whose payload was queued by reference, not copied (PayloadOwner).
  std::atomic<std::uint64_t> borrowed_request_bodies{0};
};

// What a connection needs from the communicator that owns it.
class ConnectionHost {
 public:
  virtual const Options& options() const = 0;
  virtual Inbox& inbox() = 0;
  virtual OutgoingTable& outgoing() = 0;
  virtual BufferPool& buffers() = 0;
  virtual ConnectionStats& connection_stats() = 0;
  // A request will be handed to the loop (the destroy path waits for these).
  virtual void dispatch_started() = 0;
  // Any thread: runs `callback` on the timer thread after `delay`.
  virtual void schedule(std::chrono::milliseconds delay, std::function<void()> callback) = 0;
  // Reactor thread: a client connection reached `endpoint` (one of its
  // target's), so other targets listing that endpoint may share it.
  virtual void on_client_connected(const std::shared_ptr<Connection>& connection,
                                   const Endpoint& endpoint) = 0;
  // Reactor thread, after the connection reached State::closed.
  virtual void on_connection_closed(const std::shared_ptr<Connection>& connection,
                                    CloseKind kind, const std::string& reason) = 0;
  virtual void log(LogLevel level, std::string text) = 0;
  // Any thread: the TLS configuration new client connections use. Throws
  // tls::Error (OpenSSL missing, or a default context that cannot load).
  virtual std::shared_ptr<const tls::Context> tls_context() = 0;

 protected:
  ~ConnectionHost() = default;
};

class Connection final : public IoHandler, public std::enable_shared_from_this<Connection> {
 public:
  enum class Role : std::uint8_t { client, server };
  enum class State : std::uint8_t { connecting, validating, active, closing, closed };
  enum class SendResult : std::uint8_t { written, queued, closed };

  // `tls`: a server connection of an ssl endpoint (a client learns it from
  // the endpoint it reaches).
  Connection(ConnectionHost& host, Reactor& reactor, std::uint64_t id, Role role,
             std::uint32_t adapter_id, std::shared_ptr<const Target> target,
             std::shared_ptr<const tls::Context> tls = nullptr);
  ~Connection() override;

  // Reactor thread: adopt an accepted socket and send validate-connection.
  void start_server(platform::UniqueFd fd);
  // Any thread: connect to the target's endpoints, in order, on the
  // connection's reactor thread.
  void begin_connect();
  void on_ready(std::uint32_t bits) override;

  // Any thread. Writes now (everything queued, then this) when the
  // connection is active, else queues. `sent_id` != 0 asks for a `sent`
  // event once the message is on the wire (a oneway invocation's
  // completion).
  SendResult send(OutMessage message, std::int32_t sent_id = 0);

  // The loop thread's coalesced send: queue, and let flush() write the rest
  // of the batch with one writev. A long batch is written in slices as it
  // grows, so the peer starts on the first slice while the loop is still
  // producing the next. Returns whether this call started a batch
  // (the caller must then flush this connection once its batch is done);
  // nullopt when the connection is closed.
  std::optional<bool> send_deferred(OutMessage message, std::int32_t sent_id = 0);
  // Any thread: writes what is queued (ends a batch of send_deferred()).
  void flush();

  // Any thread. Graceful close: a client sends close-connection now; a
  // server once its in-flight dispatches are answered. Requests arriving
  // afterwards are not dispatched. The peer then closes; close_timeout
  // bounds the wait.
  void close_when_idle();
  // Any thread: close at once (posted to the reactor thread).
  void abort(CloseKind kind, std::string reason);
  // Reactor thread, or any thread once the reactor is stopped.
  void close_now(CloseKind kind, const std::string& reason);

  // Loop thread, when the inbox's poller reports the socket ready: reads
  // what the socket has, as the reactor would, and queues what it parsed
  // in the inbox without a wake-up (the caller drains it next). At one
  // call in flight this saves two thread hops per round trip. Never waits:
  // while the reactor reads, the poller reports what it leaves.
  void read_by_loop();

  // Loop thread: a dispatch of a request from this connection ended.
  void dispatch_finished();
  // Timer thread: heartbeat, idle and slow-sender checks.
  void check_timers(std::chrono::steady_clock::time_point now);

  std::uint64_t id() const noexcept { return id_; }
  Role role() const noexcept { return role_; }
  std::uint32_t adapter_id() const noexcept { return adapter_id_; }
  const std::shared_ptr<const Target>& target() const noexcept { return target_; }
  State state();
  bool usable();  // not closing or closed
  // Why the connection closed (meaningful once state() is closed).
  std::pair<CloseKind, std::string> close_cause();
  // True once the peer's validate-connection arrived (a client only writes
  // requests after that): before it, nothing was sent, so anything may go
  // again elsewhere.
  bool was_validated();
  // Any thread: whether dispatches of this connection's requests are in flight.
  bool dispatching();
  platform::Address local_address();
  platform::Address peer_address();
  // Any thread: the TLS peer, once the handshake is done; null over TCP.
  std::shared_ptr<const tls::PeerInfo> tls_peer();

 private:
  // A queued message is written from where it lies: its head, then its
  // borrowed tail, if any (one iovec each), never gathered into one buffer.
  // Popped under mutex_ once written, which may let a lent tail go there:
  // safe, as a PayloadOwner's destructor never blocks (out_message.h).
  struct Queued {
    OutMessage data;
    std::size_t offset = 0;  // of data.size(), already written
    std::int32_t sent_id = 0;
    bool pressure = false;  // counts for back-pressure (see enqueue_locked)
  };

  void start_client();
  void activate_server();  // mutex_ held: validate-connection goes out
  // TLS (connection_tls.cpp). The handshake runs on the reactor thread
  // while state_ is still connecting, so connect_timeout bounds it.
  void start_tls(const std::string& host);
  void handshake_step();
  void finish_handshake();
  void fail_tls(const std::string& reason);
  // The socket calls of the read and write paths, through TLS when it is
  // on. transport_write runs without mutex_ (the writer holds writing_).
  long transport_read(std::span<std::uint8_t> into);
  long transport_write(int fd, const iovec* parts, int count);
  // The handshake's sends (reactor thread, tls_mutex_ held); 0, EAGAIN or errno.
  int send_tls_output_locked(int fd);
  // The writer's (writing_ held) or close_now's: sends tls_send_, without
  // tls_mutex_; 0, EAGAIN (some left) or errno.
  int send_tls_pending(int fd);
  // close_now, mutex_ held, no writer at work: a graceful end sends the
  // session's close_notify; an abortive one sends nothing.
  void end_tls_locked(CloseKind kind);
  bool tls_buffered();
  // Any thread: has the reactor read what the session holds (the poller
  // only reports what the kernel holds).
  void post_tls_read();
  void try_next_endpoint();
  // Reactor thread: the current address's connect outlived connect_timeout.
  void connect_timed_out();
  void on_connected();
  void on_readable();
  void read_rounds();  // read_mutex_ held
  // Ends reading after an end of stream, a socket error or a bad message:
  // closes here on the reactor thread, or has the reactor close (the loop
  // thread may not touch the reactor's registrations).
  void end_read(CloseKind kind, const std::string& reason);
  bool read_ended();  // read_mutex_ held
  // Loop reads (loop_reads.cpp).
  void offer_to_loop();
  bool give_reading_to_loop();
  void give_reading_to_loop_locked();
  void retire_loop_reads_locked();
  bool on_sentinel();
  void check_loop_alive(std::int64_t fired_at);
  bool parse_messages();  // false when the connection was closed
  // Large replies the loop reads (connection_read.cpp): straight into the
  // body's owner, not through read_buffer_. start_direct_body takes the
  // unparsed bytes, the front of the reply, when it can; read_direct_body
  // reads the rest into `rest` and what follows into `after` (one call),
  // and returns the read's result as transport_read does.
  bool start_direct_body(const protocol::Header& header, protocol::ByteView available);
  long read_direct_body(std::span<std::uint8_t> rest, std::span<std::uint8_t> after);
  void finish_direct_body();
  void handle_message(protocol::MessageType type, protocol::ByteView body);
  void handle_reply(protocol::ByteView body);
  // A reply's payload or a request's params into `event`: into the `bytes`
  // Python receives (a BodyMaker's owner) when the loop reads and it is
  // large enough, else into a pooled body.
  void take_body(Event& event, protocol::ByteView payload);
  void handle_requests(std::vector<protocol::Request> requests);
  // Replies and requests parsed from one read reach the inbox together:
  // one lock, and at most one wake-up of the loop, per read.
  void deliver_parsed();
  // mutex_ held through `lock`, which is released for the write itself.
  // Writes what the socket takes; false on a socket error.
  bool flush_locked(std::unique_lock<std::mutex>& lock, std::vector<Event>& sent);
  void write_slice_locked(std::unique_lock<std::mutex>& lock, std::vector<Event>& sent);
  void update_interest_locked();
  void enqueue_locked(Queued queued);
  bool paused();  // reading stopped for back-pressure
  void queue_close_locked();
  void touch_write() noexcept;

  ConnectionHost& host_;
  Reactor& reactor_;
  const std::uint64_t id_;
  const Role role_;
  const std::uint32_t adapter_id_;
  const std::shared_ptr<const Target> target_;

  // Guards fd_, the queue, interest and dispatch counts, and every change
  // of state_ and reading_. The reactor asks "closed?" and "paused?" per
  // parsed message, so those two are atomics it reads without the lock.
  std::mutex mutex_;
  std::atomic<State> state_ = State::connecting;
  platform::UniqueFd fd_;
  std::deque<Queued> queue_;
  bool writing_ = false;  // a thread is in flush_locked's write, without the lock
  std::condition_variable write_done_;
  bool want_write_ = false;
  bool close_requested_ = false;
  bool close_sent_ = false;
  bool batch_open_ = false;
  // Slices of an open batch. One batch sent whole makes the two ends take
  // turns: the peer idles while the loop fills the batch, then the loop
  // idles while the peer answers it. Slices let both work at once; 32
  // messages still spread a writev's cost thin (measured: the echo
  // benchmark at 64 in flight went from 0.5 to 0.8 CPU busy on each end).
  static constexpr std::size_t slice_messages = 32;
  static constexpr std::size_t slice_bytes = 64 << 10;
  std::size_t slice_count_ = 0;
  std::size_t slice_size_ = 0;  // bytes queued in the current slice
  // Back-pressure: reading stops above the high marks, resumes below the low.
  // The bytes are those of queued messages that reading made us write
  // (replies, heartbeats, a close): never our own requests (see
  // enqueue_locked).
  static constexpr std::size_t queue_high_water = 4 << 20;
  static constexpr std::size_t queue_low_water = 1 << 20;
  static constexpr int dispatch_high_water = 16384;
  static constexpr int dispatch_low_water = 8192;
  std::size_t pressure_bytes_ = 0;
  std::atomic<bool> reading_ = true;
  bool read_watched_ = true;
  bool validated_ = false;  // send_deferred() queued data that awaits flush()
  int dispatches_in_flight_ = 0;
  CloseKind close_kind_ = CloseKind::local;
  std::string close_reason_;
  platform::Address local_;
  platform::Address peer_;

  // Who reads. Once active, the loop reads, and the reactor only keeps a
  // sentinel watch: readability it sees starts a grace period (loop_grace),
  // after which, if the loop has not read since, the reactor takes the
  // reading back, so that a blocked loop never stops heartbeats, closes or
  // back-pressure. It gives it back as soon as the loop drains the inbox
  // again (or reads the socket first). A race for each message would leave
  // the reading with whoever is awake, the reactor mostly. Paused for
  // back-pressure, the loop gives reading up for good (the socket leaves
  // the loop's poller, which would otherwise report it again and again).
  // Guarded by mutex_, loop_reads_ also read without it.
  std::atomic<bool> loop_reads_ = false;
  bool sentinel_armed_ = false;
  bool loop_retired_ = false;
  bool loop_watched_ = false;  // in the inbox's poller of loop-read sockets
  std::atomic<std::int64_t> loop_read_at_{0};
  std::int64_t handed_over_at_ = 0;
  static constexpr std::chrono::milliseconds loop_grace{20};

  // Held by whoever reads (the reactor, or the loop, which only tries it
  // and never waits) and by close_now: the read buffer and parsed_ are
  // theirs. Recursive: a read that ends the connection closes under it.
  std::recursive_mutex read_mutex_;
  bool reading_on_loop_ = false;
  bool read_ended_ = false;  // the loop read an end: the reactor closes
  std::vector<Event> parsed_;  // see deliver_parsed()
  ReadBuffer read_buffer_;
  // A reply whose body is being read straight into its owner. Started by
  // the loop; a reactor that takes the reading over finishes it (a body's
  // owner is plain memory until the event that carries it is drained).
  struct DirectBody {
    std::size_t size = 0;    // the payload's
    std::size_t filled = 0;
    std::int32_t request_id = 0;
    std::uint8_t status = 0;
    protocol::EncodingVersion encoding;
    std::shared_ptr<BodyOwner> owner;
  };
  std::optional<DirectBody> direct_;

  // Reactor thread only.
  std::size_t endpoint_index_ = 0;  // the next endpoint to try
  std::size_t trying_endpoint_ = 0;  // the endpoint the addresses belong to
  std::vector<platform::ResolvedAddress> addresses_;
  std::size_t address_index_ = 0;
  std::string last_connect_error_ = "no endpoint";

  using Nanos = std::int64_t;
  std::atomic<Nanos> last_read_{0};
  std::atomic<Nanos> last_write_{0};
  std::atomic<Nanos> partial_since_{0};  // 0: no message half-read
  std::atomic<Nanos> closing_since_{0};
  std::atomic<Nanos> connect_started_{0};
  std::atomic<bool> batch_seen_by_timer_{false};
  std::atomic<bool> read_buffer_held_{false};

  // TLS. tls_ is set once, on the reactor thread before the connection is
  // active, and lives as long as the connection; tls_mutex_ serializes its
  // use by the reader and the writer, and covers only the crypto: the
  // socket calls run without it. Once the handshake is done the loop may
  // read the connection (loop_reads.cpp), as it reads a tcp one.
  std::shared_ptr<const tls::Context> tls_context_;  // server side, until the handshake
  std::unique_ptr<tls::Session> tls_;
  std::mutex tls_mutex_;
  bool handshaking_ = false;                 // reactor thread only
  // Ciphertext from the socket: the handshake's, then the reader's (read_mutex_).
  std::vector<std::uint8_t> tls_in_;
  std::vector<std::uint8_t> tls_plain_;      // plaintext gathered into records; tls_mutex_
  // Ciphertext taken from the session, sent without tls_mutex_: the
  // writer's (writing_), or close_now's once no writer is left.
  std::vector<std::uint8_t> tls_send_;
  std::size_t tls_sent_ = 0;                 // of tls_send_, already on the wire
  std::atomic<bool> tls_output_pending_{false};  // ciphertext the socket did not take
  std::string read_failure_;                 // a TLS read error (read_mutex_)
  std::shared_ptr<const tls::PeerInfo> tls_peer_;  // mutex_
};

}  // namespace aiocomm::core
