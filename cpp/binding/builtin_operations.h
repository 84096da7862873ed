// Ice's built-in operations (ice_ping, ice_isA, ice_id, ice_ids), answered
// from a servant's `type_ids` without calling it: every servant has them,
// typed or not, and a peer's checkedCast or health check costs no Python
// frame. The most-derived id comes first in `type_ids`; "::Ice::Object" is
// implied.
#pragma once

#include <Python.h>

#include <string_view>

#include "protocol/buffer.h"

namespace aiocomm::binding {

bool is_builtin_operation(std::string_view operation) noexcept;

// Encodes the result of built-in `operation` for `servant` into `out`.
// Returns false with a Python error set when the servant's `type_ids` is not
// a sequence of str; throws protocol::ProtocolError for params that do not
// decode (ice_isA's type id).
bool answer_builtin(PyObject* servant, std::string_view operation, protocol::ByteView params,
                    protocol::Bytes& out);

}  // namespace aiocomm::binding
