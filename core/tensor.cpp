#include <nabla/core/tensor.h>

#include <nabla/core/autograd.h>
#include <nabla/core/backend.h>
#include <nabla/core/error.h>
#include <nabla/core/ops.h>
#include <nabla/core/ops/util.h>

#include <cmath>
#include <cstring>
#include <mutex>
#include <sstream>

namespace nabla {

using detail::be;
using detail::make_layout;

// ---- Storage -------------------------------------------------------------------------------

Storage::Storage(Device device, size_t nbytes) : device_(device), nbytes_(nbytes) {
  data_ = backend(device).allocate(nbytes);
}

Storage::~Storage() {
  if (data_) backend(device_).deallocate(data_, nbytes_);
}

// ---- construction and queries --------------------------------------------------------------

Tensor Tensor::empty(const Shape& shape, TensorOptions opts, const char* op) {
  for (int64_t d : shape)
    NABLA_CHECK(d >= 0, "{}: negative dimension in shape {}", op, shape_str(shape));
  const int64_t nbytes = nbytes_of(shape, opts.dtype, op);
  auto impl = std::make_shared<TensorImpl>();
  try {
    impl->storage = std::make_shared<Storage>(opts.device, static_cast<size_t>(nbytes));
  } catch (const Error& e) {
    e.rethrow_with(fmt::format("{}: cannot allocate {} {} on {} ({} bytes): {}", op, dtype_name(opts.dtype),
                               shape_str(shape), opts.device, nbytes, e.what()));
  }
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = opts.dtype;
  impl->device = opts.device;
  Tensor t(std::move(impl));
  if (opts.requires_grad) t.requires_grad_(true);
  return t;
}

const TensorImpl& Tensor::checked() const {
  NABLA_CHECK(impl_ != nullptr, "use of an undefined tensor");
  return *impl_;
}

const Shape& Tensor::shape() const { return checked().shape; }
const Shape& Tensor::strides() const { return checked().strides; }
int64_t Tensor::offset() const { return checked().offset; }
DType Tensor::dtype() const { return checked().dtype; }
Device Tensor::device() const { return checked().device; }

int64_t Tensor::size(int64_t axis) const {
  return shape()[normalize_axis(axis, dim(), "Tensor::size")];
}

bool Tensor::is_contiguous() const {
  const auto& t = checked();
  int64_t expected = 1;
  for (size_t i = t.shape.size(); i-- > 0;) {
    if (t.shape[i] == 1) continue;
    if (t.strides[i] != expected) return false;
    expected *= t.shape[i];
  }
  return true;
}

TensorOptions Tensor::options() const { return {dtype(), device(), false}; }

void* Tensor::data_ptr() const {
  const auto& t = checked();
  return static_cast<char*>(t.storage->data()) + t.offset * static_cast<int64_t>(dtype_size(t.dtype));
}

template <typename T>
T* Tensor::data() const {
  NABLA_CHECK_DTYPE(dtype() == dtype_of<T>(), "Tensor::data<{}>(): tensor {} has dtype {}",
                    dtype_name(dtype_of<T>()), shape_str(shape()), dtype());
  return static_cast<T*>(data_ptr());
}
template float* Tensor::data<float>() const;
template double* Tensor::data<double>() const;
template int32_t* Tensor::data<int32_t>() const;
template int64_t* Tensor::data<int64_t>() const;

// ---- autograd ------------------------------------------------------------------------------

bool Tensor::requires_grad() const { return checked().requires_grad; }

Tensor& Tensor::requires_grad_(bool on) {
  auto& t = const_cast<TensorImpl&>(checked());
  NABLA_CHECK(t.grad_fn == nullptr,
              "requires_grad_: tensor {} was computed by '{}'; only leaf tensors can change "
              "requires_grad (use detach() first)",
              shape_str(t.shape), t.grad_fn->op);
  NABLA_CHECK_DTYPE(!on || is_floating(t.dtype),
                    "requires_grad_: tensor {} has dtype {}; only float32/float64 tensors have gradients",
                    shape_str(t.shape), t.dtype);
  t.requires_grad = on;
  return *this;
}

bool Tensor::is_leaf() const { return checked().grad_fn == nullptr; }

Tensor Tensor::grad() const { return Tensor(checked().grad); }

void Tensor::set_grad(const Tensor& g) {
  checked();
  if (g.defined()) {
    NABLA_CHECK(g.shape() == shape() && g.dtype() == dtype() && g.device() == device(),
                "set_grad: gradient {} {} on {} does not match tensor {} {} on {}",
                shape_str(g.shape()), g.dtype(), g.device(), shape_str(shape()), dtype(), device());
  }
  impl_->grad = g.impl_ptr();
}

void Tensor::zero_grad(bool set_to_none) {
  auto& t = const_cast<TensorImpl&>(checked());
  if (set_to_none || !t.grad) {
    t.grad.reset();
  } else {
    Tensor(t.grad).fill_(0);
  }
}

uint64_t Tensor::register_post_accumulate_grad_hook(std::function<void(const Tensor&)> fn) {
  auto& t = const_cast<TensorImpl&>(checked());
  NABLA_CHECK(t.requires_grad && !t.grad_fn,
              "register_post_accumulate_grad_hook: tensor {} is {}; hooks go on leaves that require grad "
              "(parameters)",
              shape_str(t.shape), t.grad_fn ? "the output of an op" : "a leaf that does not require grad");
  NABLA_CHECK(fn != nullptr, "register_post_accumulate_grad_hook: the hook is empty");
  static std::atomic<uint64_t> next_handle{1};
  const uint64_t h = next_handle.fetch_add(1, std::memory_order_relaxed);
  t.post_accumulate_hooks.emplace_back(h, std::move(fn));
  detail::live_grad_hooks().fetch_add(1, std::memory_order_relaxed);
  return h;
}

void Tensor::remove_post_accumulate_grad_hook(uint64_t handle) {
  auto& hooks = const_cast<TensorImpl&>(checked()).post_accumulate_hooks;
  const auto removed = std::erase_if(hooks, [handle](const auto& h) { return h.first == handle; });
  detail::live_grad_hooks().fetch_sub(static_cast<int64_t>(removed), std::memory_order_relaxed);
}

void Tensor::backward(const Tensor& gradient, bool retain_graph) const {
  run_backward({*this}, {gradient}, retain_graph);
}

Tensor Tensor::detach() const {
  const auto& t = checked();
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = t.storage;
  impl->offset = t.offset;
  impl->shape = t.shape;
  impl->strides = t.strides;
  impl->dtype = t.dtype;
  impl->device = t.device;
  return Tensor(std::move(impl));
}

const std::shared_ptr<Node>& Tensor::grad_fn() const { return checked().grad_fn; }

// ---- views ---------------------------------------------------------------------------------

namespace {

// A view of `t`'s storage with a new shape/strides/offset.
Tensor make_view(const Tensor& t, Shape shape, Shape strides, int64_t offset) {
  Tensor v = t.detach();
  v.impl()->shape = std::move(shape);
  v.impl()->strides = std::move(strides);
  v.impl()->offset = offset;
  return v;
}

Shape infer_shape(const Shape& shape, int64_t numel, const Shape& from, const char* op) {
  Shape out = shape;
  int64_t infer = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      NABLA_CHECK(infer < 0, "{}: more than one -1 in shape {}", op, shape_str(shape));
      infer = static_cast<int64_t>(i);
    } else {
      NABLA_CHECK(out[i] >= 0, "{}: negative dimension in shape {}", op, shape_str(shape));
    }
  }
  if (infer >= 0) {
    Shape rest = out;
    rest[infer] = 1;
    const int64_t known = numel_of(rest, op);
    NABLA_CHECK_SHAPE(known > 0 && numel % known == 0, "{}: cannot reshape {} ({} elements) to {}", op,
                      shape_str(from), numel, shape_str(shape));
    out[infer] = numel / known;
  }
  const int64_t out_numel = numel_of(out, op);
  NABLA_CHECK_SHAPE(out_numel == numel, "{}: cannot reshape {} ({} elements) to {} ({} elements)", op, shape_str(from),
                    numel, shape_str(out), out_numel);
  return out;
}

}  // namespace

