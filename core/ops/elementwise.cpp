// Elementwise ops: checks, dispatch to Backend::unary / binary, and their tape entries.
#include <nabla/core/ops/elementwise.h>

#include <nabla/core/autograd.h>
#include <nabla/core/ops/reduce.h>
#include <nabla/core/ops/util.h>

#include <cmath>
#include <limits>

namespace nabla {

using detail::be;

namespace {

const char* binary_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::add: return "add";
    case BinaryOp::sub: return "sub";
    case BinaryOp::mul: return "mul";
    case BinaryOp::div: return "div";
    case BinaryOp::maximum: return "maximum";
    case BinaryOp::minimum: return "minimum";
    case BinaryOp::eq: return "eq";
    case BinaryOp::ne: return "ne";
    case BinaryOp::gt: return "gt";
    case BinaryOp::ge: return "ge";
    case BinaryOp::lt: return "lt";
    case BinaryOp::le: return "le";
  }
  return "binary";
}

// Runs the kernel only: out = a (op) b, broadcast.
Tensor binary_raw(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = binary_name(op);
  detail::check_float(a, name, "a");
  detail::check_float(b, name, "b");
  detail::check_same(a, b, name);
  Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = Tensor::empty(shape, a.options(), name);
  if (out.numel() > 0)
    be(a).binary(op, a.dtype(), out.data_ptr(), a.data_ptr(), b.data_ptr(),
                 detail::make_layout(shape, out.strides(), detail::broadcast_strides(a, shape),
                                     detail::broadcast_strides(b, shape)));
  return out;
}

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(op, a, b);
  if (!needs_grad({&a, &b})) return out;
  const bool ga = a.requires_grad(), gb = b.requires_grad();
  const Shape sa = a.shape(), sb = b.shape();
  BackwardFn fn;
  std::vector<Tensor> saved_outputs;
  switch (op) {
    case BinaryOp::add:
      fn = [=](const std::vector<Tensor>& g) -> std::vector<Tensor> {
        return {ga ? sum_to(g[0], sa) : Tensor(), gb ? sum_to(g[0], sb) : Tensor()};
      };
      break;
    case BinaryOp::sub:
      fn = [=](const std::vector<Tensor>& g) -> std::vector<Tensor> {
        return {ga ? sum_to(g[0], sa) : Tensor(), gb ? sum_to(neg(g[0]), sb) : Tensor()};
      };
      break;
    case BinaryOp::mul:
      fn = [=](const std::vector<Tensor>& g) -> std::vector<Tensor> {
        return {ga ? sum_to(mul(g[0], b), sa) : Tensor(), gb ? sum_to(mul(g[0], a), sb) : Tensor()};
      };
      break;
    case BinaryOp::div: {
      Tensor y = out.detach();
      saved_outputs = {y};
      fn = [=](const std::vector<Tensor>& g) -> std::vector<Tensor> {
        Tensor gb_over = div(g[0], b);  // d(a/b)/da = 1/b; d(a/b)/db = -(a/b)/b
        return {ga ? sum_to(gb_over, sa) : Tensor(), gb ? sum_to(neg(mul(gb_over, y)), sb) : Tensor()};
      };
      break;
    }
    case BinaryOp::maximum:
    case BinaryOp::minimum: {
      const BinaryOp pick = op == BinaryOp::maximum ? BinaryOp::ge : BinaryOp::le;
      fn = [=](const std::vector<Tensor>& g) -> std::vector<Tensor> {
        Tensor mask = binary_raw(pick, a, b);  // 1 where a wins (ties go to a)
        Tensor ga_full = mul(g[0], mask);
        return {ga ? sum_to(ga_full, sa) : Tensor(), gb ? sum_to(sub(g[0], ga_full), sb) : Tensor()};
      };
      break;
    }
    default:
      return out;  // comparisons are not differentiable
  }
  const bool reads = op != BinaryOp::add && op != BinaryOp::sub;  // d(a +- b) needs no values
  record(binary_name(op), {a, b}, {&out}, std::move(fn), std::move(saved_outputs), reads ? Saved::inputs : Saved::none);
  return out;
}

