// with_flags: turns run-time booleans into compile-time ones, for kernels that choose their
// loop at compile time (the optimizer updates of cpu/ and cuda/ use it).
//
//   with_flags([&](auto decay, auto nesterov) { loop<decay(), nesterov()>(...); }, wd != 0, nesterov);
#pragma once

#include <type_traits>

namespace nabla {

// Calls f(std::bool_constant<flag>...) for the given flags.
template <typename F>
void with_flags(F&& f) {
  f();
}
template <typename F, typename... Rest>
void with_flags(F&& f, bool flag, Rest... rest) {
  if (flag)
    with_flags([&](auto... fs) { f(std::true_type{}, fs...); }, rest...);
  else
    with_flags([&](auto... fs) { f(std::false_type{}, fs...); }, rest...);
}

}  // namespace nabla