Tensor Tensor::view(const Shape& shape) const {
  Shape s = infer_shape(shape, numel(), this->shape(), "view");
  NABLA_CHECK(is_contiguous(),
              "view: tensor {} with strides {} is not contiguous; use reshape() (which copies) or "
              "contiguous() first",
              shape_str(this->shape()), shape_str(strides()));
  Tensor out = make_view(*this, s, contiguous_strides(s), offset());
  if (needs_grad({this})) {
    Shape in_shape = this->shape();
    record("view", {*this}, {&out}, [in_shape](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      return {g[0].reshape(in_shape)};
    }, {}, Saved::none);
  }
  return out;
}

Tensor Tensor::reshape(const Shape& shape) const {
  // Checked here so that a bad shape is reported as reshape's, not view's.
  const Shape s = infer_shape(shape, numel(), this->shape(), "reshape");
  if (is_contiguous()) return view(s);
  return contiguous().view(s);
}

Tensor Tensor::flatten(int64_t start, int64_t end) const {
  const int64_t n = dim();
  if (n == 0) return reshape({1});
  start = normalize_axis(start, n, "flatten");
  end = normalize_axis(end, n, "flatten");
  NABLA_CHECK(start <= end, "flatten: start axis {} is after end axis {}", start, end);
  Shape s(shape().begin(), shape().begin() + start);
  int64_t m = 1;
  for (int64_t i = start; i <= end; ++i) m *= shape()[i];
  s.push_back(m);
  s.insert(s.end(), shape().begin() + end + 1, shape().end());
  return reshape(s);
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = Tensor::empty(shape(), options());
  if (numel() > 0)
    be(*this).copy_strided(dtype(), out.data_ptr(), data_ptr(),
                           make_layout(shape(), out.strides(), strides()));
  if (needs_grad({this})) {
    record("clone", {*this}, {&out}, [](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      return {g[0]};
    }, {}, Saved::none);
  }
  return out;
}

