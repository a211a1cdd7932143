// batch_norm: shape checks, the kernels of Backend, and the tape entry.
#include <nabla/core/ops/norm.h>

#include <nabla/core/autograd.h>
#include <nabla/core/ops/elementwise.h>
#include <nabla/core/ops/reduce.h>
#include <nabla/core/ops/util.h>

namespace nabla {

using detail::be;

namespace {

void check_channel_vector(const Tensor& x, const Tensor& t, int64_t c, const char* name, const char* arg) {
  if (!t.defined()) return;
  detail::check_same(x, t, name, "input", arg);
  NABLA_CHECK_SHAPE(t.shape() == Shape{c}, "{}: {} has shape {}, expected [{}] (one per channel of input {})", name,
                    arg, shape_str(t.shape()), c, shape_str(x.shape()));
  NABLA_CHECK(t.is_contiguous(), "{}: {} must be contiguous", name, arg);
}

void* ptr_or_null(const Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

}  // namespace

Tensor batch_norm(const Tensor& x_in, const Tensor& weight_in, const Tensor& bias_in, const Tensor& running_mean,
                  const Tensor& running_var, bool training, double momentum, double eps, const char* name) {
  detail::check_float(x_in, name, "input");
  NABLA_CHECK_SHAPE(x_in.dim() >= 2, "{}: input has shape {}, expected [N, C, *]", name, shape_str(x_in.shape()));
  const int64_t n = x_in.shape()[0], c = x_in.shape()[1];
  const int64_t m = c == 0 || n == 0 ? 0 : x_in.numel() / (n * c);
  Tensor weight = weight_in.defined() ? weight_in.contiguous() : Tensor();
  Tensor bias = bias_in.defined() ? bias_in.contiguous() : Tensor();
  check_channel_vector(x_in, weight, c, name, "weight");
  check_channel_vector(x_in, bias, c, name, "bias");
  check_channel_vector(x_in, running_mean, c, name, "running_mean");
  check_channel_vector(x_in, running_var, c, name, "running_var");
  NABLA_CHECK(running_mean.defined() == running_var.defined(),
              "{}: running_mean and running_var must be given together", name);
  check_number(eps, name, "eps");
  check_number(momentum, name, "momentum");
  NABLA_CHECK(eps > 0, "{}: eps must be positive, got {}", name, eps);
  NABLA_CHECK(momentum >= 0 && momentum <= 1, "{}: momentum {} is outside [0, 1]", name, momentum);
  NABLA_CHECK(training || running_mean.defined(),
              "{}: evaluation mode needs running statistics (running_mean, running_var)", name);
  NABLA_CHECK(!training || n * m > 1 || x_in.numel() == 0,
              "{}: training needs more than one value per channel, got input {}", name, shape_str(x_in.shape()));

  Tensor x = x_in.contiguous();
  Tensor y = Tensor::empty(x.shape(), x.options(), name);
  if (x.numel() == 0) return y;
  if (training) {
    if (running_mean.defined()) {
      running_mean.bump_version();
      running_var.bump_version();
    }
    Tensor save_mean = Tensor::empty({c}, x.options(), name), save_invstd = Tensor::empty({c}, x.options(), name);
    be(x).batch_norm_forward_train(x.dtype(), y.data_ptr(), save_mean.data_ptr(), save_invstd.data_ptr(),
                                   ptr_or_null(running_mean),
                                   ptr_or_null(running_var), x.data_ptr(),
                                   ptr_or_null(weight), ptr_or_null(bias), n, c, m, momentum, eps);
    if (needs_grad({&x, &weight, &bias})) {
      const bool gw = weight.defined() && weight.requires_grad(), gb = bias.defined() && bias.requires_grad();
      const Tensor xs = x.detach(), ws = weight.defined() ? weight.detach() : Tensor();
      record("batch_norm", {x, weight, bias}, {&y},
             [xs, ws, save_mean, save_invstd, gw, gb, n, c, m](const std::vector<Tensor>& g) -> std::vector<Tensor> {
               Tensor dx = Tensor::empty(xs.shape(), xs.options());
               Tensor dw = gw ? Tensor::empty({c}, xs.options()) : Tensor();
               Tensor db = gb ? Tensor::empty({c}, xs.options()) : Tensor();
               be(xs).batch_norm_backward(xs.dtype(), dx.data_ptr(), ptr_or_null(dw), ptr_or_null(db), g[0].data_ptr(),
                                          xs.data_ptr(), save_mean.data_ptr(), save_invstd.data_ptr(),
                                          ptr_or_null(ws), n, c, m);
               return {dx, dw, db};
             });
    }
    return y;
  }
  be(x).batch_norm_forward_eval(x.dtype(), y.data_ptr(), x.data_ptr(), running_mean.data_ptr(),
                                running_var.data_ptr(), ptr_or_null(weight), ptr_or_null(bias), n, c, m, eps);
  if (needs_grad({&x, &weight, &bias})) {
    // y = x * scale + shift with per-channel constants: scale = weight / sqrt(running_var + eps).
    const Tensor xs = x.detach(), ws = weight.defined() ? weight.detach() : Tensor();
    const Tensor rm = running_mean.detach().clone(), rv = running_var.detach().clone();
    const bool gx = x.requires_grad(), gw = weight.defined() && weight.requires_grad();
    const bool gb = bias.defined() && bias.requires_grad();
    record("batch_norm", {x, weight, bias}, {&y},
           [xs, ws, rm, rv, eps, gx, gw, gb](const std::vector<Tensor>& g) -> std::vector<Tensor> {
             Shape bshape(xs.dim(), 1);
             bshape[1] = xs.shape()[1];
             std::vector<int64_t> axes;
             for (int64_t i = 0; i < xs.dim(); ++i)
               if (i != 1) axes.push_back(i);
             const Tensor invstd = pow(affine(rv, 1, eps), -0.5);
             Tensor dx, dw, db;
             if (gx) dx = mul(g[0], (ws.defined() ? mul(ws, invstd) : invstd).reshape(bshape));
             if (gw) dw = sum(mul(g[0], mul(sub(xs, rm.reshape(bshape)), invstd.reshape(bshape))), axes);
             if (gb) db = sum(g[0], axes);
             return {dx, dw, db};
           });
  }
  return y;
}

}  // namespace nabla
