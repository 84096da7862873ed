// Twoway invocations waiting for their reply, keyed by request id. Shared
// by the thread that invokes (the loop) and the I/O threads that read
// replies or lose connections; every entry is taken out exactly once.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/out_message.h"
#include "protocol/buffer.h"

namespace aiocomm::core {

struct Endpoint {
  Endpoint() = default;
  Endpoint(std::string host_name, int port_number, bool is_secure = false)
      : host(std::move(host_name)),
        port(port_number),
        secure(is_secure),
        key(registry_key(host, port, secure)) {}

  std::string host;
  int port = 0;
  bool secure = false;  // an ssl endpoint: TLS before the Ice protocol
  // How the endpoint is named in the connection registry, made once: every
  // invocation looks its connection up by it. A one-endpoint target's key
  // (built by the Python layer) is the same string.
  std::string key;

 private:
  static std::string registry_key(const std::string& host, int port, bool secure) {
    return (host == "*" || host.empty() ? std::string("127.0.0.1") : host) + "/" +
           std::to_string(port) + (secure ? "/ssl" : "");
  }
};

// Where an invocation goes: the endpoints to try in order, and the key under
// which their shared connection is kept.
struct Target {
  std::string key;
  std::vector<Endpoint> endpoints;
};

struct Outgoing {
  std::uint64_t connection_id = 0;
  OutMessage message;  // kept for a retry, borrowed payload included
  std::shared_ptr<const Target> target;
  bool idempotent = false;
  bool retried = false;          // sent once, then its connection ended
  std::uint8_t unsent_retries = 0;  // its connection ended before anything was sent
};

class OutgoingTable {
 public:
  // Files `outgoing` under a fresh request id (never 0, never one in use)
  // and writes that id into its encoded request, which nobody may read
  // before it is filed: a connection loss can retry it at once.
  std::int32_t add(Outgoing outgoing, protocol::Bytes& request);
  // Files it again under the id it already carries (a retry).
  void put(std::int32_t request_id, Outgoing outgoing);
  std::optional<Outgoing> take(std::int32_t request_id);
  void rebind(std::int32_t request_id, std::uint64_t connection_id);
  std::vector<std::pair<std::int32_t, Outgoing>> take_for_connection(std::uint64_t connection_id);
  std::vector<std::pair<std::int32_t, Outgoing>> take_all();
  std::size_t size();

 private:
  std::mutex mutex_;
  std::unordered_map<std::int32_t, Outgoing> pending_;
  std::int32_t next_id_ = 1;
};

}  // namespace aiocomm::core
