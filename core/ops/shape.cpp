// concat and dropout.
#include <nabla/core/ops/shape.h>

#include <nabla/core/autograd.h>
#include <nabla/core/ops/elementwise.h>
#include <nabla/core/ops/util.h>

namespace nabla {

Tensor concat(const std::vector<Tensor>& tensors, int64_t axis) {
  NABLA_CHECK(!tensors.empty(), "concat: no tensors given");
  const Tensor& first = tensors[0];
  detail::check_defined(first, "concat", "tensors[0]");
  NABLA_CHECK_SHAPE(first.dim() > 0, "concat: tensors are 0-dimensional; expected at least one axis");
  axis = normalize_axis(axis, first.dim(), "concat");
  Shape out_shape = first.shape();
  out_shape[axis] = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    detail::check_defined(t, "concat", "tensors[i]");
    detail::check_same(first, t, "concat", "tensors[0]", fmt::format("tensors[{}]", i).c_str());
    bool ok = t.dim() == first.dim();
    for (int64_t d = 0; ok && d < t.dim(); ++d) ok = d == axis || t.shape()[d] == first.shape()[d];
    NABLA_CHECK_SHAPE(ok, "concat: tensors[{}] has shape {}, expected {} except along axis {}", i, shape_str(t.shape()),
                      shape_str(first.shape()), axis);
    out_shape[axis] = checked_add(out_shape[axis], t.shape()[axis], "concat", "the length along the axis");
  }
  Tensor out = Tensor::empty(out_shape, first.options(), "concat");
  std::vector<int64_t> starts;
  int64_t off = 0;
  for (const Tensor& t : tensors) {
    starts.push_back(off);
    Tensor dst = out.slice(axis, off, off + t.shape()[axis]);
    dst.copy_(t);
    off += t.shape()[axis];
  }
  if (needs_grad(tensors)) {
    std::vector<int64_t> lens;
    for (const Tensor& t : tensors) lens.push_back(t.shape()[axis]);
    record("concat", tensors, {&out}, [axis, starts, lens](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      std::vector<Tensor> d;
      for (size_t i = 0; i < starts.size(); ++i) d.push_back(g[0].slice(axis, starts[i], starts[i] + lens[i]));
      return d;
    }, {}, Saved::none);
  }
  return out;
}

Tensor dropout(const Tensor& x, double p, bool training) {
  detail::check_float(x, "dropout", "x");
  check_number(p, "dropout", "probability");
  NABLA_CHECK(p >= 0 && p <= 1, "dropout: probability {} is outside [0, 1]", p);
  if (!training || p == 0) return x;
  if (p == 1) return mul(x, zeros_like(x));
  Tensor keep;
  {
    NoGrad ng;
    keep = affine(ge(rand(x.shape(), x.options()), scalar(p, x.options())), 1.0 / (1.0 - p), 0);
  }
  return mul(x, keep);
}

}  // namespace nabla
