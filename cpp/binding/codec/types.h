// The codec's type descriptors: compiled once from the Slice definitions
// (by the mapping), then walked by encode/decode. Each descriptor knows how
// to write a Python value to an OutputStream and to build one from an
// InputStream, with the Python C API only (no Python-level calls besides the
// user's classes and the proxy hooks). The GIL is held throughout.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "codec/stream.h"

namespace aiocomm::binding::codec {

namespace py = pybind11;
using aiocomm::codec::InputStream;
using aiocomm::codec::MarshalError;
using aiocomm::codec::OptionalFormat;
using aiocomm::codec::OutputStream;

class ClassType;
class ExceptionType;
struct SliceTable;

// Graph depth limit of class instances (Ice's default Ice.ClassGraphDepthMax).
inline constexpr int kClassDepthMax = 100;

// State of one encoding: the stream, the class format, and the instances
// already written (class graphs are written once, then referenced).
struct Encoder {
  OutputStream out;
  bool sliced = false;
  // Instances marshaled so far -> their index (2, 3, ...). The objects are
  // held so that their addresses cannot be reused during the encoding.
  std::unordered_map<PyObject*, std::int32_t> instances;
  std::vector<py::object> pinned;
  // Nesting of instances being written: a graph deeper than any receiver
  // accepts (kClassDepthMax) is refused before it recurses the C stack away.
  int depth = 0;
  std::unordered_map<std::string, std::int32_t> type_ids;  // type id -> index (1, 2, ...)
  // The indirection table of the slice being written (sliced format), or null.
  std::vector<py::object>* indirection = nullptr;
  std::unordered_map<PyObject*, std::int32_t>* indirection_index = nullptr;
  // Whether the slice being written has written an optional member.
  bool* slice_has_optionals = nullptr;
};

// State of one decoding.
struct Decoder {
  explicit Decoder(aiocomm::codec::ByteView data, PyObject* communicator)
      : in(data), communicator(communicator) {}
  InputStream in;
  PyObject* communicator;  // borrowed; passed to proxy_decode
  std::vector<py::object> instances;  // index - 2 -> instance
  std::vector<std::string> type_ids;  // index - 1 -> type id
  int depth = 0;
  // The indirection table of the slice being read, when it has one.
  const std::vector<py::object>* indirection = nullptr;

  // Structs and lists built here stay out of the garbage collector's
  // generations until the decoding ends: only the result reaches them, and
  // a collection that the allocations trigger midway would traverse (and
  // promote) each of them again; that doubled the cost of decoding a
  // thousand structs. Held here, and tracked again by the destructor.
  void untrack(PyObject* o) {
    if (PyObject_GC_IsTracked(o)) {
      PyObject_GC_UnTrack(o);
      untracked.push_back(py::reinterpret_borrow<py::object>(o));
    }
  }
  ~Decoder() {
    for (const auto& o : untracked) {
      if (!PyObject_GC_IsTracked(o.ptr())) PyObject_GC_Track(o.ptr());
    }
  }
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

