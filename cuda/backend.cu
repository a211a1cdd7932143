// CudaBackend: construction, stream-ordered memory, copies, synchronization, registration.
#include <nabla/core/error.h>
#include <nabla/core/log.h>
#include <nabla/cuda/compat.cuh>
#include <nabla/cuda/cuda_backend.h>
#include <nabla/cuda/device.h>
#include <nabla/cuda/test_hooks.cuh>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

// CMAKE_CUDA_ARCHITECTURES of this build, for the message when it has no code for a GPU (set on
// this file by CMakeLists.txt).
#ifndef NABLA_CUDA_ARCHITECTURES
#define NABLA_CUDA_ARCHITECTURES ""
#endif

namespace nabla::cuda {

void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line) {
  fail("{} failed: {} (at {}:{})", call, cublasGetStatusName(status), file, line);
}

void throw_cudnn_error(cudnnStatus_t status, const char* call, const char* file, int line) {
  fail("{} failed: {} (at {}:{})", call, cudnnGetErrorString(status), file, line);
}

CudnnHandle::~CudnnHandle() {
  if (!h_) return;
  const cudnnStatus_t st = cudnnDestroy(h_);
  if (st != CUDNN_STATUS_SUCCESS)
    log_message(LogLevel::error, std::string("nabla: cudnnDestroy failed: ") + cudnnGetErrorString(st));
}

CudnnHandle& CudnnHandle::operator=(CudnnHandle&& o) noexcept {
  if (this != &o) {
    CudnnHandle old(std::exchange(h_, std::exchange(o.h_, nullptr)));  // destroys the previous handle
  }
  return *this;
}

DeviceGuard::DeviceGuard(int device) {
  NABLA_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != device) {
    NABLA_CUDA_CHECK(cudaSetDevice(device));
    switched_ = true;
  }
}

DeviceGuard::~DeviceGuard() {
  if (switched_ && cudaSetDevice(previous_) != cudaSuccess) cudaGetLastError();
}

namespace {
__global__ void probe_kernel() {}

// A GPU the build has no code for: a clear error here, at the first use of the device, rather
// than "no kernel image is available" at some later launch.
void check_kernel_image(int device) {
  cudaFuncAttributes attr{};
  const cudaError_t err = cudaFuncGetAttributes(&attr, probe_kernel);
  if (err == cudaSuccess) return;
  cudaGetLastError();
  if (err == cudaErrorNoKernelImageForDevice || err == cudaErrorInvalidDeviceFunction ||
      err == cudaErrorUnsupportedPtxVersion) {
    cudaDeviceProp prop{};
    NABLA_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    std::string msg = compat::no_kernel_image_message(device, prop.name, prop.major, prop.minor,
                                                      NABLA_CUDA_ARCHITECTURES);
    if (err == cudaErrorUnsupportedPtxVersion)
      msg += " (the PTX in this build is newer than this driver can compile: update the driver, or rebuild with real "
             "code for this GPU)";
    throw Error(msg);
  }
  check(err, "cudaFuncGetAttributes(&attr, probe_kernel)", __FILE__, __LINE__);
}

// Once per process: cuDNN at run time older than at build time is said on stderr.
void check_cudnn_version() {
  static std::once_flag once;
  std::call_once(once, [] {
    const std::string warning = compat::cudnn_version_warning(CUDNN_VERSION, cudnnGetVersion());
    if (!warning.empty()) log_message(LogLevel::warning, warning);
  });
}
}  // namespace

CudaBackend::CudaBackend(int device) : device_(device) {
  DeviceGuard guard(device);
  check_kernel_image(device);
  check_cudnn_version();
  NABLA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  // Freed blocks stay in the pool for reuse (threshold: never release), so a training step
  // allocates without calling the driver or synchronizing.
  NABLA_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool_, device));
  uint64_t keep = std::numeric_limits<uint64_t>::max();
  NABLA_CUDA_CHECK(cudaMemPoolSetAttribute(pool_, cudaMemPoolAttrReleaseThreshold, &keep));
  int sms = 0;
  NABLA_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  max_blocks_ = std::max<int64_t>(1, int64_t{sms} * (2048 / kBlock));
  NABLA_CUDA_CHECK(cudaMalloc(&flags_, kFlagsSize * sizeof(int64_t)));
  reset_flags();
}

