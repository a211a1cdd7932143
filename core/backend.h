// The Backend interface: what a device must implement for nabla to run on it.
//
// Kernels work on raw pointers and sizes; they know nothing of Tensor or the tape. Each method
// is pure virtual, so a backend that forgets a kernel does not compile. Conventions:
//   - outputs come first, then inputs, then sizes and scalars;
//   - `dtype` is the element type of every floating buffer of the call (float32 or float64);
//   - backward kernels *assign* their result (dx = ...); accumulation is the tape's job;
//   - all pointers are on this backend's device; sizes are element counts unless named bytes.
// Work may be asynchronous (CUDA: one stream per device); only copy_to_host and synchronize
// wait for it.
#pragma once

#include <nabla/export.h>

#include <nabla/core/device.h>
#include <nabla/core/types.h>
#include <nabla/core/unary_ops.h>  // UnaryOp: the table of unary ops and their formulas

#include <cstdint>
#include <functional>

namespace nabla {

constexpr int kMaxDims = 8;

// Index arithmetic for strided and broadcast loops, passed by value (it is plain data so a
// CUDA kernel can take it as an argument). Strides are in elements; a broadcast dimension has
// stride 0. shape[i] == 1 dimensions may be dropped by the caller.
struct StridedLayout {
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t out_stride[kMaxDims] = {};  // destination strides
  int64_t a_stride[kMaxDims] = {};    // first source
  int64_t b_stride[kMaxDims] = {};    // second source (binary ops only)
};

enum class BinaryOp : uint8_t {
  add, sub, mul, div, maximum, minimum,
  // comparisons give 1 or 0 in the operands' dtype
  eq, ne, gt, ge, lt, le,
};

enum class ReduceOp : uint8_t { sum, max, min };

// Generic arithmetic over a list of tensors, in place (the foreach ops of core/ops/foreach.h).
// For each tensor i < count of a ForeachLists and each element j < sizes[i], with a = a[i]
// (computed in double by the caller, rounded to the dtype) and x, y, z element j of x[i], y[i],
// z[i], products rounded one at a time (never fused into an fma), in this order:
enum class ForeachOp : uint8_t {
  copy,     // x = y
  sqrt,     // x = sqrt(y)
  mul,      // x = x * a
  div,      // x = x / a
  add,      // x = x + a
  axpy,     // x = x + a * y
  addcmul,  // x = x + (a * y) * z
  addcdiv,  // x = x + a * (y / z)
  lerp,     // x = x + a * (y - x), as torch.lerp evaluates it: y - (y - x) * (1 - a) when |a| >= 0.5
};

// The tensors of one foreach call: host arrays of `count` entries, each pointer on the
// backend's device. x[i] is written; y[i], z[i] are read (null in the arrays an op does not
// read, and the arrays themselves may be null then); a is null for the ops without a scalar.
// x[i] may equal y[i] or z[i].
struct ForeachLists {
  int64_t count = 0;
  void* const* x = nullptr;
  const void* const* y = nullptr;
  const void* const* z = nullptr;
  const double* a = nullptr;
  const int64_t* sizes = nullptr;  // elements of each tensor
};

// Shapes of one 2-D convolution (NCHW, row-major, contiguous buffers), as the core op computed
// and checked them: x (n, c, h, w), weight (k, c / groups, kh, kw), y (n, k, oh, ow) with
// oh = (h + 2 pad_h - dil_h (kh - 1) - 1) / stride_h + 1 (ow likewise) and oh, ow >= 1.
// Padding is symmetric (an asymmetric "same" is padded explicitly by the core op). Channels
// split into `groups` equal groups; group g of y reads group g of x.
struct Conv2dShape {
  int64_t n = 0, c = 0, h = 0, w = 0;  // input
  int64_t k = 0, kh = 0, kw = 0;       // output channels and kernel size
  int64_t oh = 0, ow = 0;              // output size
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dil_h = 1, dil_w = 1;
  int64_t groups = 1;
  // The output is max(conv + bias, 0), NaN kept (ReLU fused), and the backward's dy is first masked
  // by y > 0. Only where the backend's conv2d_fuses_relu says so; the op composes otherwise.
  bool relu = false;
};

// Shapes of one 2-D pooling (NCHW, contiguous): x (n, c, h, w), y (n, c, oh, ow) with
// oh = (h + 2 pad_h - kh) / stride_h + 1 (ow likewise), pad_h <= kh / 2, pad_w <= kw / 2, so that
// every window holds at least one element of x.
struct Pool2dShape {
  int64_t n = 0, c = 0, h = 0, w = 0;
  int64_t oh = 0, ow = 0;
  int64_t kh = 0, kw = 0;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
};

// What Backend::check_indices checks, for its message.
enum class IndexKind : uint8_t { label, row };

// One recurrent layer over a whole sequence, in PyTorch's (and cuDNN's) equations.
//   LSTM, gates (i, f, g, o):  G = 4
//     [i f g o] = x W_ih^T + b_ih + h W_hh^T + b_hh;  i, f, o = sigmoid, g = tanh
//     c' = f c + i g;  h' = o tanh(c')
//   GRU, gates (r, z, n):  G = 3
//     r = sigmoid(x W_ir^T + b_ir + h W_hr^T + b_hr), z likewise,
//     n = tanh(x W_in^T + b_in + r (h W_hn^T + b_hn));  h' = (1 - z) n + z h
// Weights per direction: w_ih (G hidden, input), w_hh (G hidden, hidden), b_ih, b_hh (G hidden),
// gate blocks in the order above. Direction 1 (when directions == 2) runs from the last step to
// the first.
enum class RnnCell : uint8_t { lstm, gru };
struct RnnShape {
  RnnCell cell = RnnCell::lstm;
  int64_t seq = 0, batch = 0, input = 0, hidden = 0;
  int64_t directions = 1;
  // x (batch, seq, input) and y (batch, seq, directions * hidden) instead of sequence-major; only
  // where the backend's rnn_batch_major says it takes them so.
  bool batch_major = false;
  int64_t gates() const { return cell == RnnCell::lstm ? 4 : 3; }
};

class NABLA_API Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  virtual int device_count() const = 0;

