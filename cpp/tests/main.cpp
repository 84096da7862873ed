// Runs every registered test (or those whose name contains one of the
// command-line arguments), prints each failure as file:line, and ends with
// "N passed, M failed". Exit status 0 only when nothing failed.
//
// A watchdog ends the process (status 3) when one test runs longer than
// AIOCOMM_TEST_TIMEOUT seconds (default 30), naming the test: a hang is a
// failure, never a stuck CI job.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "tests/check.h"

namespace check {
namespace {

std::mutex output_mutex;
std::atomic<int> failed_checks{0};
std::atomic<const char*> current_test{nullptr};

}  // namespace

std::vector<TestCase>& registry() {
  static std::vector<TestCase> tests;
  return tests;
}

void fail(const char* file, int line, const std::string& what) {
  failed_checks.fetch_add(1);
  std::lock_guard lock(output_mutex);
  const char* name = current_test.load();
  std::fprintf(stderr, "%s:%d: FAILED in %s: %s\n", file, line, name ? name : "?", what.c_str());
  std::fflush(stderr);
}

}  // namespace check

namespace {

bool selected(std::string_view name, int argc, char** argv) {
  if (argc <= 1) return true;
  for (int i = 1; i < argc; ++i) {
    if (name.find(argv[i]) != std::string_view::npos) return true;
  }
  return false;
}

class Watchdog {
 public:
  explicit Watchdog(std::chrono::seconds limit) : limit_(limit), thread_([this] { run(); }) {}
  ~Watchdog() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    changed_.notify_all();
    thread_.join();
  }
  void started() {
    std::lock_guard lock(mutex_);
    ++generation_;
    deadline_ = std::chrono::steady_clock::now() + limit_;
    changed_.notify_all();
  }

 private:
  void run() {
    std::unique_lock lock(mutex_);
    while (!done_) {
      auto generation = generation_;
      if (generation == 0) {
        changed_.wait(lock);
        continue;
      }
      if (changed_.wait_until(lock, deadline_, [&] { return done_ || generation_ != generation; })) {
        continue;
      }
      const char* name = check::current_test.load();
      std::fprintf(stderr, "WATCHDOG: test %s still running after %lld s; aborting\n",
                   name ? name : "?", static_cast<long long>(limit_.count()));
      std::fflush(stderr);
      std::_Exit(3);
    }
  }

  std::chrono::seconds limit_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::uint64_t generation_ = 0;
  std::chrono::steady_clock::time_point deadline_{};
  bool done_ = false;
  std::thread thread_;
};

}  // namespace

int main(int argc, char** argv) {
  long limit = 30;
  if (const char* env = std::getenv("AIOCOMM_TEST_TIMEOUT")) limit = std::max(1L, std::atol(env));
  Watchdog watchdog{std::chrono::seconds(limit)};

  int passed = 0;
  int failed = 0;
  for (const auto& test : check::registry()) {
    if (!selected(test.name, argc, argv)) continue;
    check::current_test = test.name;
    watchdog.started();
    int before = check::failed_checks.load();
    auto start = std::chrono::steady_clock::now();
    try {
      test.fn();
    } catch (const check::Abort&) {
      // Already reported by REQUIRE.
    } catch (const std::exception& e) {
      check::fail(test.file, test.line, std::string("unexpected exception: ") + e.what());
    } catch (...) {
      check::fail(test.file, test.line, "unexpected non-standard exception");
    }
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - start)
                  .count();
    bool ok = check::failed_checks.load() == before;
    (ok ? passed : failed) += 1;
    {
      std::lock_guard lock(check::output_mutex);
      std::printf("[%s] %s (%lld ms)\n", ok ? "  OK  " : "FAILED", test.name,
                  static_cast<long long>(ms));
      std::fflush(stdout);
    }
  }
  check::current_test = nullptr;
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 && passed > 0 ? 0 : 1;
}
