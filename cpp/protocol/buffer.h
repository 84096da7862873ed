// Little-endian encoding primitives of the Ice encoding (1.0 and 1.1 share
// these): bytes, ints, sizes, strings. The reader is bounds-checked and
// throws ProtocolError; nothing read from the wire is trusted.
#pragma once

#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace aiocomm::protocol {

using Bytes = std::vector<std::uint8_t>;
using ByteView = std::span<const std::uint8_t>;

// Malformed input from a peer. Its text names what was wrong.
class ProtocolError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Writer {
 public:
  explicit Writer(Bytes& out) : out_(out) {}

  void byte(std::uint8_t v) { out_.push_back(v); }
  void int32(std::int32_t v);
  void size(std::size_t v);  // 1 byte below 255, else 255 + int32
  void string(std::string_view v);
  void raw(ByteView v) { out_.insert(out_.end(), v.begin(), v.end()); }
  void string_sequence(std::span<const std::string> v);

  std::size_t position() const { return out_.size(); }
  void patch_int32(std::size_t at, std::int32_t v);

 private:
  Bytes& out_;
};

class Reader {
 public:
  explicit Reader(ByteView in) : in_(in) {}

  std::uint8_t byte();
  std::int32_t int32();
  std::size_t size();  // rejects sizes larger than what is left to read
  std::string string();
  ByteView raw(std::size_t n);
  std::vector<std::string> string_sequence();

  std::size_t remaining() const { return in_.size() - at_; }
  bool at_end() const { return at_ == in_.size(); }

 private:
  void need(std::size_t n) const;
  ByteView in_;
  std::size_t at_ = 0;
};

std::int32_t load_int32(const std::uint8_t* p) noexcept;
void store_int32(std::uint8_t* p, std::int32_t v) noexcept;

}  // namespace aiocomm::protocol
