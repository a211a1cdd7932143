// Element types, devices and shapes: the vocabulary shared by Tensor, ops and kernels.
#pragma once

#include <nabla/export.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace nabla {

enum class DType : uint8_t { float32, float64, int32, int64 };

NABLA_API size_t dtype_size(DType t);
NABLA_API const char* dtype_name(DType t);
inline bool is_floating(DType t) { return t == DType::float32 || t == DType::float64; }

template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::float32; }
template <> constexpr DType dtype_of<double>() { return DType::float64; }
template <> constexpr DType dtype_of<int32_t>() { return DType::int32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::int64; }

// A device: {CPU | CUDA, index}. Device::best() is CUDA 0 when a GPU is present, else the CPU.
struct NABLA_API Device {
  enum class Kind : uint8_t { CPU, CUDA };
  Kind kind = Kind::CPU;
  int index = 0;

  static Device cpu() { return {Kind::CPU, 0}; }
  static Device cuda(int index = 0) { return {Kind::CUDA, index}; }
  static Device best();
  // Parses "cpu", "cuda", "cuda:1", "best".
  static Device parse(const std::string& s);

  bool is_cpu() const { return kind == Kind::CPU; }
  bool is_cuda() const { return kind == Kind::CUDA; }
  bool operator==(const Device& o) const { return kind == o.kind && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const;
};

using Shape = std::vector<int64_t>;

// Product of the dimensions. Throws naming `op` and the shape when it overflows int64 (a shape
// that no tensor can have); a shape with a 0 has 0 elements whatever the others.
NABLA_API int64_t numel_of(const Shape& s, const char* op = "numel");
// Bytes of a contiguous `dtype` tensor of `shape`; throws naming `op`, the shape and the dtype
// when the element count or the byte count overflows int64.
NABLA_API int64_t nbytes_of(const Shape& s, DType dtype, const char* op);
// a * b and a + b, or an error naming `op` and `what` ("output height") when they overflow int64.
NABLA_API int64_t checked_mul(int64_t a, int64_t b, const char* op, const char* what);
NABLA_API int64_t checked_add(int64_t a, int64_t b, const char* op, const char* what);
NABLA_API Shape contiguous_strides(const Shape& s);
NABLA_API std::string shape_str(const Shape& s);
// NumPy broadcasting of two shapes; throws naming `op` and both shapes when they do not broadcast.
NABLA_API Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);
// Normalizes a possibly negative axis against `ndim`; throws naming `op` when out of range.
NABLA_API int64_t normalize_axis(int64_t axis, int64_t ndim, const char* op);

}  // namespace nabla

template <> struct fmt::formatter<nabla::DType> : fmt::formatter<std::string_view> {
  auto format(nabla::DType t, format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(nabla::dtype_name(t), ctx);
  }
};
template <> struct fmt::formatter<nabla::Device> : fmt::formatter<std::string> {
  auto format(const nabla::Device& d, format_context& ctx) const {
    return fmt::formatter<std::string>::format(d.str(), ctx);
  }
};
