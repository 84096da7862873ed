// Test-only hooks (aiocomm._core._testing). They let the suite reproduce the
// original deadlock on demand and prove its test would catch it.
#include <chrono>
#include <thread>

#include <unistd.h>

#include "binding/bindings.h"
#include "binding/gil.h"

namespace aiocomm::binding {

void bind_testing(py::module_& m) {
  auto t = m.def_submodule("_testing", "Test-only hooks; not part of the API.");
  t.def("set_release_gil_on_dealloc", [](bool on) { release_gil_on_dealloc.store(on); },
        "Off reproduces the original bug: the last core reference is dropped with the GIL held.");
  t.def(
      "drop_when_native_thread_waits_for_gil",
      [](py::list holder, double timeout) {
        // Holding the GIL throughout (no release, no bytecode in between),
        // wait for a native thread to block on the GIL, then drop the last
        // reference: exactly the moment of the original deadlock.
        auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::microseconds(static_cast<std::int64_t>(timeout * 1e6));
        while (!native_thread_waiting_for_gil.load()) {
          if (std::chrono::steady_clock::now() > deadline) {
            throw std::runtime_error("no native thread asked for the GIL in time");
          }
          std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        // Straight to the descriptor: a test that sees the process hang can
        // tell it hung here, in the dealloc, and not before.
        static constexpr char marker[] = "aiocomm-testing: dropping the last reference\n";
        [[maybe_unused]] auto n = ::write(2, marker, sizeof marker - 1);
        holder.attr("clear")();
      },
      py::arg("holder"), py::arg("timeout") = 10.0);
}

}  // namespace aiocomm::binding
