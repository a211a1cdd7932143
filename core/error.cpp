#include <nabla/core/error.h>

namespace nabla {

void internal_error(const char* file, int line, const std::string& what) {
  throw Error(fmt::format("nabla internal error at {}:{}: {} (please report this)", file, line, what));
}

void check_number(double x, std::string_view who, std::string_view what) {
  if (x != x) fail("{}: {} is not a number ({})", who, what, x);
}

}  // namespace nabla
