// The unary elementwise ops: one table, and each op's formula and derivative written once, for
// the CPU backend (host C++) and the CUDA backend (device code) alike.
//
// Adding an op: an entry in NABLA_UNARY_OPS and a struct in namespace unary_ops below, both in
// this file. The entry generates the UnaryOp code, the op's name, both backends' dispatch and,
// for an op without scalars (PLAIN), the public function `Tensor name(const Tensor&)` of
// core/ops/elementwise.h. An op with scalars (PARAM) declares and defines its function by hand
// there, with its defaults and checks, and passes them as a and b.
//
// Formulas are written for the CPU, the reference: the CUDA backend runs the same expression.
// Where the CPU rounds a product before adding it, they use mul_rn / add_rn / sub_rn (below), as
// nvcc would otherwise fuse the two into one fma and round once. Math functions come from the
// hd:: wrappers: std:: on the host, CUDA's libm on the device (whose results may differ from
// glibc's in the last bits), the float function for float (never a silent promotion to double).
//
// This header is included by device code: it includes only the standard <cmath>, <cstdint> and
// <numbers>, and nothing of nabla.
#pragma once

#include <cmath>
#include <cstdint>
#include <numbers>

// Functions callable from host code and from CUDA device code.
#if defined(__CUDACC__)
#define NABLA_HD __host__ __device__ __forceinline__
#else
#define NABLA_HD inline
#endif

// The unary ops, in the order of their UnaryOp codes (append, never reorder). PLAIN(name): an op
// without scalars; PARAM(name): an op that reads the scalars a and/or b.
#define NABLA_UNARY_OPS(PLAIN, PARAM) \
  PLAIN(neg)                          \
  PLAIN(exp)                          \
  PLAIN(log)                          \
  PLAIN(sqrt)                         \
  PLAIN(abs)                          \
  PLAIN(relu)                         \
  PARAM(leaky_relu)                   \
  PARAM(elu)                          \
  PLAIN(sigmoid)                      \
  PLAIN(tanh)                         \
  PLAIN(gelu)                         \
  PARAM(pow)                          \
  PARAM(clamp)                        \
  PARAM(affine)                       \
  PLAIN(softplus)                     \
  PLAIN(silu)                         \
  PARAM(hardtanh)

// For the PLAIN or PARAM argument of NABLA_UNARY_OPS: expands to nothing.
#define NABLA_UNARY_SKIP(name)

