// Sequences, dictionaries and enums. Numeric sequences have loops of their
// own: no Python call per element, and a buffer of the matching element
// format (array.array, numpy) is copied whole.
#include <bit>
#include <cstring>
#include <unordered_map>

#include "binding/codec/builtin.h"

namespace aiocomm::binding::codec {

static_assert(std::endian::native == std::endian::little,
              "numeric sequences are copied as is: a little-endian host is assumed");

namespace {

// A Py_buffer released on scope exit.
class BufferView {
 public:
  BufferView(PyObject* obj, int flags) { ok_ = PyObject_GetBuffer(obj, &view_, flags) == 0; if (!ok_) PyErr_Clear(); }
  ~BufferView() { if (ok_) PyBuffer_Release(&view_); }
  BufferView(const BufferView&) = delete;
  BufferView& operator=(const BufferView&) = delete;
  bool ok() const { return ok_; }
  const Py_buffer& get() const { return view_; }

 private:
  Py_buffer view_{};
  bool ok_ = false;
};

// Whether a buffer's struct format denotes `kind`'s wire representation.
bool format_matches(const Py_buffer& b, Kind kind, std::size_t wire) {
  if (static_cast<std::size_t>(b.itemsize) != wire || !b.format) return false;
  const char* f = b.format;
  if (*f == '@' || *f == '=' || *f == '<') ++f;
  if (!f[0] || f[1]) return false;
  switch (kind) {
    case Kind::Bool: return *f == '?';
    case Kind::Short: return *f == 'h';
    case Kind::Int: return *f == 'i' || *f == 'l';
    case Kind::Long: return *f == 'q' || *f == 'l';
    case Kind::Float: return *f == 'f';
    case Kind::Double: return *f == 'd';
    default: return false;
  }
}

// A non-str sequence as a fast sequence (a list or tuple); TypeError otherwise.
py::object fast_sequence(PyObject* v, const std::string& what) {
  if (PyUnicode_Check(v) || PyDict_Check(v)) {
    throw py::type_error("expected a sequence for " + what + ", got " + Py_TYPE(v)->tp_name);
  }
  if (PyList_Check(v) || PyTuple_Check(v)) return py::reinterpret_borrow<py::object>(v);
  PyObject* f = PySequence_Fast(v, "");
  if (!f) {
    PyErr_Clear();
    throw py::type_error("expected a sequence for " + what + ", got " + Py_TYPE(v)->tp_name);
  }
  return py::reinterpret_steal<py::object>(f);
}

class Sequence : public Type {
 public:
  explicit Sequence(TypePtr element) : element_(std::move(element)) {
    if (auto* b = dynamic_cast<const Builtin*>(element_.get()); b && b->kind() != Kind::String) {
      numeric_ = true;
      kind_ = b->kind();
    }
  }

  void encode(Encoder& e, PyObject* v) const override {
    if (numeric_ && kind_ == Kind::Byte && !PyUnicode_Check(v) && PyObject_CheckBuffer(v)) {
      BufferView buf(v, PyBUF_SIMPLE);
      if (buf.ok()) {
        e.out.size(static_cast<std::size_t>(buf.get().len));
        e.out.raw(buf.get().buf, static_cast<std::size_t>(buf.get().len));
        return;
      }
    }
    if (numeric_ && PyObject_CheckBuffer(v) && !PyUnicode_Check(v)) {
      BufferView buf(v, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS);
      std::size_t wire = element_->fixed_size();
      if (buf.ok() && buf.get().ndim <= 1 && format_matches(buf.get(), kind_, wire)) {
        std::size_t n = static_cast<std::size_t>(buf.get().len) / wire;
        e.out.size(n);
        e.out.raw(buf.get().buf, n * wire);
        return;
      }
    }
    py::object seq = fast_sequence(v, name());
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq.ptr());
    PyObject** items = PySequence_Fast_ITEMS(seq.ptr());
    e.out.size(static_cast<std::size_t>(n));
    if (numeric_) {
      encode_numeric(e, items, n);
      return;
    }
    for (Py_ssize_t i = 0; i < n; ++i) {
      try {
        element_->encode(e, items[i]);
      } catch (py::type_error& x) {
        throw py::type_error(name() + "[" + std::to_string(i) + "]: " + x.what());
      }
    }
  }

