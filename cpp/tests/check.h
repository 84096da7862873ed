// A tiny test harness for the core, so its tests need nothing beyond the
// standard library.
//
//   TEST(name) { ... }            registers a test (any .cpp of the binary)
//   CHECK(cond)                   records a failure and goes on
//   CHECK_EQ(a, b)                same, printing both values
//   CHECK_THROWS(Type, expr)      expr must throw Type (or a subclass)
//   REQUIRE(cond)                 records a failure and ends the test at once
//
// Every failure is reported as file:line. A test fails when a check failed
// or an exception escaped it. Checks may run on any thread (completions,
// helper threads): the counters are atomic and output is serialized.
#pragma once

#include <atomic>
#include <concepts>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace check {

using TestFn = void (*)();

struct TestCase {
  const char* name;
  TestFn fn;
  const char* file;
  int line;
};

// Every registered test, in registration order (per translation unit).
std::vector<TestCase>& registry();

struct Registrar {
  Registrar(const char* name, TestFn fn, const char* file, int line) {
    registry().push_back(TestCase{name, fn, file, line});
  }
};

// Records one failed check of the running test and prints it. Any thread.
void fail(const char* file, int line, const std::string& what);

// Thrown by REQUIRE to end the running test; the runner catches it.
struct Abort {};

// Renders a value for a failure message: integers as numbers (bytes too),
// enums as their underlying value, anything streamable as itself.
template <typename T>
std::string show(const T& v) {
  std::ostringstream out;
  if constexpr (std::is_enum_v<T>) {
    out << "enum " << +static_cast<std::underlying_type_t<T>>(v);
  } else if constexpr (std::is_same_v<T, bool>) {
    out << (v ? "true" : "false");
  } else if constexpr (std::is_integral_v<T>) {
    out << +v;
  } else if constexpr (std::is_convertible_v<const T&, std::string_view>) {
    out << '"' << std::string_view(v) << '"';
  } else if constexpr (requires(std::ostream& o) { o << v; }) {
    out << v;
  } else if constexpr (requires { v.size(); v.begin(); }) {
    out << "[" << v.size() << " items:";
    for (const auto& item : v) out << ' ' << show(item);
    out << "]";
  } else {
    out << "<unprintable>";
  }
  return out.str();
}

// Integers compare by value whatever their types (no sign-compare traps).
template <typename T>
inline constexpr bool plain_integer_v =
    std::is_integral_v<T> && !std::is_same_v<T, bool> && !std::is_same_v<T, char> &&
    !std::is_same_v<T, char8_t> && !std::is_same_v<T, char16_t> &&
    !std::is_same_v<T, char32_t> && !std::is_same_v<T, wchar_t>;

template <typename A, typename B>
bool equal(const A& a, const B& b) {
  if constexpr (plain_integer_v<A> && plain_integer_v<B>) {
    return std::cmp_equal(a, b);
  } else {
    return a == b;
  }
}

}  // namespace check

#define CHECK_CONCAT_INNER(a, b) a##b
#define CHECK_CONCAT(a, b) CHECK_CONCAT_INNER(a, b)

#define TEST(name)                                                                         \
  static void CHECK_CONCAT(test_, name)();                                                 \
  static const ::check::Registrar CHECK_CONCAT(registrar_, name){#name,                    \
                                                                 &CHECK_CONCAT(test_, name), \
                                                                 __FILE__, __LINE__};      \
  static void CHECK_CONCAT(test_, name)()

#define CHECK(cond)                                                   \
  do {                                                                \
    if (!(cond)) ::check::fail(__FILE__, __LINE__, "CHECK(" #cond ")"); \
  } while (0)

#define REQUIRE(cond)                                                     \
  do {                                                                    \
    if (!(cond)) {                                                        \
      ::check::fail(__FILE__, __LINE__, "REQUIRE(" #cond ")");            \
      throw ::check::Abort{};                                             \
    }                                                                     \
  } while (0)

#define CHECK_EQ(a, b)                                                                     \
  do {                                                                                     \
    const auto& check_a_ = (a);                                                            \
    const auto& check_b_ = (b);                                                            \
    if (!::check::equal(check_a_, check_b_)) {                                             \
      ::check::fail(__FILE__, __LINE__,                                                    \
                    "CHECK_EQ(" #a ", " #b "): " + ::check::show(check_a_) + " != " +      \
                        ::check::show(check_b_));                                          \
    }                                                                                      \
  } while (0)

#define CHECK_THROWS(Type, expr)                                                           \
  do {                                                                                     \
    bool check_threw_ = false;                                                             \
    try {                                                                                  \
      (void)(expr);                                                                        \
    } catch (const Type&) {                                                                \
      check_threw_ = true;                                                                 \
    } catch (const std::exception& check_e_) {                                             \
      ::check::fail(__FILE__, __LINE__,                                                    \
                    "CHECK_THROWS(" #Type ", " #expr "): threw another exception: " +     \
                        std::string(check_e_.what()));                                    \
      check_threw_ = true;                                                                 \
    }                                                                                      \
    if (!check_threw_) {                                                                   \
      ::check::fail(__FILE__, __LINE__, "CHECK_THROWS(" #Type ", " #expr "): no exception"); \
    }                                                                                      \
  } while (0)
