// Sequential: children applied in order; named "0", "1", … as in PyTorch.
//
//   nabla::Sequential model{nabla::Dense(784, 256), nabla::ReLU(), nabla::Dense(256, 10)};
#pragma once

#include <nabla/export.h>

#include <nabla/layers/module.h>

#include <concepts>

namespace nabla {

class NABLA_API Sequential : public Module {
 public:
  Sequential() = default;
  template <typename... Ms>
    requires(sizeof...(Ms) > 0 && !(sizeof...(Ms) == 1 && (std::same_as<std::decay_t<Ms>, Sequential> && ...)))
  explicit Sequential(Ms&&... layers) {
    (add(std::forward<Ms>(layers)), ...);
  }

  // Appends a layer (a value, or a shared_ptr to share it); returns *this.
  template <typename M>
  Sequential& add(M&& layer) {
    return push(share_module(std::forward<M>(layer)));
  }
  Sequential& push(std::shared_ptr<Module> layer);

  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Sequential"; }
  std::string to_string() const override;

  size_t size() const { return children().size(); }
  Module& operator[](size_t i) const;
};

}  // namespace nabla
