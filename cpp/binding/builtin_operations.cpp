#include "binding/builtin_operations.h"

#include <algorithm>
#include <string>
#include <vector>

namespace aiocomm::binding {
namespace {

constexpr std::string_view object_id = "::Ice::Object";

// The servant's type ids, "::Ice::Object" last unless it names it; false
// with a Python error set when `type_ids` holds something other than str.
bool type_ids_of(PyObject* servant, std::vector<std::string>& ids) {
  static PyObject* name = PyUnicode_InternFromString("type_ids");
  PyObject* declared = PyObject_GetAttr(servant, name);
  if (declared == nullptr) {
    // None declared; anything but AttributeError is the servant's error.
    if (!PyErr_ExceptionMatches(PyExc_AttributeError)) return false;
    PyErr_Clear();
  } else {
    int truthy = PyObject_IsTrue(declared);
    PyObject* iterator = truthy > 0 ? PyObject_GetIter(declared) : nullptr;
    Py_DECREF(declared);
    if (truthy < 0 || (truthy > 0 && iterator == nullptr)) return false;
    while (PyObject* item = iterator != nullptr ? PyIter_Next(iterator) : nullptr) {
      Py_ssize_t size = 0;
      const char* text = PyUnicode_Check(item) ? PyUnicode_AsUTF8AndSize(item, &size) : nullptr;
      if (text == nullptr && !PyErr_Occurred()) {
        PyErr_Format(PyExc_TypeError, "type_ids holds %s, not str", Py_TYPE(item)->tp_name);
      }
      if (text != nullptr) ids.emplace_back(text, static_cast<std::size_t>(size));
      Py_DECREF(item);
      if (text == nullptr) break;
    }
    Py_XDECREF(iterator);
    if (PyErr_Occurred()) return false;
  }
  if (std::find(ids.begin(), ids.end(), object_id) == ids.end()) ids.emplace_back(object_id);
  return true;
}

}  // namespace

bool is_builtin_operation(std::string_view operation) noexcept {
  return operation == "ice_ping" || operation == "ice_isA" || operation == "ice_id" ||
         operation == "ice_ids";
}

bool answer_builtin(PyObject* servant, std::string_view operation, protocol::ByteView params,
                    protocol::Bytes& out) {
  protocol::Writer writer(out);
  if (operation == "ice_ping") return true;
  std::vector<std::string> ids;
  if (!type_ids_of(servant, ids)) return false;
  if (operation == "ice_isA") {
    protocol::Reader reader(params);
    const std::string asked = reader.string();
    writer.byte(std::find(ids.begin(), ids.end(), asked) != ids.end() ? 1 : 0);
  } else if (operation == "ice_id") {
    writer.string(ids.front());
  } else {
    // UTF-8 byte order is code point order: the order Ice (and Python's sorted) gives.
    std::sort(ids.begin(), ids.end());
    writer.string_sequence(ids);
  }
  return true;
}

}  // namespace aiocomm::binding
