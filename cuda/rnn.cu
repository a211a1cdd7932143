// CUDA LSTM and GRU layers (one layer, one or two directions) through cuDNN's v8/v9 RNN API:
// cudnnRNNForward, cudnnRNNBackwardData_v8, cudnnRNNBackwardWeights_v8. Semantics: core/backend.h
// (RnnShape); the CPU backend (cpu/rnn.cpp) is the reference. cuDNN's cells are PyTorch's (PyTorch
// runs its LSTM and GRU on them): LSTM gates i, f, g, o are cuDNN's linLayerIDs 0..3 (input
// matrices W) and 4..7 (recurrent matrices R); GRU gates r, z, n are 0..2 and 3..5, and cuDNN's
// GRU multiplies r with (R_n h + b_Rn) as PyTorch does. Bias mode CUDNN_RNN_DOUBLE_BIAS gives
// b_ih (the W biases) and b_hh (the R biases).
//
// Data. x (seq, batch, input) and y (seq, batch, directions * hidden) are RNN data descriptors in
// CUDNN_RNN_DATA_LAYOUT_SEQ_MAJOR_PACKED with every sequence of full length, which is exactly our
// contiguous sequence-major layout (direction d of y in columns [d hidden, (d + 1) hidden)); the
// states hx, cx, hy, cy (directions, batch, hidden) share one 3-D tensor descriptor. Null hx/cx
// mean zeros to cuDNN as to us; so do null dhy/dcy.
//
// Weights. rnn_weight_layout reports where cuDNN's weight space (cudnnGetRNNWeightParams) keeps
// w_ih, w_hh, b_ih, b_hh of each direction (pseudoLayer = direction). The packed parameters of a
// layer are then views of cuDNN's own weight space and calls use them in place, provided each of
// the four is one contiguous block with its gates in order: gate k's matrix starting right after
// gate k-1's. PyTorch relies on the same property (its flattened cuDNN weights are views of the
// weight buffer, one per w_ih / w_hh / b_ih / b_hh, asserting that the linear layers of each
// follow each other). The property is checked for every configuration when its layout is first
// made; where it does not hold, the slow fallback takes over: rnn_weight_layout returns the CPU's
// contiguous layout and every call copies the parameters into a cuDNN weight space from the pool
// (and the gradient back out of one), one device-to-device copy per gate block.
// nabla::cuda::test_hooks::rnn_weights_in_place tells which path a configuration takes.
//
// Caching. Per device (RnnPlanCache, under its mutex; nothing is ever evicted, so the pointers
// handed out stay valid):
//   - one dropout descriptor with dropout 0 (cuDNN wants one), its RNG states from the pool;
//   - a Model per (dtype, cell, input, hidden, directions, TF32): the RNN descriptor, the weight
//     space size and the layout (offsets, in place or not), so a layout query at every forward of
//     a layer is a map lookup;
//   - a Plan per Model and (seq, batch): the x / y data descriptors, the state descriptor, the
//     device array of sequence lengths that cudnnRNNForward and the backward calls want (filled
//     once on the stream by a kernel, never copied from the host), and the workspace and reserve
//     sizes of training and inference.
// A training forward remembers which plan filled its reserve (keyed by the reserve's address) so
// that the backward uses the same descriptor even if TF32 was switched in between.
//
// Math. float32 without TF32: CUDNN_FMA_MATH (no tensor cores: float32 products as on the CPU);
// float32 with nabla::tf32_enabled(): CUDNN_TENSOR_OP_MATH; float64: CUDNN_DEFAULT_MATH. The
// compute precision is the data type. Algorithm CUDNN_RNN_ALGO_STANDARD.
//
// Nothing here synchronizes the device: workspaces come from the stream-ordered pool per call,
// and the weight gradient is cleared with cudaMemsetAsync before cudnnRNNBackwardWeights_v8 adds
// into it (CUDNN_WGRAD_MODE_ADD: the mode every cuDNN version supports; the result is assigned
// as the Backend contract asks).
#include <nabla/core/config.h>
#include <nabla/cuda/cuda_backend.h>
#include <nabla/cuda/cudnn_descriptor.cuh>
#include <nabla/cuda/device.h>
#include <nabla/cuda/test_hooks.cuh>

#include <algorithm>
#include <array>
#include <atomic>
#include <climits>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace nabla::cuda {

