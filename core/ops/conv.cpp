// conv2d and conv1d: shape checks, "same" padding, the kernels of Backend, and the tape entry.
#include <nabla/core/ops/conv.h>

#include <nabla/core/autograd.h>
#include <nabla/core/ops/elementwise.h>
#include <nabla/core/ops/shape.h>
#include <nabla/core/ops/util.h>

#include <cstring>

namespace nabla {

using detail::be;

Padding::Padding(std::string_view m) {
  if (m == "same") {
    mode = Mode::same;
  } else if (m == "valid") {
    mode = Mode::valid;
  } else {
    fail("padding: unknown mode '{}'; expected \"same\", \"valid\" or a number of elements", m);
  }
}

std::string Padding::str() const {
  switch (mode) {
    case Mode::same: return "same";
    case Mode::valid: return "valid";
    case Mode::explicit_amount: break;
  }
  return h == w ? std::to_string(h) : fmt::format("({}, {})", h, w);
}

namespace {

// Padding of one axis: `before` on both sides for the kernel, plus `extra` zeros appended at the
// end (only for an asymmetric "same").
struct AxisPad {
  int64_t before = 0, extra = 0;
};

// "same": the output has ceil(size / stride) elements; the total padding that takes is split
// evenly, the odd one at the end.
AxisPad same_pad(int64_t size, int64_t stride, int64_t eff_kernel, const char* name) {
  const int64_t out = size / stride + (size % stride != 0);
  const int64_t span = checked_add(checked_mul(out - 1, stride, name, "the \"same\" padding"), eff_kernel, name,
                                   "the \"same\" padding");
  const int64_t total = std::max<int64_t>(span - size, 0);
  return {total / 2, total - 2 * (total / 2)};
}

// x with `eh` zero rows appended below and `ew` zero columns to the right (differentiable).
Tensor pad_end(const Tensor& x, int64_t eh, int64_t ew) {
  Tensor out = x;
  if (eh > 0) {
    Shape s = out.shape();
    s[2] = eh;
    out = concat({out, zeros(s, out.options())}, 2);
  }
  if (ew > 0) {
    Shape s = out.shape();
    s[3] = ew;
    out = concat({out, zeros(s, out.options())}, 3);
  }
  return out;
}

}  // namespace

Tensor conv2d(const Tensor& x_in, const Tensor& weight, const Tensor& bias, const Conv2dParams& p, const char* name) {
  detail::check_float(x_in, name, "input");
  detail::check_float(weight, name, "weight");
  detail::check_same(x_in, weight, name, "input", "weight");
  NABLA_CHECK_SHAPE(x_in.dim() == 4, "{}: input has shape {}, expected 4 axes [N, C, H, W]", name,
                    shape_str(x_in.shape()));
  NABLA_CHECK_SHAPE(weight.dim() == 4, "{}: weight has shape {}, expected [out_channels, in_channels / groups, kh, kw]",
                    name, shape_str(weight.shape()));
  const int64_t groups = p.groups;
  const int64_t c = x_in.shape()[1], k = weight.shape()[0], kh = weight.shape()[2], kw = weight.shape()[3];
  NABLA_CHECK(groups >= 1, "{}: groups must be at least 1, got {}", name, groups);
  NABLA_CHECK_SHAPE(c % groups == 0, "{}: groups={} does not divide the input's {} channels (input {})", name, groups,
                    c, shape_str(x_in.shape()));
  NABLA_CHECK_SHAPE(k % groups == 0 && k > 0, "{}: groups={} does not divide the weight's {} output channels", name,
                    groups, k);
  NABLA_CHECK_SHAPE(weight.shape()[1] * groups == c,
                    "{}: input has {} channels (shape {}), expected {} for weight {} with groups={}", name, c,
                    shape_str(x_in.shape()), weight.shape()[1] * groups, shape_str(weight.shape()), groups);
  NABLA_CHECK_SHAPE(kh >= 1 && kw >= 1, "{}: weight {} has an empty kernel", name, shape_str(weight.shape()));
  NABLA_CHECK(p.stride.h >= 1 && p.stride.w >= 1, "{}: stride must be at least 1, got ({}, {})", name, p.stride.h,
              p.stride.w);
  NABLA_CHECK(p.dilation.h >= 1 && p.dilation.w >= 1, "{}: dilation must be at least 1, got ({}, {})", name,
              p.dilation.h, p.dilation.w);
  if (bias.defined()) {
    detail::check_same(x_in, bias, name, "input", "bias");
    NABLA_CHECK_SHAPE(bias.shape() == Shape{k}, "{}: bias has shape {}, expected [{}]", name, shape_str(bias.shape()),
                      k);
  }
  const int64_t h = x_in.shape()[2], w = x_in.shape()[3];
  const int64_t ekh = checked_mul(p.dilation.h, kh - 1, name, "the dilated kernel height") + 1;
  const int64_t ekw = checked_mul(p.dilation.w, kw - 1, name, "the dilated kernel width") + 1;
  AxisPad ph, pw;
  switch (p.padding.mode) {
    case Padding::Mode::explicit_amount:
      NABLA_CHECK(p.padding.h >= 0 && p.padding.w >= 0, "{}: padding must not be negative, got {}", name,
                  p.padding.str());
      ph.before = p.padding.h;
      pw.before = p.padding.w;
      break;
    case Padding::Mode::same:
      ph = same_pad(h, p.stride.h, ekh, name);
      pw = same_pad(w, p.stride.w, ekw, name);
      break;
    case Padding::Mode::valid: break;
  }
  const int64_t hp = checked_add(h, checked_mul(2, ph.before, name, "the padding") + ph.extra, name, "the padded height");
  const int64_t wp = checked_add(w, checked_mul(2, pw.before, name, "the padding") + pw.extra, name, "the padded width");
  NABLA_CHECK_SHAPE(
      hp >= ekh && wp >= ekw,
      "{}: kernel {}x{} (dilated {}x{}) is larger than the input {}x{} padded to {}x{} (input {}, padding {})", name,
      kh, kw, ekh, ekw, h, w, hp, wp, shape_str(x_in.shape()), p.padding.str());

  Tensor x = pad_end(x_in, ph.extra, pw.extra).contiguous();
  Conv2dShape s;
  s.n = x.shape()[0];
  s.c = c;
  s.h = x.shape()[2];
  s.w = x.shape()[3];
  s.k = k;
  s.kh = kh;
  s.kw = kw;
  s.stride_h = p.stride.h;
  s.stride_w = p.stride.w;
  s.pad_h = ph.before;
  s.pad_w = pw.before;
  s.dil_h = p.dilation.h;
  s.dil_w = p.dilation.w;
  s.groups = groups;
  s.oh = (hp - ekh) / s.stride_h + 1;
  s.ow = (wp - ekw) / s.stride_w + 1;

  const Tensor wc = weight.contiguous(), bc = bias.defined() ? bias.contiguous() : Tensor();
  s.relu = p.relu && be(x).conv2d_fuses_relu(x.dtype());
  Tensor y = Tensor::empty({s.n, k, s.oh, s.ow}, x.options(), name);
  if (y.numel() > 0)
    be(x).conv2d_forward(x.dtype(), y.data_ptr(), x.data_ptr(), wc.data_ptr(), bc.defined() ? bc.data_ptr() : nullptr,
                         s);
  if (needs_grad({&x, &weight, &bias})) {
    const bool gx = x.requires_grad(), gw = weight.requires_grad(), gb = bias.defined() && bias.requires_grad();
    const Tensor xs = x.detach(), ws = wc.detach(), ys = s.relu ? y.detach() : Tensor();
    record("conv2d", {x, weight, bias}, {&y}, [xs, ws, ys, s, gx, gw, gb](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      const Tensor& dy = g[0];
      Tensor dx = gx ? Tensor::empty(xs.shape(), xs.options()) : Tensor();
      Tensor dw = gw ? Tensor::empty(ws.shape(), ws.options()) : Tensor();
      Tensor db = gb ? Tensor::empty({s.k}, xs.options()) : Tensor();
      if (dy.numel() == 0) {
        for (Tensor* t : {&dx, &dw, &db})
          if (t->defined()) t->fill_(0);
      } else {
        // No dx to compute for an empty input (c = 0 is refused above; n = 0 makes dy empty).
        auto ptr = [](Tensor& t) { return t.defined() && t.numel() > 0 ? t.data_ptr() : nullptr; };
        be(xs).conv2d_backward(xs.dtype(), ptr(dx), ptr(dw), ptr(db), dy.data_ptr(), xs.data_ptr(), ws.data_ptr(),
                               s.relu ? ys.data_ptr() : nullptr, s);
      }
      return {dx, dw, db};
    }, s.relu ? std::vector<Tensor>{ys} : std::vector<Tensor>{});
  }
  // A backend that does not fuse the ReLU: the relu op after the convolution.
  if (p.relu && !s.relu) return relu(y);
  return y;
}

Tensor conv1d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv1dParams& p, const char* name) {
  detail::check_float(x, name, "input");
  detail::check_float(weight, name, "weight");
  NABLA_CHECK_SHAPE(x.dim() == 3, "{}: input has shape {}, expected 3 axes [N, C, L]", name, shape_str(x.shape()));
  NABLA_CHECK_SHAPE(weight.dim() == 3, "{}: weight has shape {}, expected [out_channels, in_channels / groups, kernel]",
                    name, shape_str(weight.shape()));
  NABLA_CHECK_SHAPE(p.groups >= 1 && x.shape()[1] % p.groups == 0 && weight.shape()[1] * p.groups == x.shape()[1],
                    "{}: input has {} channels (shape {}), expected {} for weight {} with groups={}", name,
                    x.shape()[1], shape_str(x.shape()), weight.shape()[1] * std::max<int64_t>(p.groups, 1),
                    shape_str(weight.shape()), p.groups);
  if (p.padding.mode != Padding::Mode::same) {
    const int64_t pad = p.padding.mode == Padding::Mode::valid ? 0 : p.padding.w;
    const int64_t l = x.shape()[2];
    const int64_t ek = checked_mul(std::max<int64_t>(p.dilation, 1), weight.shape()[2] - 1, name, "the dilated kernel") + 1;
    NABLA_CHECK_SHAPE(
        pad >= 0 && checked_add(l, checked_mul(2, pad, name, "the padding"), name, "the padded length") >= ek,
        "{}: kernel {} (dilated {}) is larger than the input length {} padded by {} (input {})", name,
        weight.shape()[2], ek, l, pad, shape_str(x.shape()));
  }
  Conv2dParams q;
  q.stride = Size2(1, p.stride);
  q.dilation = Size2(1, p.dilation);
  q.groups = p.groups;
  q.padding = p.padding;
  if (p.padding.mode == Padding::Mode::explicit_amount) q.padding = Padding(0, p.padding.w);
  return conv2d(x.unsqueeze(2), weight.unsqueeze(2), bias, q, name).squeeze(2);
}

}  // namespace nabla
