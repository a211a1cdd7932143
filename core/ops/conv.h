// Convolutions over NCHW (2-D) and NCL (1-D) tensors, PyTorch's conventions: the weight is
// (out_channels, in_channels / groups, kh, kw), the product is a cross-correlation.
// Differentiable in the input, the weight and the bias; float32 (CPU and CUDA) and float64 (CPU).
#pragma once

#include <nabla/export.h>

#include <nabla/core/tensor.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace nabla {

// A pair (height, width), from one number for both or from two.
struct Size2 {
  int64_t h = 1, w = 1;
  Size2(int64_t v) : h(v), w(v) {}  // NOLINT: implicit on purpose, {.stride = 2}
  Size2(int64_t h_, int64_t w_) : h(h_), w(w_) {}
  bool operator==(const Size2&) const = default;
};

// Padding of a convolution or pooling: explicit amounts (one number or (h, w)), or a mode:
// "same" (output size = ceil(input / stride); for stride 1 the output has the input's size;
// when the total padding is odd the extra row/column goes at the bottom/right, as in PyTorch and
// TensorFlow) or "valid" (no padding).
struct NABLA_API Padding {
  enum class Mode : uint8_t { explicit_amount, same, valid };
  Mode mode = Mode::explicit_amount;
  int64_t h = 0, w = 0;

  Padding(int64_t v) : h(v), w(v) {}  // NOLINT
  Padding(int64_t h_, int64_t w_) : h(h_), w(w_) {}
  // "same" or "valid"; anything else throws. Literals convert implicitly ({.padding = "same"});
  // the array form keeps a literal 0 meaning "no padding" rather than a null string.
  template <size_t N>
  Padding(const char (&mode)[N]) : Padding(std::string_view(mode, N - 1)) {}  // NOLINT
  explicit Padding(std::string_view mode);
  static Padding same() { return Padding("same"); }
  static Padding valid() { return Padding("valid"); }
  std::string str() const;  // "1", "(1, 2)", "same", "valid"
};

struct Conv2dParams {
  Size2 stride = 1;
  Padding padding = 0;
  Size2 dilation = 1;
  int64_t groups = 1;
  // relu(conv2d(...)) in one op: fused into the convolution where the backend can (the CPU's: no
  // separate pass over the output, dy masked on its way into the backward), composed of the two
  // ops otherwise. The same values and gradients as the two ops. Sequential sets it for a Conv2d
  // followed by a ReLU.
  bool relu = false;
};

// x: (n, c, h, w), weight: (k, c / groups, kh, kw), bias: (k) or undefined -> (n, k, oh, ow).
// `name` names the layer in error messages ("Conv2d(1->32, 3x3)").
NABLA_API Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias = {},
              const Conv2dParams& p = {}, const char* name = "conv2d");

struct Conv1dParams {
  int64_t stride = 1;
  Padding padding = 0;  // the w part is used; "same" and "valid" as for conv2d
  int64_t dilation = 1;
  int64_t groups = 1;
};

// x: (n, c, l), weight: (k, c / groups, kl), bias: (k) or undefined -> (n, k, ol).
NABLA_API Tensor conv1d(const Tensor& x, const Tensor& weight, const Tensor& bias = {},
              const Conv1dParams& p = {}, const char* name = "conv1d");

}  // namespace nabla