Tensor Tensor::transpose(int64_t a, int64_t b) const {
  const int64_t n = dim();
  NABLA_CHECK(n >= 2 || (n == 1 && (a == 0 || a == -1) && (b == 0 || b == -1)) || n == 0,
              "transpose: axes ({}, {}) for a tensor of shape {}", a, b, shape_str(shape()));
  if (n < 2) return *this;
  a = normalize_axis(a, n, "transpose");
  b = normalize_axis(b, n, "transpose");
  Shape s = shape(), st = strides();
  std::swap(s[a], s[b]);
  std::swap(st[a], st[b]);
  Tensor out = make_view(*this, s, st, offset());
  if (needs_grad({this})) {
    record("transpose", {*this}, {&out}, [a, b](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      return {g[0].transpose(a, b)};
    }, {}, Saved::none);
  }
  return out;
}

Tensor Tensor::slice(int64_t axis, int64_t start, int64_t end, int64_t step) const {
  const int64_t n = dim();
  NABLA_CHECK(n > 0, "slice: cannot slice a 0-dimensional tensor");
  axis = normalize_axis(axis, n, "slice");
  NABLA_CHECK(step > 0, "slice: step must be positive, got {}", step);
  const int64_t len = shape()[axis];
  // Python semantics: negative indices count from the end; out-of-range bounds are clamped.
  auto norm = [len](int64_t i) { return std::clamp<int64_t>(i < 0 ? i + len : i, 0, len); };
  const int64_t s0 = norm(start), e0 = std::max(norm(end), s0);
  Shape s = shape(), st = strides();
  s[axis] = (e0 - s0 + step - 1) / step;
  st[axis] *= step;
  Tensor out = make_view(*this, s, st, offset() + s0 * strides()[axis]);
  if (needs_grad({this})) {
    Shape in_shape = shape();
    record("slice", {*this}, {&out},
           [in_shape, axis, s0, e0, step](const std::vector<Tensor>& g) -> std::vector<Tensor> {
             Tensor dx = zeros(in_shape, g[0].options());
             dx.slice(axis, s0, e0, step).copy_(g[0]);
             return {dx};
           }, {}, Saved::none);
  }
  return out;
}

