// Tensor: a shaped, typed view of device memory, with autograd bookkeeping.
//
// A Tensor is a cheap handle (shared_ptr to its TensorImpl); copies share the same data and
// the same gradient. Storage is shared between views (reshape of a contiguous tensor, transpose,
// slice) and freed with the last one. Every op on tensors lives in core/ops; the methods here
// are shape queries, views, conversions and shorthands for those ops.
#pragma once

#include <nabla/export.h>

#include <nabla/core/error.h>
#include <nabla/core/types.h>

#include <atomic>
#include <functional>
#include <initializer_list>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

namespace nabla {

class Backend;
struct Node;
class Tensor;

// Bytes on one device, freed through its backend when the last tensor using them goes.
class NABLA_API Storage {
 public:
  Storage(Device device, size_t nbytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  // Bumped by every in-place write to these bytes (shared by all views of them); the tape saves
  // it with each input so that backward can tell a tensor changed since it was saved.
  int64_t version() const { return version_.load(std::memory_order_relaxed); }
  void bump_version() { version_.fetch_add(1, std::memory_order_relaxed); }

 private:
  Device device_;
  size_t nbytes_;
  void* data_ = nullptr;
  std::atomic<int64_t> version_{0};
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape shape;
  Shape strides;  // in elements
  DType dtype = DType::float32;
  Device device;

  // autograd
  bool requires_grad = false;      // set on leaves by the user, on outputs by ops
  std::shared_ptr<TensorImpl> grad;  // accumulated gradient of a leaf
  std::shared_ptr<Node> grad_fn;   // the tape entry that produced this tensor, if any
  int output_nr = 0;               // which output of grad_fn this is
  // Leaves: (handle, fn) called once per backward when this leaf's gradient is final
  // (Tensor::register_post_accumulate_grad_hook).
  std::vector<std::pair<uint64_t, std::function<void(const Tensor&)>>> post_accumulate_hooks;
};

struct TensorOptions {
  DType dtype = DType::float32;
  Device device = Device::cpu();
  bool requires_grad = false;
};

class NABLA_API Tensor {
 public:
  Tensor() = default;  // undefined: holds nothing
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}
  // A new contiguous tensor with uninitialized contents. `op` names the caller in the errors for
  // a bad shape (negative, or too many elements or bytes to count) and for running out of memory.
  static Tensor empty(const Shape& shape, TensorOptions opts = {}, const char* op = "Tensor::empty");

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  const Shape& strides() const;
  int64_t dim() const { return static_cast<int64_t>(shape().size()); }
  int64_t size(int64_t axis) const;
  int64_t numel() const { return numel_of(shape()); }
  int64_t offset() const;
  DType dtype() const;
  Device device() const;
  bool is_contiguous() const;
  TensorOptions options() const;

  // Raw data, at the tensor's offset, on its device. Writing through it is not seen by autograd:
  // call bump_version() after changing a tensor that a recorded op may have saved.
  void* data_ptr() const;
  template <typename T> T* data() const;  // checks the dtype

  // ---- autograd ------------------------------------------------------------------------------
  bool requires_grad() const;
  Tensor& requires_grad_(bool on = true);  // leaves only
  bool is_leaf() const;
  Tensor grad() const;         // undefined until a backward reaches this leaf
  void set_grad(const Tensor& g);
  void zero_grad(bool set_to_none = true);
  // Registers fn(leaf), called by every backward that reaches this leaf (or has it among the
  // graph's inputs) once its gradient is final for that backward: every op of the graph that
  // uses the leaf has added its part into .grad(). Data-parallel training starts averaging a
  // gradient there while the backward goes on (PyTorch's register_post_accumulate_grad_hook).
  // A leaf the backward's ops reach but give no gradient still gets the call (its .grad() may
  // be undefined). Leaves that require grad only; returns a handle for the removal.
  uint64_t register_post_accumulate_grad_hook(std::function<void(const Tensor&)> fn);
  void remove_post_accumulate_grad_hook(uint64_t handle);
  // Gradient of this tensor (a scalar, or with `gradient` of its shape) with respect to every
  // leaf that requires grad; accumulates into their .grad(). Frees the graph unless retained.
  void backward(const Tensor& gradient = {}, bool retain_graph = false) const;
  // Same data, no history.
  Tensor detach() const;
  const std::shared_ptr<Node>& grad_fn() const;

