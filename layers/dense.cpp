#include <nabla/layers/dense.h>

#include <nabla/core/error.h>
#include <nabla/core/ops/linalg.h>

namespace nabla {

Dense::Dense(int64_t in_features, int64_t out_features, DenseOptions opts) : in_(in_features), out_(out_features) {
  NABLA_CHECK(in_features > 0 && out_features > 0, "Dense: features must be positive, got {} -> {}", in_features,
              out_features);
  label_ = fmt::format("Dense({}->{})", in_, out_);
  TensorOptions to{opts.dtype, opts.device};
  weight_ = register_parameter("weight", initialize({out_, in_}, opts.weight_init, in_, out_, to, label_ + " weight"));
  if (opts.bias) {
    // torch_default gives the bias PyTorch's bound 1/sqrt(in), as for the weight.
    bias_ = register_parameter("bias", initialize({out_}, opts.bias_init, in_, out_, to, label_ + " bias"));
  }
}

Tensor Dense::forward(const Tensor& x) { return linear(x, weight_, bias_, label_.c_str()); }

std::string Dense::to_string() const {
  return fmt::format("Dense({}->{}{})", in_, out_, bias_.defined() ? ", bias" : ", no bias");
}

}  // namespace nabla
