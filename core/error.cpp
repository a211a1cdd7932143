#include <nabla/core/error.h>

namespace nabla {

void internal_error(const char* file, int line, const std::string& what) {
  throw Error(fmt::format("nabla internal error at {}:{}: {} (please report this)", file, line, what));
}

}  // namespace nabla