Tensor unary(UnaryOp op, const Tensor& x_in, double a = 0, double b = 0) {
  const char* name = unary_op_name(op);
  detail::check_float(x_in, name, "x");
  Tensor x = x_in.contiguous();
  Tensor y = Tensor::empty(x.shape(), x.options(), name);
  if (y.numel() > 0) be(x).unary(op, x.dtype(), y.data_ptr(), x.data_ptr(), x.numel(), a, b);
  if (needs_grad({&x})) {
    Tensor ys = y.detach();
    record(name, {x}, {&y}, [op, x, ys, a, b](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      Tensor dx = Tensor::empty(x.shape(), x.options());
      if (dx.numel() > 0)
        be(x).unary_backward(op, x.dtype(), dx.data_ptr(), g[0].data_ptr(), x.data_ptr(), ys.data_ptr(),
                             x.numel(), a, b);
      return {dx};
    }, {ys});
  }
  return y;
}

Tensor softmax_impl(const Tensor& x_in, int64_t axis, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  detail::check_float(x_in, name, "x");
  NABLA_CHECK_SHAPE(x_in.dim() > 0, "{}: input is 0-dimensional; expected at least one axis", name);
  axis = normalize_axis(axis, x_in.dim(), name);
  Tensor x = x_in.contiguous();
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= x.shape()[i];
  for (int64_t i = axis + 1; i < x.dim(); ++i) inner *= x.shape()[i];
  const int64_t n = x.shape()[axis];
  Tensor y = Tensor::empty(x.shape(), x.options(), name);
  if (y.numel() > 0) be(x).softmax(x.dtype(), y.data_ptr(), x.data_ptr(), outer, n, inner, log);
  if (needs_grad({&x})) {
    Tensor ys = y.detach();
    record(name, {x}, {&y}, [ys, outer, n, inner, log](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      Tensor dx = Tensor::empty(ys.shape(), ys.options());
      if (dx.numel() > 0)
        be(ys).softmax_backward(ys.dtype(), dx.data_ptr(), g[0].data_ptr(), ys.data_ptr(), outer, n, inner, log);
      return {dx};
    }, {ys});
  }
  return y;
}

Tensor scalar_like(const Tensor& t, double v) { return scalar(v, t.options()); }

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary(BinaryOp::add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(BinaryOp::sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(BinaryOp::mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(BinaryOp::div, a, b); }
Tensor maximum(const Tensor& a, const Tensor& b) { return binary(BinaryOp::maximum, a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return binary(BinaryOp::minimum, a, b); }
Tensor eq(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::eq, a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::ne, a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::gt, a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::ge, a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::lt, a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::le, a, b); }

#define NABLA_UNARY_DEFINE_(name) \
  Tensor name(const Tensor& x) { return unary(UnaryOp::name, x); }
NABLA_UNARY_OPS(NABLA_UNARY_DEFINE_, NABLA_UNARY_SKIP)
#undef NABLA_UNARY_DEFINE_

Tensor pow(const Tensor& x, double exponent) { return unary(UnaryOp::pow, x, exponent); }
Tensor clamp(const Tensor& x, double lo, double hi) {
  NABLA_CHECK(!(lo > hi), "clamp: lower bound {} is above upper bound {}", lo, hi);
  return unary(UnaryOp::clamp, x, lo, hi);
}
Tensor affine(const Tensor& x, double scale, double shift) { return unary(UnaryOp::affine, x, scale, shift); }
Tensor leaky_relu(const Tensor& x, double slope) { return unary(UnaryOp::leaky_relu, x, slope); }
Tensor elu(const Tensor& x, double alpha) { return unary(UnaryOp::elu, x, alpha); }
Tensor hardtanh(const Tensor& x, double min_val, double max_val) {
  NABLA_CHECK(!(min_val > max_val), "hardtanh: min_val {} is greater than max_val {}", min_val, max_val);
  return unary(UnaryOp::hardtanh, x, min_val, max_val);
}

Tensor softmax(const Tensor& x, int64_t axis) { return softmax_impl(x, axis, false); }
Tensor log_softmax(const Tensor& x, int64_t axis) { return softmax_impl(x, axis, true); }

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& x) { return neg(x); }
Tensor operator+(const Tensor& a, double s) { return affine(a, 1, s); }
Tensor operator+(double s, const Tensor& a) { return affine(a, 1, s); }
Tensor operator-(const Tensor& a, double s) { return affine(a, 1, -s); }
Tensor operator-(double s, const Tensor& a) { return affine(a, -1, s); }
Tensor operator*(const Tensor& a, double s) { return affine(a, s, 0); }
Tensor operator*(double s, const Tensor& a) { return affine(a, s, 0); }
Tensor operator/(const Tensor& a, double s) { return affine(a, 1 / s, 0); }
Tensor operator/(double s, const Tensor& a) { return div(scalar_like(a, s), a); }

}  // namespace nabla
