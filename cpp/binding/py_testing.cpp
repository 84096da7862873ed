// Test-only hooks (aiocomm._core._testing). They let the suite reproduce the
// original deadlock on demand and prove its test would catch it, and prove
// that the count of native GIL takes is live.
#include <chrono>
#include <memory>
#include <thread>

#include <unistd.h>

#include "binding/bindings.h"
#include "binding/gil.h"
#include "binding/handle.h"

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
  t.def(
      "begin_destroy_taking_gil",
      [](Handle& handle, py::object callback, bool wait_for_dispatches) {
        // The shape the library had before its destroy completion became a
        // descriptor: the lifecycle thread takes the GIL at the end of
        // destroy to call back into Python. Kept for the seed-deadlock
        // meta-test, which needs a native thread that waits for the GIL.
        auto ref = std::make_shared<NativeRef>(std::move(callback));
        auto done = [ref] {
          take_gil_on_native_thread([&] {
            PyObject* result = PyObject_CallNoArgs(ref->get());
            if (result == nullptr) PyErr_Clear();  // nothing may escape a native thread
            Py_XDECREF(result);
            ref->reset();
          });
        };
        return handle.core().begin_destroy(std::move(done), wait_for_dispatches);
      },
      py::arg("handle"), py::arg("callback"), py::arg("wait_for_dispatches") = false,
      "Begins destroy with a completion that takes the GIL on the lifecycle thread and calls "
      "`callback`. False when destroy had already completed.");
  t.def(
      "take_gil_on_native_thread",
      [](py::object callback) {
        // A native thread (std::thread, unknown to Python) takes the GIL
        // through the library's one counted function and calls `callback`.
        bool ran = false;
        auto ref = std::make_shared<NativeRef>(std::move(callback));
        without_gil([&] {
          std::thread native([&] {
            ran = take_gil_on_native_thread([&] {
              PyObject* result = PyObject_CallNoArgs(ref->get());
              if (result == nullptr) PyErr_Clear();
              Py_XDECREF(result);
            });
          });
          native.join();
        });
        return ran;
      },
      py::arg("callback"),
      "Calls `callback` from a new native thread that takes the GIL the counted way; "
      "False when the interpreter is finalizing (nothing ran).");
}

}  // namespace aiocomm::binding
