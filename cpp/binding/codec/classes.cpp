// Classes and user exceptions in encoding 1.1: instances written inline at
// their first use and by index afterwards, slices from the most derived type
// down, compact or sliced format, per-slice indirection tables (sliced), and
// slicing off what the receiver does not know.
#include <algorithm>
#include <unordered_map>

#include "binding/codec/builtin.h"

namespace aiocomm::binding::codec {

namespace fl = aiocomm::codec::slice_flags;

namespace {

struct Registry {
  std::unordered_map<std::string, ClassPtr> classes;
  std::unordered_map<int, ClassPtr> compact;
  std::unordered_map<std::string, ExceptionPtr> exceptions;
  std::unordered_map<PyObject*, ClassPtr> class_by_py;
  std::unordered_map<PyObject*, ExceptionPtr> exception_by_py;
};

Registry& registry() {
  // Never destroyed: it holds Python objects (see hooks()).
  static Registry* r = new Registry();
  return *r;
}

template <typename Map>
typename Map::mapped_type find_by_mro(const Map& map, PyObject* obj) {
  PyObject* mro = Py_TYPE(obj)->tp_mro;
  for (Py_ssize_t i = 0; mro && i < PyTuple_GET_SIZE(mro); ++i) {
    auto it = map.find(PyTuple_GET_ITEM(mro, i));
    if (it != map.end()) return it->second;
  }
  return nullptr;
}

void write_instance(Encoder& e, PyObject* v);

// Writes one slice of `obj`: header, members, optional end marker, and in the
// sliced format its size and indirection table.
void write_slice(Encoder& e, PyObject* obj, const std::string& type_id, int compact_id,
                 const std::vector<const Member*>& members, bool first, bool last, bool exception) {
  auto flags_at = e.out.position();
  e.out.byte(0);
  std::uint8_t flags = 0;
  if (e.sliced) flags |= fl::kHasSliceSize;
  if (last) flags |= fl::kIsLastSlice;
  if (exception) {
    e.out.string(type_id);
  } else if (e.sliced || first) {
    if (compact_id >= 0) {
      flags |= fl::kTypeIdCompact;
      e.out.size(static_cast<std::size_t>(compact_id));
    } else if (auto it = e.type_ids.find(type_id); it != e.type_ids.end()) {
      flags |= fl::kTypeIdIndex;
      e.out.size(static_cast<std::size_t>(it->second));
    } else {
      e.type_ids.emplace(type_id, static_cast<std::int32_t>(e.type_ids.size() + 1));
      flags |= fl::kTypeIdString;
      e.out.string(type_id);
    }
  }
  std::size_t size_at = e.sliced ? e.out.reserve_int32() : 0;

  std::vector<py::object> table;
  std::unordered_map<PyObject*, std::int32_t> table_index;
  bool has_optionals = false;
  auto* saved_table = e.indirection;
  auto* saved_index = e.indirection_index;
  auto* saved_opt = e.slice_has_optionals;
  e.indirection = e.sliced ? &table : nullptr;
  e.indirection_index = e.sliced ? &table_index : nullptr;
  e.slice_has_optionals = &has_optionals;
  try {
    for (const Member* m : members) {
      PyObject* x = PyObject_GetAttr(obj, m->name.ptr());
      if (!x) throw py::error_already_set();
      auto hold = py::reinterpret_steal<py::object>(x);
      try {
        if (m->tag < 0) {
          m->type->encode(e, x);
        } else if (x != Py_None) {
          encode_optional(e, *m->type, m->tag, x);
        }
      } catch (py::type_error& t) {
        throw py::type_error(type_id + "." + py::str(m->name).cast<std::string>() + ": " + t.what());
      } catch (py::value_error& t) {
        throw py::value_error(type_id + "." + py::str(m->name).cast<std::string>() + ": " + t.what());
      }
    }
  } catch (...) {
    e.indirection = saved_table;
    e.indirection_index = saved_index;
    e.slice_has_optionals = saved_opt;
    throw;
  }
  e.indirection = nullptr;
  e.indirection_index = nullptr;
  e.slice_has_optionals = saved_opt;
  if (has_optionals) {
    flags |= fl::kHasOptionalMembers;
    e.out.byte(aiocomm::codec::kOptionalEndMarker);
  }
  if (e.sliced) e.out.patch_int32(size_at, static_cast<std::int32_t>(e.out.position() - size_at));
  if (!table.empty()) {
    flags |= fl::kHasIndirectionTable;
    e.out.size(table.size());
    for (auto& t : table) write_instance(e, t.ptr());
  }
  e.indirection = saved_table;
  e.indirection_index = saved_index;
  e.out.patch_byte(flags_at, flags);
}

void write_instance(Encoder& e, PyObject* v) {
  if (auto it = e.instances.find(v); it != e.instances.end()) {
    e.out.size(static_cast<std::size_t>(it->second));
    return;
  }
  ClassPtr desc = find_by_mro(registry().class_by_py, v);
  if (!desc) throw py::type_error(std::string("no Slice class is registered for ") + Py_TYPE(v)->tp_name);
  if (e.depth >= kClassDepthMax) {
    throw py::value_error("class graph deeper than " + std::to_string(kClassDepthMax) +
                          ": receivers refuse it");
  }
  struct Depth {
    int& d;
    ~Depth() { --d; }
  } depth{++e.depth};
  e.instances.emplace(v, static_cast<std::int32_t>(e.instances.size() + 2));
  e.pinned.push_back(py::reinterpret_borrow<py::object>(v));
  e.out.size(1);
  for (const ClassType* level = desc.get(); level; level = level->base.get()) {
    write_slice(e, v, level->type_id, level->compact_id, level->wire, level == desc.get(),
                !level->base, false);
  }
}

void write_value(Encoder& e, PyObject* v, const ClassType* expected) {
  if (v == Py_None) {
    e.out.size(0);
    return;
  }
  if (expected) {
    int ok = PyObject_IsInstance(v, expected->py_class.ptr());
    if (ok < 0) throw py::error_already_set();
    if (!ok) throw py::type_error("expected " + expected->type_id + ", got " + Py_TYPE(v)->tp_name);
  }
  if (e.indirection) {
    auto it = e.indirection_index->find(v);
    if (it == e.indirection_index->end()) {
      e.indirection->push_back(py::reinterpret_borrow<py::object>(v));
      it = e.indirection_index->emplace(v, static_cast<std::int32_t>(e.indirection->size())).first;
    }
    e.out.size(static_cast<std::size_t>(it->second));
    return;
  }
  write_instance(e, v);
}

// ---------------------------------------------------------------- decoding

struct SliceHeader {
  std::uint8_t flags = 0;
  std::string type_id;
  std::size_t end = 0;  // position after the slice's members, when sized
};

SliceHeader read_header(Decoder& d, bool exception) {
  SliceHeader h;
  h.flags = d.in.byte();
  if (exception) {
    h.type_id = std::string(d.in.string_bytes());
  } else {
    switch (h.flags & fl::kTypeIdMask) {
      case fl::kTypeIdString:
        h.type_id = std::string(d.in.string_bytes());
        d.type_ids.push_back(h.type_id);
        break;
      case fl::kTypeIdIndex: {
        auto i = d.in.size();
        if (i == 0 || i > d.type_ids.size()) throw MarshalError("type id index " + std::to_string(i) + " unknown");
        h.type_id = d.type_ids[i - 1];
        break;
      }
      case fl::kTypeIdCompact: {
        auto id = d.in.size();
        auto& compact = registry().compact;
        auto it = compact.find(static_cast<int>(id));
        h.type_id = it != compact.end() ? it->second->type_id : "compact id " + std::to_string(id);
        break;
      }
      default: break;
    }
  }
  if (h.flags & fl::kHasSliceSize) {
    auto n = d.in.int32();
    if (n < 4 || static_cast<std::size_t>(n) - 4 > d.in.remaining()) {
      throw MarshalError("slice size " + std::to_string(n) + " outside the data");
    }
    h.end = d.in.position() + static_cast<std::size_t>(n) - 4;
  } else if (h.flags & fl::kHasIndirectionTable) {
    throw MarshalError("slice has an indirection table but no size");
  }
  return h;
}

py::object read_instance(Decoder& d);

// Resolves an instance reference written by write_instance: 1 = inline, >= 2 = earlier.
py::object read_reference(Decoder& d, std::size_t index) {
  if (index == 1) return read_instance(d);
  if (index == 0) throw MarshalError("null reference in an indirection table");
  if (index - 2 >= d.instances.size()) {
    throw MarshalError("class instance index " + std::to_string(index) + " refers to an instance not yet read");
  }
  return d.instances[index - 2];
}

// Reads the indirection table following a sized slice; leaves the stream after it.
std::vector<py::object> read_table(Decoder& d) {
  std::size_t n = d.in.count(1);
  if (n == 0) throw MarshalError("empty indirection table");
  std::vector<py::object> table;
  table.reserve(n);
  auto* saved = d.indirection;
  d.indirection = nullptr;
  for (std::size_t i = 0; i < n; ++i) table.push_back(read_reference(d, d.in.size()));
  d.indirection = saved;
  return table;
}

void skip_slice(Decoder& d, const SliceHeader& h) {
  if (!(h.flags & fl::kHasSliceSize)) {
    throw MarshalError("type '" + h.type_id + "' is unknown and its slice has no size (compact format)");
  }
  d.in.seek(h.end);
  if (h.flags & fl::kHasIndirectionTable) read_table(d);
}

// Reads the members of one known slice into obj.
void read_members(Decoder& d, PyObject* obj, const std::vector<const Member*>& members,
                  const SliceHeader& h) {
  std::vector<py::object> table;
  std::size_t after = 0;
  if (h.flags & fl::kHasIndirectionTable) {
    // The table follows the members but the members refer to it: read it first.
    auto start = d.in.position();
    d.in.seek(h.end);
    table = read_table(d);
    after = d.in.position();
    d.in.seek(start);
  }
  bool sized = h.flags & fl::kHasSliceSize;
  std::size_t old_end = sized ? d.in.limit(h.end) : 0;
  auto* saved = d.indirection;
  d.indirection = table.empty() ? nullptr : &table;
  struct Restore {
    Decoder& d;
    const std::vector<py::object>* saved;
    ~Restore() { d.indirection = saved; }
  } restore{d, saved};

  int last_tag = -1;
  bool has_opt = h.flags & fl::kHasOptionalMembers;
  for (const Member* m : members) {
    py::object x;
    if (m->tag < 0) {
      x = m->type->decode(d);
    } else if (has_opt && find_optional(d, *m->type, m->tag, &last_tag, true)) {
      x = decode_optional_value(d, *m->type);
    } else {
      x = py::none();
    }
    if (PyObject_GenericSetAttr(obj, m->name.ptr(), x.ptr()) < 0) throw py::error_already_set();
  }
  if (has_opt) skip_optionals(d, &last_tag, true);
  if (sized) {
    if (!d.in.at_end()) throw MarshalError("slice of '" + h.type_id + "' has bytes left over");
    d.in.limit(old_end);
  }
  if (!table.empty()) d.in.seek(after);
}

struct DepthGuard {
  explicit DepthGuard(Decoder& d) : d(d) {
    if (++d.depth > kClassDepthMax) {
      --d.depth;
      throw MarshalError("class graph deeper than " + std::to_string(kClassDepthMax));
    }
  }
  ~DepthGuard() { --d.depth; }
  Decoder& d;
};

py::object read_instance(Decoder& d) {
  DepthGuard guard(d);
  auto index = d.instances.size();
  d.instances.push_back(py::none());
  ClassPtr desc;
  SliceHeader h;
  std::string most_derived;
  for (;;) {
    h = read_header(d, false);
    auto& classes = registry().classes;
    if (auto it = classes.find(h.type_id); it != classes.end() && it->second->defined()) {
      desc = it->second;
      break;
    }
    if (h.type_id.empty()) throw MarshalError("class slice without a type id");
    if (most_derived.empty()) most_derived = h.type_id;
    skip_slice(d, h);
    if (h.flags & fl::kIsLastSlice) {
      // Sliced down to Value itself: what a receiver knows of a class none of
      // whose types it has (Ice's UnknownSlicedValue), slices not kept.
      PyObject* unknown = hooks().unknown_value;
      if (!unknown) {
        throw MarshalError("no class known among the slices of an instance of '" + most_derived + "'");
      }
      // The id came off the wire: bad UTF-8 is bad data, not a crash.
      auto id = py::reinterpret_steal<py::object>(PyUnicode_DecodeUTF8(
          most_derived.data(), static_cast<Py_ssize_t>(most_derived.size()), "strict"));
      if (!id) {
        PyErr_Clear();
        throw MarshalError("class type id is not valid UTF-8");
      }
      py::object obj = new_instance(unknown);
      if (PyObject_GenericSetAttr(obj.ptr(), py::str("unknown_type_id").ptr(), id.ptr()) < 0) {
        throw py::error_already_set();
      }
      d.instances[index] = obj;
      return obj;
    }
  }
  py::object obj = new_instance(desc->py_class.ptr());
  d.instances[index] = obj;
  for (const ClassType* level = desc.get();;) {
    read_members(d, obj.ptr(), level->wire, h);
    if (h.flags & fl::kIsLastSlice) {
      if (level->base) throw MarshalError("instance of '" + desc->type_id + "' ends before its base slices");
      break;
    }
    level = level->base.get();
    if (!level) throw MarshalError("instance of '" + desc->type_id + "' has more slices than its type");
    h = read_header(d, false);
  }
  return obj;
}

py::object read_value(Decoder& d, const ClassType* expected) {
  std::size_t index = d.in.size();
  if (index == 0) return py::none();
  py::object obj;
  if (d.indirection) {
    if (index - 1 >= d.indirection->size()) throw MarshalError("indirection index out of range");
    obj = (*d.indirection)[index - 1];
  } else {
    obj = read_reference(d, index);
  }
  if (expected && !obj.is_none()) {
    int ok = PyObject_IsInstance(obj.ptr(), expected->py_class.ptr());
    if (ok < 0) throw py::error_already_set();
    if (!ok) throw MarshalError("expected an instance of " + expected->type_id);
  }
  return obj;
}

class ClassRef : public Type {
 public:
  explicit ClassRef(ClassPtr cls) : cls_(std::move(cls)) {}
  void encode(Encoder& e, PyObject* v) const override { write_value(e, v, cls_.get()); }
  py::object decode(Decoder& d) const override { return read_value(d, cls_.get()); }
  OptionalFormat optional_format() const override { return OptionalFormat::Class; }
  std::string name() const override { return cls_ ? cls_->type_id : "Value"; }

