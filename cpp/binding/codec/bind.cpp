// The `codec` submodule of _core: descriptor factories, configure(), and the
// Python-visible Type/StructType/ClassType/ExceptionType/Operation classes.
#include "binding/codec/operation.h"

namespace aiocomm::binding::codec {

namespace {

void set_hook(PyObject*& slot, const py::object& value) {
  // Held for the life of the process (see hooks()).
  PyObject* old = slot;
  slot = value.inc_ref().ptr();
  Py_XDECREF(old);
}

std::vector<Param> make_params(const py::list& params) {
  std::vector<Param> out;
  for (auto item : params) {
    auto t = item.cast<py::tuple>();
    if (t.size() != 2) throw py::value_error("a parameter is (Type, tag)");
    out.push_back(Param{t[0].cast<TypePtr>(), t[1].cast<int>()});
  }
  return out;
}

}  // namespace

void bind(py::module_& m) {
  using namespace pybind11::literals;
  m.doc() = "Ice encoding 1.1 over compiled type descriptors (private)";

  m.def(
      "configure",
      [](py::object marshal_error, py::object proxy_encode, py::object proxy_decode,
         py::object unknown_value) {
        if (!unknown_value.is_none() && !PyType_Check(unknown_value.ptr())) {
          throw py::type_error("unknown_value must be a class");
        }
        set_hook(hooks().marshal_error, marshal_error);
        set_hook(hooks().proxy_encode, proxy_encode);
        set_hook(hooks().proxy_decode, proxy_decode);
        if (unknown_value.is_none()) {
          Py_CLEAR(hooks().unknown_value);
        } else {
          set_hook(hooks().unknown_value, unknown_value);
        }
      },
      py::kw_only(), "marshal_error"_a, "proxy_encode"_a, "proxy_decode"_a,
      "unknown_value"_a = py::none());

  py::class_<Type, TypePtr>(m, "Type")
      .def("encode",
           [](const Type& t, py::object value) {
             return guarded([&] {
               Encoder e;
               t.encode(e, value.ptr());
               auto& b = e.out.bytes();
               return py::bytes(reinterpret_cast<const char*>(b.data()), b.size());
             });
           })
      .def(
          "decode",
          [](const Type& t, py::object data, py::object communicator) {
            InputBuffer buf(data);
            return guarded([&] {
              Decoder d(buf.bytes(), communicator.ptr());
              py::object v = t.decode(d);
              if (!d.in.at_end()) throw MarshalError(std::to_string(d.in.remaining()) + " bytes left over");
              return v;
            });
          },
          "data"_a, "communicator"_a = py::none())
      .def("__repr__", [](const Type& t) { return "<codec.Type " + t.name() + ">"; });

  py::class_<StructType, Type, std::shared_ptr<StructType>>(m, "StructType")
      .def("define", &StructType::define, "py_class"_a, "members"_a);

  py::class_<ClassType, ClassPtr>(m, "ClassType")
      .def("define", &ClassType::define, "py_class"_a, "base"_a, "members"_a)
      .def_readonly("type_id", &ClassType::type_id);

  py::class_<ExceptionType, ExceptionPtr>(m, "ExceptionType")
      .def("define", &ExceptionType::define, "py_class"_a, "base"_a, "members"_a)
      .def_readonly("type_id", &ExceptionType::type_id);

  py::class_<Operation, std::shared_ptr<Operation>>(m, "Operation")
      .def("encode_in", &Operation::encode_in, "args"_a)
      .def("decode_in", &Operation::decode_in, "data"_a, "communicator"_a)
      .def("encode_out", &Operation::encode_out, "result"_a)
      .def("decode_out", &Operation::decode_out, "data"_a, "communicator"_a)
      .def("encode_exception", &Operation::encode_exception, "exc"_a)
      .def("decode_exception", &Operation::decode_exception, "data"_a, "communicator"_a)
      .def_property_readonly("name", &Operation::name);

  m.def("builtin", &make_builtin, "name"_a);
  m.def("sequence", &make_sequence, "element"_a);
  m.def("dictionary", &make_dictionary, "key"_a, "value"_a);
  m.def("enum", &make_enum, "members"_a);
  m.def("proxy", &make_proxy, "wrap"_a = py::none());
  m.def("struct", [](std::string type_id) { return std::make_shared<StructType>(std::move(type_id)); },
        "type_id"_a);
  m.def(
      "value_class",
      [](std::string type_id, int compact_id) {
        auto cls = std::make_shared<ClassType>(std::move(type_id), compact_id);
        register_class(cls);
        return cls;
      },
      "type_id"_a, "compact_id"_a = -1);
  m.def("class_ref", &make_class_ref, "cls"_a);
  m.def(
      "exception",
      [](std::string type_id) {
        auto exc = std::make_shared<ExceptionType>(std::move(type_id));
        register_exception(exc);
        return exc;
      },
      "type_id"_a);
  m.def(
      "operation",
      [](std::string name, const py::list& in, const py::list& out, const py::object& ret,
         const py::list& exception_list, const py::object& format) {
        std::vector<ExceptionPtr> exceptions;
        for (auto x : exception_list) exceptions.push_back(x.cast<ExceptionPtr>());
        auto results = make_params(out);
        bool has_return = !ret.is_none();
        if (has_return) {
          auto t = ret.cast<py::tuple>();
          results.push_back(Param{t[0].cast<TypePtr>(), t[1].cast<int>()});
        }
        bool sliced = false;
        if (!format.is_none()) {
          auto f = format.cast<std::string>();
          if (f != "sliced" && f != "compact") throw py::value_error("format is 'sliced', 'compact' or None");
          sliced = f == "sliced";
        }
        return std::make_shared<Operation>(std::move(name), make_params(in), std::move(results), has_return,
                                           std::move(exceptions), sliced);
      },
      "name"_a, "in_params"_a, "out_params"_a, "return_type"_a, "exceptions"_a, "format"_a);
}

}  // namespace aiocomm::binding::codec