  py::object decode(Decoder& d) const override {
    if (numeric_ && kind_ == Kind::Byte) {
      std::size_t n = d.in.count(1);
      auto raw = d.in.raw(n);
      PyObject* b = PyBytes_FromStringAndSize(reinterpret_cast<const char*>(raw.data()),
                                              static_cast<Py_ssize_t>(n));
      if (!b) throw py::error_already_set();
      return py::reinterpret_steal<py::object>(b);
    }
    std::size_t n = d.in.count(element_->min_wire_size());
    PyObject* list = PyList_New(static_cast<Py_ssize_t>(n));
    if (!list) throw py::error_already_set();
    auto result = py::reinterpret_steal<py::object>(list);
    d.untrack(list);
    if (numeric_) {
      decode_numeric(d, list, n);
      return result;
    }
    for (std::size_t i = 0; i < n; ++i) {
      PyList_SET_ITEM(list, static_cast<Py_ssize_t>(i), element_->decode(d).release().ptr());
    }
    return result;
  }

  std::size_t min_wire_size() const override { return 1; }
  OptionalFormat optional_format() const override {
    return element_->fixed_size() ? OptionalFormat::VSize : OptionalFormat::FSize;
  }
  bool vsize_prefixed() const override { return element_->fixed_size() > 1; }
  std::string name() const override { return "sequence<" + element_->name() + ">"; }

 private:
  void encode_numeric(Encoder& e, PyObject** items, Py_ssize_t n) const {
    auto& out = e.out;
    for (Py_ssize_t i = 0; i < n; ++i) {
      PyObject* x = items[i];
      try {
        switch (kind_) {
          case Kind::Bool: out.boolean(to_bool(x)); break;
          case Kind::Byte: out.byte(static_cast<std::uint8_t>(to_integer(x, 0, 255, "byte"))); break;
          case Kind::Short: out.int16(static_cast<std::int16_t>(to_integer(x, INT16_MIN, INT16_MAX, "short"))); break;
          case Kind::Int: out.int32(static_cast<std::int32_t>(to_integer(x, INT32_MIN, INT32_MAX, "int"))); break;
          case Kind::Long: out.int64(to_integer(x, INT64_MIN, INT64_MAX, "long")); break;
          case Kind::Float: out.float32(to_float(x)); break;
          case Kind::Double: out.float64(to_double(x, "double")); break;
          case Kind::String: break;
        }
      } catch (py::type_error& t) {
        throw py::type_error(name() + "[" + std::to_string(i) + "]: " + t.what());
      } catch (py::value_error& t) {
        throw py::value_error(name() + "[" + std::to_string(i) + "]: " + t.what());
      }
    }
  }

  void decode_numeric(Decoder& d, PyObject* list, std::size_t n) const {
    auto& in = d.in;
    for (std::size_t i = 0; i < n; ++i) {
      PyObject* x = nullptr;
      switch (kind_) {
        case Kind::Bool: x = PyBool_FromLong(in.boolean()); break;
        case Kind::Byte: x = PyLong_FromLong(in.byte()); break;
        case Kind::Short: x = PyLong_FromLong(in.int16()); break;
        case Kind::Int: x = PyLong_FromLong(in.int32()); break;
        case Kind::Long: x = PyLong_FromLongLong(in.int64()); break;
        case Kind::Float: x = PyFloat_FromDouble(in.float32()); break;
        case Kind::Double: x = PyFloat_FromDouble(in.float64()); break;
        case Kind::String: break;
      }
      if (!x) throw py::error_already_set();
      PyList_SET_ITEM(list, static_cast<Py_ssize_t>(i), x);
    }
  }

  TypePtr element_;
  bool numeric_ = false;
  Kind kind_ = Kind::String;
};

class Dictionary : public Type {
 public:
  Dictionary(TypePtr key, TypePtr value) : key_(std::move(key)), value_(std::move(value)) {}

