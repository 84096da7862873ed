#include "binding/codec/operation.h"

#include <algorithm>

namespace aiocomm::binding::codec {

InputBuffer::InputBuffer(const py::object& data) {
  if (PyObject_GetBuffer(data.ptr(), &view_, PyBUF_SIMPLE) != 0) {
    PyErr_Clear();
    throw py::type_error(std::string("expected a bytes-like object, got ") + Py_TYPE(data.ptr())->tp_name);
  }
}

namespace {
// Indices of the optional params, by tag.
std::vector<std::size_t> optional_order(const std::vector<Param>& params) {
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < params.size(); ++i) if (params[i].tag >= 0) out.push_back(i);
  std::sort(out.begin(), out.end(), [&](auto a, auto b) { return params[a].tag < params[b].tag; });
  return out;
}

}  // namespace

Operation::Operation(std::string name, std::vector<Param> in, std::vector<Param> out, bool has_return,
                     std::vector<ExceptionPtr> exceptions, bool sliced)
    : name_(std::move(name)), in_(std::move(in)), results_(std::move(out)), has_return_(has_return),
      exceptions_(std::move(exceptions)), sliced_(sliced) {
  in_optionals_ = optional_order(in_);
  result_optionals_ = optional_order(results_);
}

namespace {
py::bytes take_bytes(Encoder& e) {
  auto& b = e.out.bytes();
  return py::bytes(reinterpret_cast<const char*>(b.data()), b.size());
}
}  // namespace

void Operation::encode_params(Encoder& e, const std::vector<Param>& params,
                              const std::vector<std::size_t>& optionals, PyObject* const* values,
                              const char* what) const {
  auto named = [&](std::size_t i, auto&& f) {
    try {
      f();
    } catch (py::type_error& t) {
      throw py::type_error(name_ + " " + what + " " + std::to_string(i) + ": " + t.what());
    } catch (py::value_error& t) {
      throw py::value_error(name_ + " " + what + " " + std::to_string(i) + ": " + t.what());
    }
  };
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (params[i].tag < 0) named(i, [&] { params[i].type->encode(e, values[i]); });
  }
  for (auto i : optionals) {
    if (values[i] != Py_None) named(i, [&] { encode_optional(e, *params[i].type, params[i].tag, values[i]); });
  }
}

std::vector<py::object> Operation::decode_params(Decoder& d, const std::vector<Param>& params,
                                                 const std::vector<std::size_t>& optionals) const {
  std::vector<py::object> values(params.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (params[i].tag < 0) values[i] = params[i].type->decode(d);
  }
  int last_tag = -1;
  for (auto i : optionals) {
    values[i] = find_optional(d, *params[i].type, params[i].tag, &last_tag, false)
                    ? decode_optional_value(d, *params[i].type)
                    : py::none();
  }
  skip_optionals(d, &last_tag, false);
  if (!d.in.at_end()) {
    throw MarshalError(std::to_string(d.in.remaining()) + " bytes left after the parameters of " + name_);
  }
  return values;
}

py::bytes Operation::encode_in(const py::tuple& args) const {
  if (args.size() != in_.size()) {
    throw py::type_error(name_ + " takes " + std::to_string(in_.size()) + " arguments, got " +
                         std::to_string(args.size()));
  }
  return guarded([&] {
    Encoder e;
    e.sliced = sliced_;
    encode_params(e, in_, in_optionals_, &PySequence_Fast_ITEMS(args.ptr())[0], "argument");
    return take_bytes(e);
  });
}

py::tuple Operation::decode_in(const py::object& data, const py::object& communicator) const {
  InputBuffer buf(data);
  return guarded([&] { return decode_in_view(buf.bytes(), communicator.ptr()); });
}

py::tuple Operation::decode_in_view(aiocomm::codec::ByteView data, PyObject* communicator) const {
  Decoder d(data, communicator);
  auto values = decode_params(d, in_, in_optionals_);
  py::tuple out(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    PyTuple_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(i), values[i].release().ptr());
  }
  return out;
}

py::bytes Operation::encode_out(const py::object& result) const {
  return guarded([&] {
    Encoder e;
    encode_out_to(e, result);
    return take_bytes(e);
  });
}

void Operation::encode_out_to(Encoder& e, const py::object& result) const {
  // The result shape: none, the single value, or (return, outs...).
  std::vector<py::object> values(results_.size());
  auto outs = results_.size() - (has_return_ ? 1 : 0);
  if (results_.size() == 1) {
    values[0] = result;
  } else if (!results_.empty()) {
    if (!PyTuple_Check(result.ptr()) && !PyList_Check(result.ptr())) {
      throw py::type_error(name_ + " returns a tuple of " + std::to_string(results_.size()) + " values, got " +
                           Py_TYPE(result.ptr())->tp_name);
    }
    py::sequence seq = result;
    if (seq.size() != results_.size()) {
      throw py::type_error(name_ + " returns " + std::to_string(results_.size()) + " values, got " +
                           std::to_string(seq.size()));
    }
    std::size_t k = 0;
    if (has_return_) values[outs] = seq[k++];
    for (std::size_t i = 0; i < outs; ++i) values[i] = seq[k++];
  }
  std::vector<PyObject*> raw(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) raw[i] = values[i].ptr();
  e.sliced = sliced_;
  encode_params(e, results_, result_optionals_, raw.data(), "result");
}

py::object Operation::decode_out(const py::object& data, const py::object& communicator) const {
  InputBuffer buf(data);
  return guarded([&]() -> py::object {
    Decoder d(buf.bytes(), communicator.ptr());
    auto values = decode_params(d, results_, result_optionals_);
    if (values.empty()) return py::none();
    if (values.size() == 1) return values[0];
    auto outs = results_.size() - (has_return_ ? 1 : 0);
    py::tuple out(values.size());
    std::size_t k = 0;
    if (has_return_) out[k++] = values[outs];
    for (std::size_t i = 0; i < outs; ++i) out[k++] = values[i];
    return out;
  });
}

py::bytes Operation::encode_exception(const py::object& exc) const {
  return guarded([&] {
    Encoder e;
    e.sliced = sliced_;
    codec::encode_exception(e, exc.ptr());
    return take_bytes(e);
  });
}

py::object Operation::decode_exception(const py::object& data, const py::object& communicator) const {
  InputBuffer buf(data);
  return guarded([&] {
    Decoder d(buf.bytes(), communicator.ptr());
    py::object exc = codec::decode_exception(d);
    if (!d.in.at_end()) throw MarshalError("bytes left after the exception");
    return exc;
  });
}

}  // namespace aiocomm::binding::codec
