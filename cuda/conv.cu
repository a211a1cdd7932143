// CUDA 2-D convolution through cuDNN: forward, gradient of the input, of the weight and of the
// bias. Semantics: core/backend.h (Conv2dShape: NCHW, cross-correlation, symmetric padding,
// dilation, groups); the CPU backend (cpu/) is the reference.
//
// Plans. Everything cuDNN needs for one shape is made once and kept in the device's
// ConvPlanCache: the x, y and filter descriptors, one convolution descriptor per direction
// (forward, backward data, backward filter: the math type lives on that descriptor and each
// direction may settle on a different one), and each direction's algorithm and workspace size,
// chosen at the first call in that direction. The key is the dtype, every field of Conv2dShape
// and, for float32, whether TF32 is on. Plans are never evicted; each is a few hundred bytes of
// host memory plus cuDNN's descriptor objects.
//
// Choosing an algorithm. cudnnGet*Algorithm_v7 (cuDNN's heuristics) lists candidates, best
// first. We use the heuristics rather than cudnnFind*: Find runs every algorithm, blocks the
// host until the device is idle and, without the Ex form, allocates its own device memory, all
// of which would break "no hidden synchronization in a step" and stream capture. Candidates are
// filtered, then ranked, keeping cuDNN's order within a rank:
//   - skipped: status not CUDNN_STATUS_SUCCESS; a math type the numeric policy forbids; a
//     workspace-size query that fails for it (the combination is not supported);
//   - policy: float32 without TF32 allows only CUDNN_FMA_MATH (no tensor cores, so results are
//     float32 products as on the CPU); float32 with nabla::tf32_enabled() and float64 allow
//     any math type but CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION (which may round to half);
//   - rank: deterministic algorithms before nondeterministic ones (some backward algorithms add
//     with atomics, and the same step should give the same numbers twice); workspaces up to
//     kWorkspaceSoftCap before larger ones. When strict float32 finds nothing, a candidate that
//     cuDNN listed with CUDNN_DEFAULT_MATH is retried with CUDNN_FMA_MATH forced on the
//     descriptor (what PyTorch does), ranked after everything else.
// No candidate at all is a nabla::Error naming the direction, shape and policy.
//
// When the chosen algorithm fails to run (cuDNN returns an error status for it, e.g.
// CUDNN_STATUS_NOT_SUPPORTED or CUDNN_STATUS_EXECUTION_FAILED, which the heuristics can miss) or
// its workspace cannot be allocated, the call tries the next candidate of the ranked list, as
// PyTorch does, and the plan keeps the one that ran for later calls. Only when every candidate
// fails is it a nabla::Error, listing why each one did (conv_fallback.cuh: the walk itself, tested
// without a GPU; test_hooks.cuh: the fault injection that forces it in the GPU tests).
//
// Workspace comes from the backend's stream-ordered pool and is freed right after the cuDNN call
// is enqueued on the same stream (the free is ordered after the call). Backward kernels assign
// (beta = 0), per the Backend contract. The bias is added by our own kernel and its gradient is
// channel_sum (norm.cu) over dy viewed as (n, k, oh * ow): deterministic, float64 too.
#include <nabla/core/config.h>
#include <nabla/core/log.h>
#include <nabla/cuda/cuda_backend.h>
#include <nabla/cuda/conv_fallback.cuh>
#include <nabla/cuda/cudnn_descriptor.cuh>
#include <nabla/cuda/test_hooks.cuh>

#include <algorithm>
#include <array>
#include <atomic>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

// The cudnnConvolution* API (and its descriptors and perf structs) is marked deprecated in cuDNN 9
// in favour of the graph API, but it is still shipped, supported and documented, and is what
// fits a fixed set of NCHW convolutions best. cudnn.h only attaches the attribute when
// CUDNN_WARN_DEPRECATED is defined; these pragmas keep this file free of warnings when it is, for
// the host compiler and for nvcc's front end. The rest of cuda/ stays on the default settings.
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#pragma nv_diag_suppress 1444
#pragma nv_diag_suppress 1215

