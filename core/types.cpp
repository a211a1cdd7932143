#include <nabla/core/types.h>

#include <nabla/core/backend.h>
#include <nabla/core/error.h>

namespace nabla {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::float32: return 4;
    case DType::float64: return 8;
    case DType::int32: return 4;
    case DType::int64: return 8;
  }
  NABLA_ASSERT(false);
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::float32: return "float32";
    case DType::float64: return "float64";
    case DType::int32: return "int32";
    case DType::int64: return "int64";
  }
  return "?";
}

Device Device::best() {
  if (device_count(Kind::CUDA) > 0) return cuda(0);
  return cpu();
}

Device Device::parse(const std::string& s) {
  if (s == "cpu") return cpu();
  if (s == "best") return best();
  if (s == "cuda") return cuda(0);
  if (s.rfind("cuda:", 0) == 0) {
    try {
      size_t used = 0;
      int i = std::stoi(s.substr(5), &used);
      if (used == s.size() - 5 && i >= 0) return cuda(i);
    } catch (const std::exception&) {
    }
  }
  fail("Device: cannot parse '{}', expected cpu, cuda, cuda:<index> or best", s);
}

std::string Device::str() const {
  return is_cpu() ? std::string("cpu") : fmt::format("cuda:{}", index);
}

int64_t numel_of(const Shape& s, const char* op) {
  int64_t n = 1;
  bool overflow = false;
  for (int64_t d : s) {
    if (d == 0) return 0;
    overflow |= __builtin_mul_overflow(n, d, &n);
  }
  if (overflow)
    fail("{}: shape {} has more elements than an int64 can count (at most 2^63 - 1)", op, shape_str(s));
  return n;
}

int64_t nbytes_of(const Shape& s, DType dtype, const char* op) {
  const int64_t n = numel_of(s, op), size = static_cast<int64_t>(dtype_size(dtype));
  int64_t bytes = 0;
  if (__builtin_mul_overflow(n, size, &bytes))
    fail("{}: shape {} of {} is {} elements of {} bytes, more bytes than an int64 can count", op, shape_str(s),
         dtype_name(dtype), n, size);
  return bytes;
}

int64_t checked_mul(int64_t a, int64_t b, const char* op, const char* what) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) fail("{}: {} overflows int64 ({} * {})", op, what, a, b);
  return r;
}

int64_t checked_add(int64_t a, int64_t b, const char* op, const char* what) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) fail("{}: {} overflows int64 ({} + {})", op, what, a, b);
  return r;
}

Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (size_t i = s.size(); i-- > 0;) {
    st[i] = acc;
    acc *= s[i] > 0 ? s[i] : 1;
  }
  return st;
}

std::string shape_str(const Shape& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da != db && da != 1 && db != 1)
      fail<ShapeError>("{}: shapes {} and {} do not broadcast (dimension {}: {} vs {})", op, shape_str(a),
                       shape_str(b), i, da, db);
    out[i] = da == 1 ? db : da;
  }
  (void)numel_of(out, op);  // [2^32, 1] with [1, 2^32] broadcasts to more than int64 counts
  return out;
}

int64_t normalize_axis(int64_t axis, int64_t ndim, const char* op) {
  int64_t a = axis < 0 ? axis + ndim : axis;
  // Strict for 0-d tensors too: they have no axis, and callers index the shape with the result.
  NABLA_CHECK_INDEX(a >= 0 && a < ndim, "{}: axis {} out of range for a tensor of {} dimensions", op, axis, ndim);
  return a;
}

}  // namespace nabla
