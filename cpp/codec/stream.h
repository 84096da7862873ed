// Streams of the Ice encoding 1.1 over an encapsulation's content: a
// bounds-checked reader and a growable writer. Pure C++ (no Python), so the
// decoder's hostile-input rules are testable and fuzzable on their own.
//
// The reader trusts nothing: every read checks the bytes left, and a declared
// element count is checked against the bytes left *before* the caller
// allocates anything for it (see count()). Errors are MarshalError.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace aiocomm::codec {

using Bytes = std::vector<std::uint8_t>;
using ByteView = std::span<const std::uint8_t>;

// Malformed or truncated encoded data. The text names what was wrong.
class MarshalError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The wire formats of optional (tagged) values, Ice's numbering.
enum class OptionalFormat : std::uint8_t {
  F1 = 0, F2 = 1, F4 = 2, F8 = 3, Size = 4, VSize = 5, FSize = 6, Class = 7,
};

// Ends the optional members of a class or exception slice.
inline constexpr std::uint8_t kOptionalEndMarker = 0xFF;

// Slice header flags (encoding 1.1).
namespace slice_flags {
inline constexpr std::uint8_t kTypeIdMask = 0x03;
inline constexpr std::uint8_t kTypeIdString = 0x01;
inline constexpr std::uint8_t kTypeIdIndex = 0x02;
inline constexpr std::uint8_t kTypeIdCompact = 0x03;
inline constexpr std::uint8_t kHasOptionalMembers = 0x04;
inline constexpr std::uint8_t kHasIndirectionTable = 0x08;
inline constexpr std::uint8_t kHasSliceSize = 0x10;
inline constexpr std::uint8_t kIsLastSlice = 0x20;
}  // namespace slice_flags

class OutputStream {
 public:
  void byte(std::uint8_t v) { out_.push_back(v); }
  void boolean(bool v) { out_.push_back(v ? 1 : 0); }
  void int16(std::int16_t v) { little(static_cast<std::uint16_t>(v)); }
  void int32(std::int32_t v) { little(static_cast<std::uint32_t>(v)); }
  void int64(std::int64_t v) { little(static_cast<std::uint64_t>(v)); }
  void float32(float v);
  void float64(double v);
  // 1 byte below 255, else 255 and an int32. Throws std::length_error above
  // INT32_MAX (it cannot be encoded).
  void size(std::size_t v);
  void string(std::string_view v);
  void raw(const void* data, std::size_t n);
  // Optional header: format in the low 3 bits, the tag in the high 5 (or 30
  // and the tag as a size when it is 30 or more).
  void optional_header(int tag, OptionalFormat format);

  // Reserves an int32 to be patched later; returns its position.
  std::size_t reserve_int32();
  void patch_int32(std::size_t at, std::int32_t v);
  void patch_byte(std::size_t at, std::uint8_t v) { out_.at(at) = v; }

  std::size_t position() const noexcept { return out_.size(); }
  Bytes& bytes() noexcept { return out_; }
  // Grows the buffer by n bytes and returns a pointer to them, for bulk copies.
  std::uint8_t* extend(std::size_t n);

 private:
  template <typename U>
  void little(U u) {
    std::uint8_t b[sizeof(U)];
    for (std::size_t i = 0; i < sizeof(U); ++i) b[i] = static_cast<std::uint8_t>(u >> (8 * i));
    out_.insert(out_.end(), b, b + sizeof(U));
  }
  Bytes out_;
};

class InputStream {
 public:
  explicit InputStream(ByteView in) : in_(in) {}

  std::uint8_t byte();
  bool boolean() { return byte() != 0; }
  std::int16_t int16() { return static_cast<std::int16_t>(little<std::uint16_t>()); }
  std::int32_t int32() { return static_cast<std::int32_t>(little<std::uint32_t>()); }
  std::int64_t int64() { return static_cast<std::int64_t>(little<std::uint64_t>()); }
  float float32();
  double float64();
  // A size: 1 byte, or 255 and a non-negative int32.
  std::size_t size();
  // An element count for elements of at least `min_wire` bytes each:
  // rejected unless count * min_wire bytes are left, before anything is
  // allocated for it.
  std::size_t count(std::size_t min_wire);
  // A string's UTF-8 bytes (not validated here: the binding decodes them).
  std::string_view string_bytes();
  ByteView raw(std::size_t n);
  void skip(std::size_t n) { raw(n); }
  std::uint8_t peek() const;

  // Reads an optional header; returns {tag, format}.
  std::pair<int, OptionalFormat> optional_header();
  // Skips an optional value whose format is not Class.
  void skip_optional(OptionalFormat format);

  std::size_t position() const noexcept { return at_; }
  // Moves to an absolute position in [0, size()].
  void seek(std::size_t at);
  std::size_t remaining() const noexcept { return end_ - at_; }
  bool at_end() const noexcept { return at_ == end_; }
  // Restricts reading to [position, limit) until restored; returns the old
  // limit. Used for slices whose size is known.
  std::size_t limit(std::size_t end);
  std::size_t end() const noexcept { return end_; }

 private:
  void need(std::size_t n) const;
  template <typename U>
  U little() {
    need(sizeof(U));
    U u = 0;
    for (std::size_t i = 0; i < sizeof(U); ++i) u |= static_cast<U>(static_cast<U>(in_[at_ + i]) << (8 * i));
    at_ += sizeof(U);
    return u;
  }
  ByteView in_;
  std::size_t at_ = 0;
  std::size_t end_ = in_.size();
};

}  // namespace aiocomm::codec
