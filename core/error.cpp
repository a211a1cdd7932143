#include <nabla/core/error.h>

namespace nabla {

// Out of line: the classes' vtables and type information live in libnabla.so, once.
Error::~Error() = default;

void Error::rethrow_with(const std::string& what) const {
  throw_with(what);
  throw Error(what);  // not reached: every throw_with throws
}

void Error::throw_with(const std::string& what) const { throw Error(what); }
void OutOfMemoryError::throw_with(const std::string& what) const { throw OutOfMemoryError(what); }
void ShapeError::throw_with(const std::string& what) const { throw ShapeError(what); }
void DTypeError::throw_with(const std::string& what) const { throw DTypeError(what); }
void IndexError::throw_with(const std::string& what) const { throw IndexError(what); }
void IOError::throw_with(const std::string& what) const { throw IOError(what); }

void internal_error(const char* file, int line, const std::string& what) {
  throw Error(fmt::format("nabla internal error at {}:{}: {} (please report this)", file, line, what));
}

void check_number(double x, std::string_view who, std::string_view what) {
  if (x != x) fail("{}: {} is not a number ({})", who, what, x);
}

}  // namespace nabla