namespace rnn_detail {

using RnnDesc = CudnnDescriptor<cudnnRNNDescriptor_t, cudnnCreateRNNDescriptor, cudnnDestroyRNNDescriptor>;
using RnnDataDesc =
    CudnnDescriptor<cudnnRNNDataDescriptor_t, cudnnCreateRNNDataDescriptor, cudnnDestroyRNNDataDescriptor>;
using DropoutDesc =
    CudnnDescriptor<cudnnDropoutDescriptor_t, cudnnCreateDropoutDescriptor, cudnnDestroyDropoutDescriptor>;

// One block of the fallback's copies: `count` elements at `ours` in our layout, at `theirs` in
// cuDNN's weight space.
struct Block {
  int64_t ours, theirs, count;
};

struct Model {
  RnnDesc rnn;
  size_t weight_bytes = 0;  // cuDNN's weight space
  bool in_place = false;
  int64_t offsets[8] = {};  // what rnn_weight_layout reports: offsets[4 d + j]
  int64_t total = 0;        // and the element count of that layout
  std::vector<Block> blocks;  // fallback only
};

struct Plan {
  const Model* model = nullptr;
  RnnDataDesc x, y;
  CudnnTensorDesc h;  // hx, cx, hy, cy: (directions, batch, hidden)
  int32_t* dev_lengths = nullptr;  // (batch) on the device, each = seq; lives as long as the plan
  size_t work_train = 0, reserve_train = 0, work_infer = 0;
};

}  // namespace rnn_detail

// dtype, cell, input, hidden, directions, TF32
using RnnModelKey = std::array<int64_t, 6>;
// the model's key, then seq and batch
using RnnPlanKey = std::array<int64_t, 8>;

struct RnnPlanCache {
  std::mutex mu;
  bool dropout_ready = false;
  rnn_detail::DropoutDesc dropout;
  std::map<RnnModelKey, std::unique_ptr<rnn_detail::Model>> models;
  std::map<RnnPlanKey, std::unique_ptr<rnn_detail::Plan>> plans;
  std::unordered_map<const void*, const rnn_detail::Plan*> reserve_owner;  // reserve address -> its forward's plan
};

// The device arrays of the plans (dev_lengths) and the dropout states are not freed: backends
// live until the process ends (see ~CudaBackend), and the runtime may be gone by then.
void RnnPlanCacheDeleter::operator()(RnnPlanCache* c) const noexcept { delete c; }

RnnPlanCache& CudaBackend::rnn_plans() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!rnn_plans_) rnn_plans_.reset(new RnnPlanCache);
  return *rnn_plans_;
}