  // ---- memory -------------------------------------------------------------------------------
  virtual void* allocate(size_t nbytes) = 0;  // throws nabla::OutOfMemoryError on out of memory
  virtual void deallocate(void* p, size_t nbytes) noexcept = 0;
  virtual void copy(void* dst, const void* src, size_t nbytes) = 0;            // same device
  virtual void copy_from_host(void* dst, const void* host_src, size_t nbytes) = 0;
  virtual void copy_to_host(void* host_dst, const void* src, size_t nbytes) = 0;  // waits
  virtual void synchronize() = 0;
  // What this device is (core/device.h); `device` is filled in by the caller.
  virtual DeviceProperties properties() = 0;
  // The handle of the stream this backend queues its work on (a cudaStream_t for CUDA), for
  // libraries that queue on it themselves, such as NCCL in dist/; nullptr for a backend that
  // runs its work synchronously (the CPU). Work queued on it runs in order with the kernels.
  virtual void* native_stream() const { return nullptr; }

  // ---- data movement ------------------------------------------------------------------------
  // out[i] = value for i < n (any dtype; value converted).
  virtual void fill(DType dtype, void* out, int64_t n, double value) = 0;
  // out[out_stride . idx] = a[a_stride . idx] over layout.shape (any dtype).
  virtual void copy_strided(DType dtype, void* out, const void* a, const StridedLayout& l) = 0;
  // out[i] = (out_dtype) a[i] for i < n.
  virtual void cast(DType out_dtype, void* out, DType a_dtype, const void* a, int64_t n) = 0;

