#include <nabla/optim/schedule.h>

#include <nabla/core/error.h>

#include <algorithm>
#include <cmath>
#include <numbers>

namespace nabla {

static void check_t(int64_t t, const char* name) { NABLA_CHECK(t >= 0, "{}: t must be >= 0, got {}", name, t); }

double StepDecay::operator()(int64_t t) const {
  check_t(t, "StepDecay");
  NABLA_CHECK(step_size > 0, "StepDecay: step_size must be > 0, got {}", step_size);
  check_number(gamma, "StepDecay", "gamma");
  NABLA_CHECK(gamma >= 0, "StepDecay: gamma must be >= 0, got {}", gamma);
  return initial_lr * std::pow(gamma, static_cast<double>(t / step_size));
}

std::string StepDecay::to_string() const {
  return fmt::format("StepDecay(lr={}, step_size={}, gamma={})", initial_lr, step_size, gamma);
}

// t / decay_steps, floored when staircase.
static double decay_progress(int64_t t, int64_t decay_steps, bool staircase, const char* name) {
  check_t(t, name);
  NABLA_CHECK(decay_steps > 0, "{}: decay_steps must be > 0, got {}", name, decay_steps);
  return staircase ? static_cast<double>(t / decay_steps) : static_cast<double>(t) / static_cast<double>(decay_steps);
}

double ExponentialDecay::operator()(int64_t t) const {
  check_number(rate, "ExponentialDecay", "rate");
  NABLA_CHECK(rate > 0, "ExponentialDecay: rate must be > 0, got {}", rate);
  return initial_lr * std::pow(rate, decay_progress(t, decay_steps, staircase, "ExponentialDecay"));
}

std::string ExponentialDecay::to_string() const {
  return fmt::format("ExponentialDecay(lr={}, rate={}, decay_steps={}{})", initial_lr, rate, decay_steps,
                     staircase ? ", staircase" : "");
}

double InverseTimeDecay::operator()(int64_t t) const {
  check_number(rate, "InverseTimeDecay", "rate");
  NABLA_CHECK(rate >= 0, "InverseTimeDecay: rate must be >= 0, got {}", rate);
  return initial_lr / (1 + rate * decay_progress(t, decay_steps, staircase, "InverseTimeDecay"));
}

std::string InverseTimeDecay::to_string() const {
  return fmt::format("InverseTimeDecay(lr={}, rate={}, decay_steps={}{})", initial_lr, rate, decay_steps,
                     staircase ? ", staircase" : "");
}

double CosineDecay::operator()(int64_t t) const {
  check_t(t, "CosineDecay");
  NABLA_CHECK(warmup >= 0 && total > warmup, "CosineDecay: needs 0 <= warmup < total, got warmup {}, total {}",
              warmup, total);
  if (t < warmup) return initial_lr * static_cast<double>(t + 1) / static_cast<double>(warmup);
  const double u = std::min(1.0, static_cast<double>(t - warmup) / static_cast<double>(total - warmup));
  return min_lr + (initial_lr - min_lr) * 0.5 * (1 + std::cos(std::numbers::pi * u));
}

std::string CosineDecay::to_string() const {
  return fmt::format("CosineDecay(lr={}, total={}, warmup={}, min_lr={})", initial_lr, total, warmup, min_lr);
}

}  // namespace nabla
