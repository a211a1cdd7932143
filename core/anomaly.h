// Anomaly mode: find the op that first produced a NaN or an infinity, forward or backward.
//
//   nabla::DetectAnomaly on;        // or nabla::detect_anomaly(true) for the whole process
//   auto loss = loss_fn(model(x), y);
//   loss.backward();                // throws nabla::Error at the first non-finite value
//
// When on, every op that is recorded on the tape (grad mode on and an input that requires a
// gradient) has its outputs checked for NaN/Inf right after it runs, and run_backward checks
// every gradient a backward function returns, before it is passed on. The first bad value
// throws nabla::Error naming
//   - the op (Node::op: "linear", "log", "conv2d", ...),
//   - the layer whose forward was running when the op was recorded (see AnomalyLayer; a
//     Sequential names its children "Sequential layer 2 (Dense(784->256, bias))"),
//   - the output or input index, its shape, and how many of its values are NaN or Inf,
//   - the step: anomaly_step() of the calling thread (below),
// e.g.
//   "anomaly (forward, step 3): op 'log' in Sequential layer 1 (Log) produced 2 non-finite
//    values (NaN or Inf) in output 0 of shape [4, 3]; its inputs were finite"
//   "anomaly (backward, step 0): the backward of op 'sqrt' (no layer) gave 1 non-finite value
//    (NaN or Inf) in the gradient of input 0 of shape [2]; the incoming gradients were finite"
//
// Each check reads one number from the device (a synchronization on CUDA) and costs a few
// elementwise passes over the tensor, so anomaly mode is for debugging. When off (the default)
// it costs one relaxed atomic load per recorded op and per backward node. Ops that are not
// recorded (under NoGrad, or with no input that requires a gradient) are not checked.
#pragma once

#include <nabla/export.h>

#include <nabla/core/tensor.h>

#include <cstdint>
#include <string>

namespace nabla {

// Process-wide switch (all threads): off by default.
NABLA_API void detect_anomaly(bool on);
NABLA_API bool anomaly_enabled();

// The step that anomaly messages name, per thread: the number of backward() calls completed on
// the calling thread (so during the forward and backward of the k-th training step, counted
// from 0, it is k), unless set. set_anomaly_step(n) sets it (e.g. to a global step of your own,
// or to resume counting after a checkpoint); it still advances by one after each backward().
NABLA_API int64_t anomaly_step();
NABLA_API void set_anomaly_step(int64_t step);

// Turns anomaly mode on (or off) for its lifetime, then restores the previous setting.
class DetectAnomaly {
 public:
  explicit DetectAnomaly(bool on = true) : prev_(anomaly_enabled()) { detect_anomaly(on); }
  ~DetectAnomaly() { detect_anomaly(prev_); }
  DetectAnomaly(const DetectAnomaly&) = delete;
  DetectAnomaly& operator=(const DetectAnomaly&) = delete;

 private:
  bool prev_;
};

// Names the layer that ops recorded on this thread during its lifetime belong to (innermost
// wins). Module::operator() and Sequential open one when anomaly mode is on; so can user code
// around a block of ops.
class NABLA_API AnomalyLayer {
 public:
  explicit AnomalyLayer(std::string name);
  ~AnomalyLayer();
  AnomalyLayer(const AnomalyLayer&) = delete;
  AnomalyLayer& operator=(const AnomalyLayer&) = delete;
};
// The innermost open AnomalyLayer's name on this thread, or "" when none.
NABLA_API const std::string& anomaly_layer();

// True when a floating-point tensor holds a NaN or an infinity (false for integer dtypes and
// empty tensors). Two passes and one read of a scalar: sum(x - x) is NaN exactly when x has a
// NaN or an Inf. Any device; synchronizes like item(). Not recorded on the tape. Meant for a
// once-per-step check such as TerminateOnNaN on the loss.
NABLA_API bool has_nonfinite(const Tensor& x);

// The number of NaN and Inf values of a floating-point tensor (0 for integer dtypes). Exact up
// to 2^24 bad values in float32. Not recorded on the tape.
NABLA_API int64_t count_nonfinite(const Tensor& x);

namespace detail {
// Called by record() and run_backward() when anomaly mode is on; throw on a bad value.
NABLA_API void anomaly_check_forward(const std::string& op, const std::string& layer,
                           const std::vector<Tensor>& inputs, const std::vector<Tensor*>& outputs);
NABLA_API void anomaly_check_backward(const std::string& op, const std::string& layer,
                            const std::vector<Tensor>& inputs, const std::vector<Tensor>& grad_outputs,
                            const std::vector<Tensor>& grad_inputs);
NABLA_API void anomaly_step_done();
}  // namespace detail

}  // namespace nabla
