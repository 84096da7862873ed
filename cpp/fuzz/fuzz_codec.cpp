// libFuzzer target: the codec's Python-free decoding primitives
// (codec/stream.h) on arbitrary bytes.
//
// The first byte picks a shape, the rest is decoded as that shape the way
// the binding's walks use the stream: counts checked before the vectors
// holding their elements are reserved, optional headers and skips, slice
// headers with sizes and limits. Every shape either decodes or throws
// MarshalError; anything else escaping is a bug, and so is any sanitizer
// report or an allocation above -malloc_limit_mb (a count that got past
// count() without the bytes behind it).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "codec/stream.h"

namespace {

using namespace aiocomm::codec;

[[noreturn]] void invariant_failed(const char* what) {
  std::fprintf(stderr, "fuzz_codec: invariant failed: %s\n", what);
  std::abort();
}

#define EXPECT(cond)                      \
  do {                                    \
    if (!(cond)) invariant_failed(#cond); \
  } while (0)

// sequence<T> of a fixed-size element.
template <typename Read>
void fixed_sequence(InputStream& in, std::size_t wire, Read read) {
  auto before = in.remaining();
  std::size_t n = in.count(wire);
  EXPECT(n * wire <= in.remaining() && in.remaining() < before + 1);
  std::vector<decltype(read())> out;
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) out.push_back(read());
}

void strings(InputStream& in) {
  std::size_t n = in.count(1);
  std::vector<std::string> out;
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) out.emplace_back(in.string_bytes());
}

// dictionary<string, sequence<byte>>
void dictionary(InputStream& in) {
  std::size_t n = in.count(2);
  std::vector<std::pair<std::string, std::vector<std::uint8_t>>> out;
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    std::string k(in.string_bytes());
    auto v = in.raw(in.count(1));
    out.emplace_back(std::move(k), std::vector<std::uint8_t>(v.begin(), v.end()));
  }
}

// Optional values up to the end or an end marker, tags increasing.
void optionals(InputStream& in) {
  int last = -1;
  while (!in.at_end() && in.peek() != kOptionalEndMarker) {
    auto [tag, format] = in.optional_header();
    if (tag <= last) throw MarshalError("tags out of order");
    last = tag;
    if (format == OptionalFormat::Class) throw MarshalError("class optional");
    auto before = in.position();
    in.skip_optional(format);
    EXPECT(in.position() >= before);
  }
}

// Sized slices, each read under a limit, the way class and exception slices are.
void slices(InputStream& in) {
  for (int guard = 0; guard < 64 && !in.at_end(); ++guard) {
    std::uint8_t flags = in.byte();
    if (flags & slice_flags::kTypeIdString) in.string_bytes();
    if (!(flags & slice_flags::kHasSliceSize)) return;
    auto size = in.int32();
    if (size < 4 || static_cast<std::size_t>(size) - 4 > in.remaining()) throw MarshalError("slice size");
    auto end = in.position() + static_cast<std::size_t>(size) - 4;
    auto outer = in.limit(end);
    EXPECT(in.end() == end);
    if (flags & slice_flags::kHasOptionalMembers) {
      optionals(in);
      if (!in.at_end()) in.byte();
    } else {
      in.skip(in.remaining());
    }
    EXPECT(in.position() <= end);
    in.seek(end);
    in.limit(outer);
    if (flags & slice_flags::kIsLastSlice) return;
  }
}

void decode(std::uint8_t shape, InputStream& in) {
  switch (shape % 9) {
    case 0: fixed_sequence(in, 4, [&] { return in.int32(); }); break;
    case 1: fixed_sequence(in, 8, [&] { return in.float64(); }); break;
    case 2: fixed_sequence(in, 2, [&] { return in.int16(); }); break;
    case 3: strings(in); break;
    case 4: dictionary(in); break;
    case 5: optionals(in); break;
    case 6: slices(in); break;
    case 7: {
      // struct { bool; long; float; string } sequence
      std::size_t n = in.count(1 + 8 + 4 + 1);
      for (std::size_t i = 0; i < n; ++i) {
        in.boolean();
        in.int64();
        in.float32();
        in.string_bytes();
      }
      break;
    }
    default: {
      // A proxy's endpoint list: count of at least 8 bytes each, encapsulations.
      std::size_t n = in.count(8);
      for (std::size_t i = 0; i < n; ++i) {
        in.int16();
        auto size = in.int32();
        if (size < 6) throw MarshalError("endpoint size");
        in.raw(2);
        in.raw(static_cast<std::size_t>(size) - 6);
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  InputStream in(ByteView(data + 1, size - 1));
  try {
    decode(data[0], in);
    EXPECT(in.position() <= size - 1);
  } catch (const MarshalError&) {
  }
  return 0;
}
