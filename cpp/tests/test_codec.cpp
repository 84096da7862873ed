// Tests of the codec's streams (codec/stream.h): primitives little-endian,
// sizes, optional headers, and input that lies about its sizes or ends early.
#include <cstdint>
#include <limits>
#include <string>

#include "codec/stream.h"
#include "tests/check.h"

namespace {

using namespace aiocomm::codec;

TEST(codec_primitives_round_trip_little_endian) {
  OutputStream out;
  out.boolean(true);
  out.int16(-2);
  out.int32(0x01020304);
  out.int64(std::numeric_limits<std::int64_t>::min());
  out.float32(1.5f);
  out.float64(-0.25);
  out.string("héllo");
  auto& b = out.bytes();
  CHECK_EQ(b[1], 0xFE);
  CHECK_EQ(b[2], 0xFF);
  CHECK_EQ(b[3], 0x04);
  CHECK_EQ(b[6], 0x01);
  InputStream in(b);
  CHECK(in.boolean());
  CHECK_EQ(in.int16(), -2);
  CHECK_EQ(in.int32(), 0x01020304);
  CHECK_EQ(in.int64(), std::numeric_limits<std::int64_t>::min());
  CHECK_EQ(in.float32(), 1.5f);
  CHECK_EQ(in.float64(), -0.25);
  CHECK_EQ(std::string(in.string_bytes()), std::string("héllo"));
  CHECK(in.at_end());
}

TEST(codec_size_forms) {
  OutputStream out;
  out.size(254);
  out.size(255);
  CHECK_EQ(out.bytes().size(), 6u);
  CHECK_EQ(out.bytes()[1], 255);
  InputStream in(out.bytes());
  CHECK_EQ(in.size(), 254u);
  CHECK_EQ(in.size(), 255u);
}

TEST(codec_every_truncation_throws) {
  OutputStream out;
  out.int64(7);
  out.string("abcdef");
  auto full = out.bytes();
  for (std::size_t cut = 0; cut < full.size(); ++cut) {
    Bytes part(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(cut));
    InputStream in(part);
    bool threw = false;
    try {
      in.int64();
      in.string_bytes();
    } catch (const MarshalError&) {
      threw = true;
    }
    CHECK(threw);
  }
}

TEST(codec_count_checked_before_allocation) {
  // A size of 2^31-1 with four bytes behind it.
  Bytes b = {255, 0xFF, 0xFF, 0xFF, 0x7F, 1, 2, 3, 4};
  InputStream in(b);
  CHECK_THROWS(MarshalError, in.count(4));
  InputStream in2(b);
  CHECK_THROWS(MarshalError, in2.count(1));
  Bytes negative = {255, 0, 0, 0, 0x80};
  InputStream in3(negative);
  CHECK_THROWS(MarshalError, in3.size());
}

TEST(codec_optional_headers) {
  OutputStream out;
  out.optional_header(3, OptionalFormat::F4);
  out.optional_header(300, OptionalFormat::FSize);
  CHECK_EQ(out.bytes()[0], 3 << 3 | 2);
  CHECK_EQ(out.bytes()[1], 30 << 3 | 6);
  InputStream in(out.bytes());
  auto [t1, f1] = in.optional_header();
  CHECK_EQ(t1, 3);
  CHECK(f1 == OptionalFormat::F4);
  auto [t2, f2] = in.optional_header();
  CHECK_EQ(t2, 300);
  CHECK(f2 == OptionalFormat::FSize);
}

TEST(codec_skip_optional_bounds) {
  Bytes b = {0xFF, 0xFF, 0xFF, 0x7F};  // FSize of 2^31-1 with nothing behind
  InputStream in(b);
  CHECK_THROWS(MarshalError, in.skip_optional(OptionalFormat::FSize));
  Bytes v = {10, 1, 2};
  InputStream in2(v);
  CHECK_THROWS(MarshalError, in2.skip_optional(OptionalFormat::VSize));
}

TEST(codec_limit_bounds_reads) {
  Bytes b = {1, 2, 3, 4};
  InputStream in(b);
  auto old = in.limit(2);
  in.byte();
  in.byte();
  CHECK_THROWS(MarshalError, in.byte());
  in.limit(old);
  CHECK_EQ(in.byte(), 3);
  CHECK_THROWS(MarshalError, in.limit(10));
}

}  // namespace