namespace nabla::cuda {

// The plan types are named (not in an anonymous namespace) because ConvPlanCache, declared in
// cuda_backend.h, holds them.
namespace conv_detail {

constexpr size_t kWorkspaceSoftCap = size_t{1} << 30;  // 1 GiB

template <typename H, cudnnStatus_t (*Create)(H*), cudnnStatus_t (*Destroy)(H)>
using Descriptor = CudnnDescriptor<H, Create, Destroy>;

using TensorDesc = Descriptor<cudnnTensorDescriptor_t, cudnnCreateTensorDescriptor, cudnnDestroyTensorDescriptor>;
using FilterDesc = Descriptor<cudnnFilterDescriptor_t, cudnnCreateFilterDescriptor, cudnnDestroyFilterDescriptor>;
using ConvDesc =
    Descriptor<cudnnConvolutionDescriptor_t, cudnnCreateConvolutionDescriptor, cudnnDestroyConvolutionDescriptor>;

enum Direction : int { kForward = 0, kBackwardData = 1, kBackwardFilter = 2 };
constexpr const char* kDirectionName[] = {"forward", "backward data", "backward filter"};

struct Algo {
  bool chosen = false;
  int algo = 0;  // cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  size_t workspace = 0;  // bytes
};

// One direction's usable candidates, best first, and the one now in use.
struct Choice {
  bool chosen = false;
  std::vector<Algo> ranked;
  size_t current = 0;  // index into ranked; moves on when an algorithm fails to run
};

struct ConvPlan {
  TensorDesc x, y;
  FilterDesc w;
  ConvDesc conv[3];  // by Direction
  Choice choice[3];
};

}  // namespace conv_detail

// dtype, tf32 (float32 only), then the 16 fields of Conv2dShape.
using ConvKey = std::array<int64_t, 18>;

struct ConvPlanCache {
  std::mutex mu;
  std::map<ConvKey, std::unique_ptr<conv_detail::ConvPlan>> plans;  // a plan's address is stable
};

void ConvPlanCacheDeleter::operator()(ConvPlanCache* c) const noexcept { delete c; }

ConvPlanCache& CudaBackend::conv_plans() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!conv_plans_) conv_plans_.reset(new ConvPlanCache);
  return *conv_plans_;
}

namespace {

using namespace conv_detail;

std::string shape_str(const Conv2dShape& s) {
  return fmt::format("x ({}, {}, {}, {}), weight ({}, {}, {}, {}), y ({}, {}, {}, {}), stride ({}, {}), padding ({}, {}), "
                     "dilation ({}, {}), groups {}",
                     s.n, s.c, s.h, s.w, s.k, s.groups > 0 ? s.c / s.groups : 0, s.kh, s.kw, s.n, s.k, s.oh, s.ow,
                     s.stride_h, s.stride_w, s.pad_h, s.pad_w, s.dil_h, s.dil_w, s.groups);
}

// cuDNN's legacy descriptors take int sizes and strides.
void check_int_range(const Conv2dShape& s) {
  const int64_t fields[] = {s.n, s.c, s.h, s.w, s.k, s.kh, s.kw, s.oh, s.ow, s.stride_h, s.stride_w,
                            s.pad_h, s.pad_w, s.dil_h, s.dil_w, s.groups};
  bool ok = true;
  for (int64_t f : fields) ok = ok && f <= INT_MAX;
  ok = ok && s.n * s.c * s.h * s.w <= INT_MAX && s.n * s.k * s.oh * s.ow <= INT_MAX &&
       s.k * (s.c / s.groups) * s.kh * s.kw <= INT_MAX;
  if (!ok) fail("cuda conv2d: {} exceeds cuDNN's 32-bit sizes (at most 2^31 - 1 elements per tensor)", shape_str(s));
}

struct Policy {
  bool strict_float = false;  // float32 without TF32: CUDNN_FMA_MATH only
  cudnnMathType_t preferred = CUDNN_DEFAULT_MATH;
  const char* name = "";
};

Policy policy_for(DType dtype, bool tf32) {
  if (dtype == DType::float64) return {false, CUDNN_DEFAULT_MATH, "float64"};
  if (tf32) return {false, CUDNN_TENSOR_OP_MATH, "float32 with TF32"};
  return {true, CUDNN_FMA_MATH, "strict float32 (CUDNN_FMA_MATH)"};
}

bool math_allowed(const Policy& p, cudnnMathType_t m) {
  if (p.strict_float) return m == CUDNN_FMA_MATH;
  return m != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
}

struct Candidate {
  int algo;
  cudnnStatus_t status;
  cudnnDeterminism_t determinism;
  cudnnMathType_t math;
};

template <typename Perf>
std::vector<Candidate> to_candidates(const std::vector<Perf>& perf, int returned) {
  std::vector<Candidate> out;
  for (int i = 0; i < returned; ++i)
    out.push_back({static_cast<int>(perf[i].algo), perf[i].status, perf[i].determinism, perf[i].mathType});
  return out;
}

// cuDNN's heuristic candidates for one direction, best first.
std::vector<Candidate> heuristic_candidates(cudnnHandle_t h, ConvPlan& p, Direction d) {
  cudnnConvolutionDescriptor_t conv = p.conv[d].get();
  int count = 0, returned = 0;
  switch (d) {
    case kForward: {
      NABLA_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &count));
      std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(static_cast<size_t>(count));
      NABLA_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, p.x.get(), p.w.get(), conv, p.y.get(), count,
                                                               &returned, perf.data()));
      return to_candidates(perf, returned);
    }
    case kBackwardData: {
      NABLA_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &count));
      std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(static_cast<size_t>(count));
      NABLA_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, p.w.get(), p.y.get(), conv, p.x.get(), count,
                                                                    &returned, perf.data()));
      return to_candidates(perf, returned);
    }
    case kBackwardFilter: {
      NABLA_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &count));
      std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(static_cast<size_t>(count));
      NABLA_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, p.x.get(), p.y.get(), conv, p.w.get(), count,
                                                                      &returned, perf.data()));
      return to_candidates(perf, returned);
    }
  }
  return {};
}