  // ---- views and copies ----------------------------------------------------------------------
  Tensor reshape(const Shape& shape) const;  // view when contiguous, else a copy; one -1 allowed
  Tensor view(const Shape& shape) const;     // never copies; throws when it would have to
  Tensor flatten(int64_t start = 0, int64_t end = -1) const;
  Tensor contiguous() const;
  Tensor transpose(int64_t a, int64_t b) const;
  Tensor t() const { return dim() < 2 ? *this : transpose(-2, -1); }  // 0-d and 1-D: unchanged
  Tensor slice(int64_t axis, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor unsqueeze(int64_t axis) const;
  Tensor squeeze(int64_t axis) const;
  Tensor expand(const Shape& shape) const;  // broadcast view (stride 0)
  Tensor clone() const;
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;

  // ---- host access (synchronizes with the device) --------------------------------------------
  double item() const;
  template <typename T> T item() const { return static_cast<T>(item()); }
  template <typename T> std::vector<T> to_vector() const;
  std::string to_string(int64_t max_per_dim = 6) const;

  // ---- in place, never recorded --------------------------------------------------------------
  // Each bumps the version of the tensor's storage (shared with its views): backward through an
  // op that saved the tensor before the change throws instead of using the new values.
  int64_t version() const;  // in-place writes to this storage so far (PyTorch's _version)
  void bump_version() const;
  Tensor& fill_(double value);
  Tensor& copy_(const Tensor& src);  // same shape; any device and dtype
  // Points this tensor at `other`'s data (same shape): keeps identity, so optimizers and modules
  // that hold this tensor see the new data. Used by Module::to(device).
  void set_data(const Tensor& other);

  // ---- op shorthands (see core/ops) ------------------------------------------------------------
  Tensor sum(const std::vector<int64_t>& axes = {}, bool keepdim = false) const;
  Tensor mean(const std::vector<int64_t>& axes = {}, bool keepdim = false) const;
  Tensor max(const std::vector<int64_t>& axes = {}, bool keepdim = false) const;
  Tensor argmax(int64_t axis = -1) const;
  Tensor matmul(const Tensor& other) const;
  Tensor exp() const;
  Tensor log() const;
  Tensor pow(double p) const;
  Tensor sqrt() const;
  Tensor abs() const;
  Tensor relu() const;

  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

 private:
  const TensorImpl& checked() const;
  std::shared_ptr<TensorImpl> impl_;
};

NABLA_API std::ostream& operator<<(std::ostream& os, const Tensor& t);

// ---- factories ---------------------------------------------------------------------------------
NABLA_API Tensor zeros(const Shape& shape, TensorOptions opts = {});
NABLA_API Tensor ones(const Shape& shape, TensorOptions opts = {});
NABLA_API Tensor full(const Shape& shape, double value, TensorOptions opts = {});
NABLA_API Tensor zeros_like(const Tensor& t);
NABLA_API Tensor ones_like(const Tensor& t);
NABLA_API Tensor scalar(double value, TensorOptions opts = {});  // 0-dimensional
// [start, end) by step; float or integer dtype.
NABLA_API Tensor arange(double start, double end, double step = 1, TensorOptions opts = {});
NABLA_API Tensor arange(int64_t n, TensorOptions opts = {.dtype = DType::int64});
// Uniform in [lo, hi) and normal(mean, std), from the device's default generator (manual_seed).
NABLA_API Tensor rand(const Shape& shape, TensorOptions opts = {}, double lo = 0, double hi = 1);
NABLA_API Tensor randn(const Shape& shape, TensorOptions opts = {}, double mean = 0, double stddev = 1);
// Copies `values` (converted to opts.dtype) into a tensor of `shape` (default: 1-D).
template <typename T>
NABLA_API Tensor from_vector(const std::vector<T>& values, const Shape& shape = {}, TensorOptions opts = {
    .dtype = dtype_of<T>()});
NABLA_API Tensor from_vector(std::initializer_list<double> values, const Shape& shape = {},
                   TensorOptions opts = {});

// ---- random numbers ------------------------------------------------------------------------------
// One generator per process: a seed and a counter. Counter-based kernels make the numbers
// depend only on (seed, counter), so the same seed gives the same numbers on every device.
NABLA_API void manual_seed(uint64_t seed);
struct RngState {
  uint64_t seed = 0;
  uint64_t offset = 0;
};
NABLA_API RngState rng_state();
NABLA_API void set_rng_state(RngState s);
// Reserves n counters and returns the (seed, first counter) to use. Throws naming `op` when the
// counters would run past 2^64 (the stream is used up: manual_seed or set_rng_state restart it).
NABLA_API RngState rng_take(uint64_t n, const char* op = "rng_take");

}  // namespace nabla