Tensor Tensor::unsqueeze(int64_t axis) const {
  const int64_t n = dim();
  axis = normalize_axis(axis, n + 1, "unsqueeze");
  Shape s = shape(), st = strides();
  const int64_t stride = axis < n ? st[axis] * s[axis] : 1;
  s.insert(s.begin() + axis, 1);
  st.insert(st.begin() + axis, stride);
  Tensor out = make_view(*this, s, st, offset());
  if (needs_grad({this})) {
    record("unsqueeze", {*this}, {&out}, [axis](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      return {g[0].squeeze(axis)};
    }, {}, Saved::none);
  }
  return out;
}

Tensor Tensor::squeeze(int64_t axis) const {
  axis = normalize_axis(axis, dim(), "squeeze");
  NABLA_CHECK_SHAPE(shape()[axis] == 1, "squeeze: axis {} of tensor {} has size {}, expected 1", axis,
                    shape_str(shape()), shape()[axis]);
  Shape s = shape(), st = strides();
  s.erase(s.begin() + axis);
  st.erase(st.begin() + axis);
  Tensor out = make_view(*this, s, st, offset());
  if (needs_grad({this})) {
    record("squeeze", {*this}, {&out}, [axis](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      return {g[0].unsqueeze(axis)};
    }, {}, Saved::none);
  }
  return out;
}

Tensor Tensor::expand(const Shape& shape) const {
  NABLA_CHECK_SHAPE(shape.size() >= this->shape().size(), "expand: cannot expand {} to {} (fewer dimensions)",
                    shape_str(this->shape()), shape_str(shape));
  Shape target = broadcast_shapes(this->shape(), shape, "expand");
  NABLA_CHECK_SHAPE(target == shape, "expand: cannot expand {} to {}", shape_str(this->shape()),
                    shape_str(shape));
  Tensor out = make_view(*this, shape, detail::broadcast_strides(*this, shape), offset());
  if (needs_grad({this})) {
    Shape in_shape = this->shape();
    record("expand", {*this}, {&out}, [in_shape](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      return {sum_to(g[0], in_shape)};
    }, {}, Saved::none);
  }
  return out;
}

// ---- conversions ---------------------------------------------------------------------------

Tensor Tensor::to(DType dtype) const {
  if (dtype == this->dtype()) return *this;
  Tensor src = contiguous();
  Tensor out = Tensor::empty(shape(), {dtype, device()});
  if (numel() > 0) be(src).cast(dtype, out.data_ptr(), src.dtype(), src.data_ptr(), numel());
  if (is_floating(dtype) && needs_grad({this})) {
    DType from = this->dtype();
    record("to(dtype)", {*this}, {&out}, [from](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      return {g[0].to(from)};
    }, {}, Saved::none);
  }
  return out;
}

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  try {
    (void)backend(device);
  } catch (const Error& e) {
    e.rethrow_with(fmt::format("to: {}", e.what()));
  }
  Tensor src = contiguous();
  Tensor out = Tensor::empty(shape(), {dtype(), device});
  const size_t nbytes = static_cast<size_t>(numel()) * dtype_size(dtype());
  if (nbytes > 0) {
    if (src.device().is_cpu()) {
      backend(device).copy_from_host(out.data_ptr(), src.data_ptr(), nbytes);
    } else if (device.is_cpu()) {
      be(src).copy_to_host(out.data_ptr(), src.data_ptr(), nbytes);
    } else {
      // Between two GPUs: through the host (peer copies come with multi-GPU support).
      Tensor host = src.to(Device::cpu());
      backend(device).copy_from_host(out.data_ptr(), host.data_ptr(), nbytes);
    }
  }
  if (needs_grad({this})) {
    Device from = this->device();
    record("to(device)", {*this}, {&out}, [from](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      return {g[0].to(from)};
    }, {}, Saved::none);
  }
  return out;
}

// ---- host access ---------------------------------------------------------------------------

