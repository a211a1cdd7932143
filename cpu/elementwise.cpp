// CPU elementwise kernels: fill, copy_strided, cast, unary (forward and backward), binary.
//
// Strided loops first simplify their layout (drop size-1 dimensions, merge dimensions that are
// contiguous in every operand), so most calls become one flat loop. What remains is walked row
// by row along the innermost dimension, whose loop is specialized for the usual stride
// patterns so that it vectorizes.
#include <nabla/cpu/cpu_backend.h>

#include <cstring>

namespace nabla::cpu {

namespace {

// ---- strided iteration ------------------------------------------------------------------------

// The layout with size-1 dimensions dropped and neighbours merged where every operand (out, a,
// and b when `with_b`) is contiguous across them. Returns false when the layout is empty.
bool simplify(const StridedLayout& in, bool with_b, StridedLayout& s) {
  NABLA_ASSERT(in.ndim >= 0 && in.ndim <= kMaxDims);
  s = StridedLayout{};
  for (int d = 0; d < in.ndim; ++d) {
    if (in.shape[d] == 0) return false;
    if (in.shape[d] == 1) continue;
    if (s.ndim > 0) {
      const int p = s.ndim - 1;
      const int64_t len = in.shape[d];
      const bool mergeable = s.out_stride[p] == in.out_stride[d] * len &&
                             s.a_stride[p] == in.a_stride[d] * len &&
                             (!with_b || s.b_stride[p] == in.b_stride[d] * len);
      if (mergeable) {
        s.shape[p] *= len;
        s.out_stride[p] = in.out_stride[d];
        s.a_stride[p] = in.a_stride[d];
        s.b_stride[p] = with_b ? in.b_stride[d] : 0;
        continue;
      }
    }
    s.shape[s.ndim] = in.shape[d];
    s.out_stride[s.ndim] = in.out_stride[d];
    s.a_stride[s.ndim] = in.a_stride[d];
    s.b_stride[s.ndim] = with_b ? in.b_stride[d] : 0;
    ++s.ndim;
  }
  if (s.ndim == 0) {  // a single element
    s.ndim = 1;
    s.shape[0] = 1;
    s.out_stride[0] = s.a_stride[0] = s.b_stride[0] = 1;
  }
  return true;
}

// Calls row(out_offset, a_offset, b_offset) for every row of the innermost dimension of a
// simplified layout, rows split across threads when large.
template <typename Row>
void for_each_row(const StridedLayout& s, Row&& row) {
  const int outer_dims = s.ndim - 1;
  int64_t rows = 1;
  for (int d = 0; d < outer_dims; ++d) rows *= s.shape[d];
  parallel_for(rows, s.shape[s.ndim - 1], [&](int64_t begin, int64_t end) {
    int64_t idx[kMaxDims] = {};
    int64_t o = 0, a = 0, b = 0;
    for (int64_t rest = begin, d = outer_dims - 1; d >= 0; --d) {
      idx[d] = rest % s.shape[d];
      rest /= s.shape[d];
      o += idx[d] * s.out_stride[d];
      a += idx[d] * s.a_stride[d];
      b += idx[d] * s.b_stride[d];
    }
    for (int64_t r = begin; r < end; ++r) {
      row(o, a, b);
      for (int d = outer_dims - 1; d >= 0; --d) {  // odometer step
        o += s.out_stride[d];
        a += s.a_stride[d];
        b += s.b_stride[d];
        if (++idx[d] < s.shape[d]) break;
        o -= s.out_stride[d] * s.shape[d];
        a -= s.a_stride[d] * s.shape[d];
        b -= s.b_stride[d] * s.shape[d];
        idx[d] = 0;
      }
    }
  });
}

// ---- fill, copy_strided, cast -----------------------------------------------------------------

template <typename T>
void fill_impl(T* out, int64_t n, T value) {
  parallel_for(n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) out[i] = value;
  });
}

// Copies by element size: any dtype of that size moves the same bits.
template <typename T>
void copy_strided_impl(T* out, const T* a, const StridedLayout& l) {
  StridedLayout s;
  if (!simplify(l, false, s)) return;
  const int last = s.ndim - 1;
  const int64_t so = s.out_stride[last], sa = s.a_stride[last];
  auto run = [&](T* y, const T* x, int64_t len) {
    if (so == 1 && sa == 1) {
      std::memcpy(y, x, len * sizeof(T));
    } else if (so == 1 && sa == 0) {
      for (int64_t i = 0; i < len; ++i) y[i] = x[0];
    } else if (so == 1) {
      for (int64_t i = 0; i < len; ++i) y[i] = x[i * sa];
    } else {
      for (int64_t i = 0; i < len; ++i) y[i * so] = x[i * sa];
    }
  };
  if (s.ndim == 1) {
    parallel_for(s.shape[0], 1, [&](int64_t begin, int64_t end) {
      run(out + begin * so, a + begin * sa, end - begin);
    });
    return;
  }
  for_each_row(s, [&](int64_t io, int64_t ia, int64_t) { run(out + io, a + ia, s.shape[last]); });
}