// Backends live until the process ends (see backend_of): the CUDA runtime may already be torn
// down when static destructors run, so the stream, pool, cuBLAS handle and buffers are not
// released here. The owners among the members (the cuDNN handle, the convolution plans) release
// theirs when a backend is destroyed, logging failures.
CudaBackend::~CudaBackend() = default;

cublasHandle_t CudaBackend::cublas() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!cublas_) {
    DeviceGuard guard(device_);
    NABLA_CUBLAS_CHECK(cublasCreate(&cublas_));
    NABLA_CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
  }
  return cublas_;
}

cudnnHandle_t CudaBackend::cudnn() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!cudnn_.get()) {
    DeviceGuard guard(device_);
    cudnnHandle_t h = nullptr;
    NABLA_CUDNN_CHECK(cudnnCreate(&h));
    CudnnHandle owner(h);  // destroys h if binding it to the stream fails
    NABLA_CUDNN_CHECK(cudnnSetStream(h, stream_));
    cudnn_ = std::move(owner);
  }
  return cudnn_.get();
}

int CudaBackend::device_count() const { return nabla::cuda::device_count(); }

DeviceProperties CudaBackend::properties() {
  const DeviceInfo info = nabla::cuda::device_info(device_);
  DeviceProperties p;
  p.device = Device::cuda(device_);
  p.name = info.name;
  p.total_memory = info.total_memory;
  p.free_memory = info.free_memory;
  p.compute_units = info.sm_count;
  p.cc_major = info.cc_major;
  p.cc_minor = info.cc_minor;
  return p;
}

namespace {
std::atomic<bool> g_poison{false};
}  // namespace

namespace test_hooks {
void set_poison_allocations(bool on) { g_poison.store(on); }
}  // namespace test_hooks

void* CudaBackend::allocate(size_t nbytes) {
  if (nbytes == 0) return nullptr;
  DeviceGuard guard(device_);
  void* p = nullptr;
  cudaError_t err = cudaMallocAsync(&p, nbytes, stream_);
  if (err == cudaErrorMemoryAllocation) {
    // Give the pool's cached blocks back to the device and try once more.
    cudaGetLastError();
    NABLA_CUDA_CHECK(cudaStreamSynchronize(stream_));
    NABLA_CUDA_CHECK(cudaMemPoolTrimTo(pool_, 0));
    err = cudaMallocAsync(&p, nbytes, stream_);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      size_t free_bytes = 0, total = 0;
      NABLA_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total));
      fail<OutOfMemoryError>(
          "cuda:{}: out of memory allocating {} bytes ({:.1f} MiB); {} bytes ({:.1f} MiB) free of {:.1f} GiB", device_,
          nbytes, nbytes / 1048576.0, free_bytes, free_bytes / 1048576.0, total / 1073741824.0);
    }
  }
  check(err, "cudaMallocAsync(&p, nbytes, stream_)", __FILE__, __LINE__);
  if (g_poison.load(std::memory_order_relaxed)) NABLA_CUDA_CHECK(cudaMemsetAsync(p, 0xFF, nbytes, stream_));
  return p;
}

void CudaBackend::deallocate(void* p, size_t) noexcept {
  if (!p) return;
  cudaError_t err = cudaFreeAsync(p, stream_);
  if (err != cudaSuccess && err != cudaErrorCudartUnloading) {
    log_message(LogLevel::error, std::string("nabla: cudaFreeAsync failed: ") + cudaGetErrorString(err));
    cudaGetLastError();
  }
}

void CudaBackend::copy(void* dst, const void* src, size_t nbytes) {
  if (nbytes == 0) return;
  NABLA_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, stream_));
}