template <typename T>
std::vector<T> Tensor::to_vector() const {
  Tensor c = detach().to(Device::cpu()).to(dtype_of<T>()).contiguous();
  const T* p = c.data<T>();
  return std::vector<T>(p, p + c.numel());
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;

double Tensor::item() const {
  NABLA_CHECK_SHAPE(numel() == 1, "item(): tensor has shape {} ({} elements), expected exactly one element",
                    shape_str(shape()), numel());
  return detach().to_vector<double>()[0];
}

std::string Tensor::to_string(int64_t max_per_dim) const {
  if (!defined()) return "Tensor(undefined)";
  std::string head = fmt::format("Tensor(shape={}, dtype={}, device={}{})", shape_str(shape()), dtype(),
                                 device(), requires_grad() ? ", requires_grad" : "");
  std::vector<double> v = to_vector<double>();
  const bool integral = !is_floating(dtype());
  std::string body;
  // Recursive printer with elision of the middle of long dimensions.
  const Shape& s = shape();
  Shape st = contiguous_strides(s);
  std::function<void(size_t, int64_t)> rec = [&](size_t d, int64_t base) {
    if (d == s.size()) {
      body += integral ? fmt::format("{}", static_cast<int64_t>(v[base])) : fmt::format("{:.6g}", v[base]);
      return;
    }
    body += "[";
    const int64_t n = s[d];
    // At least the first and the last element stay visible, even for max_per_dim < 2.
    const int64_t half = std::max<int64_t>(max_per_dim / 2, 1);
    for (int64_t i = 0; i < n; ++i) {
      if (n > std::max(max_per_dim, 2 * half) && i == half) {
        body += "..., ";
        i = n - half - 1;
        continue;
      }
      rec(d + 1, base + i * st[d]);
      if (i + 1 < n) body += d + 1 == s.size() ? ", " : ",\n" + std::string(d + 1, ' ');
    }
    body += "]";
  };
  if (numel() > 0 || s.empty()) rec(0, 0);
  else body = "[]";
  return head + "\n" + body;
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.to_string(); }

// ---- in place ------------------------------------------------------------------------------

int64_t Tensor::version() const { return checked().storage->version(); }
void Tensor::bump_version() const { checked().storage->bump_version(); }

Tensor& Tensor::fill_(double value) {
  if (numel() == 0) return *this;
  if (is_contiguous()) {
    bump_version();
    be(*this).fill(dtype(), data_ptr(), numel(), value);
  } else {
    copy_(full(shape(), value, options()));
  }
  return *this;
}

Tensor& Tensor::copy_(const Tensor& src) {
  detail::check_defined(src, "copy_", "src");
  Shape target = broadcast_shapes(src.shape(), shape(), "copy_");
  NABLA_CHECK_SHAPE(target == shape(), "copy_: source {} does not broadcast to destination {}",
                    shape_str(src.shape()), shape_str(shape()));
  if (numel() == 0) return *this;
  Tensor s = src.detach().to(device()).to(dtype());
  bump_version();
  be(*this).copy_strided(dtype(), data_ptr(), s.data_ptr(),
                         make_layout(shape(), strides(), detail::broadcast_strides(s, shape())));
  return *this;
}

void Tensor::set_data(const Tensor& other) {
  detail::check_defined(other, "set_data", "other");
  auto& t = const_cast<TensorImpl&>(checked());
  const auto& o = *other.impl();
  t.storage = o.storage;
  t.offset = o.offset;
  t.shape = o.shape;
  t.strides = o.strides;
  if (t.grad && (t.device != o.device || t.dtype != o.dtype))
    t.grad = Tensor(t.grad).detach().to(o.device).to(o.dtype).impl_ptr();
  t.dtype = o.dtype;
  t.device = o.device;
}

// ---- shorthands ----------------------------------------------------------------------------

Tensor Tensor::sum(const std::vector<int64_t>& axes, bool keepdim) const { return nabla::sum(*this, axes, keepdim); }
Tensor Tensor::mean(const std::vector<int64_t>& axes, bool keepdim) const { return nabla::mean(*this, axes, keepdim); }
Tensor Tensor::max(const std::vector<int64_t>& axes, bool keepdim) const { return nabla::max(*this, axes, keepdim); }
Tensor Tensor::argmax(int64_t axis) const { return nabla::argmax(*this, axis); }
Tensor Tensor::matmul(const Tensor& other) const { return nabla::matmul(*this, other); }
Tensor Tensor::exp() const { return nabla::exp(*this); }
Tensor Tensor::log() const { return nabla::log(*this); }
Tensor Tensor::pow(double p) const { return nabla::pow(*this, p); }
Tensor Tensor::sqrt() const { return nabla::sqrt(*this); }
Tensor Tensor::abs() const { return nabla::abs(*this); }
Tensor Tensor::relu() const { return nabla::relu(*this); }

// ---- factories -----------------------------------------------------------------------------

// The factories' own checks, so that a bad shape or device is reported under the factory's name
// (not as Tensor::empty's, or the backend registry's), before anything is allocated.
static void check_factory(const Shape& shape, Device device, const char* op) {
  for (int64_t d : shape)
    NABLA_CHECK(d >= 0, "{}: negative dimension in shape {}", op, shape_str(shape));
  (void)numel_of(shape, op);
  if (device.is_cpu()) return;
  try {
    (void)backend(device);
  } catch (const Error& e) {
    e.rethrow_with(fmt::format("{}: {}", op, e.what()));
  }
}

static Tensor full_named(const Shape& shape, double value, TensorOptions opts, const char* op) {
  check_factory(shape, opts.device, op);
  bool rg = opts.requires_grad;
  opts.requires_grad = false;
  Tensor t = Tensor::empty(shape, opts, op);
  if (t.numel() > 0) backend(opts.device).fill(opts.dtype, t.data_ptr(), t.numel(), value);
  if (rg) t.requires_grad_(true);
  return t;
}
Tensor full(const Shape& shape, double value, TensorOptions opts) { return full_named(shape, value, opts, "full"); }
Tensor zeros(const Shape& shape, TensorOptions opts) { return full_named(shape, 0.0, opts, "zeros"); }
Tensor ones(const Shape& shape, TensorOptions opts) { return full_named(shape, 1.0, opts, "ones"); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.options()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.options()); }
Tensor scalar(double value, TensorOptions opts) { return full({}, value, opts); }

