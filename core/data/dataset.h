// In-memory datasets of (input, label) pairs, and the readers for MNIST and Fashion-MNIST.
//
//   auto data = nabla::data::fashion_mnist();   // data.train: 60000, data.test: 10000
//   data.train.x   // float32 [N, 1, 28, 28] in [0, 1] (NCHW; Flatten() makes it [N, 784])
//   data.train.y   // int64 [N], class indices 0..9
#pragma once

#include <nabla/export.h>

#include <nabla/core/data/idx.h>
#include <nabla/core/tensor.h>

#include <cstdint>
#include <string>

namespace nabla::data {

// Samples along axis 0 of x and y: sample i is (x[i], y[i]). x and y are shared handles, so
// copying a Dataset is cheap and shares the data.
struct NABLA_API Dataset {
  Tensor x;  // [N, ...] inputs
  Tensor y;  // [N, ...] targets (class indices: int64 [N])

  // N; throws when x and y disagree on it or either is undefined or 0-dimensional.
  int64_t size() const;
  // A copy with x = (x - mean) / std; x must be float32 or float64 on the CPU; std > 0.
  Dataset normalize(double mean, double std) const;
  // Samples [begin, end), copied (CPU) or sliced (other devices); 0 <= begin <= end <= size().
  Dataset subset(int64_t begin, int64_t end) const;
  // The first min(n, size()) samples; n >= 0.
  Dataset take(int64_t n) const;
};

struct Split {
  Dataset train;
  Dataset test;
};

// Fashion-MNIST from `dir`, or when empty from $NABLA_FASHION_MNIST, or else from
// /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist). Reads
// {train,t10k}-{images-idx3,labels-idx1}-ubyte, with or without .gz. Images must be 28x28 and
// labels 0..9; the image and label counts of each split must agree.
NABLA_API Split fashion_mnist(const std::string& dir = "");

// The original MNIST, same files and layout, from `dir`, or $NABLA_MNIST, or else
// /usr/share/datasets/mnist.
NABLA_API Split mnist(const std::string& dir = "");

// One (images, labels) pair of IDX files: x float32 [N, 1, rows, cols] in [0, 1], y int64 [N]
// in [0, num_classes). Throws naming both files when their counts differ.
NABLA_API Dataset idx_dataset(const std::string& images_path, const std::string& labels_path,
                    int64_t num_classes, const IdxOptions& opts = {});

}  // namespace nabla::data