template <typename To, typename From>
void cast_impl(To* out, const From* a, int64_t n) {
  parallel_for(n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) out[i] = static_cast<To>(a[i]);
  });
}

// ---- unary ------------------------------------------------------------------------------------
// The formulas are those of core/unary_ops.h; these loops apply one op's formula, compiled for
// that op alone (visit_unary), so that the loop vectorizes where the formula allows.

// y[i] = f(x[i])
template <typename T, typename F>
void map(T* y, const T* x, int64_t n, F f) {
  parallel_for(n, 1, [&](int64_t begin, int64_t end) {
    const F fn = f;  // a local copy: its captured scalars then live in registers
    for (int64_t i = begin; i < end; ++i) y[i] = fn(x[i]);
  });
}

// dx[i] = f(dy[i], v[i])
template <typename T, typename F>
void map_backward(T* dx, const T* dy, const T* v, int64_t n, F f) {
  parallel_for(n, 1, [&](int64_t begin, int64_t end) {
    const F fn = f;
    for (int64_t i = begin; i < end; ++i) dx[i] = fn(dy[i], v[i]);
  });
}

// dx[i] = f(dy[i]), for derivatives that read neither x nor y.
template <typename T, typename F>
void map_backward_g(T* dx, const T* dy, int64_t n, F f) {
  parallel_for(n, 1, [&](int64_t begin, int64_t end) {
    const F fn = f;
    for (int64_t i = begin; i < end; ++i) dx[i] = fn(dy[i]);
  });
}

template <typename T>
void unary_impl(UnaryOp op, T* y, const T* x, int64_t n, T a, T b) {
  const bool known = visit_unary(op, [&](auto formula) {
    using Op = decltype(formula);
    map(y, x, n, [a, b](T v) { return Op::value(v, a, b); });
  });
  if (!known) fail("cpu unary: unknown op code {}", static_cast<int>(op));
}

// y is read only by ops whose derivative reads it (UnaryReads::y), and may be null for the others.
template <typename T>
void unary_backward_impl(UnaryOp op, T* dx, const T* dy, const T* x, const T* y, int64_t n, T a,
                         T b) {
  const bool known = visit_unary(op, [&](auto formula) {
    using Op = decltype(formula);
    if constexpr (Op::reads != UnaryReads::none)
      map_backward(dx, dy, Op::reads == UnaryReads::y ? y : x, n,
                   [a, b](T g, T v) { return Op::grad(g, v, a, b); });
    else
      map_backward_g(dx, dy, n, [a, b](T g) { return Op::grad(g, T(0), a, b); });
  });
  if (!known) fail("cpu unary_backward: unknown op code {}", static_cast<int>(op));
}

// ---- binary -----------------------------------------------------------------------------------

template <typename T, typename F>
void binary_loop(T* out, const T* a, const T* b, const StridedLayout& l, F f) {
  StridedLayout s;
  if (!simplify(l, true, s)) return;
  const int last = s.ndim - 1;
  const int64_t so = s.out_stride[last], sa = s.a_stride[last], sb = s.b_stride[last];
  // One run of `len` elements along the innermost dimension.
  auto run = [&](T* y, const T* p, const T* q, int64_t len) {
    if (so == 1 && sa == 1 && sb == 1) {
      for (int64_t i = 0; i < len; ++i) y[i] = f(p[i], q[i]);
    } else if (so == 1 && sa == 1 && sb == 0) {  // tensor (op) scalar, or a broadcast row
      const T qv = q[0];
      for (int64_t i = 0; i < len; ++i) y[i] = f(p[i], qv);
    } else if (so == 1 && sa == 0 && sb == 1) {
      const T pv = p[0];
      for (int64_t i = 0; i < len; ++i) y[i] = f(pv, q[i]);
    } else {
      for (int64_t i = 0; i < len; ++i) y[i * so] = f(p[i * sa], q[i * sb]);
    }
  };
  if (s.ndim == 1) {  // split the single run itself across threads
    parallel_for(s.shape[0], 1, [&](int64_t begin, int64_t end) {
      run(out + begin * so, a + begin * sa, b + begin * sb, end - begin);
    });
    return;
  }
  for_each_row(
      s, [&](int64_t io, int64_t ia, int64_t ib) { run(out + io, a + ia, b + ib, s.shape[last]); });
}

