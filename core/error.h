// nabla::Error: the base of the exceptions the library throws for user-facing problems, and the
// kinds a program can catch apart (as PyTorch's c10::OutOfMemoryError, c10::IndexError, ... and
// Python's MemoryError, IndexError, TypeError, OSError):
//
//   Error                  anything else: a bad argument value, a wrong state, a bug (below)
//   ├─ OutOfMemoryError    an allocation failed (CPU or CUDA memory, or a size no allocator can give)
//   ├─ ShapeError          a tensor's shape does not fit the op or layer ("has shape ..., expected ...")
//   ├─ DTypeError          a tensor's dtype does not fit (float64 mixed with float32, float ids, ...)
//   ├─ IndexError          an index, label, axis or device index out of range
//   └─ IOError             a file cannot be opened, read or written, or is malformed (checkpoints,
//                          safetensors, IDX, CSV)
//
// `catch (const nabla::Error&)` catches them all. A training script that retries with a smaller
// batch catches the one kind it handles and lets the rest pass:
//
//   for (int64_t batch = 1024;; batch /= 2) {
//     try { model.fit(data, {.batch_size = batch}); break; }
//     catch (const nabla::OutOfMemoryError&) { if (batch == 1) throw; }
//   }
//
// Messages name the op or layer, the argument, and what was expected versus what came:
//   "matmul: inner dimensions differ: a [32, 100], b [128, 10]"
// Internal invariants (bugs in nabla itself) use NABLA_ASSERT, which throws a plain nabla::Error
// that says so, with file and line.
#pragma once

#include <nabla/export.h>

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

namespace nabla {

class NABLA_API Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
  ~Error() override;
  // Throws an error of this one's own class with another message: for code that adds context
  // to an error it caught (e.g. "Sequential layer 2 (Dense(3->4)): " + e.what()) without
  // turning, say, an OutOfMemoryError into a plain Error.
  [[noreturn]] void rethrow_with(const std::string& what) const;

 private:
  // Throws *this's class with `what`; each kind overrides it.
  virtual void throw_with(const std::string& what) const;
};

// An allocation failed: host or device memory is short, or the size is more than any allocator
// can give. The message says how many bytes were asked for and, where known, how many are free.
class NABLA_API OutOfMemoryError : public Error {
 public:
  using Error::Error;

 private:
  void throw_with(const std::string& what) const override;
};

// A tensor's shape (rank or sizes) does not fit the op or layer, or two shapes do not agree.
class NABLA_API ShapeError : public Error {
 public:
  using Error::Error;

 private:
  void throw_with(const std::string& what) const override;
};

// A tensor's dtype does not fit the op, or two operands' dtypes differ.
class NABLA_API DTypeError : public Error {
 public:
  using Error::Error;

 private:
  void throw_with(const std::string& what) const override;
};

// An index out of range: an embedding id, a class label, an axis, a layer or row index, a device.
class NABLA_API IndexError : public Error {
 public:
  using Error::Error;

 private:
  void throw_with(const std::string& what) const override;
};

// A file cannot be opened, read or written, or its contents are malformed.
class NABLA_API IOError : public Error {
 public:
  using Error::Error;

 private:
  void throw_with(const std::string& what) const override;
};

// Throws E (nabla::Error unless given: fail<ShapeError>(...)) with a fmt-formatted message.
template <typename E = Error, typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  static_assert(std::is_base_of_v<Error, E>, "fail<E>: E must be nabla::Error or a class derived from it");
  throw E(fmt::format(f, std::forward<Args>(args)...));
}

[[noreturn]] NABLA_API void internal_error(const char* file, int line, const std::string& what);

// Call before a range check on a double: `x >= 0` is false for a NaN too, and the range check's
// "is negative" would then be wrong. Throws "<who>: <what> is not a number (nan)" for a NaN.
// (Out of line: nvcc rejects fmt's compile-time format check in an inline header function.)
NABLA_API void check_number(double x, std::string_view who, std::string_view what);

}  // namespace nabla

// User-input check: throws E (a nabla::Error class) with the formatted message when cond is false.
#define NABLA_CHECK_AS(E, cond, ...)           \
  do {                                         \
    if (!(cond)) ::nabla::fail<E>(__VA_ARGS__); \
  } while (0)
// The common kinds, so that call sites stay short.
#define NABLA_CHECK(cond, ...) NABLA_CHECK_AS(::nabla::Error, cond, __VA_ARGS__)
#define NABLA_CHECK_SHAPE(cond, ...) NABLA_CHECK_AS(::nabla::ShapeError, cond, __VA_ARGS__)
#define NABLA_CHECK_DTYPE(cond, ...) NABLA_CHECK_AS(::nabla::DTypeError, cond, __VA_ARGS__)
#define NABLA_CHECK_INDEX(cond, ...) NABLA_CHECK_AS(::nabla::IndexError, cond, __VA_ARGS__)
#define NABLA_CHECK_IO(cond, ...) NABLA_CHECK_AS(::nabla::IOError, cond, __VA_ARGS__)

// Internal invariant: a failure is a bug in nabla, reported with file and line.
#define NABLA_ASSERT(cond)                                                     \
  do {                                                                         \
    if (!(cond)) ::nabla::internal_error(__FILE__, __LINE__, "assertion " #cond); \
  } while (0)
