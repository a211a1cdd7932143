#include <nabla/layers/pool.h>

#include <nabla/core/error.h>

namespace nabla {

namespace {

std::string pool_str(const char* type, Size2 k, const Pool2dParams& p, bool avg) {
  std::string s = fmt::format("{}({}x{}", type, k.h, k.w);
  if (!(p.stride.h == 0 && p.stride.w == 0) && !(p.stride == k)) s += fmt::format(", stride ({}, {})", p.stride.h, p.stride.w);
  if (p.padding.str() != "0") s += ", padding " + p.padding.str();
  if (avg && !p.count_include_pad) s += ", exclude padding";
  return s + ")";
}

void check_kernel(const char* type, Size2 k) {
  NABLA_CHECK(k.h >= 1 && k.w >= 1, "{}: kernel size must be at least 1, got ({}, {})", type, k.h, k.w);
}

}  // namespace

MaxPool2d::MaxPool2d(Size2 kernel, Pool2dParams opts)
    : kernel_(kernel), params_(opts), label_(fmt::format("MaxPool2d({}x{})", kernel.h, kernel.w)) {
  check_kernel("MaxPool2d", kernel);
}

Tensor MaxPool2d::forward(const Tensor& x) { return max_pool2d(x, kernel_, params_, label_.c_str()); }

std::string MaxPool2d::to_string() const { return pool_str("MaxPool2d", kernel_, params_, false); }

AvgPool2d::AvgPool2d(Size2 kernel, Pool2dParams opts)
    : kernel_(kernel), params_(opts), label_(fmt::format("AvgPool2d({}x{})", kernel.h, kernel.w)) {
  check_kernel("AvgPool2d", kernel);
}

Tensor AvgPool2d::forward(const Tensor& x) { return avg_pool2d(x, kernel_, params_, label_.c_str()); }

std::string AvgPool2d::to_string() const { return pool_str("AvgPool2d", kernel_, params_, true); }

Tensor GlobalAvgPool2d::forward(const Tensor& x) { return global_avg_pool2d(x, "GlobalAvgPool2d"); }

}  // namespace nabla
