// max_pool2d, avg_pool2d and global_avg_pool2d: shape checks, kernels, tape entries.
#include <nabla/core/ops/pool.h>

#include <nabla/core/autograd.h>
#include <nabla/core/ops/reduce.h>
#include <nabla/core/ops/util.h>

namespace nabla {

using detail::be;

namespace {

Pool2dShape pool_shape(const Tensor& x, Size2 kernel, const Pool2dParams& p, const char* name) {
  detail::check_float(x, name, "input");
  NABLA_CHECK_SHAPE(x.dim() == 4, "{}: input has shape {}, expected 4 axes [N, C, H, W]", name, shape_str(x.shape()));
  NABLA_CHECK(kernel.h >= 1 && kernel.w >= 1, "{}: kernel size must be at least 1, got ({}, {})", name, kernel.h,
              kernel.w);
  const Size2 stride = p.stride.h == 0 && p.stride.w == 0 ? kernel : p.stride;
  NABLA_CHECK(stride.h >= 1 && stride.w >= 1, "{}: stride must be at least 1, got ({}, {})", name, stride.h,
              stride.w);
  NABLA_CHECK(p.padding.mode != Padding::Mode::same,
              "{}: padding \"same\" is not supported for pooling; give the amount (at most half the kernel)", name);
  const int64_t ph = p.padding.mode == Padding::Mode::valid ? 0 : p.padding.h;
  const int64_t pw = p.padding.mode == Padding::Mode::valid ? 0 : p.padding.w;
  NABLA_CHECK(ph >= 0 && pw >= 0 && ph <= kernel.h / 2 && pw <= kernel.w / 2,
              "{}: padding {} must be between 0 and half the kernel {}x{}", name, p.padding.str(), kernel.h,
              kernel.w);
  Pool2dShape s;
  s.n = x.shape()[0];
  s.c = x.shape()[1];
  s.h = x.shape()[2];
  s.w = x.shape()[3];
  s.kh = kernel.h;
  s.kw = kernel.w;
  s.stride_h = stride.h;
  s.stride_w = stride.w;
  s.pad_h = ph;
  s.pad_w = pw;
  NABLA_CHECK_SHAPE(checked_add(s.h, 2 * ph, name, "the padded height") >= s.kh &&
                        checked_add(s.w, 2 * pw, name, "the padded width") >= s.kw,
                    "{}: kernel {}x{} is larger than the input {}x{} padded by ({}, {}) (input {})", name, s.kh, s.kw,
                    s.h, s.w, ph, pw, shape_str(x.shape()));
  s.oh = (s.h + 2 * ph - s.kh) / s.stride_h + 1;
  s.ow = (s.w + 2 * pw - s.kw) / s.stride_w + 1;
  return s;
}

}  // namespace

Tensor max_pool2d(const Tensor& x_in, Size2 kernel, const Pool2dParams& p, const char* name) {
  const Pool2dShape s = pool_shape(x_in, kernel, p, name);
  Tensor x = x_in.contiguous();
  Tensor y = Tensor::empty({s.n, s.c, s.oh, s.ow}, x.options(), name);
  Tensor idx = Tensor::empty(y.shape(), {.dtype = DType::int64, .device = x.device()}, name);
  if (y.numel() > 0) be(x).max_pool2d_forward(x.dtype(), y.data_ptr(), idx.data<int64_t>(), x.data_ptr(), s);
  if (needs_grad({&x})) {
    const TensorOptions xo = x.options();
    record("max_pool2d", {x}, {&y}, [idx, s, xo](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      Tensor dx = Tensor::empty({s.n, s.c, s.h, s.w}, xo);
      if (g[0].numel() > 0) be(dx).max_pool2d_backward(dx.dtype(), dx.data_ptr(), g[0].data_ptr(), idx.data<int64_t>(), s);
      else dx.fill_(0);
      return {dx};
    }, {}, Saved::none);
  }
  return y;
}

Tensor avg_pool2d(const Tensor& x_in, Size2 kernel, const Pool2dParams& p, const char* name) {
  const Pool2dShape s = pool_shape(x_in, kernel, p, name);
  Tensor x = x_in.contiguous();
  Tensor y = Tensor::empty({s.n, s.c, s.oh, s.ow}, x.options(), name);
  const bool include = p.count_include_pad;
  if (y.numel() > 0) be(x).avg_pool2d_forward(x.dtype(), y.data_ptr(), x.data_ptr(), s, include);
  if (needs_grad({&x})) {
    const TensorOptions xo = x.options();
    record("avg_pool2d", {x}, {&y}, [s, xo, include](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      Tensor dx = Tensor::empty({s.n, s.c, s.h, s.w}, xo);
      if (g[0].numel() > 0) be(dx).avg_pool2d_backward(dx.dtype(), dx.data_ptr(), g[0].data_ptr(), s, include);
      else dx.fill_(0);
      return {dx};
    }, {}, Saved::none);
  }
  return y;
}

Tensor global_avg_pool2d(const Tensor& x, const char* name) {
  detail::check_float(x, name, "input");
  NABLA_CHECK_SHAPE(x.dim() == 4, "{}: input has shape {}, expected 4 axes [N, C, H, W]", name, shape_str(x.shape()));
  NABLA_CHECK_SHAPE(x.shape()[2] > 0 && x.shape()[3] > 0, "{}: input {} has an empty plane", name,
                    shape_str(x.shape()));
  return mean(x, {2, 3});
}

}  // namespace nabla
