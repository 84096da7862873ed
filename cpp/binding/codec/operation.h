// An operation's parameters and results as Ice puts them on the wire:
// required ones in Slice order, then the optional ones sorted by tag. Results
// are the out parameters, then the return value.
#pragma once

#include "binding/codec/types.h"

namespace aiocomm::binding::codec {

struct Param {
  TypePtr type;
  int tag;  // -1 = required
};

class Operation {
 public:
  Operation(std::string name, std::vector<Param> in, std::vector<Param> out, bool has_return,
            std::vector<ExceptionPtr> exceptions, bool sliced);

  py::bytes encode_in(const py::tuple& args) const;
  py::tuple decode_in(const py::object& data, const py::object& communicator) const;
  py::bytes encode_out(const py::object& result) const;
  // The native dispatch's forms: no Python bytes in or out, and the codec's
  // own errors (MarshalError, py::type_error...) left unconverted.
  py::tuple decode_in_view(aiocomm::codec::ByteView data, PyObject* communicator) const;
  void encode_out_to(Encoder& e, const py::object& result) const;
  py::object decode_out(const py::object& data, const py::object& communicator) const;
  py::bytes encode_exception(const py::object& exc) const;
  py::object decode_exception(const py::object& data, const py::object& communicator) const;
  const std::string& name() const { return name_; }

 private:
  void encode_params(Encoder& e, const std::vector<Param>& params, const std::vector<std::size_t>& optionals,
                     PyObject* const* values, const char* what) const;
  std::vector<py::object> decode_params(Decoder& d, const std::vector<Param>& params,
                                        const std::vector<std::size_t>& optionals) const;

  std::string name_;
  std::vector<Param> in_;
  std::vector<Param> results_;  // out params, then the return value
  std::vector<std::size_t> in_optionals_, result_optionals_;  // indices by tag
  bool has_return_;
  std::vector<ExceptionPtr> exceptions_;
  bool sliced_;
};

// Runs f, turning the codec's C++ errors into Python ones.
template <typename F>
auto guarded(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const MarshalError& e) {
    raise_marshal_error(e);
  } catch (const std::length_error& e) {
    throw py::value_error(e.what());
  }
}

// The bytes of a bytes-like object, for the duration of a decoding.
class InputBuffer {
 public:
  explicit InputBuffer(const py::object& data);
  ~InputBuffer() { PyBuffer_Release(&view_); }
  InputBuffer(const InputBuffer&) = delete;
  InputBuffer& operator=(const InputBuffer&) = delete;
  aiocomm::codec::ByteView bytes() const {
    return {static_cast<const std::uint8_t*>(view_.buf), static_cast<std::size_t>(view_.len)};
  }

 private:
  Py_buffer view_{};
};

}  // namespace aiocomm::binding::codec