// Host transfers go through two pinned staging buffers used in turn (DMA straight from pinned
// memory, so a host-to-device copy runs asynchronously once the bytes are staged). Before a
// buffer is refilled, the copy that last read it must have finished: that wait is on one
// transfer's event, not on the device's other work.
void CudaBackend::copy_from_host(void* dst, const void* host_src, size_t nbytes) {
  if (nbytes == 0) return;
  DeviceGuard guard(device_);
  std::lock_guard<std::mutex> lock(staging_mu_);
  for (size_t done = 0; done < nbytes;) {
    Staging& s = staging_[next_staging_];
    next_staging_ = 1 - next_staging_;
    const size_t chunk = std::min(nbytes - done, kStagingBytes);
    if (!s.host) {
      NABLA_CUDA_CHECK(cudaMallocHost(&s.host, kStagingBytes));
      NABLA_CUDA_CHECK(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming));
    } else {
      NABLA_CUDA_CHECK(cudaEventSynchronize(s.done));
    }
    std::memcpy(s.host, static_cast<const char*>(host_src) + done, chunk);
    NABLA_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dst) + done, s.host, chunk, cudaMemcpyHostToDevice, stream_));
    NABLA_CUDA_CHECK(cudaEventRecord(s.done, stream_));
    done += chunk;
  }
}

void CudaBackend::copy_to_host(void* host_dst, const void* src, size_t nbytes) {
  if (nbytes == 0) {
    synchronize();
    return;
  }
  DeviceGuard guard(device_);
  std::unique_lock<std::mutex> lock(staging_mu_);
  for (size_t done = 0; done < nbytes;) {
    Staging& s = staging_[next_staging_];
    next_staging_ = 1 - next_staging_;
    const size_t chunk = std::min(nbytes - done, kStagingBytes);
    if (!s.host) {
      NABLA_CUDA_CHECK(cudaMallocHost(&s.host, kStagingBytes));
      NABLA_CUDA_CHECK(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming));
    }
    NABLA_CUDA_CHECK(cudaMemcpyAsync(s.host, static_cast<const char*>(src) + done, chunk, cudaMemcpyDeviceToHost, stream_));
    NABLA_CUDA_CHECK(cudaEventRecord(s.done, stream_));
    NABLA_CUDA_CHECK(cudaEventSynchronize(s.done));
    std::memcpy(static_cast<char*>(host_dst) + done, s.host, chunk);
    done += chunk;
  }
  lock.unlock();
  synchronize();  // reports errors found on the device (e.g. bad labels)
}

void CudaBackend::synchronize() {
  NABLA_CUDA_CHECK(cudaStreamSynchronize(stream_));
  throw_pending_check_failure();
}

// Index checks (class labels, embedding rows) run on the device and leave their verdict in
// flags_ (see kFlag*): the first failing check records the count of bad indices in its batch,
// the first bad position, that index, the limit, the op's name (a string literal, so its address
// stays valid) and the IndexKind that words the message; checks after a recorded failure do
// nothing. Nothing is read back until the next synchronization.
namespace {
constexpr int kFlagCount = 0, kFlagIndex = 1, kFlagValue = 2, kFlagLimit = 3, kFlagOp = 4, kFlagKind = 5;
static_assert(kFlagKind < CudaBackend::kFlagsSize);

// flags: (kFlagsSize); indices: (n).
__global__ void check_indices_kernel(int64_t* flags, const int64_t* indices, int64_t n, int64_t limit) {
  if (flags[kFlagOp] != 0) return;  // an earlier check already failed (op names are never null)
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t v = indices[i];
    if (v < 0 || v >= limit) {
      atomicAdd(reinterpret_cast<unsigned long long*>(flags + kFlagCount), 1ull);
      atomicMin(reinterpret_cast<long long*>(flags + kFlagIndex), static_cast<long long>(i));
    }
  }
}

// One thread: completes the record of the check just run, if it failed and none failed before.
__global__ void record_index_failure(int64_t* flags, const int64_t* indices, int64_t limit, int64_t op, int64_t kind) {
  if (flags[kFlagCount] > 0 && flags[kFlagOp] == 0) {
    flags[kFlagValue] = indices[flags[kFlagIndex]];
    flags[kFlagLimit] = limit;
    flags[kFlagOp] = op;
    flags[kFlagKind] = kind;
  }
}
}  // namespace

