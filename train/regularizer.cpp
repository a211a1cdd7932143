#include <nabla/train/regularizer.h>

#include <nabla/core/error.h>
#include <nabla/core/ops/elementwise.h>
#include <nabla/core/ops/reduce.h>

namespace nabla {

Tensor Regularizer::penalty(const Tensor& w) const {
  check_number(l1, to_string(), "l1");
  check_number(l2, to_string(), "l2");
  NABLA_CHECK(l1 >= 0 && l2 >= 0, "{}: factors must be >= 0", to_string());
  NABLA_CHECK(w.defined(), "{}: the weight is undefined", to_string());
  Tensor out = zeros({}, {.dtype = w.dtype(), .device = w.device()});
  if (l1 > 0) out = out + sum(abs(w)) * l1;
  if (l2 > 0) out = out + sum(mul(w, w)) * l2;
  return out;
}

std::string Regularizer::to_string() const {
  if (l1 > 0 && l2 > 0) return fmt::format("L1L2({}, {})", l1, l2);
  return l1 > 0 ? fmt::format("L1({})", l1) : fmt::format("L2({})", l2);
}

}  // namespace nabla