 private:
  std::vector<py::object> untracked;
};

// A Slice type. Immutable once defined; shared by the descriptors using it.
class Type {
 public:
  virtual ~Type() = default;
  // Writes `value` (borrowed). Wrong type: py::type_error; out of range:
  // py::value_error; a Python error already set: py::error_already_set.
  virtual void encode(Encoder& e, PyObject* value) const = 0;
  // Reads one value and returns it (a new reference). Bad data: MarshalError.
  virtual py::object decode(Decoder& d) const = 0;
  // Fewest bytes one value takes on the wire (to check declared counts).
  virtual std::size_t min_wire_size() const { return 1; }
  // Bytes every value takes when that is fixed, else 0.
  virtual std::size_t fixed_size() const { return 0; }
  virtual OptionalFormat optional_format() const { return OptionalFormat::FSize; }
  // VSize values whose length is not their own leading size carry one more
  // size in front (sequences of fixed-size elements wider than a byte, fixed structs).
  virtual bool vsize_prefixed() const { return false; }
  // The size written ahead of a vsize_prefixed value.
  virtual std::size_t vsize_of(PyObject*) const { return 0; }
  virtual std::string name() const = 0;
};
using TypePtr = std::shared_ptr<Type>;

// Writes/reads a value as an optional member/param with `tag` (value not None).
void encode_optional(Encoder& e, const Type& type, int tag, PyObject* value);
// Reads the header of the next optional if it is `tag`; skips smaller,
// unknown ones (which must come in increasing order, after *last_tag).
// Returns false (nothing consumed but skipped ones) when `tag` is absent.
bool find_optional(Decoder& d, const Type& type, int tag, int* last_tag, bool in_slice);
py::object decode_optional_value(Decoder& d, const Type& type);
// Skips every optional left (up to the end, or up to and including the end
// marker when in_slice).
void skip_optionals(Decoder& d, int* last_tag, bool in_slice);

// A member of a struct, class or exception.
struct Member {
  py::object name;  // interned str
  TypePtr type;
  int tag;  // -1 = required
};
std::vector<Member> make_members(const py::list& members, bool tagged);
// The members of a class or exception slice as written: required ones in
// Slice order, then optional ones by tag.
std::vector<const Member*> wire_order(const std::vector<Member>& members);

// Builtins.
TypePtr make_builtin(const std::string& name);
TypePtr make_sequence(TypePtr element);
TypePtr make_dictionary(TypePtr key, TypePtr value);
TypePtr make_enum(py::dict members);
TypePtr make_proxy(py::object wrap);

// A struct: declared by type id, defined later (types may refer ahead).
class StructType : public Type {
 public:
  explicit StructType(std::string type_id) : type_id_(std::move(type_id)) {}
  void define(py::object py_class, const py::list& members);
  void encode(Encoder& e, PyObject* value) const override;
  py::object decode(Decoder& d) const override;
  std::size_t min_wire_size() const override;
  std::size_t fixed_size() const override;
  OptionalFormat optional_format() const override {
    return fixed_size() ? OptionalFormat::VSize : OptionalFormat::FSize;
  }
  bool vsize_prefixed() const override { return fixed_size() != 0; }
  std::size_t vsize_of(PyObject*) const override { return fixed_size(); }
  std::string name() const override { return type_id_; }

 private:
  void need_defined() const;
  std::string type_id_;
  py::object py_class_;
  std::vector<Member> members_;
};

// A class with its base; registered globally by type id and compact id.
class ClassType : public std::enable_shared_from_this<ClassType> {
 public:
  ClassType(std::string type_id, int compact_id) : type_id(std::move(type_id)), compact_id(compact_id) {}
  void define(py::object py_class, std::shared_ptr<ClassType> base, const py::list& members);
  bool defined() const { return static_cast<bool>(py_class); }

  std::string type_id;
  int compact_id;
  py::object py_class;
  std::shared_ptr<ClassType> base;
  std::vector<Member> members;
  std::vector<const Member*> wire;  // members in wire order (see wire_order)
};
using ClassPtr = std::shared_ptr<ClassType>;

// An exception with its base; registered globally by type id.
class ExceptionType : public std::enable_shared_from_this<ExceptionType> {
 public:
  explicit ExceptionType(std::string type_id) : type_id(std::move(type_id)) {}
  void define(py::object py_class, std::shared_ptr<ExceptionType> base, const py::list& members);

  std::string type_id;
  py::object py_class;
  std::shared_ptr<ExceptionType> base;
  std::vector<Member> members;
  std::vector<const Member*> wire;
};
using ExceptionPtr = std::shared_ptr<ExceptionType>;

// A class used by value: a field or param of class type (cls null = any).
TypePtr make_class_ref(ClassPtr cls);
void register_class(const ClassPtr& cls);
void register_exception(const ExceptionPtr& exc);

void encode_exception(Encoder& e, PyObject* exc);
py::object decode_exception(Decoder& d);

// An instance of py_class made the way __new__(py_class) makes one, with no __init__.
py::object new_instance(PyObject* py_class);

// Hooks given by configure().
struct Hooks {
  PyObject* marshal_error = nullptr;
  PyObject* proxy_encode = nullptr;
  PyObject* proxy_decode = nullptr;
  // The class of an instance none of whose slices is known (Ice's
  // UnknownSlicedValue); without it such an instance is a MarshalError.
  PyObject* unknown_value = nullptr;
};
Hooks& hooks();
// Raises the configured MarshalError (ValueError before configure()) from a C++ one.
[[noreturn]] void raise_marshal_error(const MarshalError& e);

void bind(py::module_& codec);

}  // namespace aiocomm::binding::codec
