// Model::build (the shape pass) and Model::summary.
#include <nabla/train/model.h>

#include <nabla/core/autograd.h>
#include <nabla/core/error.h>

#include <algorithm>

namespace nabla {

namespace {

// "[N, 32, 28, 28]": the batch axis as N.
std::string batch_shape_str(const Shape& s) {
  if (s.empty()) return "[]";
  std::string out = "[N";
  for (size_t i = 1; i < s.size(); ++i) out += fmt::format(", {}", s[i]);
  return out + "]";
}

// 1234567 -> "1,234,567".
std::string grouped(int64_t n) {
  const std::string digits = std::to_string(n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && digits[i - 1] != '-' && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

int64_t floating_buffer_count(const Module& m) {
  int64_t n = 0;
  for (const Tensor& b : m.buffers())
    if (is_floating(b.dtype())) n += b.numel();
  return n;
}

}  // namespace

void Model::shape_pass(const Shape& sample_shape, DType dtype, const char* who) {
  NoGrad no_grad;
  bool was_training = module_->is_training();
  module_->eval();
  struct Restore {
    Module& m;
    bool on;
    ~Restore() { m.train(on); }
  } restore{*module_, was_training};

  Shape batch_shape{2};
  batch_shape.insert(batch_shape.end(), sample_shape.begin(), sample_shape.end());
  Tensor h = zeros(batch_shape, {.dtype = dtype, .device = device_});
  std::vector<LayerShape> shapes;
  if (auto* seq = dynamic_cast<Sequential*>(module_.get())) {
    const auto& layers = seq->children();
    for (size_t i = 0; i < layers.size(); ++i) {
      try {
        h = layers[i].second->forward(h);
      } catch (const Error& e) {
        e.rethrow_with(fmt::format("{}: layer {} ({}): {}", who, i, layers[i].second->to_string(), e.what()));
      }
      shapes.push_back({layers[i].first, h.shape()});
    }
  } else {
    try {
      h = module_->forward(h);
    } catch (const Error& e) {
      e.rethrow_with(fmt::format("{}: {}: {}", who, module_->to_string(), e.what()));
    }
    shapes.push_back({"", h.shape()});
  }
  input_shape_ = batch_shape;
  input_dtype_ = dtype;
  layer_shapes_ = std::move(shapes);
  output_shape_ = h.shape();
}

Model& Model::build(const Shape& sample_shape, DType dtype) {
  UseGuard use(*this, "build");
  shape_pass(sample_shape, dtype, "build");
  return *this;
}

std::string Model::summary(const Shape& sample_shape, DType dtype, std::FILE* out) {
  UseGuard use(*this, "summary");
  shape_pass(sample_shape, dtype, "summary");
  return summary(out);
}

std::string Model::summary(std::FILE* out) const {
  UseGuard use(*this, "summary");
  struct Row {
    std::string name, type, shape;
    int64_t params;
  };
  std::vector<Row> rows;
  auto shape_of = [&](size_t i) { return i < layer_shapes_.size() ? batch_shape_str(layer_shapes_[i].shape) : "?"; };
  if (auto* seq = dynamic_cast<Sequential*>(module_.get())) {
    const auto& layers = seq->children();
    for (size_t i = 0; i < layers.size(); ++i)
      rows.push_back({layers[i].first, layers[i].second->to_string(), shape_of(i),
                      layers[i].second->num_parameters() + floating_buffer_count(*layers[i].second)});
  } else {
    rows.push_back({"", module_->to_string(), shape_of(0), module_->num_parameters() + floating_buffer_count(*module_)});
  }
  int64_t trainable = 0, frozen = 0;
  for (const Tensor& p : module_->parameters()) (p.requires_grad() ? trainable : frozen) += p.numel();
  frozen += floating_buffer_count(*module_);

  size_t wn = 5, wt = 4, ws = 12, wp = 7;
  for (const Row& r : rows) {
    wn = std::max(wn, r.name.size());
    wt = std::max(wt, r.type.size());
    ws = std::max(ws, r.shape.size());
    wp = std::max(wp, grouped(r.params).size());
  }
  wt = std::min<size_t>(wt, 60);
  const size_t width = wn + wt + ws + wp + 6;
  std::string s = fmt::format("Model: {}", module_->type_name());
  if (built()) s += fmt::format(", input {} {}", batch_shape_str(input_shape_), input_dtype_);
  s += '\n';
  s.append(width, '=').append(1, '\n');
  s += fmt::format("{:<{}}  {:<{}}  {:<{}}  {:>{}}\n", "Layer", wn, "Type", wt, "Output shape", ws, "Param #", wp);
  s.append(width, '-').append(1, '\n');
  for (const Row& r : rows) {
    std::string type = r.type.size() > wt ? r.type.substr(0, wt - 3) + "..." : r.type;
    s += fmt::format("{:<{}}  {:<{}}  {:<{}}  {:>{}}\n", r.name, wn, type, wt, r.shape, ws, grouped(r.params), wp);
  }
  s.append(width, '=').append(1, '\n');
  s += fmt::format("Total params: {}\nTrainable params: {}\nNon-trainable params: {}\n", grouped(trainable + frozen),
                   grouped(trainable), grouped(frozen));
  if (!built()) s += "(output shapes come from a shape pass: call summary(sample_shape), build() or fit() first)\n";
  if (out) {
    fmt::print(out, "{}", s);
    std::fflush(out);
  }
  return s;
}

}  // namespace nabla
