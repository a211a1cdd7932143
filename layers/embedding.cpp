#include <nabla/layers/embedding.h>

#include <nabla/core/autograd.h>
#include <nabla/core/error.h>
#include <nabla/core/ops/embedding.h>

namespace nabla {

Embedding::Embedding(int64_t num_embeddings, int64_t dim, EmbeddingOptions opts)
    : num_(num_embeddings), dim_(dim), padding_idx_(opts.padding_idx) {
  NABLA_CHECK(num_ > 0 && dim_ > 0, "Embedding: num_embeddings and dim must be positive, got {} and {}", num_, dim_);
  NABLA_CHECK_INDEX(padding_idx_ >= -1 && padding_idx_ < num_,
                    "Embedding: padding_idx {} is out of range for {} embeddings", padding_idx_, num_);
  label_ = fmt::format("Embedding({}, {})", num_, dim_);
  Tensor w;
  try {
    w = randn({num_, dim_}, {.dtype = opts.dtype, .device = opts.device});
  } catch (const Error& e) {
    // Out of memory (kept an OutOfMemoryError), or more elements than int64 counts.
    e.rethrow_with(fmt::format("{} weight: {}", label_, e.what()));
  }
  if (padding_idx_ >= 0) {
    NoGrad ng;
    w.slice(0, padding_idx_, padding_idx_ + 1).fill_(0);
  }
  weight_ = register_parameter("weight", w);
}

Tensor Embedding::forward(const Tensor& ids) { return embedding(ids, weight_, padding_idx_, label_.c_str()); }

std::string Embedding::to_string() const {
  return padding_idx_ >= 0 ? fmt::format("Embedding({}, {}, padding_idx {})", num_, dim_, padding_idx_) : label_;
}

}  // namespace nabla
