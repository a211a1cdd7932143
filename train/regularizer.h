// Weight penalties (Keras' kernel_regularizer): l1 * sum |w| + l2 * sum w^2, added to the
// training loss. Attach one to a layer's weights through Model::regularize:
//
//   model.regularize(model.layer(1), nabla::L2(1e-4));          // that layer's "weight"
//   model.regularize(dense.bias(), nabla::L1L2(1e-5, 1e-4));    // any parameter
#pragma once

#include <nabla/export.h>

#include <nabla/core/tensor.h>

#include <string>

namespace nabla {

struct NABLA_API Regularizer {
  double l1 = 0;
  double l2 = 0;

  // The penalty of w, a differentiable scalar on w's device and dtype.
  Tensor penalty(const Tensor& w) const;
  std::string to_string() const;
};

inline Regularizer L1(double l1) { return {l1, 0}; }
inline Regularizer L2(double l2) { return {0, l2}; }
inline Regularizer L1L2(double l1, double l2) { return {l1, l2}; }

}  // namespace nabla
