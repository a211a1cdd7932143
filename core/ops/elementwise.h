// Elementwise ops and activations. All differentiable (comparisons excepted), float32/float64,
// inputs on one device. Binary ops broadcast as NumPy does.
#pragma once

#include <nabla/export.h>

#include <nabla/core/tensor.h>
#include <nabla/core/unary_ops.h>

namespace nabla {

NABLA_API Tensor add(const Tensor& a, const Tensor& b);
NABLA_API Tensor sub(const Tensor& a, const Tensor& b);
NABLA_API Tensor mul(const Tensor& a, const Tensor& b);
NABLA_API Tensor div(const Tensor& a, const Tensor& b);
NABLA_API Tensor maximum(const Tensor& a, const Tensor& b);  // gradient to the larger (a on ties)
NABLA_API Tensor minimum(const Tensor& a, const Tensor& b);

// Comparisons: 1 where true, 0 elsewhere, in the operands' dtype; never recorded.
NABLA_API Tensor eq(const Tensor& a, const Tensor& b);
NABLA_API Tensor ne(const Tensor& a, const Tensor& b);
NABLA_API Tensor gt(const Tensor& a, const Tensor& b);
NABLA_API Tensor ge(const Tensor& a, const Tensor& b);
NABLA_API Tensor lt(const Tensor& a, const Tensor& b);
NABLA_API Tensor le(const Tensor& a, const Tensor& b);

// The unary ops without scalars, one `Tensor name(const Tensor& x)` per PLAIN entry of
// NABLA_UNARY_OPS in core/unary_ops.h, where each formula and its gradient are written:
// neg, exp, log, sqrt, abs (gradient sign(x), 0 at 0), relu, sigmoid, tanh, gelu (exact:
// x * Phi(x)), softplus, and those added since.
#define NABLA_UNARY_DECLARE_(name) NABLA_API Tensor name(const Tensor& x);
NABLA_UNARY_OPS(NABLA_UNARY_DECLARE_, NABLA_UNARY_SKIP)
#undef NABLA_UNARY_DECLARE_

// The unary ops with scalars.
NABLA_API Tensor pow(const Tensor& x, double exponent);
NABLA_API Tensor clamp(const Tensor& x, double lo, double hi);  // gradient 1 strictly inside (lo, hi)
NABLA_API Tensor affine(const Tensor& x, double scale, double shift);  // scale*x + shift
NABLA_API Tensor leaky_relu(const Tensor& x, double negative_slope = 0.01);
NABLA_API Tensor elu(const Tensor& x, double alpha = 1.0);
// min(max(x, min_val), max_val), gradient 1 strictly inside (min_val, max_val), as PyTorch's.
NABLA_API Tensor hardtanh(const Tensor& x, double min_val = -1.0, double max_val = 1.0);

// Softmax and log-softmax along `axis` (default: the last).
NABLA_API Tensor softmax(const Tensor& x, int64_t axis = -1);
NABLA_API Tensor log_softmax(const Tensor& x, int64_t axis = -1);

// Operators, with scalars on either side.
NABLA_API Tensor operator+(const Tensor& a, const Tensor& b);
NABLA_API Tensor operator-(const Tensor& a, const Tensor& b);
NABLA_API Tensor operator*(const Tensor& a, const Tensor& b);
NABLA_API Tensor operator/(const Tensor& a, const Tensor& b);
NABLA_API Tensor operator-(const Tensor& x);
NABLA_API Tensor operator+(const Tensor& a, double s);
NABLA_API Tensor operator+(double s, const Tensor& a);
NABLA_API Tensor operator-(const Tensor& a, double s);
NABLA_API Tensor operator-(double s, const Tensor& a);
NABLA_API Tensor operator*(const Tensor& a, double s);
NABLA_API Tensor operator*(double s, const Tensor& a);
NABLA_API Tensor operator/(const Tensor& a, double s);
NABLA_API Tensor operator/(double s, const Tensor& a);

}  // namespace nabla
