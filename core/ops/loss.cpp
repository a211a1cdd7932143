// Losses, composed from differentiable ops; negative log-likelihood has its own kernels.
#include <nabla/core/ops/loss.h>

#include <nabla/core/autograd.h>
#include <nabla/core/ops/elementwise.h>
#include <nabla/core/ops/reduce.h>
#include <nabla/core/ops/util.h>

#include <limits>

namespace nabla {

using detail::be;

namespace {

Tensor reduce(const Tensor& per_element, Reduction r) {
  switch (r) {
    case Reduction::none: return per_element;
    case Reduction::sum: return sum(per_element);
    case Reduction::mean: return mean(per_element);
  }
  return per_element;
}

void check_pair(const Tensor& input, const Tensor& target, const char* op) {
  detail::check_float(input, op, "input");
  detail::check_float(target, op, "target");
  detail::check_same(input, target, op, "input", "target");
  NABLA_CHECK_SHAPE(input.shape() == target.shape(), "{}: input has shape {} but target has shape {}", op,
                    shape_str(input.shape()), shape_str(target.shape()));
}

// Class indices of the rows of `input` (n, c) as contiguous int64, checked against [0, c). `op` is a
// string literal (a device check may report it later).
Tensor checked_labels(const Tensor& labels, const Tensor& input, const char* op) {
  const int64_t n = input.shape()[0], c = input.shape()[1];
  NABLA_CHECK_DTYPE(labels.dtype() == DType::int64 || labels.dtype() == DType::int32,
                    "{}: class labels have dtype {}, expected int64 or int32", op, labels.dtype());
  NABLA_CHECK_SHAPE(labels.shape() == Shape{n}, "{}: labels have shape {}, expected [{}] (one per row of the input {})",
                    op, shape_str(labels.shape()), n, shape_str(input.shape()));
  Tensor l = labels.detach().to(DType::int64).contiguous();
  if (n > 0) be(l).check_labels(l.data<int64_t>(), n, c, op);
  return l;
}

}  // namespace

Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction r) {
  check_pair(input, target, "mse_loss");
  Tensor d = sub(input, target);
  return reduce(mul(d, d), r);
}

Tensor l1_loss(const Tensor& input, const Tensor& target, Reduction r) {
  check_pair(input, target, "l1_loss");
  return reduce(abs(sub(input, target)), r);
}

Tensor binary_cross_entropy(const Tensor& input, const Tensor& target, Reduction r) {
  check_pair(input, target, "binary_cross_entropy");
  if (input.device().is_cpu() && input.numel() > 0) {
    // Outside [0, 1] the loss is NaN; say so instead (a host check, so CPU only).
    NoGrad ng;
    const double lo = min(input).item(), hi = max(input).item();
    NABLA_CHECK(lo >= 0 && hi <= 1, "binary_cross_entropy: input values must be probabilities in [0, 1], got "
                "values in [{}, {}] (use binary_cross_entropy_with_logits for raw scores)", lo, hi);
  }
  // -(t log p + (1 - t) log(1 - p)), each log clamped at -100 as PyTorch does.
  const double inf = std::numeric_limits<double>::infinity();
  Tensor lp = clamp(log(input), -100, inf);
  Tensor l1p = clamp(log(1.0 - input), -100, inf);
  return reduce(neg(add(mul(target, lp), mul(1.0 - target, l1p))), r);
}

Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target, Reduction r) {
  check_pair(logits, target, "binary_cross_entropy_with_logits");
  // log(1 + e^x) - x t, with softplus computed without overflow.
  return reduce(sub(softplus(logits), mul(logits, target)), r);
}

namespace {

// nll_loss, with errors naming `op` (nll_loss, or cross_entropy that calls it).
Tensor nll_impl(const Tensor& logp, const Tensor& labels, Reduction r, const char* op) {
  detail::check_float(logp, op, "input");
  detail::check_defined(labels, op, "target");
  NABLA_CHECK_SHAPE(logp.dim() == 2, "{}: input has shape {}, expected [batch, classes]", op, shape_str(logp.shape()));
  NABLA_CHECK(labels.device() == logp.device(), "{}: input is on {} but target is on {}", op, logp.device(),
              labels.device());
  const int64_t n = logp.shape()[0], c = logp.shape()[1];
  Tensor l = checked_labels(labels, logp, op);
  Tensor x = logp.contiguous();
  Tensor out = Tensor::empty({n}, x.options(), op);
  if (n > 0) be(x).nll(x.dtype(), out.data_ptr(), x.data_ptr(), l.data<int64_t>(), n, c);
  if (needs_grad({&x})) {
    record("nll_loss", {x}, {&out}, [l, n, c, x](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      Tensor dx = Tensor::empty({n, c}, x.options());
      if (n > 0) be(x).nll_backward(x.dtype(), dx.data_ptr(), g[0].data_ptr(), l.data<int64_t>(), n, c);
      return {dx};
    });
  }
  return reduce(out, r);
}

}  // namespace

Tensor nll_loss(const Tensor& logp, const Tensor& labels, Reduction r) { return nll_impl(logp, labels, r, "nll_loss"); }

Tensor cross_entropy(const Tensor& logits, const Tensor& target, Reduction r) {
  detail::check_float(logits, "cross_entropy", "input");
  detail::check_defined(target, "cross_entropy", "target");
  NABLA_CHECK_SHAPE(logits.dim() == 2, "cross_entropy: input has shape {}, expected [batch, classes]",
                    shape_str(logits.shape()));
  if (!is_floating(target.dtype())) return nll_impl(log_softmax(logits, 1), target, r, "cross_entropy");
  // Probability targets: -sum_c t[i, c] log softmax(x)[i, c].
  detail::check_same(logits, target, "cross_entropy", "input", "target");
  NABLA_CHECK_SHAPE(target.shape() == logits.shape(),
                    "cross_entropy: probability target has shape {}, expected the input's shape {}",
                    shape_str(target.shape()), shape_str(logits.shape()));
  return reduce(neg(sum(mul(target, log_softmax(logits, 1)), {1})), r);
}

}  // namespace nabla
