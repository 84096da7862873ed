#include "platform/wakeup.h"

#include <sys/eventfd.h>

#include <cerrno>
#include <cstdint>
#include <system_error>

namespace aiocomm::platform {

Wakeup::Wakeup() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (!fd_) throw std::system_error(errno, std::generic_category(), "eventfd");
}

void Wakeup::notify() noexcept {
  std::uint64_t one = 1;
  // EAGAIN means the counter is saturated: the reader is already due to wake.
  [[maybe_unused]] auto n = ::write(fd_.get(), &one, sizeof one);
}

void Wakeup::drain() noexcept {
  std::uint64_t value;
  [[maybe_unused]] auto n = ::read(fd_.get(), &value, sizeof value);
}

}  // namespace aiocomm::platform
