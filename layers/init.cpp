#include <nabla/layers/init.h>

#include <nabla/core/error.h>

#include <cmath>

namespace nabla {

const char* init_name(Init kind) {
  switch (kind) {
    case Init::torch_default: return "torch_default";
    case Init::glorot_uniform: return "glorot_uniform";
    case Init::glorot_normal: return "glorot_normal";
    case Init::he_uniform: return "he_uniform";
    case Init::he_normal: return "he_normal";
    case Init::lecun_uniform: return "lecun_uniform";
    case Init::lecun_normal: return "lecun_normal";
    case Init::zeros: return "zeros";
    case Init::ones: return "ones";
  }
  return "?";
}

static Tensor initialize_unnamed(const Shape& shape, Init kind, int64_t fan_in, int64_t fan_out, TensorOptions opts) {
  NABLA_CHECK(fan_in > 0 && fan_out > 0, "initialize({}): fan_in {} and fan_out {} must be positive",
              init_name(kind), fan_in, fan_out);
  const double fi = static_cast<double>(fan_in), fo = static_cast<double>(fan_out);
  auto uniform = [&](double a) { return rand(shape, opts, -a, a); };
  auto normal = [&](double var) { return randn(shape, opts, 0.0, std::sqrt(var)); };
  switch (kind) {
    case Init::torch_default: return uniform(1.0 / std::sqrt(fi));
    case Init::glorot_uniform: return uniform(std::sqrt(6.0 / (fi + fo)));
    case Init::glorot_normal: return normal(2.0 / (fi + fo));
    case Init::he_uniform: return uniform(std::sqrt(6.0 / fi));
    case Init::he_normal: return normal(2.0 / fi);
    case Init::lecun_uniform: return uniform(std::sqrt(3.0 / fi));
    case Init::lecun_normal: return normal(1.0 / fi);
    case Init::zeros: return zeros(shape, opts);
    case Init::ones: return ones(shape, opts);
  }
  fail("initialize: unknown initializer");
}

Tensor initialize(const Shape& shape, Init kind, int64_t fan_in, int64_t fan_out, TensorOptions opts,
                  const std::string& who) {
  if (who.empty()) return initialize_unnamed(shape, kind, fan_in, fan_out, opts);
  try {
    return initialize_unnamed(shape, kind, fan_in, fan_out, opts);
  } catch (const Error& e) {
    e.rethrow_with(fmt::format("{}: {}", who, e.what()));
  }
}

}  // namespace nabla