// The workspace algorithm `algo` needs with the math type now on the direction's descriptor;
// false when cuDNN does not support that combination.
bool workspace_of(cudnnHandle_t h, ConvPlan& p, Direction d, int algo, size_t* bytes) {
  cudnnConvolutionDescriptor_t conv = p.conv[d].get();
  cudnnStatus_t st = CUDNN_STATUS_NOT_SUPPORTED;
  switch (d) {
    case kForward:
      st = cudnnGetConvolutionForwardWorkspaceSize(h, p.x.get(), p.w.get(), conv, p.y.get(),
                                                   static_cast<cudnnConvolutionFwdAlgo_t>(algo), bytes);
      break;
    case kBackwardData:
      st = cudnnGetConvolutionBackwardDataWorkspaceSize(h, p.w.get(), p.y.get(), conv, p.x.get(),
                                                        static_cast<cudnnConvolutionBwdDataAlgo_t>(algo), bytes);
      break;
    case kBackwardFilter:
      st = cudnnGetConvolutionBackwardFilterWorkspaceSize(h, p.x.get(), p.y.get(), conv, p.w.get(),
                                                          static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo), bytes);
      break;
  }
  return st == CUDNN_STATUS_SUCCESS;
}

// Chooses direction d's algorithm (see the file comment) and leaves its math type on the
// direction's descriptor. Called with the cache's lock held.
void choose_algo(cudnnHandle_t h, ConvPlan& p, Direction d, const Policy& policy, const Conv2dShape& s) {
  cudnnConvolutionDescriptor_t conv = p.conv[d].get();
  NABLA_CUDNN_CHECK(cudnnSetConvolutionMathType(conv, policy.preferred));
  const std::vector<Candidate> cands = heuristic_candidates(h, p, d);
  std::vector<std::pair<int, Algo>> usable;  // (rank, algorithm), in cuDNN's order
  std::string seen;
  for (const Candidate& c : cands) {
    seen += fmt::format(" {}(math {}, status {})", c.algo, static_cast<int>(c.math), cudnnGetErrorString(c.status));
    if (c.status != CUDNN_STATUS_SUCCESS) continue;
    cudnnMathType_t math = c.math;
    int rank = 0;
    if (!math_allowed(policy, math)) {
      if (!(policy.strict_float && math == CUDNN_DEFAULT_MATH)) continue;
      math = CUDNN_FMA_MATH;  // forced: see the file comment
      rank += 4;
    }
    if (cudnnSetConvolutionMathType(conv, math) != CUDNN_STATUS_SUCCESS) continue;
    size_t bytes = 0;
    if (!workspace_of(h, p, d, c.algo, &bytes)) continue;
    if (bytes > kWorkspaceSoftCap) rank += 2;
    if (c.determinism != CUDNN_DETERMINISTIC) rank += 1;
    usable.push_back({rank, Algo{true, c.algo, math, bytes}});
  }
  if (usable.empty())
    fail("cuda conv2d {}: cuDNN {} has no usable algorithm for {} in {}; heuristics returned:{}", kDirectionName[d],
         CUDNN_VERSION, shape_str(s), policy.name, seen.empty() ? " nothing" : seen);
  // By rank, cuDNN's order within a rank.
  std::stable_sort(usable.begin(), usable.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  Choice& ch = p.choice[d];
  ch.ranked.clear();
  for (const auto& [rank, algo] : usable) ch.ranked.push_back(algo);
  ch.current = 0;
  ch.chosen = true;
  NABLA_CUDNN_CHECK(cudnnSetConvolutionMathType(conv, ch.ranked[0].math));
}

std::unique_ptr<ConvPlan> make_plan(DType dtype, const Conv2dShape& s) {
  const cudnnDataType_t type = dtype == DType::float32 ? CUDNN_DATA_FLOAT : CUDNN_DATA_DOUBLE;
  auto p = std::make_unique<ConvPlan>();
  auto i = [](int64_t v) { return static_cast<int>(v); };
  NABLA_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->x.get(), CUDNN_TENSOR_NCHW, type, i(s.n), i(s.c), i(s.h), i(s.w)));
  NABLA_CUDNN_CHECK(
      cudnnSetTensor4dDescriptor(p->y.get(), CUDNN_TENSOR_NCHW, type, i(s.n), i(s.k), i(s.oh), i(s.ow)));
  NABLA_CUDNN_CHECK(cudnnSetFilter4dDescriptor(p->w.get(), type, CUDNN_TENSOR_NCHW, i(s.k), i(s.c / s.groups),
                                               i(s.kh), i(s.kw)));
  for (ConvDesc& conv : p->conv) {
    // The compute type is the data type: float32 accumulates in float32, as cuBLAS does here.
    NABLA_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(conv.get(), i(s.pad_h), i(s.pad_w), i(s.stride_h),
                                                      i(s.stride_w), i(s.dil_h), i(s.dil_w), CUDNN_CROSS_CORRELATION,
                                                      type));
    NABLA_CUDNN_CHECK(cudnnSetConvolutionGroupCount(conv.get(), i(s.groups)));
  }
  int n = 0, k = 0, oh = 0, ow = 0;
  NABLA_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(p->conv[0].get(), p->x.get(), p->w.get(), &n, &k, &oh, &ow));
  if (n != s.n || k != s.k || oh != s.oh || ow != s.ow)
    internal_error(__FILE__, __LINE__,
                   fmt::format("conv2d: cuDNN computes y ({}, {}, {}, {}) for {}", n, k, oh, ow, shape_str(s)));
  return p;
}

