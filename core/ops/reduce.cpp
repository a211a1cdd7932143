// Reductions: sum / mean / max / min over any set of axes, argmax, sum_to.
#include <nabla/core/ops/reduce.h>

#include <nabla/core/autograd.h>
#include <nabla/core/ops/elementwise.h>
#include <nabla/core/ops/util.h>

#include <algorithm>

namespace nabla {

using detail::be;

namespace {

// Sorted, unique, normalized axes; all axes when `axes` is empty.
std::vector<int64_t> normalize_axes(const std::vector<int64_t>& axes, int64_t ndim, const char* op) {
  std::vector<int64_t> out;
  if (axes.empty()) {
    for (int64_t i = 0; i < ndim; ++i) out.push_back(i);
    return out;
  }
  for (int64_t a : axes) out.push_back(normalize_axis(a, ndim, op));
  std::sort(out.begin(), out.end());
  NABLA_CHECK(std::adjacent_find(out.begin(), out.end()) == out.end(), "{}: axis listed twice in [{}]", op,
              fmt::join(axes, ", "));
  return out;
}

Shape keepdim_shape(const Shape& s, const std::vector<int64_t>& axes) {
  Shape k = s;
  for (int64_t a : axes) k[a] = 1;
  return k;
}

Shape reduced_shape(const Shape& s, const std::vector<int64_t>& axes, bool keepdim) {
  if (keepdim) return keepdim_shape(s, axes);
  Shape r;
  for (int64_t i = 0; i < static_cast<int64_t>(s.size()); ++i)
    if (!std::binary_search(axes.begin(), axes.end(), i)) r.push_back(s[i]);
  return r;
}

// The kernel part: reduces runs of consecutive axes, last run first, each as (outer, r, inner).
// Returns the result in keepdim shape, not recorded.
Tensor reduce_raw(ReduceOp op, const Tensor& x_in, const std::vector<int64_t>& axes, const char* name) {
  // With no axis to reduce (a 0-d input) the loop below never runs: copy, so that the result
  // never aliases the input's storage.
  Tensor cur = axes.empty() ? x_in.detach().clone() : x_in.detach().contiguous();
  if (op != ReduceOp::sum)
    NABLA_CHECK_SHAPE(cur.numel() > 0, "{}: cannot reduce an empty tensor {}", name, shape_str(cur.shape()));
  size_t i = axes.size();
  while (i > 0) {
    size_t j = i - 1;
    while (j > 0 && axes[j - 1] == axes[j] - 1) --j;
    const int64_t first = axes[j], last = axes[i - 1];
    const Shape& s = cur.shape();
    int64_t outer = 1, r = 1, inner = 1;
    for (int64_t k = 0; k < first; ++k) outer *= s[k];
    for (int64_t k = first; k <= last; ++k) r *= s[k];
    for (int64_t k = last + 1; k < static_cast<int64_t>(s.size()); ++k) inner *= s[k];
    Shape ns = s;
    for (int64_t k = first; k <= last; ++k) ns[k] = 1;
    Tensor next = Tensor::empty(ns, cur.options(), name);
    if (next.numel() > 0) {
      if (r == 0)
        next.fill_(0);
      else
        be(cur).reduce(op, cur.dtype(), next.data_ptr(), cur.data_ptr(), outer, r, inner);
    }
    cur = next;
    i = j;
  }
  return cur;
}

Tensor reduce_op(ReduceOp op, const Tensor& x, const std::vector<int64_t>& axes_in, bool keepdim,
                 const char* name) {
  detail::check_float(x, name, "x");
  std::vector<int64_t> axes = normalize_axes(axes_in, x.dim(), name);
  Tensor kept = reduce_raw(op, x, axes, name);
  Shape out_shape = reduced_shape(x.shape(), axes, keepdim);
  Tensor out = kept.view(out_shape);
  if (!needs_grad({&x})) return out;
  const Shape xs = x.shape(), ks = kept.shape();
  if (op == ReduceOp::sum) {
    record(name, {x}, {&out}, [xs, ks](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      return {g[0].reshape(ks).expand(xs)};
    }, {}, Saved::none);
  } else {
    // Gradient shared among the elements equal to the extremum.
    Tensor ext = kept;
    record(name, {x}, {&out}, [x, ext, ks, axes](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      Tensor mask = eq(x, ext);
      Tensor count = reduce_raw(ReduceOp::sum, mask, axes, "max");
      return {mul(mask, div(g[0].reshape(ks), count))};
    });
  }
  return out;
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& axes, bool keepdim) {
  return reduce_op(ReduceOp::sum, x, axes, keepdim, "sum");
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& axes, bool keepdim) {
  detail::check_float(x, "mean", "x");
  std::vector<int64_t> ax = normalize_axes(axes, x.dim(), "mean");
  int64_t count = 1;
  for (int64_t a : ax) count *= x.shape()[a];
  NABLA_CHECK_SHAPE(count > 0, "mean: reducing {} over axes [{}] averages zero elements", shape_str(x.shape()),
                    fmt::join(ax, ", "));
  return affine(sum(x, ax, keepdim), 1.0 / static_cast<double>(count), 0);
}

Tensor max(const Tensor& x, const std::vector<int64_t>& axes, bool keepdim) {
  return reduce_op(ReduceOp::max, x, axes, keepdim, "max");
}

Tensor min(const Tensor& x, const std::vector<int64_t>& axes, bool keepdim) {
  return reduce_op(ReduceOp::min, x, axes, keepdim, "min");
}

Tensor argmax(const Tensor& x_in, int64_t axis, bool keepdim) {
  detail::check_float(x_in, "argmax", "x");
  NABLA_CHECK_SHAPE(x_in.dim() > 0, "argmax: input is 0-dimensional");
  axis = normalize_axis(axis, x_in.dim(), "argmax");
  Tensor x = x_in.detach().contiguous();
  NABLA_CHECK_SHAPE(x.shape()[axis] > 0, "argmax: axis {} of {} is empty", axis, shape_str(x.shape()));
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= x.shape()[i];
  for (int64_t i = axis + 1; i < x.dim(); ++i) inner *= x.shape()[i];
  Shape ks = x.shape();
  ks[axis] = 1;
  Tensor out = Tensor::empty(ks, {DType::int64, x.device()}, "argmax");
  if (out.numel() > 0)
    be(x).argmax(x.dtype(), out.data<int64_t>(), x.data_ptr(), outer, x.shape()[axis], inner);
  return keepdim ? out : out.squeeze(axis);
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  NABLA_CHECK_SHAPE(shape.size() <= x.shape().size() && broadcast_shapes(shape, x.shape(), "sum_to") == x.shape(),
                    "sum_to: {} is not a broadcast of {}", shape_str(x.shape()), shape_str(shape));
  const size_t lead = x.shape().size() - shape.size();
  std::vector<int64_t> axes;
  for (size_t i = 0; i < x.shape().size(); ++i)
    if (i < lead || (shape[i - lead] == 1 && x.shape()[i] != 1)) axes.push_back(static_cast<int64_t>(i));
  if (axes.empty()) return x.reshape(shape);
  return sum(x, axes, true).reshape(shape);
}

}  // namespace nabla
