#include <nabla/layers/sequential.h>

#include <nabla/core/error.h>

#include <string_view>

namespace nabla {

Sequential& Sequential::push(std::shared_ptr<Module> layer) {
  register_module(std::to_string(children().size()), std::move(layer));
  return *this;
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  const auto& layers = children();
  for (size_t i = 0; i < layers.size(); ++i) {
    try {
      if (anomaly_enabled()) {
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
      throw Error(fmt::format("{}: {}", where, e.what()));
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
  NABLA_CHECK(i < size(), "Sequential: index {} out of range for {} layers", i, size());
  return *children()[i].second;
}

}  // namespace nabla