Tensor arange(double start, double end, double step, TensorOptions opts) {
  NABLA_CHECK(std::isfinite(start) && std::isfinite(end) && std::isfinite(step),
              "arange: start {}, end {} and step {} must be finite numbers", start, end, step);
  NABLA_CHECK(step != 0, "arange: step must be non-zero, got {}", step);
  NABLA_CHECK((step > 0 && end >= start) || (step < 0 && end <= start),
              "arange: upper bound and larger bound inconsistent with step sign (start {}, end {}, step {})", start,
              end, step);
  const double span = std::ceil((end - start) / step);
  // 2^62 elements would already be 2^65 bytes of doubles on the way: no machine holds them.
  NABLA_CHECK(span < 0x1p62, "arange: [{}, {}) by {} has {} elements, too many to count", start, end, step, span);
  const int64_t n = static_cast<int64_t>(span);
  check_factory({n}, opts.device, "arange");
  Tensor host = Tensor::empty({n}, {.dtype = DType::float64}, "arange");  // a clear error when too big
  double* v = host.data<double>();
  for (int64_t i = 0; i < n; ++i) v[i] = start + static_cast<double>(i) * step;
  Tensor t = host.to(opts.dtype).to(opts.device);
  if (opts.requires_grad) t.requires_grad_(true);
  return t;
}

Tensor arange(int64_t n, TensorOptions opts) {
  NABLA_CHECK(n >= 0, "arange: n must be non-negative, got {}", n);
  return arange(0.0, static_cast<double>(n), 1.0, opts);
}

namespace {
std::mutex g_rng_mu;
RngState g_rng{0x6e61626c61ULL, 0};  // "nabla"
}  // namespace

