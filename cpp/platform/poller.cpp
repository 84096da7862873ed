#include "platform/poller.h"

#include <sys/epoll.h>

#include <cerrno>
#include <system_error>
#include <vector>

namespace aiocomm::platform {
namespace {

std::uint32_t to_epoll(std::uint32_t interest) {
  std::uint32_t bits = 0;
  if (interest & poll_read) bits |= EPOLLIN | EPOLLRDHUP;
  if (interest & poll_write) bits |= EPOLLOUT;
  return bits;
}

std::uint32_t from_epoll(std::uint32_t bits) {
  std::uint32_t out = 0;
  if (bits & (EPOLLIN | EPOLLRDHUP)) out |= poll_read;
  if (bits & EPOLLOUT) out |= poll_write;
  if (bits & (EPOLLERR | EPOLLHUP)) out |= poll_error;
  return out;
}

void control(int epfd, int op, int fd, std::uint32_t interest, void* token) {
  epoll_event ev{};
  ev.events = to_epoll(interest);
  ev.data.ptr = token;
  if (::epoll_ctl(epfd, op, fd, &ev) != 0) {
    throw std::system_error(errno, std::generic_category(), "epoll_ctl");
  }
}

}  // namespace

Poller::Poller() : epoll_fd_(::epoll_create1(EPOLL_CLOEXEC)) {
  if (!epoll_fd_) throw std::system_error(errno, std::generic_category(), "epoll_create1");
}

void Poller::add(int fd, std::uint32_t interest, void* token) {
  control(epoll_fd_.get(), EPOLL_CTL_ADD, fd, interest, token);
}

void Poller::modify(int fd, std::uint32_t interest, void* token) {
  control(epoll_fd_.get(), EPOLL_CTL_MOD, fd, interest, token);
}

void Poller::remove(int fd) noexcept {
  epoll_event ev{};
  ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, fd, &ev);
}

std::span<PollEvent> Poller::wait(std::span<PollEvent> out, int timeout_ms) {
  thread_local std::vector<epoll_event> raw;
  raw.resize(out.size());
  int n = ::epoll_wait(epoll_fd_.get(), raw.data(), static_cast<int>(raw.size()), timeout_ms);
  if (n < 0) {
    if (errno == EINTR) return out.first(0);
    throw std::system_error(errno, std::generic_category(), "epoll_wait");
  }
  for (int i = 0; i < n; ++i) {
    out[i] = PollEvent{raw[i].data.ptr, from_epoll(raw[i].events)};
  }
  return out.first(static_cast<std::size_t>(n));
}

}  // namespace aiocomm::platform
