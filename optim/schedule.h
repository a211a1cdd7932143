// Learning-rate schedules: the learning rate as a function of a counter t = 0, 1, 2, ... (an
// epoch or a step: the caller decides; LearningRateScheduler in train/callbacks.h applies one
// per epoch or per step). Each is a small copyable value with `double operator()(int64_t t)`,
// so a lambda serves as well wherever a schedule is taken.
//
//   nabla::CosineDecay sched{.initial_lr = 1e-3, .total = 20, .warmup = 1};
//   opt.set_lr(sched(epoch));
//
// Formulas (lr0 = initial_lr):
//   StepDecay          lr0 * gamma^floor(t / step_size)
//   ExponentialDecay   lr0 * rate^(t / decay_steps)          (staircase: floor(t / decay_steps))
//   InverseTimeDecay   lr0 / (1 + rate * t / decay_steps)    (staircase: floor(t / decay_steps))
//   CosineDecay        t < warmup: lr0 * (t + 1) / warmup (a linear ramp that reaches lr0 at
//                      t = warmup - 1); then min_lr + (lr0 - min_lr) * (1 + cos(pi * u)) / 2 with
//                      u = min(1, (t - warmup) / (total - warmup)).
// Each checks its arguments when called and throws nabla::Error naming the schedule.
#pragma once

#include <nabla/export.h>

#include <cstdint>
#include <string>

namespace nabla {

struct NABLA_API StepDecay {
  double initial_lr = 0.01;
  int64_t step_size = 10;  // > 0
  double gamma = 0.1;      // >= 0
  double operator()(int64_t t) const;
  std::string to_string() const;
};

struct NABLA_API ExponentialDecay {
  double initial_lr = 0.01;
  double rate = 0.96;       // > 0
  int64_t decay_steps = 1;  // > 0
  bool staircase = false;
  double operator()(int64_t t) const;
  std::string to_string() const;
};

struct NABLA_API InverseTimeDecay {
  double initial_lr = 0.01;
  double rate = 0.5;        // >= 0
  int64_t decay_steps = 1;  // > 0
  bool staircase = false;
  double operator()(int64_t t) const;
  std::string to_string() const;
};

struct NABLA_API CosineDecay {
  double initial_lr = 0.01;
  int64_t total = 100;  // t at which the decay reaches min_lr; > warmup
  int64_t warmup = 0;   // >= 0
  double min_lr = 0;
  double operator()(int64_t t) const;
  std::string to_string() const;
};

}  // namespace nabla