namespace {
std::atomic<bool> g_force_weight_copies{false};  // test_hooks.cuh

using namespace rnn_detail;

const char* cell_name(RnnCell c) { return c == RnnCell::lstm ? "LSTM" : "GRU"; }

std::string shape_str(const RnnShape& s) {
  return fmt::format("{} seq {}, batch {}, input {}, hidden {}, directions {}", cell_name(s.cell), s.seq, s.batch,
                     s.input, s.hidden, s.directions);
}

cudnnDataType_t data_type(DType dtype) { return dtype == DType::float32 ? CUDNN_DATA_FLOAT : CUDNN_DATA_DOUBLE; }

// cuDNN's RNN API takes int sizes.
void check_shape(const RnnShape& s, bool with_data) {
  NABLA_ASSERT(s.input >= 1 && s.hidden >= 1 && (s.directions == 1 || s.directions == 2));
  bool ok = s.input <= INT_MAX && s.gates() * s.hidden * std::max(s.input, s.hidden) <= INT_MAX;
  if (with_data) {
    NABLA_ASSERT(s.seq >= 1 && s.batch >= 1);
    ok = ok && s.seq * s.batch * std::max(s.input, s.directions * s.hidden) <= INT_MAX;
  }
  if (!ok) fail("cuda rnn: {} exceeds cuDNN's 32-bit sizes", shape_str(s));
}

// Called with the cache's lock held.
void ensure_dropout(CudaBackend& be, cudnnHandle_t h, RnnPlanCache& cache) {
  if (cache.dropout_ready) return;
  size_t bytes = 0;
  NABLA_CUDNN_CHECK(cudnnDropoutGetStatesSize(h, &bytes));
  void* states = be.allocate(bytes);  // kept for the backend's lifetime (see RnnPlanCacheDeleter)
  // Dropout 0: the states are never used, but cuDNN initializes them (on the handle's stream).
  NABLA_CUDNN_CHECK(cudnnSetDropoutDescriptor(cache.dropout.get(), h, 0.0f, states, bytes, 0));
  cache.dropout_ready = true;
}

int64_t numel_of(cudnnTensorDescriptor_t desc) {
  cudnnDataType_t type;
  int nd = 0, dims[8] = {}, strides[8] = {};
  NABLA_CUDNN_CHECK(cudnnGetTensorNdDescriptor(desc, 8, &type, &nd, dims, strides));
  int64_t n = 1;
  for (int i = 0; i < nd; ++i) n *= dims[i];
  return n;
}

// Builds the RNN descriptor and finds the weight layout. Called with the cache's lock held.
std::unique_ptr<Model> make_model(CudaBackend& be, cudnnHandle_t h, RnnPlanCache& cache, DType dtype,
                                  const RnnShape& s, bool tf32) {
  ensure_dropout(be, h, cache);
  auto m = std::make_unique<Model>();
  const cudnnDataType_t type = data_type(dtype);
  const cudnnMathType_t math = dtype == DType::float64 ? CUDNN_DEFAULT_MATH : tf32 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH;
  const int in = static_cast<int>(s.input), hid = static_cast<int>(s.hidden);
  NABLA_CUDNN_CHECK(cudnnSetRNNDescriptor_v8(
      m->rnn.get(), CUDNN_RNN_ALGO_STANDARD, s.cell == RnnCell::lstm ? CUDNN_LSTM : CUDNN_GRU, CUDNN_RNN_DOUBLE_BIAS,
      s.directions == 2 ? CUDNN_BIDIRECTIONAL : CUDNN_UNIDIRECTIONAL, CUDNN_LINEAR_INPUT, type, type, math, in, hid, hid,
      1, cache.dropout.get(), CUDNN_RNN_PADDED_IO_DISABLED));
  NABLA_CUDNN_CHECK(cudnnGetRNNWeightSpaceSize(h, m->rnn.get(), &m->weight_bytes));

  // Addresses inside a real weight space from the pool (cudnnGetRNNWeightParams only does
  // pointer arithmetic on it, but then no assumption about a null or fake base is needed); the
  // lease is freed in stream order and nothing is enqueued on it.
  const size_t es = dtype_size(dtype);
  ScratchLease space(be, m->weight_bytes);
  const char* base = static_cast<const char*>(space.get());
  const int64_t G = s.gates(), H = s.hidden, I = s.input, total = int64_t(m->weight_bytes / es);
  CudnnTensorDesc mdesc, bdesc;
  // mat[d][id], bias[d][id]: element offsets in cuDNN's weight space.
  std::vector<int64_t> mat(size_t(s.directions * 2 * G)), bias(mat.size());
  bool ok = m->weight_bytes % es == 0;
  for (int64_t d = 0; d < s.directions; ++d) {
    for (int64_t id = 0; id < 2 * G; ++id) {
      void* maddr = nullptr;
      void* baddr = nullptr;
      NABLA_CUDNN_CHECK(cudnnGetRNNWeightParams(h, m->rnn.get(), static_cast<int32_t>(d), m->weight_bytes, base,
                                                static_cast<int32_t>(id), mdesc.get(), &maddr, bdesc.get(), &baddr));
      if (!maddr || !baddr)
        internal_error(__FILE__, __LINE__,
                       fmt::format("rnn: cuDNN has no weight {} of direction {} for {}", id, d, shape_str(s)));
      const int64_t mb = static_cast<const char*>(maddr) - base, bb = static_cast<const char*>(baddr) - base;
      const int64_t cols = id < G ? I : H;
      ok = ok && mb % int64_t(es) == 0 && bb % int64_t(es) == 0 && numel_of(mdesc.get()) == H * cols &&
           numel_of(bdesc.get()) == H;
      const size_t k = size_t(d * 2 * G + id);
      mat[k] = mb / int64_t(es);
      bias[k] = bb / int64_t(es);
      ok = ok && mat[k] >= 0 && mat[k] + H * cols <= total && bias[k] >= 0 && bias[k] + H <= total;
    }
  }
  // The fallback below copies these blocks: they must at least lie inside the weight space.
  if (!ok)
    internal_error(__FILE__, __LINE__,
                   fmt::format("rnn: cuDNN's weight space for {} has a gate block of unexpected size or place",
                               shape_str(s)));
  ok = !g_force_weight_copies.load();  // test_hooks::force_rnn_weight_copies
  // In place when each of w_ih, w_hh, b_ih, b_hh is its gates' blocks back to back.
  for (int64_t d = 0; ok && d < s.directions; ++d) {
    const size_t k0 = size_t(d * 2 * G);
    for (int64_t g = 1; g < G; ++g) {
      ok = ok && mat[k0 + g] == mat[k0 + g - 1] + H * I && mat[k0 + G + g] == mat[k0 + G + g - 1] + H * H &&
           bias[k0 + g] == bias[k0 + g - 1] + H && bias[k0 + G + g] == bias[k0 + G + g - 1] + H;
    }
    if (ok) {
      m->offsets[4 * d + 0] = mat[k0];
      m->offsets[4 * d + 1] = mat[k0 + G];
      m->offsets[4 * d + 2] = bias[k0];
      m->offsets[4 * d + 3] = bias[k0 + G];
    }
  }
  m->in_place = ok;
  if (ok) {
    m->total = total;
    return m;
  }
  // The fallback: our layout, and the blocks to copy between it and cuDNN's.
  // The CPU backend's layout: per direction w_ih, w_hh, b_ih, b_hh back to back.
  m->total = backend_for(Device::Kind::CPU).rnn_weight_layout(dtype, s, m->offsets);
  for (int64_t d = 0; d < s.directions; ++d) {
    const size_t k0 = size_t(d * 2 * G);
    for (int64_t g = 0; g < G; ++g) {
      m->blocks.push_back({m->offsets[4 * d + 0] + g * H * I, mat[k0 + g], H * I});
      m->blocks.push_back({m->offsets[4 * d + 1] + g * H * H, mat[k0 + G + g], H * H});
      m->blocks.push_back({m->offsets[4 * d + 2] + g * H, bias[k0 + g], H});
      m->blocks.push_back({m->offsets[4 * d + 3] + g * H, bias[k0 + G + g], H});
    }
  }
  return m;
}

RnnModelKey model_key(DType dtype, const RnnShape& s, bool tf32) {
  return {static_cast<int64_t>(dtype), static_cast<int64_t>(s.cell), s.input, s.hidden, s.directions, tf32};
}

bool tf32_for(DType dtype) { return dtype == DType::float32 && tf32_enabled(); }

// Called with the cache's lock held.
const Model& model_for(CudaBackend& be, cudnnHandle_t h, RnnPlanCache& cache, DType dtype, const RnnShape& s,
                       bool tf32) {
  const RnnModelKey key = model_key(dtype, s, tf32);
  auto it = cache.models.find(key);
  if (it == cache.models.end()) it = cache.models.emplace(key, make_model(be, h, cache, dtype, s, tf32)).first;
  return *it->second;
}

std::unique_ptr<Plan> make_plan(CudaBackend& be, cudnnHandle_t h, const Model& model, DType dtype, const RnnShape& s) {
  auto p = std::make_unique<Plan>();
  p->model = &model;
  const cudnnDataType_t type = data_type(dtype);
  const int T = static_cast<int>(s.seq), B = static_cast<int>(s.batch);
  const std::vector<int> lengths(size_t(B), T);  // read by cudnnSetRNNDataDescriptor only
  NABLA_CUDNN_CHECK(cudnnSetRNNDataDescriptor(p->x.get(), type, CUDNN_RNN_DATA_LAYOUT_SEQ_MAJOR_PACKED, T, B,
                                              static_cast<int>(s.input), lengths.data(), nullptr));
  NABLA_CUDNN_CHECK(cudnnSetRNNDataDescriptor(p->y.get(), type, CUDNN_RNN_DATA_LAYOUT_SEQ_MAJOR_PACKED, T, B,
                                              static_cast<int>(s.directions * s.hidden), lengths.data(), nullptr));
  const int dims[3] = {static_cast<int>(s.directions), B, static_cast<int>(s.hidden)};
  const int strides[3] = {B * dims[2], dims[2], 1};
  NABLA_CUDNN_CHECK(cudnnSetTensorNdDescriptor(p->h.get(), type, 3, dims, strides));
  size_t ignored = 0;
  NABLA_CUDNN_CHECK(cudnnGetRNNTempSpaceSizes(h, model.rnn.get(), CUDNN_FWD_MODE_TRAINING, p->x.get(), &p->work_train,
                                              &p->reserve_train));
  NABLA_CUDNN_CHECK(
      cudnnGetRNNTempSpaceSizes(h, model.rnn.get(), CUDNN_FWD_MODE_INFERENCE, p->x.get(), &p->work_infer, &ignored));
  // The device copy of the lengths, written on the stream by a kernel: no host buffer, no copy.
  p->dev_lengths = static_cast<int32_t*>(be.allocate(size_t(B) * sizeof(int32_t)));
  be.fill(DType::int32, p->dev_lengths, B, double(T));
  return p;
}

struct Ready {
  cudnnHandle_t handle;
  const Plan* plan;
};

Ready plan_for(CudaBackend& be, DType dtype, const RnnShape& s) {
  check_shape(s, true);
  const bool tf32 = tf32_for(dtype);
  cudnnHandle_t h = be.cudnn();
  RnnPlanCache& cache = be.rnn_plans();
  std::lock_guard<std::mutex> lock(cache.mu);
  const Model& model = model_for(be, h, cache, dtype, s, tf32);
  const RnnModelKey mk = model_key(dtype, s, tf32);
  const RnnPlanKey key = {mk[0], mk[1], mk[2], mk[3], mk[4], mk[5], s.seq, s.batch};
  auto it = cache.plans.find(key);
  if (it == cache.plans.end()) it = cache.plans.emplace(key, make_plan(be, h, model, dtype, s)).first;
  return {h, it->second.get()};
}

// The fallback's copies: ours -> cuDNN's weight space (to_cudnn) or back.
void copy_blocks(CudaBackend& be, const Model& m, size_t es, void* ours, void* theirs, bool to_cudnn) {
  for (const Block& b : m.blocks) {
    char* o = static_cast<char*>(ours) + b.ours * es;
    char* t = static_cast<char*>(theirs) + b.theirs * es;
    NABLA_CUDA_CHECK(cudaMemcpyAsync(to_cudnn ? t : o, to_cudnn ? o : t, size_t(b.count) * es,
                                     cudaMemcpyDeviceToDevice, be.stream()));
  }
}

// The weights as cuDNN reads them: `w` itself in place, else a pool copy in cuDNN's layout.
class WeightSpace {
 public:
  WeightSpace(CudaBackend& be, const Model& m, size_t es, const void* w) {
    if (m.in_place) {
      ptr_ = const_cast<void*>(w);
      return;
    }
    lease_ = std::make_unique<ScratchLease>(be, m.weight_bytes);
    ptr_ = lease_->get();
    NABLA_CUDA_CHECK(cudaMemsetAsync(ptr_, 0, m.weight_bytes, be.stream()));  // any gaps defined
    copy_blocks(be, m, es, const_cast<void*>(w), ptr_, true);
  }
  void* get() const { return ptr_; }