namespace nabla {

enum class UnaryOp : uint8_t {
#define NABLA_UNARY_ENUM_(name) name,
  NABLA_UNARY_OPS(NABLA_UNARY_ENUM_, NABLA_UNARY_ENUM_)
#undef NABLA_UNARY_ENUM_
};

// The op's name as its public function spells it, for messages and the tape.
constexpr const char* unary_op_name(UnaryOp op) {
  switch (op) {
#define NABLA_UNARY_NAME_(name) \
  case UnaryOp::name: return #name;
    NABLA_UNARY_OPS(NABLA_UNARY_NAME_, NABLA_UNARY_NAME_)
#undef NABLA_UNARY_NAME_
  }
  return "unary";
}

// Which value the derivative reads: nothing, the input x, or the output y = f(x) (for ops whose
// derivative is cheaper or more exact from it). The backends pass that one as `v` to grad().
enum class UnaryReads : uint8_t { none, x, y };

// ---- host/device math -------------------------------------------------------------------------

namespace hd {

#if defined(__CUDA_ARCH__)
#define NABLA_HD_MATH1_(name, f32, f64)                     \
  NABLA_HD float name(float v) { return ::f32(v); }        \
  NABLA_HD double name(double v) { return ::f64(v); }
#define NABLA_HD_MATH2_(name, f32, f64)                                 \
  NABLA_HD float name(float v, float e) { return ::f32(v, e); }        \
  NABLA_HD double name(double v, double e) { return ::f64(v, e); }
#else
#define NABLA_HD_MATH1_(name, f32, f64)                     \
  NABLA_HD float name(float v) { return std::name(v); }    \
  NABLA_HD double name(double v) { return std::name(v); }
#define NABLA_HD_MATH2_(name, f32, f64)                                 \
  NABLA_HD float name(float v, float e) { return std::name(v, e); }    \
  NABLA_HD double name(double v, double e) { return std::name(v, e); }
#endif
NABLA_HD_MATH1_(exp, expf, exp)
NABLA_HD_MATH1_(expm1, expm1f, expm1)
NABLA_HD_MATH1_(log, logf, log)
NABLA_HD_MATH1_(log1p, log1pf, log1p)
NABLA_HD_MATH1_(sqrt, sqrtf, sqrt)
NABLA_HD_MATH1_(abs, fabsf, fabs)
NABLA_HD_MATH1_(tanh, tanhf, tanh)
NABLA_HD_MATH1_(erf, erff, erf)
NABLA_HD_MATH2_(pow, powf, pow)
#undef NABLA_HD_MATH1_
#undef NABLA_HD_MATH2_

// Separately rounded products and sums: nvcc contracts p * q + r into one fma, the CPU does not.
#if defined(__CUDA_ARCH__)
#define NABLA_HD_RN_(name, op, f32, f64)                                \
  NABLA_HD float name(float p, float q) { return f32(p, q); }          \
  NABLA_HD double name(double p, double q) { return f64(p, q); }
#else
#define NABLA_HD_RN_(name, op, f32, f64)                                \
  NABLA_HD float name(float p, float q) { return p op q; }             \
  NABLA_HD double name(double p, double q) { return p op q; }
#endif
NABLA_HD_RN_(mul_rn, *, __fmul_rn, __dmul_rn)
NABLA_HD_RN_(add_rn, +, __fadd_rn, __dadd_rn)
NABLA_HD_RN_(sub_rn, -, __fsub_rn, __dsub_rn)
#undef NABLA_HD_RN_

// std::max / std::min exactly: max(p, q) is (p < q) ? q : p, min(p, q) is (q < p) ? q : p, so a
// NaN first operand passes through (fmax/fmin would drop it).
template <typename T>
NABLA_HD T max(T p, T q) {
  return p < q ? q : p;
}
template <typename T>
NABLA_HD T min(T p, T q) {
  return q < p ? q : p;
}

template <typename T>
NABLA_HD T sigmoid(T x) {
  // Both branches only take exp of a non-positive number, so neither overflows.
  if (x >= T(0)) return T(1) / (T(1) + hd::exp(-x));
  const T e = hd::exp(x);
  return e / (T(1) + e);
}

inline constexpr double kSqrtHalf = std::numbers::sqrt2 / 2;                           // 1/sqrt(2)
inline constexpr double kInvSqrt2Pi = std::numbers::inv_sqrtpi / std::numbers::sqrt2;  // 1/sqrt(2 pi)

}  // namespace hd

// ---- the formulas -----------------------------------------------------------------------------
// One struct per op, named as in NABLA_UNARY_OPS:
//   reads                 what grad() receives as v (UnaryReads; T(0) for none);
//   value(v, a, b)        f(v) with the op's scalars a, b;
//   grad(g, v, a, b)      g * f'(x), given g = dy and v as `reads` says.
// Kinked activations take, at exactly 0, the derivative of their negative side.

namespace unary_ops {

struct neg {  // -x
  static constexpr UnaryReads reads = UnaryReads::none;
  template <typename T>
  static NABLA_HD T value(T v, T, T) { return -v; }
  template <typename T>
  static NABLA_HD T grad(T g, T, T, T) { return -g; }
};

struct exp {  // e^x
  static constexpr UnaryReads reads = UnaryReads::y;
  template <typename T>
  static NABLA_HD T value(T v, T, T) { return hd::exp(v); }
  template <typename T>
  static NABLA_HD T grad(T g, T y, T, T) { return g * y; }
};

struct log {  // ln x
  static constexpr UnaryReads reads = UnaryReads::x;
  template <typename T>
  static NABLA_HD T value(T v, T, T) { return hd::log(v); }
  template <typename T>
  static NABLA_HD T grad(T g, T v, T, T) { return g / v; }
};

struct sqrt {  // sqrt x
  static constexpr UnaryReads reads = UnaryReads::y;
  template <typename T>
  static NABLA_HD T value(T v, T, T) { return hd::sqrt(v); }
  template <typename T>
  static NABLA_HD T grad(T g, T y, T, T) { return g / (T(2) * y); }
};

struct abs {  // |x|, gradient sign(x) (0 at 0)
  static constexpr UnaryReads reads = UnaryReads::x;
  template <typename T>
  static NABLA_HD T value(T v, T, T) { return hd::abs(v); }
  template <typename T>
  static NABLA_HD T grad(T g, T v, T, T) { return v > T(0) ? g : v < T(0) ? -g : T(0); }
};

struct relu {  // max(x, 0), written so that NaN passes through, as in PyTorch
  static constexpr UnaryReads reads = UnaryReads::x;
  template <typename T>
  static NABLA_HD T value(T v, T, T) { return v < T(0) ? T(0) : v; }
  template <typename T>
  static NABLA_HD T grad(T g, T v, T, T) { return v > T(0) ? g : T(0); }
};

struct leaky_relu {  // x > 0 ? x : a*x
  static constexpr UnaryReads reads = UnaryReads::x;
  template <typename T>
  static NABLA_HD T value(T v, T a, T) { return v > T(0) ? v : a * v; }
  template <typename T>
  static NABLA_HD T grad(T g, T v, T a, T) { return v > T(0) ? g : a * g; }
};

struct elu {  // x > 0 ? x : a*(e^x - 1)
  static constexpr UnaryReads reads = UnaryReads::x;
  template <typename T>
  static NABLA_HD T value(T v, T a, T) { return v > T(0) ? v : a * hd::expm1(v); }
  // a*e^x from x rather than y + a from y: exact where e^x is far below a.
  template <typename T>
  static NABLA_HD T grad(T g, T v, T a, T) { return v > T(0) ? g : g * a * hd::exp(v); }
};

struct sigmoid {  // 1 / (1 + e^-x)
  static constexpr UnaryReads reads = UnaryReads::y;
  template <typename T>
  static NABLA_HD T value(T v, T, T) { return hd::sigmoid(v); }
  template <typename T>
  static NABLA_HD T grad(T g, T y, T, T) { return g * y * (T(1) - y); }
};

struct tanh {  // tanh x
  static constexpr UnaryReads reads = UnaryReads::y;
  template <typename T>
  static NABLA_HD T value(T v, T, T) { return hd::tanh(v); }
  template <typename T>
  static NABLA_HD T grad(T g, T y, T, T) { return g * hd::sub_rn(T(1), hd::mul_rn(y, y)); }
};

struct gelu {  // x * Phi(x), exact (erf) form
  static constexpr UnaryReads reads = UnaryReads::x;
  template <typename T>
  static NABLA_HD T value(T v, T, T) {
    return T(0.5) * v * (T(1) + hd::erf(v * T(hd::kSqrtHalf)));
  }
  template <typename T>
  static NABLA_HD T grad(T g, T v, T, T) {
    const T cdf = T(0.5) * (T(1) + hd::erf(v * T(hd::kSqrtHalf)));
    const T pdf = hd::exp(T(-0.5) * v * v) * T(hd::kInvSqrt2Pi);
    return g * hd::add_rn(cdf, hd::mul_rn(v, pdf));
  }
};

struct pow {  // x^a
  static constexpr UnaryReads reads = UnaryReads::x;
  template <typename T>
  static NABLA_HD T value(T v, T a, T) { return hd::pow(v, a); }
  // d/dx x^0 is 0 everywhere, including at 0 where a * x^(a-1) would be 0 * inf.
  template <typename T>
  static NABLA_HD T grad(T g, T v, T a, T) { return a == T(0) ? T(0) : g * a * hd::pow(v, a - T(1)); }
};

struct clamp {  // min(max(x, a), b), gradient 1 strictly inside (a, b)
  static constexpr UnaryReads reads = UnaryReads::x;
  template <typename T>
  static NABLA_HD T value(T v, T a, T b) { return hd::min(hd::max(v, a), b); }
  template <typename T>
  static NABLA_HD T grad(T g, T v, T a, T b) { return v > a && v < b ? g : T(0); }
};

struct affine {  // a*x + b
  static constexpr UnaryReads reads = UnaryReads::none;
  template <typename T>
  static NABLA_HD T value(T v, T a, T b) { return hd::add_rn(hd::mul_rn(a, v), b); }
  template <typename T>
  static NABLA_HD T grad(T g, T, T a, T) { return g * a; }
};

struct softplus {  // ln(1 + e^x), computed without overflow
  static constexpr UnaryReads reads = UnaryReads::x;
  template <typename T>
  static NABLA_HD T value(T v, T, T) { return hd::max(v, T(0)) + hd::log1p(hd::exp(-hd::abs(v))); }
  template <typename T>
  static NABLA_HD T grad(T g, T v, T, T) { return g * hd::sigmoid(v); }
};

struct silu {  // x * sigmoid(x), the swish of PyTorch's nn.SiLU
  static constexpr UnaryReads reads = UnaryReads::x;
  // sigmoid(x) is 0 only far below 0, where x * 0 is -0, and at -inf, where x * 0 would be NaN:
  // -0 there too, the limit (as sigmoid, silu has limits at +-inf; NaN gives NaN).
  template <typename T>
  static NABLA_HD T value(T v, T, T) {
    const T s = hd::sigmoid(v);
    return s == T(0) ? -T(0) : v * s;
  }
  // s (1 + x (1 - s)) with s = sigmoid(x); the products 0 * inf at x = -inf (s = 0) and at
  // x = +inf (1 - s = 0) are taken as their limit 0, so the derivative there is 0 and 1.
  template <typename T>
  static NABLA_HD T grad(T g, T v, T, T) {
    const T s = hd::sigmoid(v);
    const T t = T(1) - s;
    const T vt = t == T(0) ? T(0) : hd::mul_rn(v, t);
    return g * (s == T(0) ? T(0) : s * (T(1) + vt));
  }
};

struct hardtanh {  // min(max(x, a), b) as PyTorch's: NaN passes through
  static constexpr UnaryReads reads = UnaryReads::x;
  template <typename T>
  static NABLA_HD T value(T v, T a, T b) { return hd::min(hd::max(v, a), b); }
  // 1 strictly inside (a, b), 0 at the bounds and beyond; unlike clamp's, NaN lets g through (as
  // PyTorch's hardtanh_backward: 0 where x <= a or x >= b, g elsewhere).
  template <typename T>
  static NABLA_HD T grad(T g, T v, T a, T b) { return v <= a || v >= b ? T(0) : g; }
};

}  // namespace unary_ops

// Calls f(unary_ops::<op>{}) for op, so that the caller compiles its loop or kernel for that op
// alone. Returns false (f not called) for a code that names no op.
template <typename F>
bool visit_unary(UnaryOp op, F&& f) {
  switch (op) {
#define NABLA_UNARY_VISIT_(name) \
  case UnaryOp::name: f(unary_ops::name{}); return true;
    NABLA_UNARY_OPS(NABLA_UNARY_VISIT_, NABLA_UNARY_VISIT_)
#undef NABLA_UNARY_VISIT_
  }
  return false;
}

}  // namespace nabla