// What one call needs from a plan, copied out under the lock (the descriptors stay valid: plans
// are never destroyed while the backend lives).
struct Ready {
  cudnnHandle_t handle;
  ConvPlan* plan;
  Algo algo;
  size_t index;  // of algo in the direction's ranked list
};

Ready plan_for(CudaBackend& be, DType dtype, const Conv2dShape& s, Direction d) {
  check_int_range(s);
  NABLA_ASSERT(s.groups >= 1 && s.c % s.groups == 0 && s.k % s.groups == 0);
  const bool tf32 = dtype == DType::float32 && tf32_enabled();
  const ConvKey key = {static_cast<int64_t>(dtype), tf32, s.n, s.c, s.h, s.w, s.k, s.kh, s.kw, s.oh, s.ow,
                       s.stride_h, s.stride_w, s.pad_h, s.pad_w, s.dil_h, s.dil_w, s.groups};
  cudnnHandle_t h = be.cudnn();
  ConvPlanCache& cache = be.conv_plans();
  std::lock_guard<std::mutex> lock(cache.mu);
  auto it = cache.plans.find(key);
  if (it == cache.plans.end()) it = cache.plans.emplace(key, make_plan(dtype, s)).first;
  ConvPlan& p = *it->second;
  if (!p.choice[d].chosen) choose_algo(h, p, d, policy_for(dtype, tf32), s);
  const Choice& ch = p.choice[d];
  return {h, &p, ch.ranked[ch.current], ch.current};
}