 private:
  std::unique_ptr<ScratchLease> lease_;
  void* ptr_ = nullptr;
};

void check_dtype(DType dtype, const char* op) {
  if (dtype != DType::float32 && dtype != DType::float64)
    fail("cuda {}: dtype {} is not supported (float32 or float64 expected)", op, dtype_name(dtype));
}

}  // namespace

int64_t CudaBackend::rnn_weight_layout(DType dtype, const RnnShape& s, int64_t* offsets) {
  check_dtype(dtype, "rnn_weight_layout");
  check_shape(s, false);
  DeviceGuard guard(device());
  cudnnHandle_t h = cudnn();
  RnnPlanCache& cache = rnn_plans();
  std::lock_guard<std::mutex> lock(cache.mu);
  const Model& m = model_for(*this, h, cache, dtype, s, tf32_for(dtype));
  for (int64_t j = 0; j < 4 * s.directions; ++j) offsets[j] = m.offsets[j];
  return m.total;
}

size_t CudaBackend::rnn_reserve_bytes(DType dtype, const RnnShape& s) {
  check_dtype(dtype, "rnn_reserve_bytes");
  DeviceGuard guard(device());
  return plan_for(*this, dtype, s).plan->reserve_train;
}

void CudaBackend::rnn_forward(DType dtype, const RnnShape& s, void* y, void* hy, void* cy, void* reserve,
                              const void* x, const void* hx, const void* cx, const void* w) {
  check_dtype(dtype, "rnn_forward");
  DeviceGuard guard(device());
  const Ready r = plan_for(*this, dtype, s);
  const Plan& p = *r.plan;
  const Model& m = *p.model;
  const bool lstm = s.cell == RnnCell::lstm;
  const bool training = reserve != nullptr;
  const size_t work = training ? p.work_train : p.work_infer;
  ScratchLease ws(*this, work);
  WeightSpace wspace(*this, m, dtype_size(dtype), w);
  NABLA_CUDNN_CHECK(cudnnRNNForward(r.handle, m.rnn.get(), training ? CUDNN_FWD_MODE_TRAINING : CUDNN_FWD_MODE_INFERENCE,
                                    p.dev_lengths, p.x.get(), x, p.y.get(), y, p.h.get(), hx, hy, p.h.get(),
                                    lstm ? cx : nullptr, lstm ? cy : nullptr, m.weight_bytes, wspace.get(), work,
                                    ws.get(), training ? p.reserve_train : 0, reserve));
  if (training) {
    RnnPlanCache& cache = rnn_plans();
    std::lock_guard<std::mutex> lock(cache.mu);
    cache.reserve_owner[reserve] = &p;
  }
}

