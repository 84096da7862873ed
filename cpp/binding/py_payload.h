// Request payloads lent to the core instead of copied (core::PayloadOwner).
// Only immutable storage is lent: an exact `bytes`, or a C-contiguous
// memoryview whose exporter is one. A bytearray, a writable memoryview or
// any other buffer may change after invoke() returns and before the bytes
// are written, so it is copied into the encoded request as before.
//
// The owner holds a strong reference to the `bytes`. Reference counts move
// only with the GIL: an owner let go without it (a reactor popping a
// written request, a close failing its requests, the core's teardown)
// buries the object in the inbox's graveyard, which the loop empties on its
// next drain (see py_body.h). Releasing never blocks and never takes the
// GIL, so it is safe under any core mutex.
#pragma once

#include <Python.h>

#include <memory>

#include "binding/py_body.h"
#include "core/out_message.h"

namespace aiocomm::binding {

// Below this size a copy costs less than the owner's bookkeeping (an
// allocation, a reference, a graveyard visit off the loop).
inline constexpr std::size_t lend_min = 16 * 1024;

class PyPayloadOwner final : public core::PayloadOwner {
 public:
  // Takes over the reference to `object`, which keeps `bytes` alive.
  PyPayloadOwner(PyObject* object, protocol::ByteView bytes,
                 std::shared_ptr<Graveyard> graveyard) noexcept
      : object_(object), bytes_(bytes), graveyard_(std::move(graveyard)) {}
  PyPayloadOwner(const PyPayloadOwner&) = delete;
  PyPayloadOwner& operator=(const PyPayloadOwner&) = delete;
  ~PyPayloadOwner() override;  // any thread (see above)

  protocol::ByteView bytes() const noexcept override { return bytes_; }

 private:
  PyObject* object_;
  protocol::ByteView bytes_;
  std::shared_ptr<Graveyard> graveyard_;
};

// GIL held. An owner lending `payload` when it is immutable and at least
// lend_min bytes long; null when it must be copied. Never throws a Python
// error: what it cannot lend is left to the copying path, which reports
// what is wrong with the payload.
std::shared_ptr<const core::PayloadOwner> lend_payload(PyObject* payload,
                                                       const std::shared_ptr<Graveyard>& graveyard);

}  // namespace aiocomm::binding
