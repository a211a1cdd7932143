#include <nabla/core/ops/util.h>

namespace nabla::detail {

void check_defined(const Tensor& t, const char* op, const char* arg) {
  NABLA_CHECK(t.defined(), "{}: argument '{}' is an undefined tensor", op, arg);
}

void check_float(const Tensor& t, const char* op, const char* arg) {
  check_defined(t, op, arg);
  NABLA_CHECK_DTYPE(is_floating(t.dtype()), "{}: argument '{}' has dtype {}, expected float32 or float64",
                    op, arg, t.dtype());
}

void check_same(const Tensor& a, const Tensor& b, const char* op, const char* an, const char* bn) {
  check_defined(a, op, an);
  check_defined(b, op, bn);
  NABLA_CHECK(a.device() == b.device(), "{}: '{}' {} is on {} but '{}' {} is on {}", op, an,
              shape_str(a.shape()), a.device(), bn, shape_str(b.shape()), b.device());
  NABLA_CHECK_DTYPE(a.dtype() == b.dtype(), "{}: '{}' {} is {} but '{}' {} is {}", op, an,
                    shape_str(a.shape()), a.dtype(), bn, shape_str(b.shape()), b.dtype());
}

StridedLayout make_layout(const Shape& shape, const Shape& out, const Shape& a, const Shape& b) {
  const bool has_b = !b.empty() || shape.empty();
  // Keep dimensions of size != 1, in order.
  std::vector<int64_t> sh, so, sa, sb;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 1) continue;
    sh.push_back(shape[i]);
    so.push_back(out[i]);
    sa.push_back(a[i]);
    sb.push_back(has_b && !b.empty() ? b[i] : 0);
  }
  // Merge dimension i into i-1 when every operand steps through both as through one.
  std::vector<int64_t> mh, mo, ma, mb;
  for (size_t i = 0; i < sh.size(); ++i) {
    if (!mh.empty() && mo.back() == so[i] * sh[i] && ma.back() == sa[i] * sh[i] &&
        mb.back() == sb[i] * sh[i]) {
      mh.back() *= sh[i];
      mo.back() = so[i];
      ma.back() = sa[i];
      mb.back() = sb[i];
      continue;
    }
    mh.push_back(sh[i]);
    mo.push_back(so[i]);
    ma.push_back(sa[i]);
    mb.push_back(sb[i]);
  }
  NABLA_CHECK(mh.size() <= static_cast<size_t>(kMaxDims),
              "tensor of shape {} has {} non-mergeable dimensions; at most {} are supported",
              shape_str(shape), mh.size(), kMaxDims);
  StridedLayout l;
  l.ndim = static_cast<int>(mh.size());
  for (size_t i = 0; i < mh.size(); ++i) {
    l.shape[i] = mh[i];
    l.out_stride[i] = mo[i];
    l.a_stride[i] = ma[i];
    l.b_stride[i] = mb[i];
  }
  return l;
}

Shape broadcast_strides(const Tensor& t, const Shape& shape) {
  Shape st(shape.size(), 0);
  const size_t lead = shape.size() - t.shape().size();
  for (size_t i = 0; i < t.shape().size(); ++i)
    st[lead + i] = t.shape()[i] == 1 && shape[lead + i] != 1 ? 0 : t.strides()[i];
  return st;
}

}  // namespace nabla::detail
