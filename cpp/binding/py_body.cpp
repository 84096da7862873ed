#include "binding/py_body.h"

#include "binding/gil.h"

namespace aiocomm::binding {

bool may_release_here() noexcept {
  // After finalization PyGILState_Check answers 1 on any thread: ask first.
  return !interpreter_finalizing() && PyGILState_Check() != 0;
}

Graveyard::~Graveyard() {
  if (may_release_here()) release_all();
}

void Graveyard::bury(PyObject* object) {
  std::lock_guard lock(mutex_);
  buried_.push_back(object);  // may throw bad_alloc: the object then leaks
  any_.store(true, std::memory_order_release);
}

void Graveyard::release(PyObject* object) noexcept {
  if (may_release_here()) {
    Py_DECREF(object);
    return;
  }
  try {
    bury(object);
  } catch (...) {
    // Out of memory: see the declaration.
  }
}

void Graveyard::release_all() noexcept {
  if (!any_.load(std::memory_order_acquire)) return;
  std::vector<PyObject*> dead;
  {
    std::lock_guard lock(mutex_);
    any_.store(false, std::memory_order_relaxed);
    dead.swap(buried_);
  }
  for (PyObject* object : dead) Py_DECREF(object);
}

PyBodyOwner::~PyBodyOwner() {
  if (object_ != nullptr) graveyard_->release(object_);
}

std::span<std::uint8_t> PyBodyOwner::bytes() noexcept {
  return {reinterpret_cast<std::uint8_t*>(PyBytes_AS_STRING(object_)),
          static_cast<std::size_t>(PyBytes_GET_SIZE(object_))};
}

std::shared_ptr<core::BodyOwner> PyBodyMaker::make(std::size_t size) noexcept {
  if (!may_release_here() || size > static_cast<std::size_t>(PY_SSIZE_T_MAX)) return nullptr;
  graveyard_->release_all();
  PyObject* bytes = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(size));
  if (bytes == nullptr) {
    PyErr_Clear();  // the pooled path reports its own failure, if any
    return nullptr;
  }
  try {
    return std::make_shared<PyBodyOwner>(bytes, graveyard_);
  } catch (...) {
    Py_DECREF(bytes);
    return nullptr;
  }
}

}  // namespace aiocomm::binding
