// CPU multi-tensor arithmetic (Backend::foreach): one ForeachOp over a list of tensors, in place.
//
// One tensor after another, each parallel over its elements. Every operation is rounded as
// core/backend.h writes it (a product, then the sum that uses it), which is what cuda/foreach.cu
// does too, so that the two backends agree bit for bit.
#include <nabla/cpu/cpu_backend.h>

#include <cmath>

namespace nabla::cpu {

namespace {

// a + w * (b - a), as torch.lerp evaluates it.
template <typename T>
T lerp(T a, T b, T w) {
  return std::abs(w) < T(0.5) ? a + w * (b - a) : b - (b - a) * (T(1) - w);
}

// Elements [begin, end) of one tensor. The scalar is taken by value, as a local: captured by
// reference it would have to be reloaded after every store through a T*.
template <ForeachOp kOp, typename T>
void foreach_loop(T* x, const T* y, const T* z, T a, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    if constexpr (kOp == ForeachOp::copy) {
      x[i] = y[i];
    } else if constexpr (kOp == ForeachOp::sqrt) {
      x[i] = std::sqrt(y[i]);
    } else if constexpr (kOp == ForeachOp::mul) {
      x[i] *= a;
    } else if constexpr (kOp == ForeachOp::div) {
      x[i] /= a;
    } else if constexpr (kOp == ForeachOp::add) {
      x[i] += a;
    } else if constexpr (kOp == ForeachOp::axpy) {
      const T p = a * y[i];
      x[i] += p;
    } else if constexpr (kOp == ForeachOp::addcmul) {
      const T p = (a * y[i]) * z[i];
      x[i] += p;
    } else if constexpr (kOp == ForeachOp::addcdiv) {
      const T p = a * (y[i] / z[i]);
      x[i] += p;
    } else {
      static_assert(kOp == ForeachOp::lerp);
      x[i] = lerp(x[i], y[i], a);
    }
  }
}

template <ForeachOp kOp, typename T>
void foreach_all(const ForeachLists& l) {
  for (int64_t t = 0; t < l.count; ++t) {
    const int64_t n = l.sizes[t];
    NABLA_ASSERT(n >= 0);
    if (n == 0) continue;
    T* x = static_cast<T*>(l.x[t]);
    const T* y = l.y ? static_cast<const T*>(l.y[t]) : nullptr;
    const T* z = l.z ? static_cast<const T*>(l.z[t]) : nullptr;
    const T a = l.a ? T(l.a[t]) : T(0);
    parallel_for(n, 1, [&](int64_t begin, int64_t end) { foreach_loop<kOp, T>(x, y, z, a, begin, end); });
  }
}

}  // namespace

void CpuBackend::foreach(ForeachOp op, DType dtype, const ForeachLists& l) {
  dispatch_floating(dtype, "foreach", [&](auto tag) {
    using T = decltype(tag);
    switch (op) {
      case ForeachOp::copy: return foreach_all<ForeachOp::copy, T>(l);
      case ForeachOp::sqrt: return foreach_all<ForeachOp::sqrt, T>(l);
      case ForeachOp::mul: return foreach_all<ForeachOp::mul, T>(l);
      case ForeachOp::div: return foreach_all<ForeachOp::div, T>(l);
      case ForeachOp::add: return foreach_all<ForeachOp::add, T>(l);
      case ForeachOp::axpy: return foreach_all<ForeachOp::axpy, T>(l);
      case ForeachOp::addcmul: return foreach_all<ForeachOp::addcmul, T>(l);
      case ForeachOp::addcdiv: return foreach_all<ForeachOp::addcdiv, T>(l);
      case ForeachOp::lerp: return foreach_all<ForeachOp::lerp, T>(l);
    }
    fail("cpu foreach: unknown op code {}", static_cast<int>(op));
  });
}

}  // namespace nabla::cpu
