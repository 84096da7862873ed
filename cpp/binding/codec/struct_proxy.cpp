// Structs (built without __init__, fields set by interned name) and proxies
// (their wire form comes from and goes to the configured hooks).
#include "binding/codec/builtin.h"

namespace aiocomm::binding::codec {

Hooks& hooks() {
  // Never destroyed: it holds Python objects, which must not be released
  // after the interpreter is gone.
  static Hooks* h = new Hooks();
  return *h;
}

[[noreturn]] void raise_marshal_error(const MarshalError& e) {
  // The text may quote bytes from the wire (a type id): never let them fail to decode.
  std::string_view text = e.what();
  PyObject* message = PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()), "replace");
  if (!message) throw py::error_already_set();
  PyErr_SetObject(hooks().marshal_error ? hooks().marshal_error : PyExc_ValueError, message);
  Py_DECREF(message);
  throw py::error_already_set();
}

py::object new_instance(PyObject* py_class) {
  auto* type = reinterpret_cast<PyTypeObject*>(py_class);
  py::tuple empty;
  PyObject* obj = type->tp_new(type, empty.ptr(), nullptr);
  if (!obj) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(obj);
}

std::vector<Member> make_members(const py::list& members, bool tagged) {
  std::vector<Member> out;
  for (auto item : members) {
    auto t = item.cast<py::tuple>();
    if (t.size() != (tagged ? 3u : 2u)) throw py::value_error("bad member description");
    auto name = t[0].cast<std::string>();
    PyObject* interned = PyUnicode_InternFromString(name.c_str());
    if (!interned) throw py::error_already_set();
    out.push_back(Member{py::reinterpret_steal<py::object>(interned), t[1].cast<TypePtr>(),
                         tagged ? t[2].cast<int>() : -1});
  }
  return out;
}

void StructType::define(py::object py_class, const py::list& members) {
  if (!PyType_Check(py_class.ptr())) throw py::type_error("struct class must be a type");
  py_class_ = std::move(py_class);
  members_ = make_members(members, false);
}

void StructType::need_defined() const {
  if (!py_class_) throw py::type_error("struct " + type_id_ + " is declared but not defined");
}

void StructType::encode(Encoder& e, PyObject* v) const {
  need_defined();
  int ok = PyObject_IsInstance(v, py_class_.ptr());
  if (ok < 0) throw py::error_already_set();
  if (!ok) throw py::type_error("expected " + type_id_ + ", got " + Py_TYPE(v)->tp_name);
  for (const auto& m : members_) {
    PyObject* x = PyObject_GetAttr(v, m.name.ptr());
    if (!x) throw py::error_already_set();
    auto hold = py::reinterpret_steal<py::object>(x);
    try {
      m.type->encode(e, x);
    } catch (py::type_error& t) {
      throw py::type_error(type_id_ + "." + py::str(m.name).cast<std::string>() + ": " + t.what());
    } catch (py::value_error& t) {
      throw py::value_error(type_id_ + "." + py::str(m.name).cast<std::string>() + ": " + t.what());
    }
  }
}

py::object StructType::decode(Decoder& d) const {
  need_defined();
  py::object obj = new_instance(py_class_.ptr());
  d.untrack(obj.ptr());
  for (const auto& m : members_) {
    py::object x = m.type->decode(d);
    if (PyObject_GenericSetAttr(obj.ptr(), m.name.ptr(), x.ptr()) < 0) throw py::error_already_set();
  }
  return obj;
}

std::size_t StructType::min_wire_size() const {
  std::size_t n = 0;
  for (const auto& m : members_) n += m.type->min_wire_size();
  return n ? n : 1;
}

std::size_t StructType::fixed_size() const {
  std::size_t n = 0;
  for (const auto& m : members_) {
    auto f = m.type->fixed_size();
    if (!f) return 0;
    n += f;
  }
  return n;
}

namespace {

class ProxyType : public Type {
 public:
  explicit ProxyType(py::object wrap) : wrap_(std::move(wrap)) {}

  void encode(Encoder& e, PyObject* v) const override {
    if (v == Py_None) {
      e.out.size(0);  // the null proxy: an empty identity
      e.out.size(0);
      return;
    }
    if (!hooks().proxy_encode) throw py::type_error("codec.configure() was not called: cannot encode a proxy");
    PyObject* r = PyObject_CallOneArg(hooks().proxy_encode, v);
    if (!r) throw py::error_already_set();
    auto hold = py::reinterpret_steal<py::object>(r);
    if (!PyBytes_Check(r)) throw py::type_error("proxy_encode must return bytes");
    e.out.raw(PyBytes_AS_STRING(r), static_cast<std::size_t>(PyBytes_GET_SIZE(r)));
  }

  py::object decode(Decoder& d) const override {
    auto& in = d.in;
    py::object name = from_utf8(in.string_bytes());
    py::object category = from_utf8(in.string_bytes());
    // A null proxy is its empty identity alone.
    if (PyUnicode_GET_LENGTH(name.ptr()) == 0) return py::none();
    std::size_t facets = in.count(1);
    py::object facet = py::str("");
    for (std::size_t i = 0; i < facets; ++i) {
      py::object f = from_utf8(in.string_bytes());
      if (i == 0) facet = f;
    }
    int mode = in.byte();
    if (mode > 4) throw MarshalError("invalid proxy mode " + std::to_string(mode));
    bool secure = in.boolean();
    in.byte();  // protocol major
    in.byte();  // protocol minor
    int enc_major = in.byte();
    int enc_minor = in.byte();
    // An endpoint is at least its type and an empty encapsulation: 8 bytes.
    std::size_t n = in.count(8);
    py::list endpoints;
    py::object adapter_id = py::str("");
    for (std::size_t i = 0; i < n; ++i) {
      int type = in.int16();
      auto size = in.int32();
      if (size < 6) throw MarshalError("endpoint encapsulation size " + std::to_string(size));
      in.byte();
      in.byte();
      auto body = in.raw(static_cast<std::size_t>(size) - 6);
      endpoints.append(py::make_tuple(type, py::bytes(reinterpret_cast<const char*>(body.data()), body.size())));
    }
    if (n == 0) adapter_id = from_utf8(in.string_bytes());
    if (!hooks().proxy_decode) throw py::type_error("codec.configure() was not called: cannot decode a proxy");
    py::object comm = py::reinterpret_borrow<py::object>(d.communicator ? d.communicator : Py_None);
    py::object proxy = py::reinterpret_borrow<py::object>(hooks().proxy_decode)(
        comm, name, category, facet, mode, secure, py::make_tuple(enc_major, enc_minor), endpoints, adapter_id);
    if (wrap_ && !wrap_.is_none()) return wrap_(proxy);
    return proxy;
  }

  std::size_t min_wire_size() const override { return 2; }
  std::string name() const override { return "proxy"; }

 private:
  py::object wrap_;
};

}  // namespace

TypePtr make_proxy(py::object wrap) { return std::make_shared<ProxyType>(std::move(wrap)); }

}  // namespace aiocomm::binding::codec
