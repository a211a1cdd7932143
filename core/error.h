// nabla::Error: the one exception type the library throws for user-facing problems.
//
// Messages name the op or layer, the argument, and what was expected versus what came:
//   "matmul: inner dimensions differ: a [32, 100], b [128, 10]"
// Internal invariants (bugs in nabla itself) use NABLA_ASSERT, which also throws nabla::Error
// but says so, with file and line.
#pragma once

#include <nabla/export.h>

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <string_view>

namespace nabla {

class NABLA_API Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Throws nabla::Error with a fmt-formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

[[noreturn]] NABLA_API void internal_error(const char* file, int line, const std::string& what);

// Call before a range check on a double: `x >= 0` is false for a NaN too, and the range check's
// "is negative" would then be wrong. Throws "<who>: <what> is not a number (nan)" for a NaN.
// (Out of line: nvcc rejects fmt's compile-time format check in an inline header function.)
NABLA_API void check_number(double x, std::string_view who, std::string_view what);

}  // namespace nabla

// User-input check: throws nabla::Error with the formatted message when cond is false.
#define NABLA_CHECK(cond, ...)               \
  do {                                       \
    if (!(cond)) ::nabla::fail(__VA_ARGS__); \
  } while (0)

// Internal invariant: a failure is a bug in nabla, reported with file and line.
#define NABLA_ASSERT(cond)                                                     \
  do {                                                                         \
    if (!(cond)) ::nabla::internal_error(__FILE__, __LINE__, "assertion " #cond); \
  } while (0)