void CudaBackend::rnn_backward(DType dtype, const RnnShape& s, void* dx, void* dhx, void* dcx, void* dw,
                               const void* dy, const void* dhy, const void* dcy, const void* x, const void* hx,
                               const void* cx, const void* w, const void* y, void* reserve) {
  check_dtype(dtype, "rnn_backward");
  NABLA_ASSERT(reserve != nullptr && dw != nullptr && dy != nullptr);
  DeviceGuard guard(device());
  Ready r = plan_for(*this, dtype, s);
  {
    // The plan whose descriptor filled this reserve (the same one unless TF32 changed since).
    RnnPlanCache& cache = rnn_plans();
    std::lock_guard<std::mutex> lock(cache.mu);
    auto it = cache.reserve_owner.find(reserve);
    if (it != cache.reserve_owner.end()) {
      r.plan = it->second;
      cache.reserve_owner.erase(it);
    }
  }
  const Plan& p = *r.plan;
  const Model& m = *p.model;
  const size_t es = dtype_size(dtype);
  const bool lstm = s.cell == RnnCell::lstm;
  ScratchLease ws(*this, p.work_train);
  WeightSpace wspace(*this, m, es, w);
  // cuDNN always writes dx.
  std::unique_ptr<ScratchLease> dx_scratch;
  if (!dx) {
    dx_scratch = std::make_unique<ScratchLease>(*this, size_t(s.seq * s.batch * s.input) * es);
    dx = dx_scratch->get();
  }
  NABLA_CUDNN_CHECK(cudnnRNNBackwardData_v8(r.handle, m.rnn.get(), p.dev_lengths, p.y.get(), y, dy, p.x.get(), dx,
                                            p.h.get(), hx, dhy, dhx, p.h.get(), lstm ? cx : nullptr,
                                            lstm ? dcy : nullptr, lstm ? dcx : nullptr, m.weight_bytes, wspace.get(),
                                            p.work_train, ws.get(), p.reserve_train, reserve));
  std::unique_ptr<ScratchLease> dw_scratch;
  void* dspace = dw;
  if (!m.in_place) {
    dw_scratch = std::make_unique<ScratchLease>(*this, m.weight_bytes);
    dspace = dw_scratch->get();
  }
  NABLA_CUDA_CHECK(cudaMemsetAsync(dspace, 0, m.weight_bytes, stream()));
  NABLA_CUDNN_CHECK(cudnnRNNBackwardWeights_v8(r.handle, m.rnn.get(), CUDNN_WGRAD_MODE_ADD, p.dev_lengths, p.x.get(),
                                               x, p.h.get(), hx, p.y.get(), y, m.weight_bytes, dspace, p.work_train,
                                               ws.get(), p.reserve_train, reserve));
  if (!m.in_place) copy_blocks(*this, m, es, dw, dspace, false);
}

namespace test_hooks {
bool rnn_weights_in_place(int index, bool lstm, int64_t input, int64_t hidden, int64_t directions) {
  CudaBackend& be = backend_of(index);
  DeviceGuard guard(be.device());
  RnnShape s{lstm ? RnnCell::lstm : RnnCell::gru, 1, 1, input, hidden, directions};
  check_shape(s, false);
  cudnnHandle_t h = be.cudnn();
  RnnPlanCache& cache = be.rnn_plans();
  std::lock_guard<std::mutex> lock(cache.mu);
  return model_for(be, h, cache, DType::float32, s, tf32_for(DType::float32)).in_place;
}

void force_rnn_weight_copies(bool on) { g_force_weight_copies.store(on); }
}  // namespace test_hooks

}  // namespace nabla::cuda