  void encode(Encoder& e, PyObject* v) const override {
    if (PyDict_Check(v)) {
      e.out.size(static_cast<std::size_t>(PyDict_GET_SIZE(v)));
      Py_ssize_t pos = 0;
      PyObject *k, *x;
      while (PyDict_Next(v, &pos, &k, &x)) {
        // Holds both while user code (a class's getattr) might mutate the dict.
        py::object hold_k = py::reinterpret_borrow<py::object>(k);
        py::object hold_x = py::reinterpret_borrow<py::object>(x);
        pair(e, k, x);
      }
      return;
    }
    if (!PyMapping_Check(v) || PyUnicode_Check(v) || PyList_Check(v) || PyTuple_Check(v)) {
      throw py::type_error("expected a dict for " + name() + ", got " + Py_TYPE(v)->tp_name);
    }
    PyObject* items = PyMapping_Items(v);
    if (!items) throw py::error_already_set();
    auto hold = py::reinterpret_steal<py::object>(items);
    Py_ssize_t n = PyList_GET_SIZE(items);
    e.out.size(static_cast<std::size_t>(n));
    for (Py_ssize_t i = 0; i < n; ++i) {
      PyObject* kv = PyList_GET_ITEM(items, i);
      if (!PyTuple_Check(kv) || PyTuple_GET_SIZE(kv) != 2) throw py::type_error("bad mapping items");
      pair(e, PyTuple_GET_ITEM(kv, 0), PyTuple_GET_ITEM(kv, 1));
    }
  }

  py::object decode(Decoder& d) const override {
    std::size_t n = d.in.count(key_->min_wire_size() + value_->min_wire_size());
    PyObject* dict = PyDict_New();
    if (!dict) throw py::error_already_set();
    auto result = py::reinterpret_steal<py::object>(dict);
    for (std::size_t i = 0; i < n; ++i) {
      py::object k = key_->decode(d);
      py::object x = value_->decode(d);
      if (PyDict_SetItem(dict, k.ptr(), x.ptr()) < 0) throw py::error_already_set();
    }
    return result;
  }

  std::size_t min_wire_size() const override { return 1; }
  OptionalFormat optional_format() const override {
    return key_->fixed_size() && value_->fixed_size() ? OptionalFormat::VSize : OptionalFormat::FSize;
  }
  bool vsize_prefixed() const override { return optional_format() == OptionalFormat::VSize; }
  std::string name() const override { return "dictionary<" + key_->name() + ", " + value_->name() + ">"; }

 private:
  void pair(Encoder& e, PyObject* k, PyObject* x) const {
    try {
      key_->encode(e, k);
      value_->encode(e, x);
    } catch (py::type_error& t) {
      throw py::type_error(name() + ": " + t.what());
    }
  }
  TypePtr key_, value_;
};

class Enum : public Type {
 public:
  explicit Enum(py::dict members) {
    for (auto [k, v] : members) {
      auto value = to_integer(k.ptr(), 0, INT32_MAX, "enum");
      members_.emplace(value, py::reinterpret_borrow<py::object>(v));
    }
  }

  void encode(Encoder& e, PyObject* v) const override {
    if (PyBool_Check(v)) throw py::type_error("expected an enumerator, got bool");
    std::int64_t n;
    try {
      n = to_integer(v, INT32_MIN, INT32_MAX, "enum");
    } catch (py::type_error&) {
      throw py::type_error(std::string("expected an enumerator or int, got ") + Py_TYPE(v)->tp_name);
    }
    if (!members_.count(n)) throw py::value_error(std::to_string(n) + " is not a value of this enum");
    e.out.size(static_cast<std::size_t>(n));
  }

  py::object decode(Decoder& d) const override {
    auto n = static_cast<std::int64_t>(d.in.size());
    auto it = members_.find(n);
    if (it == members_.end()) throw MarshalError("unknown enumerator value " + std::to_string(n));
    return it->second;
  }

  OptionalFormat optional_format() const override { return OptionalFormat::Size; }
  std::string name() const override { return "enum"; }

 private:
  std::unordered_map<std::int64_t, py::object> members_;
};

}  // namespace

TypePtr make_sequence(TypePtr element) { return std::make_shared<Sequence>(std::move(element)); }
TypePtr make_dictionary(TypePtr key, TypePtr value) {
  return std::make_shared<Dictionary>(std::move(key), std::move(value));
}
TypePtr make_enum(py::dict members) { return std::make_shared<Enum>(std::move(members)); }

}  // namespace aiocomm::binding::codec