 private:
  ClassPtr cls_;
};

}  // namespace

std::vector<const Member*> wire_order(const std::vector<Member>& members) {
  std::vector<const Member*> out;
  for (const auto& m : members) if (m.tag < 0) out.push_back(&m);
  std::vector<const Member*> opt;
  for (const auto& m : members) if (m.tag >= 0) opt.push_back(&m);
  std::sort(opt.begin(), opt.end(), [](auto* a, auto* b) { return a->tag < b->tag; });
  out.insert(out.end(), opt.begin(), opt.end());
  return out;
}

py::object decode_any_value(Decoder& d) { return read_value(d, nullptr); }

TypePtr make_class_ref(ClassPtr cls) { return std::make_shared<ClassRef>(std::move(cls)); }

void ClassType::define(py::object cls, ClassPtr b, const py::list& m) {
  if (!PyType_Check(cls.ptr())) throw py::type_error("class must be a type");
  auto& reg = registry();
  if (py_class) reg.class_by_py.erase(py_class.ptr());
  py_class = std::move(cls);
  base = std::move(b);
  members = make_members(m, true);
  wire = wire_order(members);
  reg.class_by_py[py_class.ptr()] = shared_from_this();
}

void ExceptionType::define(py::object cls, ExceptionPtr b, const py::list& m) {
  if (!PyType_Check(cls.ptr())) throw py::type_error("exception class must be a type");
  auto& reg = registry();
  if (py_class) reg.exception_by_py.erase(py_class.ptr());
  py_class = std::move(cls);
  base = std::move(b);
  members = make_members(m, true);
  wire = wire_order(members);
  reg.exception_by_py[py_class.ptr()] = shared_from_this();
}

void register_class(const ClassPtr& cls) {
  auto& reg = registry();
  reg.classes[cls->type_id] = cls;
  if (cls->compact_id >= 0) reg.compact[cls->compact_id] = cls;
}

void register_exception(const ExceptionPtr& exc) { registry().exceptions[exc->type_id] = exc; }

void encode_exception(Encoder& e, PyObject* exc) {
  ExceptionPtr desc = find_by_mro(registry().exception_by_py, exc);
  if (!desc) throw py::type_error(std::string("no Slice exception is registered for ") + Py_TYPE(exc)->tp_name);
  for (const ExceptionType* level = desc.get(); level; level = level->base.get()) {
    write_slice(e, exc, level->type_id, -1, level->wire, level == desc.get(), !level->base, true);
  }
}

py::object decode_exception(Decoder& d) {
  ExceptionPtr desc;
  SliceHeader h;
  for (;;) {
    h = read_header(d, true);
    auto& exceptions = registry().exceptions;
    if (auto it = exceptions.find(h.type_id); it != exceptions.end() && it->second->py_class) {
      desc = it->second;
      break;
    }
    skip_slice(d, h);
    if (h.flags & fl::kIsLastSlice) throw MarshalError("no exception known among the slices of '" + h.type_id + "'");
  }
  py::object obj = new_instance(desc->py_class.ptr());
  for (const ExceptionType* level = desc.get();;) {
    read_members(d, obj.ptr(), level->wire, h);
    if (h.flags & fl::kIsLastSlice) {
      if (level->base) throw MarshalError("exception '" + desc->type_id + "' ends before its base slices");
      break;
    }
    level = level->base.get();
    if (!level) throw MarshalError("exception '" + desc->type_id + "' has more slices than its type");
    h = read_header(d, true);
  }
  return obj;
}

}  // namespace aiocomm::binding::codec