// Fault injection (test_hooks.cuh).
std::atomic<int> g_fail_runs{0}, g_fail_workspaces{0};
bool take_fault(std::atomic<int>& counter) {
  int n = counter.load();
  while (n > 0 && !counter.compare_exchange_weak(n, n - 1)) {
  }
  return n > 0;
}

// One try of algorithm a: its workspace from the pool, then call(handle, plan, a, workspace,
// bytes), which enqueues the cuDNN call and returns its status.
template <typename Call>
Attempt attempt(CudaBackend& be, const Ready& r, const Algo& a, const Call& call) {
  std::optional<ScratchLease> ws;
  try {
    if (take_fault(g_fail_workspaces))
      fail<OutOfMemoryError>("out of memory allocating {} bytes (injected by test_hooks::inject_conv_failures)",
                             a.workspace);
    ws.emplace(be, a.workspace);
  } catch (const Error& e) {
    return {false, fmt::format("algorithm {} (math {}): workspace of {} bytes: {}", a.algo, static_cast<int>(a.math),
                               a.workspace, e.what())};
  }
  const cudnnStatus_t st = take_fault(g_fail_runs) ? CUDNN_STATUS_EXECUTION_FAILED : call(r.handle, *r.plan, a, ws->get(), ws->size());
  if (st == CUDNN_STATUS_SUCCESS) return {true, {}};
  return {false, fmt::format("algorithm {} (math {}): {}", a.algo, static_cast<int>(a.math), cudnnGetErrorString(st))};
}

// Runs direction d of a convolution with the plan's algorithm, falling back along the ranked
// list when it cannot run (see the file comment). call(handle, plan, algo, workspace, bytes)
// enqueues the cuDNN call and returns its status; it must not take the cache's lock.
template <typename Call>
void run_conv(CudaBackend& be, DType dtype, const Conv2dShape& s, Direction d, const Call& call) {
  const Ready r = plan_for(be, dtype, s, d);
  const Attempt first = attempt(be, r, r.algo, call);
  if (first.ran) return;
  // Under the cache's lock: the direction's descriptor carries the math type of the candidate
  // being tried, and the plan's choice moves on for every later call.
  ConvPlanCache& cache = be.conv_plans();
  std::lock_guard<std::mutex> lock(cache.mu);
  Choice& ch = r.plan->choice[d];
  cudnnConvolutionDescriptor_t conv = r.plan->conv[d].get();
  const std::string what = fmt::format("cuda conv2d {} for {}", kDirectionName[d], shape_str(s));
  const std::string earlier = fmt::format("candidate {}: {}", r.index, first.why);
  try {
    const size_t used = run_first_that_works(
        r.index + 1, ch.ranked.size(),
        [&](size_t i) -> Attempt {
          const Algo& a = ch.ranked[i];
          const cudnnStatus_t st = cudnnSetConvolutionMathType(conv, a.math);
          if (st != CUDNN_STATUS_SUCCESS)
            return {false, fmt::format("algorithm {}: math type {} refused: {}", a.algo, static_cast<int>(a.math),
                                       cudnnGetErrorString(st))};
          return attempt(be, r, a, call);
        },
        what, earlier);
    ch.current = used;
    log_message(LogLevel::warning, "nabla: " + what + ": algorithm " + std::to_string(r.algo.algo) + " failed (" +
                                       first.why + "); using algorithm " + std::to_string(ch.ranked[used].algo) +
                                       " from now on");
  } catch (...) {
    cudnnSetConvolutionMathType(conv, ch.ranked[ch.current].math);  // as the plan says
    throw;
  }
}

// y: (n, k, m); bias: (k). y += bias per channel.
template <typename T>
__global__ void add_bias_kernel(T* y, const T* bias, int64_t total, int64_t k, int64_t m) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x)
    y[i] += bias[(i / m) % k];
}

}  // namespace

