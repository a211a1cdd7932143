#include <nabla/layers/sequential.h>

#include <nabla/core/error.h>
#include <nabla/layers/activation.h>
#include <nabla/layers/conv.h>

#include <string_view>
#include <typeinfo>

namespace nabla {

Sequential& Sequential::push(std::shared_ptr<Module> layer) {
  register_module(std::to_string(children().size()), std::move(layer));
  return *this;
}

namespace {

// A Conv2d (exactly, not a subclass that may override forward) followed by a ReLU runs as one op
// whose ReLU the backend fuses (Conv2dParams::relu): the same values and gradients, one pass over
// the activations fewer. Not in anomaly mode, which checks and names each layer on its own.
Conv2d* fusable_conv(const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& layers, size_t i) {
  if (i + 1 >= layers.size() || anomaly_enabled()) return nullptr;
  const Module& a = *layers[i].second;
  const Module& b = *layers[i + 1].second;
  if (typeid(a) != typeid(Conv2d) || typeid(b) != typeid(ReLU)) return nullptr;
  return static_cast<Conv2d*>(layers[i].second.get());
}

}  // namespace

Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  const auto& layers = children();
  for (size_t i = 0; i < layers.size(); ++i) {
    try {
      if (Conv2d* conv = fusable_conv(layers, i)) {
        h = conv->forward_relu(h);
        ++i;  // the ReLU is done
      } else if (anomaly_enabled()) {
        AnomalyLayer layer(fmt::format("Sequential layer {} ({})", i, layers[i].second->to_string()));
        h = layers[i].second->forward(h);
      } else {
        h = layers[i].second->forward(h);
      }
    } catch (const Error& e) {
      // Say where in the model the failure happened; the layer's own message says what. An
      // anomaly-mode message already names this layer (the AnomalyLayer above).
      std::string where = fmt::format("Sequential layer {} ({})", i, layers[i].second->to_string());
      if (std::string_view(e.what()).find(where) != std::string_view::npos) throw;
      e.rethrow_with(fmt::format("{}: {}", where, e.what()));
    }
  }
  return h;
}

std::string Sequential::to_string() const {
  std::string s = "Sequential(";
  const auto& layers = children();
  for (size_t i = 0; i < layers.size(); ++i) s += (i ? ", " : "") + layers[i].second->to_string();
  return s + ")";
}

Module& Sequential::operator[](size_t i) const {
  NABLA_CHECK_INDEX(i < size(), "Sequential: index {} out of range for {} layers", i, size());
  return *children()[i].second;
}

}  // namespace nabla
