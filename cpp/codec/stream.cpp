#include "codec/stream.h"

#include <bit>
#include <limits>

namespace aiocomm::codec {

void OutputStream::float32(float v) { int32(std::bit_cast<std::int32_t>(v)); }
void OutputStream::float64(double v) { int64(std::bit_cast<std::int64_t>(v)); }

void OutputStream::size(std::size_t v) {
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

void OutputStream::string(std::string_view v) {
  size(v.size());
  raw(v.data(), v.size());
}

void OutputStream::raw(const void* data, std::size_t n) {
  if (n == 0) return;
  std::memcpy(extend(n), data, n);
}

std::uint8_t* OutputStream::extend(std::size_t n) {
  auto at = out_.size();
  out_.resize(at + n);
  return out_.data() + at;
}

void OutputStream::optional_header(int tag, OptionalFormat format) {
  auto f = static_cast<std::uint8_t>(format);
  if (tag < 30) {
    byte(static_cast<std::uint8_t>(tag << 3 | f));
  } else {
    byte(static_cast<std::uint8_t>(30 << 3 | f));
    size(static_cast<std::size_t>(tag));
  }
}

std::size_t OutputStream::reserve_int32() {
  auto at = out_.size();
  int32(0);
  return at;
}

void OutputStream::patch_int32(std::size_t at, std::int32_t v) {
  auto u = static_cast<std::uint32_t>(v);
  for (int i = 0; i < 4; ++i) out_.at(at + i) = static_cast<std::uint8_t>(u >> (8 * i));
}

void InputStream::need(std::size_t n) const {
  if (n > end_ - at_) {
    throw MarshalError("truncated data: " + std::to_string(n) + " bytes needed at offset " +
                       std::to_string(at_) + ", " + std::to_string(end_ - at_) + " left");
  }
}

std::uint8_t InputStream::byte() {
  need(1);
  return in_[at_++];
}

std::uint8_t InputStream::peek() const {
  need(1);
  return in_[at_];
}

float InputStream::float32() { return std::bit_cast<float>(int32()); }
double InputStream::float64() { return std::bit_cast<double>(int64()); }

std::size_t InputStream::size() {
  std::uint8_t b = byte();
  if (b < 255) return b;
  std::int32_t v = int32();
  if (v < 0) throw MarshalError("negative size " + std::to_string(v));
  return static_cast<std::size_t>(v);
}

std::size_t InputStream::count(std::size_t min_wire) {
  std::size_t n = size();
  // n < 2^31 and min_wire is small: no overflow in 64 bits.
  if (n * (min_wire == 0 ? 1 : min_wire) > remaining()) {
    throw MarshalError("declared count " + std::to_string(n) + " needs at least " +
                       std::to_string(n * (min_wire == 0 ? 1 : min_wire)) + " bytes, " +
                       std::to_string(remaining()) + " left");
  }
  return n;
}

std::string_view InputStream::string_bytes() {
  std::size_t n = size();
  auto v = raw(n);
  return {reinterpret_cast<const char*>(v.data()), v.size()};
}

ByteView InputStream::raw(std::size_t n) {
  need(n);
  auto v = in_.subspan(at_, n);
  at_ += n;
  return v;
}

void InputStream::seek(std::size_t at) {
  if (at > end_) throw MarshalError("position " + std::to_string(at) + " past the end");
  at_ = at;
}

std::size_t InputStream::limit(std::size_t end) {
  if (end > in_.size() || end < at_) throw MarshalError("slice bounds outside the data");
  auto old = end_;
  end_ = end;
  return old;
}

std::pair<int, OptionalFormat> InputStream::optional_header() {
  std::uint8_t v = byte();
  auto format = static_cast<OptionalFormat>(v & 0x07);
  int tag = v >> 3;
  if (tag == 30) {
    auto big = size();
    if (big < 30) throw MarshalError("tag " + std::to_string(big) + " written in the long form");
    tag = static_cast<int>(big);
  } else if (tag == 31) {
    throw MarshalError("invalid optional tag byte 0x" + std::to_string(v));
  }
  return {tag, format};
}

void InputStream::skip_optional(OptionalFormat format) {
  switch (format) {
    case OptionalFormat::F1: skip(1); break;
    case OptionalFormat::F2: skip(2); break;
    case OptionalFormat::F4: skip(4); break;
    case OptionalFormat::F8: skip(8); break;
    case OptionalFormat::Size: size(); break;
    case OptionalFormat::VSize: skip(size()); break;
    case OptionalFormat::FSize: {
      std::int32_t n = int32();
      if (n < 0) throw MarshalError("negative optional size");
      skip(static_cast<std::size_t>(n));
      break;
    }
    case OptionalFormat::Class:
      throw MarshalError("class optional cannot be skipped by the stream alone");
  }
}

}  // namespace aiocomm::codec