  // ---- random (counter-based: element i of a call depends only on seed and offset + i) ----
  virtual void rand_uniform(DType dtype, void* out, int64_t n, uint64_t seed, uint64_t offset,
                            double lo, double hi) = 0;
  virtual void rand_normal(DType dtype, void* out, int64_t n, uint64_t seed, uint64_t offset,
                           double mean, double stddev) = 0;

  // ---- elementwise --------------------------------------------------------------------------
  // y[i] = f(x[i]) with f chosen by op and its scalars a, b. y may equal x.
  virtual void unary(UnaryOp op, DType dtype, void* y, const void* x, int64_t n, double a,
                     double b) = 0;
  // dx[i] = dy[i] * f'(x[i]); y = f(x) is passed too, for ops whose derivative reads it.
  virtual void unary_backward(UnaryOp op, DType dtype, void* dx, const void* dy, const void* x,
                              const void* y, int64_t n, double a, double b) = 0;
  // out[idx] = a[idx] (op) b[idx] with broadcasting through l's strides. out may equal a.
  virtual void binary(BinaryOp op, DType dtype, void* out, const void* a, const void* b,
                      const StridedLayout& l) = 0;

  // ---- reductions ---------------------------------------------------------------------------
  // x: (outer, r, inner) contiguous; out: (outer, inner). out = reduce over the middle axis.
  virtual void reduce(ReduceOp op, DType dtype, void* out, const void* x, int64_t outer,
                      int64_t r, int64_t inner) = 0;
  // x: (outer, r, inner); out: (outer, inner) int64 index of the first maximum.
  virtual void argmax(DType dtype, int64_t* out, const void* x, int64_t outer, int64_t r,
                      int64_t inner) = 0;

  // ---- linear algebra -----------------------------------------------------------------------
  // Row-major C[m, n] = alpha * op(A)[m, k] . op(B)[k, n] + beta * C, repeated `batch` times
  // with the given element strides between batch items (0 broadcasts an operand).
  virtual void gemm(DType dtype, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                    double alpha, const void* a, int64_t lda, int64_t stride_a, const void* b,
                    int64_t ldb, int64_t stride_b, double beta, void* c, int64_t ldc,
                    int64_t stride_c, int64_t batch) = 0;

  // ---- softmax and losses -------------------------------------------------------------------
  // x, y: (outer, n, inner); softmax (or log-softmax when log) over the middle axis.
  virtual void softmax(DType dtype, void* y, const void* x, int64_t outer, int64_t n,
                       int64_t inner, bool log) = 0;
  // dx from dy and the forward output y.
  virtual void softmax_backward(DType dtype, void* dx, const void* dy, const void* y,
                                int64_t outer, int64_t n, int64_t inner, bool log) = 0;
  // logp: (n, c); labels: (n) int64, each in [0, c) (checked by the caller).
  // loss[i] = -logp[i, labels[i]].
  virtual void nll(DType dtype, void* loss, const void* logp, const int64_t* labels, int64_t n,
                   int64_t c) = 0;
  // dlogp[i, j] = j == labels[i] ? -dloss[i] : 0.
  virtual void nll_backward(DType dtype, void* dlogp, const void* dloss, const int64_t* labels,
                            int64_t n, int64_t c) = 0;
  // Checks that every index lies in [0, limit); a bad one is a nabla::Error naming `op` (a
  // string literal), the first bad position and its value, worded for `kind` (class labels of a
  // loss, or row indices of an embedding table). The CPU throws at once; an asynchronous device
  // records the failure on the device and throws at its next synchronizing call (copy_to_host,
  // synchronize), so that checking never stalls a training step.
  virtual void check_indices(const int64_t* indices, int64_t n, int64_t limit, const char* op,
                             IndexKind kind) = 0;
  void check_labels(const int64_t* labels, int64_t n, int64_t c, const char* op) {
    check_indices(labels, n, c, op, IndexKind::label);
  }

