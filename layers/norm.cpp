#include <nabla/layers/norm.h>

#include <nabla/core/error.h>
#include <nabla/core/ops/norm.h>

namespace nabla {

BatchNorm::BatchNorm(const char* type, int64_t num_features, BatchNormOptions opts, int64_t min_dim, int64_t max_dim)
    : type_(type), features_(num_features), opts_(opts), min_dim_(min_dim), max_dim_(max_dim) {
  NABLA_CHECK(num_features > 0, "{}: num_features must be positive, got {}", type, num_features);
  check_number(opts.eps, type, "eps");
  check_number(opts.momentum, type, "momentum");
  NABLA_CHECK(opts.eps > 0, "{}: eps must be positive, got {}", type, opts.eps);
  NABLA_CHECK(opts.momentum >= 0 && opts.momentum <= 1, "{}: momentum {} is outside [0, 1]", type, opts.momentum);
  NABLA_CHECK_DTYPE(is_floating(opts.dtype), "{}: dtype must be float32 or float64, got {}", type, opts.dtype);
  label_ = fmt::format("{}({})", type, num_features);
  const TensorOptions to{opts.dtype, opts.device};
  if (opts.affine) {
    weight_ = register_parameter("weight", ones({num_features}, to));
    bias_ = register_parameter("bias", zeros({num_features}, to));
  }
  if (opts.track_running_stats) {
    running_mean_ = register_buffer("running_mean", zeros({num_features}, to));
    running_var_ = register_buffer("running_var", ones({num_features}, to));
    num_batches_ = register_buffer("num_batches_tracked", zeros({}, {.dtype = DType::int64, .device = opts.device}));
  }
}

Tensor BatchNorm::forward(const Tensor& x) {
  NABLA_CHECK_SHAPE(x.defined() && x.dim() >= min_dim_ && x.dim() <= max_dim_ && x.shape()[1] == features_,
                    "{}: input has shape {}, expected {}", label_, x.defined() ? shape_str(x.shape()) : "undefined",
                    min_dim_ == max_dim_ ? fmt::format("[N, {}, H, W]", features_)
                                   : fmt::format("[N, {}] or [N, {}, L]", features_, features_));
  const bool use_batch_stats = is_training() || !running_mean_.defined();
  if (is_training() && num_batches_.defined()) {
    // The counter lives on the host too: fill_ enqueues the new value without reading the device.
    num_batches_.fill_(static_cast<double>(++batches_));
  }
  return batch_norm(x, weight_, bias_, running_mean_, running_var_, use_batch_stats, opts_.momentum, opts_.eps,
                    label_.c_str());
}

std::string BatchNorm::to_string() const {
  std::string s = fmt::format("{}({}", type_, features_);
  if (opts_.eps != 1e-5) s += fmt::format(", eps {}", opts_.eps);
  if (opts_.momentum != 0.1) s += fmt::format(", momentum {}", opts_.momentum);
  if (!opts_.affine) s += ", no affine";
  if (!opts_.track_running_stats) s += ", no running stats";
  return s + ")";
}

void BatchNorm::on_state_loaded() {
  if (num_batches_.defined()) batches_ = num_batches_.item<int64_t>();
}

}  // namespace nabla
