#include <nabla/layers/conv.h>

#include <nabla/core/error.h>

namespace nabla {

namespace {

void check_channels(const char* layer, int64_t in, int64_t out, int64_t groups) {
  NABLA_CHECK(in > 0 && out > 0, "{}: channels must be positive, got {} -> {}", layer, in, out);
  NABLA_CHECK(groups >= 1 && in % groups == 0 && out % groups == 0,
              "{}: groups={} must divide both the input channels ({}) and the output channels ({})", layer, groups,
              in, out);
}

std::string options_str(const std::string& stride, const std::string& padding, const std::string& dilation,
                        int64_t groups, bool bias) {
  std::string s;
  if (stride != "1") s += ", stride " + stride;
  if (padding != "0") s += ", padding " + padding;
  if (dilation != "1") s += ", dilation " + dilation;
  if (groups != 1) s += fmt::format(", groups {}", groups);
  if (!bias) s += ", no bias";
  return s;
}

std::string size2_str(Size2 s) { return s.h == s.w ? std::to_string(s.h) : fmt::format("({}, {})", s.h, s.w); }

}  // namespace

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, Size2 kernel, Conv2dOptions opts)
    : in_(in_channels), out_(out_channels), kernel_(kernel) {
  check_channels("Conv2d", in_, out_, opts.groups);
  NABLA_CHECK(kernel.h >= 1 && kernel.w >= 1, "Conv2d: kernel size must be at least 1, got ({}, {})", kernel.h,
              kernel.w);
  params_ = {.stride = opts.stride, .padding = opts.padding, .dilation = opts.dilation, .groups = opts.groups};
  label_ = fmt::format("Conv2d({}->{}, {}x{})", in_, out_, kernel.h, kernel.w);
  const int64_t receptive = checked_mul(kernel.h, kernel.w, label_.c_str(), "the kernel size");
  const int64_t fan_in = checked_mul(in_ / opts.groups, receptive, label_.c_str(), "fan_in");
  const int64_t fan_out = checked_mul(out_, receptive, label_.c_str(), "fan_out");
  TensorOptions to{opts.dtype, opts.device};
  weight_ = register_parameter("weight", initialize({out_, in_ / opts.groups, kernel.h, kernel.w}, opts.weight_init,
                                                    fan_in, fan_out, to, label_ + " weight"));
  if (opts.bias)
    bias_ = register_parameter("bias", initialize({out_}, opts.bias_init, fan_in, fan_out, to, label_ + " bias"));
}

Tensor Conv2d::forward(const Tensor& x) { return conv2d(x, weight_, bias_, params_, label_.c_str()); }

Tensor Conv2d::forward_relu(const Tensor& x) {
  Conv2dParams p = params_;
  p.relu = true;
  return conv2d(x, weight_, bias_, p, label_.c_str());
}

std::string Conv2d::to_string() const {
  return fmt::format("Conv2d({}->{}, {}x{}{})", in_, out_, kernel_.h, kernel_.w,
                     options_str(size2_str(params_.stride), params_.padding.str(), size2_str(params_.dilation),
                                 params_.groups, bias_.defined()));
}

Conv1d::Conv1d(int64_t in_channels, int64_t out_channels, int64_t kernel, Conv1dOptions opts)
    : in_(in_channels), out_(out_channels), kernel_(kernel) {
  check_channels("Conv1d", in_, out_, opts.groups);
  NABLA_CHECK(kernel >= 1, "Conv1d: kernel size must be at least 1, got {}", kernel);
  params_ = {.stride = opts.stride, .padding = opts.padding, .dilation = opts.dilation, .groups = opts.groups};
  label_ = fmt::format("Conv1d({}->{}, {})", in_, out_, kernel);
  const int64_t fan_in = checked_mul(in_ / opts.groups, kernel, label_.c_str(), "fan_in");
  const int64_t fan_out = checked_mul(out_, kernel, label_.c_str(), "fan_out");
  TensorOptions to{opts.dtype, opts.device};
  weight_ = register_parameter("weight", initialize({out_, in_ / opts.groups, kernel}, opts.weight_init, fan_in,
                                                    fan_out, to, label_ + " weight"));
  if (opts.bias)
    bias_ = register_parameter("bias", initialize({out_}, opts.bias_init, fan_in, fan_out, to, label_ + " bias"));
}

Tensor Conv1d::forward(const Tensor& x) { return conv1d(x, weight_, bias_, params_, label_.c_str()); }

std::string Conv1d::to_string() const {
  const std::string pad = params_.padding.mode == Padding::Mode::explicit_amount ? std::to_string(params_.padding.w)
                                                                                 : params_.padding.str();
  return fmt::format("Conv1d({}->{}, {}{})", in_, out_, kernel_,
                     options_str(std::to_string(params_.stride), pad, std::to_string(params_.dilation),
                                 params_.groups, bias_.defined()));
}

}  // namespace nabla
