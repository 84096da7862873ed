// The exception being raised, as one object: taken, and raised again.
// Python 3.12 has this (PyErr_GetRaisedException); 3.11 has the
// (type, value, traceback) triple, which these fold into the same shape.
#pragma once

#include <Python.h>

namespace aiocomm::binding {

// The exception being raised, normalized, with its traceback (a new
// reference, or null when none is); clears it.
inline PyObject* take_raised() {
#if PY_VERSION_HEX >= 0x030C0000
  return PyErr_GetRaisedException();
#else
  PyObject *type, *value, *traceback;
  PyErr_Fetch(&type, &value, &traceback);
  PyErr_NormalizeException(&type, &value, &traceback);
  if (traceback != nullptr && value != nullptr) PyException_SetTraceback(value, traceback);
  Py_XDECREF(type);
  Py_XDECREF(traceback);
  return value;
#endif
}

// Sets `error` (stolen) as the exception being raised.
inline void reraise(PyObject* error) {
#if PY_VERSION_HEX >= 0x030C0000
  PyErr_SetRaisedException(error);
#else
  PyErr_Restore(Py_NewRef(reinterpret_cast<PyObject*>(Py_TYPE(error))), error,
                PyException_GetTraceback(error));
#endif
}

// KeyboardInterrupt and SystemExit stop the program once the request that
// raised them is answered; anything else a servant raises is only answered.
inline bool is_interrupt(PyObject* error) {
  return PyErr_GivenExceptionMatches(error, PyExc_KeyboardInterrupt) ||
         PyErr_GivenExceptionMatches(error, PyExc_SystemExit);
}

}  // namespace aiocomm::binding
