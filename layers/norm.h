// Batch normalization layers (PyTorch's BatchNorm1d / BatchNorm2d). In training mode each
// channel is normalized with the batch's statistics and the running statistics are updated
// (running = (1 - momentum) running + momentum batch, variance unbiased); in evaluation mode the
// running statistics are used. Parameters weight (1) and bias (0) when affine; buffers
// running_mean (0), running_var (1) and num_batches_tracked (int64 count of training batches),
// named as in PyTorch's state_dict.
#pragma once

#include <nabla/export.h>

#include <nabla/layers/module.h>

namespace nabla {

struct BatchNormOptions {
  double eps = 1e-5;
  double momentum = 0.1;
  bool affine = true;               // learnable weight and bias
  bool track_running_stats = true;  // false: batch statistics in evaluation too
  DType dtype = DType::float32;
  Device device = Device::cpu();
};

class NABLA_API BatchNorm : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  std::string to_string() const override;

  Tensor weight() const { return weight_; }  // undefined when not affine
  Tensor bias() const { return bias_; }
  Tensor running_mean() const { return running_mean_; }  // undefined when not tracking
  Tensor running_var() const { return running_var_; }
  int64_t num_features() const { return features_; }

 protected:
  BatchNorm(const char* type, int64_t num_features, BatchNormOptions opts, int64_t min_dim, int64_t max_dim);
  void on_state_loaded() override;

 private:
  const char* type_;
  int64_t features_;
  BatchNormOptions opts_;
  int64_t min_dim_, max_dim_;
  Tensor weight_, bias_, running_mean_, running_var_, num_batches_;
  int64_t batches_ = 0;  // host copy of num_batches_tracked, so counting never reads the device
  std::string label_;
};

// x: (n, c) or (n, c, l).
class NABLA_API BatchNorm1d : public BatchNorm {
 public:
  explicit BatchNorm1d(int64_t num_features, BatchNormOptions opts = {})
      : BatchNorm("BatchNorm1d", num_features, opts, 2, 3) {}
  std::string type_name() const override { return "BatchNorm1d"; }
};

// x: (n, c, h, w).
class NABLA_API BatchNorm2d : public BatchNorm {
 public:
  explicit BatchNorm2d(int64_t num_features, BatchNormOptions opts = {})
      : BatchNorm("BatchNorm2d", num_features, opts, 4, 4) {}
  std::string type_name() const override { return "BatchNorm2d"; }
};

}  // namespace nabla
