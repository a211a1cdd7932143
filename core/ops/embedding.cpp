#include <nabla/core/ops/embedding.h>

#include <nabla/core/autograd.h>
#include <nabla/core/ops/util.h>

namespace nabla {

using detail::be;

Tensor embedding(const Tensor& indices_in, const Tensor& weight, int64_t padding_idx, const char* name) {
  detail::check_defined(indices_in, name, "indices");
  detail::check_float(weight, name, "weight");
  NABLA_CHECK_DTYPE(indices_in.dtype() == DType::int64, "{}: indices have dtype {}, expected int64 (token ids)", name,
                    indices_in.dtype());
  NABLA_CHECK(indices_in.device() == weight.device(), "{}: indices are on {} but the weight is on {}", name,
              indices_in.device(), weight.device());
  NABLA_CHECK_SHAPE(weight.dim() == 2, "{}: weight has shape {}, expected [num_embeddings, dim]", name,
                    shape_str(weight.shape()));
  const int64_t num = weight.shape()[0], dim = weight.shape()[1];
  NABLA_CHECK_INDEX(padding_idx < num && padding_idx >= -1, "{}: padding_idx {} is out of range for {} embeddings",
                    name, padding_idx, num);
  const Tensor idx = indices_in.contiguous();
  const Tensor w = weight.contiguous();
  const int64_t n = idx.numel();
  Shape out_shape = idx.shape();
  out_shape.push_back(dim);
  Tensor y = Tensor::empty(out_shape, w.options(), name);
  if (n > 0) {
    be(w).check_indices(idx.data<int64_t>(), n, num, name, IndexKind::row);
    if (dim > 0) be(w).embedding_forward(w.dtype(), y.data_ptr(), w.data_ptr(), idx.data<int64_t>(), n, num, dim);
  }
  if (needs_grad({&weight})) {
    const Shape wshape = weight.shape();
    const TensorOptions wo = w.options();
    record("embedding", {weight}, {&y}, [idx, wshape, wo, n, padding_idx](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      Tensor dw = Tensor::empty(wshape, wo);
      if (n == 0 || wshape[1] == 0) {
        dw.fill_(0);
      } else {
        be(dw).embedding_backward(dw.dtype(), dw.data_ptr(), g[0].data_ptr(), idx.data<int64_t>(), n, wshape[0],
                                  wshape[1], padding_idx);
      }
      return {dw};
    });
  }
  return y;
}

}  // namespace nabla
