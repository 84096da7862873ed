#include "binding/codec/builtin.h"

#include <cmath>
#include <limits>

namespace aiocomm::binding::codec {

namespace {
std::string type_name(PyObject* v) { return Py_TYPE(v)->tp_name; }
}  // namespace

std::int64_t to_integer(PyObject* v, std::int64_t lo, std::int64_t hi, const char* what) {
  if (!PyLong_Check(v)) {
    if (!PyIndex_Check(v) || PyFloat_Check(v)) {
      throw py::type_error(std::string("expected an int for Slice ") + what + ", got " + type_name(v));
    }
    py::object index = py::reinterpret_steal<py::object>(PyNumber_Index(v));
    if (!index) throw py::error_already_set();
    return to_integer(index.ptr(), lo, hi, what);
  }
  int overflow = 0;
  long long n = PyLong_AsLongLongAndOverflow(v, &overflow);
  if (n == -1 && PyErr_Occurred()) throw py::error_already_set();
  if (overflow != 0 || n < lo || n > hi) {
    py::object text = py::reinterpret_steal<py::object>(PyObject_Repr(v));
    std::string shown = text ? py::str(text).cast<std::string>() : "?";
    PyErr_Clear();
    throw py::value_error(shown + " is out of range for Slice " + what);
  }
  return n;
}

double to_double(PyObject* v, const char* what) {
  if (PyFloat_Check(v)) return PyFloat_AS_DOUBLE(v);
  if (PyLong_Check(v)) {
    double d = PyLong_AsDouble(v);
    if (d == -1.0 && PyErr_Occurred()) {
      PyErr_Clear();
      throw py::value_error(std::string("integer out of range for Slice ") + what);
    }
    return d;
  }
  throw py::type_error(std::string("expected a float for Slice ") + what + ", got " + type_name(v));
}

float to_float(PyObject* v) {
  double d = to_double(v, "float");
  if (std::isfinite(d) && std::fabs(d) > std::numeric_limits<float>::max()) {
    throw py::value_error(std::to_string(d) + " is out of range for Slice float");
  }
  return static_cast<float>(d);
}

bool to_bool(PyObject* v) {
  if (v == Py_True) return true;
  if (v == Py_False) return false;
  if (PyLong_Check(v)) {
    int t = PyObject_IsTrue(v);
    if (t < 0) throw py::error_already_set();
    return t != 0;
  }
  throw py::type_error("expected a bool, got " + type_name(v));
}

std::string_view to_utf8(PyObject* v) {
  if (!PyUnicode_Check(v)) throw py::type_error("expected a str for Slice string, got " + type_name(v));
  Py_ssize_t n = 0;
  const char* s = PyUnicode_AsUTF8AndSize(v, &n);
  if (!s) throw py::error_already_set();  // lone surrogates: UnicodeEncodeError (a ValueError)
  return {s, static_cast<std::size_t>(n)};
}

py::object from_utf8(std::string_view bytes) {
  PyObject* s = PyUnicode_DecodeUTF8(bytes.data(), static_cast<Py_ssize_t>(bytes.size()), "strict");
  if (!s) {
    PyErr_Clear();
    throw MarshalError("string is not valid UTF-8");
  }
  return py::reinterpret_steal<py::object>(s);
}

void Builtin::encode(Encoder& e, PyObject* v) const {
  auto& out = e.out;
  switch (kind_) {
    case Kind::Bool: out.boolean(to_bool(v)); break;
    case Kind::Byte: out.byte(static_cast<std::uint8_t>(to_integer(v, 0, 255, "byte"))); break;
    case Kind::Short: out.int16(static_cast<std::int16_t>(to_integer(v, INT16_MIN, INT16_MAX, "short"))); break;
    case Kind::Int: out.int32(static_cast<std::int32_t>(to_integer(v, INT32_MIN, INT32_MAX, "int"))); break;
    case Kind::Long: out.int64(to_integer(v, INT64_MIN, INT64_MAX, "long")); break;
    case Kind::Float: out.float32(to_float(v)); break;
    case Kind::Double: out.float64(to_double(v, "double")); break;
    case Kind::String: out.string(to_utf8(v)); break;
  }
}

py::object Builtin::decode(Decoder& d) const {
  auto& in = d.in;
  PyObject* r = nullptr;
  switch (kind_) {
    case Kind::Bool: r = PyBool_FromLong(in.boolean()); break;
    case Kind::Byte: r = PyLong_FromLong(in.byte()); break;
    case Kind::Short: r = PyLong_FromLong(in.int16()); break;
    case Kind::Int: r = PyLong_FromLong(in.int32()); break;
    case Kind::Long: r = PyLong_FromLongLong(in.int64()); break;
    case Kind::Float: r = PyFloat_FromDouble(in.float32()); break;
    case Kind::Double: r = PyFloat_FromDouble(in.float64()); break;
    case Kind::String: return from_utf8(in.string_bytes());
  }
  if (!r) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(r);
}

std::size_t Builtin::fixed_size() const {
  switch (kind_) {
    case Kind::Bool:
    case Kind::Byte: return 1;
    case Kind::Short: return 2;
    case Kind::Int:
    case Kind::Float: return 4;
    case Kind::Long:
    case Kind::Double: return 8;
    case Kind::String: return 0;
  }
  return 0;
}

OptionalFormat Builtin::optional_format() const {
  switch (fixed_size()) {
    case 1: return OptionalFormat::F1;
    case 2: return OptionalFormat::F2;
    case 4: return OptionalFormat::F4;
    case 8: return OptionalFormat::F8;
    default: return OptionalFormat::VSize;
  }
}

std::string Builtin::name() const {
  static const char* names[] = {"bool", "byte", "short", "int", "long", "float", "double", "string"};
  return names[static_cast<int>(kind_)];
}

TypePtr make_builtin(const std::string& name) {
  static const std::pair<const char*, Kind> kinds[] = {
      {"bool", Kind::Bool},   {"byte", Kind::Byte},     {"short", Kind::Short},
      {"int", Kind::Int},     {"long", Kind::Long},     {"float", Kind::Float},
      {"double", Kind::Double}, {"string", Kind::String},
  };
  for (auto& [n, k] : kinds) {
    if (name == n) return std::make_shared<Builtin>(k);
  }
  throw py::value_error("unknown builtin Slice type '" + name + "'");
}

}  // namespace aiocomm::binding::codec
