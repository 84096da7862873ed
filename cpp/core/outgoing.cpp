#include "core/outgoing.h"

#include <limits>

#include "protocol/message.h"

namespace aiocomm::core {

std::int32_t OutgoingTable::add(Outgoing outgoing, protocol::Bytes& request) {
  std::lock_guard lock(mutex_);
  for (;;) {
    std::int32_t id = next_id_;
    next_id_ = next_id_ == std::numeric_limits<std::int32_t>::max() ? 1 : next_id_ + 1;
    if (pending_.contains(id)) continue;
    protocol::store_int32(request.data() + protocol::header_size, id);
    pending_.emplace(id, std::move(outgoing));
    return id;
  }
}

void OutgoingTable::put(std::int32_t request_id, Outgoing outgoing) {
  std::lock_guard lock(mutex_);
  pending_.insert_or_assign(request_id, std::move(outgoing));
}

std::optional<Outgoing> OutgoingTable::take(std::int32_t request_id) {
  std::lock_guard lock(mutex_);
  auto node = pending_.extract(request_id);
  if (node.empty()) return std::nullopt;
  return std::move(node.mapped());
}

void OutgoingTable::rebind(std::int32_t request_id, std::uint64_t connection_id) {
  std::lock_guard lock(mutex_);
  auto it = pending_.find(request_id);
  if (it != pending_.end()) it->second.connection_id = connection_id;
}

std::vector<std::pair<std::int32_t, Outgoing>> OutgoingTable::take_for_connection(
    std::uint64_t connection_id) {
  std::vector<std::pair<std::int32_t, Outgoing>> out;
  std::lock_guard lock(mutex_);
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (it->second.connection_id == connection_id) {
      out.emplace_back(it->first, std::move(it->second));
      it = pending_.erase(it);
    } else {
      ++it;
    }
  }
  return out;
}

std::vector<std::pair<std::int32_t, Outgoing>> OutgoingTable::take_all() {
  std::vector<std::pair<std::int32_t, Outgoing>> out;
  std::lock_guard lock(mutex_);
  for (auto& [id, outgoing] : pending_) out.emplace_back(id, std::move(outgoing));
  pending_.clear();
  return out;
}

std::size_t OutgoingTable::size() {
  std::lock_guard lock(mutex_);
  return pending_.size();
}

}  // namespace aiocomm::core
