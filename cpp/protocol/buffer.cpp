#include "protocol/buffer.h"

#include <algorithm>
#include <cstring>
#include <limits>

namespace aiocomm::protocol {

std::int32_t load_int32(const std::uint8_t* p) noexcept {
  std::uint32_t v = std::uint32_t(p[0]) | std::uint32_t(p[1]) << 8 | std::uint32_t(p[2]) << 16 |
                    std::uint32_t(p[3]) << 24;
  return static_cast<std::int32_t>(v);
}

void store_int32(std::uint8_t* p, std::int32_t v) noexcept {
  auto u = static_cast<std::uint32_t>(v);
  p[0] = std::uint8_t(u);
  p[1] = std::uint8_t(u >> 8);
  p[2] = std::uint8_t(u >> 16);
  p[3] = std::uint8_t(u >> 24);
}

void Writer::int32(std::int32_t v) {
  std::uint8_t b[4];
  store_int32(b, v);
  out_.insert(out_.end(), b, b + 4);
}

void Writer::size(std::size_t v) {
  if (v > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max())) {
    throw std::length_error("size " + std::to_string(v) + " does not fit the Ice encoding");
  }
  if (v < 255) {
    byte(static_cast<std::uint8_t>(v));
  } else {
    byte(255);
    int32(static_cast<std::int32_t>(v));
  }
}

void Writer::string(std::string_view v) {
  size(v.size());
  out_.insert(out_.end(), v.begin(), v.end());
}

void Writer::string_sequence(std::span<const std::string> v) {
  size(v.size());
  for (const auto& s : v) string(s);
}

void Writer::patch_int32(std::size_t at, std::int32_t v) { store_int32(out_.data() + at, v); }

void Reader::need(std::size_t n) const {
  if (n > remaining()) throw ProtocolError("truncated message: needed " + std::to_string(n) +
                                           " more bytes, " + std::to_string(remaining()) + " left");
}

std::uint8_t Reader::byte() {
  need(1);
  return in_[at_++];
}

std::int32_t Reader::int32() {
  need(4);
  auto v = load_int32(in_.data() + at_);
  at_ += 4;
  return v;
}

std::size_t Reader::size() {
  std::uint8_t first = byte();
  std::size_t v = first;
  if (first == 255) {
    auto wide = int32();
    if (wide < 0) throw ProtocolError("negative size " + std::to_string(wide));
    v = static_cast<std::size_t>(wide);
  }
  // Every element of a sequence takes at least one byte, so a size larger
  // than what is left is a lie; refusing it here bounds every allocation.
  if (v > remaining()) {
    throw ProtocolError("size " + std::to_string(v) + " exceeds the " +
                        std::to_string(remaining()) + " bytes left in the message");
  }
  return v;
}

std::string Reader::string() {
  auto n = size();
  auto view = raw(n);
  return std::string(reinterpret_cast<const char*>(view.data()), view.size());
}

ByteView Reader::raw(std::size_t n) {
  need(n);
  auto view = in_.subspan(at_, n);
  at_ += n;
  return view;
}

std::vector<std::string> Reader::string_sequence() {
  auto n = size();
  std::vector<std::string> out;
  // Never size memory from a wire count beyond what the bytes can hold:
  // each string takes at least its one-byte size.
  out.reserve(std::min(n, remaining()));
  for (std::size_t i = 0; i < n; ++i) out.push_back(string());
  return out;
}

}  // namespace aiocomm::protocol
