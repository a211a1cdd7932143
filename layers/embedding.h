// Embedding (PyTorch's Embedding): a table of num_embeddings vectors of size dim, looked up by
// int64 ids of any shape: (*) -> (*, dim). Initialized N(0, 1), as PyTorch; the row padding_idx
// (when given) starts at zero and is never updated by the gradient.
#pragma once

#include <nabla/export.h>

#include <nabla/layers/module.h>

namespace nabla {

struct EmbeddingOptions {
  int64_t padding_idx = -1;  // -1: none
  DType dtype = DType::float32;
  Device device = Device::cpu();
};

class NABLA_API Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t dim, EmbeddingOptions opts = {});
  Tensor forward(const Tensor& ids) override;
  std::string type_name() const override { return "Embedding"; }
  std::string to_string() const override;

  Tensor weight() const { return weight_; }

 private:
  int64_t num_, dim_, padding_idx_;
  Tensor weight_;
  std::string label_;
};

}  // namespace nabla