  // ---- embedding ------------------------------------------------------------------------------
  // y (n, dim) = weight[indices[i]] rows; weight (num, dim); indices each in [0, num) (checked by
  // the caller).
  virtual void embedding_forward(DType dtype, void* y, const void* weight, const int64_t* indices,
                                 int64_t n, int64_t num, int64_t dim) = 0;
  // dweight (num, dim) = sum over i with indices[i] == r of dy[i] (0 for rows never indexed, and
  // for padding_idx when it is >= 0). Deterministic: the same sums in the same order every run.
  virtual void embedding_backward(DType dtype, void* dweight, const void* dy, const int64_t* indices,
                                  int64_t n, int64_t num, int64_t dim, int64_t padding_idx) = 0;

  // ---- recurrent layers (one layer, one or two directions; see RnnShape) ------------------------
  // Element offsets of the parameters in this backend's packed weight buffer, for direction d
  // and j in (w_ih, w_hh, b_ih, b_hh): offsets[4 d + j]; returns the buffer's element count.
  // Each parameter is contiguous (row-major) at its offset.
  virtual int64_t rnn_weight_layout(DType dtype, const RnnShape& s, int64_t* offsets) = 0;
  // Bytes of the buffer that a training forward fills for the backward.
  virtual size_t rnn_reserve_bytes(DType dtype, const RnnShape& s) = 0;
  // Whether this backend takes x and y of this layer batch-major (RnnShape::batch_major), which
  // spares a batch_first layer two transposing copies.
  virtual bool rnn_batch_major(DType, const RnnShape&) { return false; }
  // x (seq, batch, input); hx, cx (directions, batch, hidden) or null for zeros (cx: LSTM only);
  // w: packed (rnn_weight_layout). Writes y (seq, batch, directions * hidden), direction d in
  // columns [d hidden, (d + 1) hidden), and hy, cy (directions, batch, hidden; cy: LSTM only,
  // either may be null). reserve: rnn_reserve_bytes bytes for the backward, or null (inference).
  virtual void rnn_forward(DType dtype, const RnnShape& s, void* y, void* hy, void* cy, void* reserve,
                           const void* x, const void* hx, const void* cx, const void* w) = 0;
  // Backward of a training forward, given its inputs, its output y and its reserve (which it may
  // overwrite). dy (like y) is required; dhy, dcy may be null (zeros). Writes dx, dhx, dcx (each
  // may be null when not needed) and dw (packed like w).
  virtual void rnn_backward(DType dtype, const RnnShape& s, void* dx, void* dhx, void* dcx, void* dw,
                            const void* dy, const void* dhy, const void* dcy, const void* x,
                            const void* hx, const void* cx, const void* w, const void* y,
                            void* reserve) = 0;

  // ---- convolution (see Conv2dShape) --------------------------------------------------------
  // y = conv(x, weight) + bias; bias: (k) or null.
  virtual void conv2d_forward(DType dtype, void* y, const void* x, const void* weight,
                              const void* bias, const Conv2dShape& s) = 0;
  // dx (n, c, h, w) = gradient of the forward with respect to x, from dy (n, k, oh, ow).
  virtual void conv2d_backward_data(DType dtype, void* dx, const void* dy, const void* weight,
                                    const Conv2dShape& s) = 0;
  // dweight (k, c / groups, kh, kw) from dy and x.
  virtual void conv2d_backward_weight(DType dtype, void* dweight, const void* dy, const void* x,
                                      const Conv2dShape& s) = 0;
  // dbias (k) = sum of dy over n, oh, ow.
  virtual void conv2d_backward_bias(DType dtype, void* dbias, const void* dy,
                                    const Conv2dShape& s) = 0;
  // The three gradients of one convolution at once (each null when not wanted), so that a backend
  // can share the work on dy (one reorder, the bias summed in the weight gradient's pass). y, the
  // forward's output, is read only for s.relu. The default calls the three above (no s.relu).
  virtual void conv2d_backward(DType dtype, void* dx, void* dweight, void* dbias, const void* dy, const void* x,
                               const void* weight, const void* y, const Conv2dShape& s);
  // Whether conv2d_forward and conv2d_backward take s.relu for this dtype.
  virtual bool conv2d_fuses_relu(DType) const { return false; }