void manual_seed(uint64_t seed) {
  std::lock_guard<std::mutex> lock(g_rng_mu);
  g_rng = {seed, 0};
}
RngState rng_state() {
  std::lock_guard<std::mutex> lock(g_rng_mu);
  return g_rng;
}
void set_rng_state(RngState s) {
  std::lock_guard<std::mutex> lock(g_rng_mu);
  g_rng = s;
}
RngState rng_take(uint64_t n, const char* op) {
  std::lock_guard<std::mutex> lock(g_rng_mu);
  RngState s = g_rng;
  // Calls stay on whole 4-number Philox blocks. A range that wrapped past 2^64 would make the
  // kernels (which write element i of [offset, offset + n)) write nothing: an error instead.
  uint64_t rounded = 0, next = 0;
  if (__builtin_add_overflow(n, uint64_t{3}, &rounded) || __builtin_add_overflow(s.offset, rounded / 4 * 4, &next))
    fail("{}: the random generator's counter {} plus {} numbers passes 2^64; restart the stream with "
         "manual_seed() or set_rng_state() at a smaller offset",
         op, s.offset, n);
  g_rng.offset = next;
  return s;
}

static Tensor random_tensor(const Shape& shape, TensorOptions opts, bool normal, double p0, double p1,
                            const char* op) {
  NABLA_CHECK_DTYPE(is_floating(opts.dtype), "{}: dtype {} is not a floating type", op, opts.dtype);
  check_factory(shape, opts.device, op);
  bool rg = opts.requires_grad;
  opts.requires_grad = false;
  Tensor t = Tensor::empty(shape, opts, op);
  const int64_t n = t.numel();
  if (n > 0) {
    RngState s = rng_take(static_cast<uint64_t>(n), op);
    if (normal)
      backend(opts.device).rand_normal(opts.dtype, t.data_ptr(), n, s.seed, s.offset, p0, p1);
    else
      backend(opts.device).rand_uniform(opts.dtype, t.data_ptr(), n, s.seed, s.offset, p0, p1);
  }
  if (rg) t.requires_grad_(true);
  return t;
}

Tensor rand(const Shape& shape, TensorOptions opts, double lo, double hi) {
  check_number(lo, "rand", "the lower bound");
  check_number(hi, "rand", "the upper bound");
  NABLA_CHECK(lo <= hi, "rand: lower bound {} is above upper bound {}", lo, hi);
  return random_tensor(shape, opts, false, lo, hi, "rand");
}

Tensor randn(const Shape& shape, TensorOptions opts, double mean, double stddev) {
  check_number(mean, "randn", "the mean");
  check_number(stddev, "randn", "the standard deviation");
  NABLA_CHECK(stddev >= 0, "randn: standard deviation {} is negative", stddev);
  return random_tensor(shape, opts, true, mean, stddev, "randn");
}

template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, TensorOptions opts) {
  Shape s = shape.empty() ? Shape{static_cast<int64_t>(values.size())} : shape;
  check_factory(s, opts.device, "from_vector");
  NABLA_CHECK_SHAPE(numel_of(s) == static_cast<int64_t>(values.size()),
                    "from_vector: {} values do not fill shape {} ({} elements)", values.size(), shape_str(s),
                    numel_of(s));
  Tensor host = Tensor::empty(s, {dtype_of<T>(), Device::cpu()});
  if (!values.empty()) std::memcpy(host.data_ptr(), values.data(), values.size() * sizeof(T));
  Tensor t = host.to(opts.dtype).to(opts.device);
  if (opts.requires_grad) t.requires_grad_(true);
  return t;
}
template Tensor from_vector<float>(const std::vector<float>&, const Shape&, TensorOptions);
template Tensor from_vector<double>(const std::vector<double>&, const Shape&, TensorOptions);
template Tensor from_vector<int32_t>(const std::vector<int32_t>&, const Shape&, TensorOptions);
template Tensor from_vector<int64_t>(const std::vector<int64_t>&, const Shape&, TensorOptions);

Tensor from_vector(std::initializer_list<double> values, const Shape& shape, TensorOptions opts) {
  return from_vector(std::vector<double>(values), shape, opts);
}

}  // namespace nabla
