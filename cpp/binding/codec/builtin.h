// The built-in Slice types (bool, byte, short, int, long, float, double,
// string): their conversions from and to Python, shared by the sequence fast
// paths.
#pragma once

#include "binding/codec/types.h"

namespace aiocomm::binding::codec {

enum class Kind { Bool, Byte, Short, Int, Long, Float, Double, String };

class Builtin : public Type {
 public:
  explicit Builtin(Kind kind) : kind_(kind) {}
  Kind kind() const { return kind_; }
  void encode(Encoder& e, PyObject* value) const override;
  py::object decode(Decoder& d) const override;
  std::size_t min_wire_size() const override { return fixed_size() ? fixed_size() : 1; }
  std::size_t fixed_size() const override;
  OptionalFormat optional_format() const override;
  std::string name() const override;

 private:
  Kind kind_;
};

// An integer in [lo, hi] from a Python int (or __index__): TypeError if not
// an integer, ValueError if out of range. `what` names the Slice type.
std::int64_t to_integer(PyObject* v, std::int64_t lo, std::int64_t hi, const char* what);
double to_double(PyObject* v, const char* what);
float to_float(PyObject* v);
bool to_bool(PyObject* v);
// A str as UTF-8; TypeError otherwise.
std::string_view to_utf8(PyObject* v);
py::object from_utf8(std::string_view bytes);

}  // namespace aiocomm::binding::codec
