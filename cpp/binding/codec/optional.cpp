// Optional (tagged) values: Ice's formats, the header, and the rules for
// finding a tag among those present (increasing order; unknown ones skipped).
#include "binding/codec/types.h"

namespace aiocomm::binding::codec {

py::object decode_any_value(Decoder& d);

void encode_optional(Encoder& e, const Type& type, int tag, PyObject* value) {
  auto format = type.optional_format();
  e.out.optional_header(tag, format);
  if (e.slice_has_optionals) *e.slice_has_optionals = true;
  if (format == OptionalFormat::FSize) {
    auto at = e.out.reserve_int32();
    type.encode(e, value);
    e.out.patch_int32(at, static_cast<std::int32_t>(e.out.position() - at - 4));
  } else if (format == OptionalFormat::VSize && type.vsize_prefixed()) {
    // The prefix is the value's encoded length, known once it is written.
    auto at = e.out.position();
    type.encode(e, value);
    OutputStream prefix;
    prefix.size(e.out.position() - at);
    auto& bytes = e.out.bytes();
    bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(at), prefix.bytes().begin(), prefix.bytes().end());
  } else {
    type.encode(e, value);
  }
}

namespace {
void skip_value(Decoder& d, OptionalFormat format) {
  if (format == OptionalFormat::Class) {
    decode_any_value(d);
  } else {
    d.in.skip_optional(format);
  }
}

// Reads the next header unless at the end of the optionals; checks order.
bool next_header(Decoder& d, int* last_tag, int* tag, OptionalFormat* format) {
  if (d.in.at_end() || d.in.peek() == aiocomm::codec::kOptionalEndMarker) return false;
  auto [t, f] = d.in.optional_header();
  if (t <= *last_tag) {
    throw MarshalError("optional tag " + std::to_string(t) + " after tag " + std::to_string(*last_tag) +
                       ": tags out of order");
  }
  *tag = t;
  *format = f;
  return true;
}
}  // namespace

bool find_optional(Decoder& d, const Type& type, int tag, int* last_tag, bool) {
  for (;;) {
    auto at = d.in.position();
    int t;
    OptionalFormat f;
    if (!next_header(d, last_tag, &t, &f)) return false;
    if (t > tag) {
      d.in.seek(at);
      return false;
    }
    *last_tag = t;
    if (t < tag) {
      skip_value(d, f);
      continue;
    }
    if (f != type.optional_format()) {
      throw MarshalError("optional tag " + std::to_string(t) + " has format " +
                         std::to_string(static_cast<int>(f)) + ", expected " +
                         std::to_string(static_cast<int>(type.optional_format())));
    }
    return true;
  }
}

py::object decode_optional_value(Decoder& d, const Type& type) {
  auto format = type.optional_format();
  std::size_t length;
  if (format == OptionalFormat::FSize) {
    auto n = d.in.int32();
    if (n < 0) throw MarshalError("negative optional size");
    length = static_cast<std::size_t>(n);
  } else if (format == OptionalFormat::VSize && type.vsize_prefixed()) {
    length = d.in.size();
  } else {
    return type.decode(d);
  }
  if (length > d.in.remaining()) throw MarshalError("optional value longer than the data left");
  auto end = d.in.position() + length;
  py::object v = type.decode(d);
  if (d.in.position() != end) throw MarshalError("optional value does not match its declared size");
  return v;
}

void skip_optionals(Decoder& d, int* last_tag, bool in_slice) {
  for (;;) {
    if (d.in.at_end()) {
      if (in_slice) throw MarshalError("slice optionals lack their end marker");
      return;
    }
    if (d.in.peek() == aiocomm::codec::kOptionalEndMarker) {
      if (in_slice) d.in.byte();
      return;
    }
    int t;
    OptionalFormat f;
    next_header(d, last_tag, &t, &f);
    *last_tag = t;
    skip_value(d, f);
  }
}

}  // namespace aiocomm::binding::codec