  // ---- pooling (see Pool2dShape) ------------------------------------------------------------
  // y = maximum of each window; indices (n, c, oh, ow) = its position iy * w + ix in the (h, w)
  // plane (the first maximum in row-major window order; padding never wins). NaN propagates: a
  // window holding a NaN gives NaN, at the first NaN's index.
  virtual void max_pool2d_forward(DType dtype, void* y, int64_t* indices, const void* x,
                                  const Pool2dShape& s) = 0;
  // dx[n, c, indices[...]] gets the sum of the dy of the windows whose maximum it is; every other
  // element of dx is 0. Deterministic (no floating atomics).
  virtual void max_pool2d_backward(DType dtype, void* dx, const void* dy, const int64_t* indices,
                                   const Pool2dShape& s) = 0;
  // y = mean of each window: the sum over the window's elements of x divided by kh * kw when
  // count_include_pad (padding counts as zeros), else by the number of elements inside x.
  virtual void avg_pool2d_forward(DType dtype, void* y, const void* x, const Pool2dShape& s,
                                  bool count_include_pad) = 0;
  virtual void avg_pool2d_backward(DType dtype, void* dx, const void* dy, const Pool2dShape& s,
                                   bool count_include_pad) = 0;

  // ---- batch normalization: x, y (n, c, m) contiguous, statistics per channel over n and m ----
  // Training: save_mean (c) = batch mean, save_invstd (c) = 1 / sqrt(biased batch variance + eps),
  // y = (x - mean) * invstd * weight + bias (weight, bias: (c), null meaning 1 and 0). When
  // running_mean / running_var (c) are not null they are updated in place:
  // r = (1 - momentum) * r + momentum * batch statistic, the variance unbiased (n m / (n m - 1)).
  // Requires n * m >= 1; with n * m == 1 the running variance is left unchanged.
  virtual void batch_norm_forward_train(DType dtype, void* y, void* save_mean, void* save_invstd,
                                        void* running_mean, void* running_var, const void* x,
                                        const void* weight, const void* bias, int64_t n,
                                        int64_t c, int64_t m, double momentum, double eps) = 0;
  // Evaluation: y = (x - running_mean) / sqrt(running_var + eps) * weight + bias.
  virtual void batch_norm_forward_eval(DType dtype, void* y, const void* x,
                                       const void* running_mean, const void* running_var,
                                       const void* weight, const void* bias, int64_t n, int64_t c,
                                       int64_t m, double eps) = 0;
  // Backward of the training forward: dx (n, c, m) and, when not null, dweight and dbias (c).
  virtual void batch_norm_backward(DType dtype, void* dx, void* dweight, void* dbias,
                                   const void* dy, const void* x, const void* save_mean,
                                   const void* save_invstd, const void* weight, int64_t n,
                                   int64_t c, int64_t m) = 0;

  // ---- multi-tensor arithmetic --------------------------------------------------------------
  // One ForeachOp over every tensor of l in one call (on a GPU, one kernel launch for up to a
  // few dozen tensors, whatever their sizes).
  virtual void foreach(ForeachOp op, DType dtype, const ForeachLists& l) = 0;
};

// Backends register themselves when the library loads (cpu/ always, cuda/ when built), with a
// factory for device `index` and a count of the devices present (which must not throw).
using BackendFactory = std::function<Backend&(int index)>;
NABLA_API void register_backend(Device::Kind kind, BackendFactory factory, std::function<int()> device_count);
NABLA_API bool has_backend(Device::Kind kind);
// device_count(kind) is in core/device.h: 0 when no backend is registered for the kind.
NABLA_API Backend& backend_for(Device::Kind kind, int index = 0);
inline Backend& backend(Device d) { return backend_for(d.kind, d.index); }

}  // namespace nabla