void CudaBackend::check_indices(const int64_t* indices, int64_t n, int64_t limit, const char* op, IndexKind kind) {
  if (n == 0) return;
  NABLA_ASSERT(op != nullptr);  // a null name would read as "no failure recorded" (kFlagOp)
  DeviceGuard guard(device_);
  check_indices_kernel<<<grid(n), kBlock, 0, stream_>>>(flags_, indices, n, limit);
  NABLA_CUDA_CHECK_LAUNCH();
  record_index_failure<<<1, 1, 0, stream_>>>(flags_, indices, limit, static_cast<int64_t>(reinterpret_cast<intptr_t>(op)),
                                             static_cast<int64_t>(kind));
  NABLA_CUDA_CHECK_LAUNCH();
  std::lock_guard<std::mutex> lock(mu_);
  checks_pending_ = true;
}

void CudaBackend::throw_pending_check_failure() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!checks_pending_) return;
    checks_pending_ = false;
  }
  // On the work stream (stream_ does not synchronize with the legacy default stream), after
  // everything enqueued so far; a pageable destination makes the copy synchronous.
  int64_t f[kFlagsSize];
  NABLA_CUDA_CHECK(cudaMemcpyAsync(f, flags_, sizeof(f), cudaMemcpyDeviceToHost, stream_));
  NABLA_CUDA_CHECK(cudaStreamSynchronize(stream_));
  if (f[kFlagCount] == 0) return;
  reset_flags();
  const char* op = reinterpret_cast<const char*>(static_cast<intptr_t>(f[kFlagOp]));
  if (static_cast<IndexKind>(f[kFlagKind]) == IndexKind::label)
    fail<IndexError>(
        "{}: label {} at index {} is out of range for {} classes (expected 0..{}); {} bad labels in that batch "
        "(found on cuda:{}, reported at the next synchronization)",
        op, f[kFlagValue], f[kFlagIndex], f[kFlagLimit], f[kFlagLimit] - 1, f[kFlagCount], device_);
  fail<IndexError>(
      "{}: index {} at position {} is out of range for {} rows (expected 0..{}); {} bad indices in that batch "
      "(found on cuda:{}, reported at the next synchronization)",
      op, f[kFlagValue], f[kFlagIndex], f[kFlagLimit], f[kFlagLimit] - 1, f[kFlagCount], device_);
}

namespace {
// flags: (kFlagsSize). One block of kFlagsSize threads.
__global__ void reset_flags_kernel(int64_t* flags) {
  const int i = threadIdx.x;
  if (i < CudaBackend::kFlagsSize) flags[i] = i == kFlagIndex ? std::numeric_limits<int64_t>::max() : 0;
}
}  // namespace

// A kernel on the work stream, ordered before every check enqueued after it. (It was a
// cudaMemcpy from the host: that runs on the legacy default stream, which the non-blocking
// stream_ does not wait for, and from pageable memory it may return before the bytes land, so
// the next check_indices_kernel could still read the old failure and skip its batch.)
void CudaBackend::reset_flags() {
  DeviceGuard guard(device_);
  reset_flags_kernel<<<1, kFlagsSize, 0, stream_>>>(flags_);
  NABLA_CUDA_CHECK_LAUNCH();
}

CudaBackend& backend_of(int index) {
  static std::mutex mu;
  static std::vector<CudaBackend*> backends;  // never freed: see ~CudaBackend
  std::lock_guard<std::mutex> lock(mu);
  const int n = nabla::cuda::device_count();
  NABLA_CHECK_INDEX(index >= 0 && index < n, "cuda:{} requested, but {} CUDA device{} present", index, n,
                    n == 1 ? " is" : "s are");
  if (backends.size() < static_cast<size_t>(n)) backends.resize(n, nullptr);
  if (!backends[index]) backends[index] = new CudaBackend(index);
  return *backends[index];
}

void synchronize() {
  const int n = device_count();
  for (int i = 0; i < n; ++i) backend_of(i).synchronize();
}

namespace {
struct Registration {
  Registration() {
    register_backend(
        Device::Kind::CUDA, [](int index) -> Backend& { return backend_of(index); },
        [] { return nabla::cuda::device_count(); });
  }
} registration;
}  // namespace

}  // namespace nabla::cuda
