#include "binding/py_payload.h"

namespace aiocomm::binding {
namespace {

std::shared_ptr<const core::PayloadOwner> make_owner(PyObject* object, const void* data,
                                                     Py_ssize_t size,
                                                     const std::shared_ptr<Graveyard>& graveyard) {
  Py_INCREF(object);
  try {
    return std::make_shared<PyPayloadOwner>(
        object,
        protocol::ByteView(static_cast<const std::uint8_t*>(data), static_cast<std::size_t>(size)),
        graveyard);
  } catch (...) {
    Py_DECREF(object);
    return nullptr;  // out of memory: the copying path tries
  }
}

}  // namespace

PyPayloadOwner::~PyPayloadOwner() { graveyard_->release(object_); }

std::shared_ptr<const core::PayloadOwner> lend_payload(PyObject* payload,
                                                       const std::shared_ptr<Graveyard>& graveyard) {
  if (PyBytes_CheckExact(payload)) {
    // Exact: a subclass could run Python code when released, possibly
    // under a core mutex (see the header).
    if (static_cast<std::size_t>(PyBytes_GET_SIZE(payload)) < lend_min) return nullptr;
    return make_owner(payload, PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload), graveyard);
  }
  if (!PyMemoryView_Check(payload)) return nullptr;
  // The exporter of every memoryview chained from one object is that
  // object; a slice of a `bytes` points into it, and holding the `bytes`
  // (not the view, whose release() the caller may call) keeps it valid.
  PyObject* base = PyMemoryView_GET_BASE(payload);
  if (base == nullptr || !PyBytes_CheckExact(base)) return nullptr;
  Py_buffer view;
  if (PyObject_GetBuffer(payload, &view, PyBUF_C_CONTIGUOUS) < 0) {
    PyErr_Clear();  // released or not contiguous: the copying path says so
    return nullptr;
  }
  std::shared_ptr<const core::PayloadOwner> owner;
  if (static_cast<std::size_t>(view.len) >= lend_min) {
    owner = make_owner(base, view.buf, view.len, graveyard);
  }
  PyBuffer_Release(&view);
  return owner;
}

}  // namespace aiocomm::binding