template <typename T>
void binary_impl(BinaryOp op, T* out, const T* a, const T* b, const StridedLayout& l) {
  switch (op) {
    case BinaryOp::add: return binary_loop(out, a, b, l, [](T p, T q) { return p + q; });
    case BinaryOp::sub: return binary_loop(out, a, b, l, [](T p, T q) { return p - q; });
    case BinaryOp::mul: return binary_loop(out, a, b, l, [](T p, T q) { return p * q; });
    case BinaryOp::div: return binary_loop(out, a, b, l, [](T p, T q) { return p / q; });
    // NaN in either operand gives NaN, as torch.maximum/minimum.
    case BinaryOp::maximum:
      return binary_loop(out, a, b, l, [](T p, T q) { return p > q || p != p ? p : q; });
    case BinaryOp::minimum:
      return binary_loop(out, a, b, l, [](T p, T q) { return p < q || p != p ? p : q; });
    case BinaryOp::eq: return binary_loop(out, a, b, l, [](T p, T q) { return T(p == q); });
    case BinaryOp::ne: return binary_loop(out, a, b, l, [](T p, T q) { return T(p != q); });
    case BinaryOp::gt: return binary_loop(out, a, b, l, [](T p, T q) { return T(p > q); });
    case BinaryOp::ge: return binary_loop(out, a, b, l, [](T p, T q) { return T(p >= q); });
    case BinaryOp::lt: return binary_loop(out, a, b, l, [](T p, T q) { return T(p < q); });
    case BinaryOp::le: return binary_loop(out, a, b, l, [](T p, T q) { return T(p <= q); });
  }
  fail("cpu binary: unknown op code {}", static_cast<int>(op));
}

}  // namespace

void CpuBackend::fill(DType dtype, void* out, int64_t n, double value) {
  dispatch_all(dtype, "fill", [&](auto tag) {
    using T = decltype(tag);
    fill_impl(static_cast<T*>(out), n, static_cast<T>(value));
  });
}

void CpuBackend::copy_strided(DType dtype, void* out, const void* a, const StridedLayout& l) {
  switch (dtype_size(dtype)) {
    case 4:
      return copy_strided_impl(static_cast<uint32_t*>(out), static_cast<const uint32_t*>(a), l);
    case 8:
      return copy_strided_impl(static_cast<uint64_t*>(out), static_cast<const uint64_t*>(a), l);
  }
  fail("cpu copy_strided: dtype {} is not supported", dtype_name(dtype));
}

void CpuBackend::cast(DType out_dtype, void* out, DType a_dtype, const void* a, int64_t n) {
  if (out_dtype == a_dtype) {
    if (n > 0 && out != a) std::memcpy(out, a, n * dtype_size(a_dtype));
    return;
  }
  dispatch_all(out_dtype, "cast", [&](auto out_tag) {
    using To = decltype(out_tag);
    dispatch_all(a_dtype, "cast", [&](auto a_tag) {
      using From = decltype(a_tag);
      cast_impl(static_cast<To*>(out), static_cast<const From*>(a), n);
    });
  });
}

void CpuBackend::unary(UnaryOp op, DType dtype, void* y, const void* x, int64_t n, double a,
                       double b) {
  dispatch_floating(dtype, "unary", [&](auto tag) {
    using T = decltype(tag);
    unary_impl(op, static_cast<T*>(y), static_cast<const T*>(x), n, T(a), T(b));
  });
}

void CpuBackend::unary_backward(UnaryOp op, DType dtype, void* dx, const void* dy, const void* x,
                                const void* y, int64_t n, double a, double b) {
  dispatch_floating(dtype, "unary_backward", [&](auto tag) {
    using T = decltype(tag);
    unary_backward_impl(op, static_cast<T*>(dx), static_cast<const T*>(dy),
                        static_cast<const T*>(x), static_cast<const T*>(y), n, T(a), T(b));
  });
}

void CpuBackend::binary(BinaryOp op, DType dtype, void* out, const void* a, const void* b,
                        const StridedLayout& l) {
  dispatch_floating(dtype, "binary", [&](auto tag) {
    using T = decltype(tag);
    binary_impl(op, static_cast<T*>(out), static_cast<const T*>(a), static_cast<const T*>(b), l);
  });
}

}  // namespace nabla::cpu