void CudaBackend::conv2d_forward(DType dtype, void* y, const void* x, const void* weight, const void* bias,
                                 const Conv2dShape& s) {
  if (s.n == 0 || s.k == 0 || s.oh == 0 || s.ow == 0) return;
  DeviceGuard guard(device());
  dispatch_floating(dtype, "conv2d_forward", [&](auto tag) {
    using T = decltype(tag);
    const T alpha = 1, beta = 0;
    run_conv(*this, dtype, s, kForward,
             [&](cudnnHandle_t h, const ConvPlan& p, const Algo& a, void* ws, size_t ws_bytes) {
               return cudnnConvolutionForward(h, &alpha, p.x.get(), x, p.w.get(), weight, p.conv[kForward].get(),
                                              static_cast<cudnnConvolutionFwdAlgo_t>(a.algo), ws, ws_bytes, &beta,
                                              p.y.get(), y);
             });
    if (bias) {
      const int64_t m = s.oh * s.ow, total = s.n * s.k * m;
      add_bias_kernel<T><<<grid(total), kBlock, 0, stream()>>>(static_cast<T*>(y), static_cast<const T*>(bias), total,
                                                                s.k, m);
      NABLA_CUDA_CHECK_LAUNCH();
    }
  });
}

void CudaBackend::conv2d_backward_data(DType dtype, void* dx, const void* dy, const void* weight,
                                       const Conv2dShape& s) {
  if (s.n == 0 || s.c == 0 || s.h == 0 || s.w == 0) return;
  DeviceGuard guard(device());
  dispatch_floating(dtype, "conv2d_backward_data", [&](auto tag) {
    using T = decltype(tag);
    const T alpha = 1, beta = 0;  // assigns dx
    run_conv(*this, dtype, s, kBackwardData,
             [&](cudnnHandle_t h, const ConvPlan& p, const Algo& a, void* ws, size_t ws_bytes) {
               return cudnnConvolutionBackwardData(h, &alpha, p.w.get(), weight, p.y.get(), dy,
                                                   p.conv[kBackwardData].get(),
                                                   static_cast<cudnnConvolutionBwdDataAlgo_t>(a.algo), ws, ws_bytes,
                                                   &beta, p.x.get(), dx);
             });
  });
}

void CudaBackend::conv2d_backward_weight(DType dtype, void* dweight, const void* dy, const void* x,
                                         const Conv2dShape& s) {
  const int64_t wsize = s.groups > 0 ? s.k * (s.c / s.groups) * s.kh * s.kw : 0;
  if (wsize == 0) return;
  DeviceGuard guard(device());
  if (s.n == 0 || s.oh == 0 || s.ow == 0) {  // a sum over nothing; cuDNN refuses empty tensors
    fill(dtype, dweight, wsize, 0.0);
    return;
  }
  dispatch_floating(dtype, "conv2d_backward_weight", [&](auto tag) {
    using T = decltype(tag);
    const T alpha = 1, beta = 0;  // assigns dweight
    run_conv(*this, dtype, s, kBackwardFilter,
             [&](cudnnHandle_t h, const ConvPlan& p, const Algo& a, void* ws, size_t ws_bytes) {
               return cudnnConvolutionBackwardFilter(h, &alpha, p.x.get(), x, p.y.get(), dy,
                                                     p.conv[kBackwardFilter].get(),
                                                     static_cast<cudnnConvolutionBwdFilterAlgo_t>(a.algo), ws,
                                                     ws_bytes, &beta, p.w.get(), dweight);
             });
  });
}

void CudaBackend::conv2d_backward_bias(DType dtype, void* dbias, const void* dy, const Conv2dShape& s) {
  if (s.k == 0) return;
  DeviceGuard guard(device());
  dispatch_floating(dtype, "conv2d_backward_bias", [&](auto tag) {
    using T = decltype(tag);
    channel_sum(*this, static_cast<T*>(dbias), static_cast<const T*>(dy), s.n, s.k, s.oh * s.ow);
  });
}

namespace test_hooks {
void inject_conv_failures(int runs, int workspaces) {
  g_fail_runs.store(runs);
  g_fail_workspaces.store(workspaces);
}
}  // namespace test_hooks

}  // namespace nabla::cuda
