#include <nabla/core/anomaly.h>

#include <nabla/core/autograd.h>
#include <nabla/core/error.h>
#include <nabla/core/ops/elementwise.h>
#include <nabla/core/ops/reduce.h>
#include <nabla/core/ops/util.h>

#include <atomic>
#include <cmath>
#include <vector>

namespace nabla {

namespace {

std::atomic<bool> g_anomaly{false};
thread_local int64_t t_step = 0;
thread_local std::vector<std::string> t_layers;

std::string layer_text(const std::string& layer) {
  return layer.empty() ? std::string("(no layer)") : "in " + layer;
}

std::string values(int64_t n) { return n == 1 ? "1 non-finite value" : fmt::format("{} non-finite values", n); }

// "; its inputs were finite" or "; input 1 already had 3 non-finite values": whether the op made
// the bad values or passed them on (bad data, a parameter an optimizer step ruined).
std::string inputs_text(const std::vector<Tensor>& inputs, const char* what) {
  for (size_t k = 0; k < inputs.size(); ++k) {
    if (!inputs[k].defined()) continue;
    if (int64_t n = count_nonfinite(inputs[k]); n > 0)
      return fmt::format("; {} {} of shape {} already had {}", what, k, shape_str(inputs[k].shape()), values(n));
  }
  return fmt::format("; its {}s were finite", what);
}

}  // namespace

void detect_anomaly(bool on) { g_anomaly.store(on, std::memory_order_relaxed); }
bool anomaly_enabled() { return g_anomaly.load(std::memory_order_relaxed); }

int64_t anomaly_step() { return t_step; }
void set_anomaly_step(int64_t step) { t_step = step; }

AnomalyLayer::AnomalyLayer(std::string name) { t_layers.push_back(std::move(name)); }
AnomalyLayer::~AnomalyLayer() { t_layers.pop_back(); }

const std::string& anomaly_layer() {
  static const std::string none;
  return t_layers.empty() ? none : t_layers.back();
}

bool has_nonfinite(const Tensor& x) {
  detail::check_defined(x, "has_nonfinite", "x");
  if (!is_floating(x.dtype()) || x.numel() == 0) return false;
  NoGrad no_grad;
  Tensor d = x.detach();
  return !std::isfinite(sum(sub(d, d)).item());
}

int64_t count_nonfinite(const Tensor& x) {
  detail::check_defined(x, "count_nonfinite", "x");
  if (!is_floating(x.dtype()) || x.numel() == 0) return 0;
  NoGrad no_grad;
  Tensor d = x.detach();
  Tensor z = sub(d, d);  // 0 where finite, NaN where NaN or Inf
  return static_cast<int64_t>(sum(ne(z, z)).item());
}

namespace detail {

void anomaly_check_forward(const std::string& op, const std::string& layer, const std::vector<Tensor>& inputs,
                           const std::vector<Tensor*>& outputs) {
  for (size_t k = 0; k < outputs.size(); ++k) {
    const Tensor& y = *outputs[k];
    if (int64_t n = count_nonfinite(y); n > 0)
      throw Error(fmt::format("anomaly (forward, step {}): op '{}' {} produced {} (NaN or Inf) in output {} of shape {}{}",
                              t_step, op, layer_text(layer), values(n), k, shape_str(y.shape()),
                              inputs_text(inputs, "input")));
  }
}

void anomaly_check_backward(const std::string& op, const std::string& layer, const std::vector<Tensor>& inputs,
                            const std::vector<Tensor>& grad_outputs, const std::vector<Tensor>& grad_inputs) {
  for (size_t k = 0; k < grad_inputs.size(); ++k) {
    const Tensor& g = grad_inputs[k];
    if (!g.defined() || k >= inputs.size() || !inputs[k].defined() || !inputs[k].requires_grad()) continue;
    if (int64_t n = count_nonfinite(g); n > 0)
      throw Error(fmt::format(
          "anomaly (backward, step {}): the backward of op '{}' {} gave {} (NaN or Inf) in the gradient of input {} "
          "of shape {}{}",
          t_step, op, layer_text(layer), values(n), k, shape_str(g.shape()),
          inputs_text(grad_outputs, "incoming gradient")));
  }
}

void anomaly_step_done() { ++t_step; }

}  // namespace detail

}  // namespace nabla
