// Matrix products on Backend::gemm. Transposed and broadcast views reach the kernel as
// transpose flags and zero batch strides, without copies.
#include <nabla/core/ops/linalg.h>

#include <nabla/core/autograd.h>
#include <nabla/core/ops/elementwise.h>
#include <nabla/core/ops/reduce.h>
#include <nabla/core/ops/util.h>

#include <algorithm>

namespace nabla {

using detail::be;

namespace {

// How gemm reads one operand: its last two axes as a (possibly transposed) row-major matrix with
// leading dimension ld, its batch axes collapsed into one stride.
struct MatView {
  Tensor t;
  bool trans = false;
  int64_t ld = 0;
  int64_t bstride = 0;
};

bool collapse_batch(const Tensor& t, int64_t* stride) {
  const int64_t nb = t.dim() - 2;
  int64_t s = 0;
  bool first = true;
  int64_t expect = 0;
  for (int64_t i = nb - 1; i >= 0; --i) {
    const int64_t n = t.shape()[i], st = t.strides()[i];
    if (n == 1) continue;
    if (first) {
      s = st;
      expect = st * n;
      first = false;
    } else {
      if (st != expect) return false;
      expect = st * n;
    }
  }
  *stride = s;
  return true;
}

MatView mat_view(const Tensor& t) {
  const int64_t nd = t.dim(), rows = t.shape()[nd - 2], cols = t.shape()[nd - 1];
  const int64_t sr = t.strides()[nd - 2], sc = t.strides()[nd - 1];
  MatView v{t};
  bool batch_ok = collapse_batch(t, &v.bstride);
  if (batch_ok && (sc == 1 || cols == 1) && (sr >= std::max<int64_t>(cols, 1) || rows == 1)) {
    v.ld = rows == 1 ? std::max<int64_t>(cols, 1) : sr;
    if (v.ld >= std::max<int64_t>(cols, 1)) return v;
  }
  if (batch_ok && (sr == 1 || rows == 1) && (sc >= std::max<int64_t>(rows, 1) || cols == 1)) {
    v.trans = true;
    v.ld = cols == 1 ? std::max<int64_t>(rows, 1) : sc;
    if (v.ld >= std::max<int64_t>(rows, 1)) return v;
  }
  // Anything else: a contiguous copy, read with its canonical strides.
  v.t = t.detach().clone();
  v.trans = false;
  v.ld = std::max<int64_t>(cols, 1);
  v.bstride = rows * cols;
  return v;
}

// out (batch..., m, n) contiguous = A . B + beta*out, for a (batch..., m, k), b (batch..., k, n)
// already expanded to the same batch shape.
void gemm_into(Tensor& out, const Tensor& a, const Tensor& b, double beta) {
  const int64_t nd = out.dim();
  const int64_t m = out.shape()[nd - 2], n = out.shape()[nd - 1], k = a.shape()[nd - 1];
  if (out.numel() == 0) return;
  if (k == 0) {
    if (beta == 0) out.fill_(0);
    return;
  }
  const int64_t batch = out.numel() / (m * n);
  MatView va = mat_view(a), vb = mat_view(b);
  be(out).gemm(out.dtype(), va.trans, vb.trans, m, n, k, 1.0, va.t.data_ptr(), va.ld, batch > 1 ? va.bstride : 0,
               vb.t.data_ptr(), vb.ld, batch > 1 ? vb.bstride : 0, beta, out.data_ptr(), n, m * n, batch);
}

// Both operands at least 2-D.
Tensor matmul_nd(const Tensor& a, const Tensor& b) {
  const int64_t k = a.shape().back();
  NABLA_CHECK_SHAPE(k == b.shape()[b.dim() - 2],
                    "matmul: inner dimensions differ: a {} has {} columns, b {} has {} rows", shape_str(a.shape()), k,
                    shape_str(b.shape()), b.shape()[b.dim() - 2]);
  // A stack of matrices times one matrix is one tall product.
  if (b.dim() == 2 && a.dim() > 2) {
    Shape out_shape(a.shape().begin(), a.shape().end() - 1);
    out_shape.push_back(b.shape()[1]);
    return matmul_nd(a.reshape({-1, k}), b).reshape(out_shape);
  }
  Shape ba(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  Shape batch = broadcast_shapes(ba, bb, "matmul (batch axes)");
  const int64_t m = a.shape()[a.dim() - 2], n = b.shape().back();
  Shape sa = batch, sb = batch, so = batch;
  sa.insert(sa.end(), {m, k});
  sb.insert(sb.end(), {k, n});
  so.insert(so.end(), {m, n});
  for (const Shape* shape : {&sa, &sb, &so}) (void)numel_of(*shape, "matmul");
  Tensor ae = a.detach().expand(sa), bexp = b.detach().expand(sb);
  Tensor out = Tensor::empty(so, a.options(), "matmul");
  gemm_into(out, ae, bexp, 0.0);
  if (needs_grad({&a, &b})) {
    const bool ga = a.requires_grad(), gb = b.requires_grad();
    record("matmul", {a, b}, {&out}, [a, b, ga, gb](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      Tensor da, db;
      if (ga) da = sum_to(matmul(g[0], b.detach().transpose(-2, -1)), a.shape());
      if (gb) db = sum_to(matmul(a.detach().transpose(-2, -1), g[0]), b.shape());
      return {da, db};
    });
  }
  return out;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  detail::check_float(a, "matmul", "a");
  detail::check_float(b, "matmul", "b");
  detail::check_same(a, b, "matmul");
  NABLA_CHECK_SHAPE(a.dim() >= 1 && b.dim() >= 1, "matmul: operands must have at least one axis, got a {} and b {}",
                    shape_str(a.shape()), shape_str(b.shape()));
  // Checked here, on the shapes the user passed (not the unsqueezed or reshaped ones below).
  const int64_t ka = a.shape().back(), kb = b.dim() == 1 ? b.shape()[0] : b.shape()[b.dim() - 2];
  NABLA_CHECK_SHAPE(ka == kb, "matmul: inner dimensions differ: a {} has {} columns, b {} has {} rows",
                    shape_str(a.shape()), ka, shape_str(b.shape()), kb);
  const int64_t na = std::max<int64_t>(a.dim() - 2, 0), nbat = std::max<int64_t>(b.dim() - 2, 0);
  for (int64_t i = 1; i <= std::min(na, nbat); ++i) {
    const int64_t da = a.shape()[na - i], db = b.shape()[nbat - i];
    NABLA_CHECK_SHAPE(da == db || da == 1 || db == 1,
                      "matmul (batch axes): a {} and b {} have batch shapes {} and {}, which do not broadcast",
                      shape_str(a.shape()), shape_str(b.shape()),
                      shape_str(Shape(a.shape().begin(), a.shape().begin() + na)),
                      shape_str(Shape(b.shape().begin(), b.shape().begin() + nbat)));
  }
  // A 1-D a is a row, dropped from the result: axis -2, or the only axis left when b is 1-D too
  // (vector . vector gives a 0-d tensor).
  if (a.dim() == 1) return matmul(a.unsqueeze(0), b).squeeze(b.dim() == 1 ? -1 : -2);
  if (b.dim() == 1) return matmul(a, b.unsqueeze(-1)).squeeze(-1);
  return matmul_nd(a, b);
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias, const char* name) {
  detail::check_float(x, name, "input");
  detail::check_float(weight, name, "weight");
  detail::check_same(x, weight, name, "input", "weight");
  NABLA_CHECK_SHAPE(weight.dim() == 2, "{}: weight has shape {}, expected [out_features, in_features]", name,
                    shape_str(weight.shape()));
  const int64_t in = weight.shape()[1], outf = weight.shape()[0];
  NABLA_CHECK_SHAPE(x.dim() >= 1 && x.shape().back() == in, "{}: input has shape {}, expected [*, {}] for weight {}",
                    name, shape_str(x.shape()), in, shape_str(weight.shape()));
  if (bias.defined()) {
    detail::check_same(x, bias, name, "input", "bias");
    NABLA_CHECK_SHAPE(bias.shape() == Shape{outf}, "{}: bias has shape {}, expected [{}]", name,
                      shape_str(bias.shape()), outf);
  }
  if (x.dim() != 2) {
    Shape out_shape(x.shape().begin(), x.shape().end() - 1);
    out_shape.push_back(outf);
    return linear(x.reshape({-1, in}), weight, bias, name).reshape(out_shape);
  }
  const int64_t n = x.shape()[0];
  Tensor out = Tensor::empty({n, outf}, x.options(), name);
  if (bias.defined() && out.numel() > 0) {
    // out starts as the bias on every row, and the product is added to it (beta = 1).
    be(x).copy_strided(x.dtype(), out.data_ptr(), bias.data_ptr(),
                       detail::make_layout(out.shape(), out.strides(), {0, bias.strides()[0]}));
  }
  gemm_into(out, x.detach(), weight.detach().t(), bias.defined() ? 1.0 : 0.0);
  if (needs_grad({&x, &weight, &bias})) {
    const bool gx = x.requires_grad(), gw = weight.requires_grad();
    const bool gbias = bias.defined() && bias.requires_grad();
    record("linear", {x, weight, bias}, {&out},
           [x, weight, gx, gw, gbias](const std::vector<Tensor>& g) -> std::vector<Tensor> {
             const Tensor& dy = g[0];  // (n, out)
             Tensor dx, dw, db;
             if (gx) {
               dx = Tensor::empty(x.shape(), x.options());
               gemm_into(dx, dy, weight.detach(), 0.0);
             }
             if (gw) {
               dw = Tensor::empty(weight.shape(), weight.options());
               gemm_into(dw, dy.t(), x.detach(), 0.0);
             }
             if (gbias) db = sum(dy, {0});
             return {dx, dw, db};
           });
  }
  return out;
}

}  // namespace nabla
