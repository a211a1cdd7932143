// The NCCL engine of nabla::dist: collectives of CUDA tensors (a build with CUDA, MPI and NCCL).
//
// One communicator per CUDA device a process uses, created at the first collective on that
// device: rank 0 makes the unique id, the MPI engine broadcasts it (host_broadcast), and every
// rank joins with ncclCommInitRank on that device. Each device also gets a communication stream
// of its own, so that communication overlaps the kernels queued on the device's stream:
//
//   device stream:  ... kernels ... [record ready]            ... kernels ... [wait done] ...
//   comm stream:                        [wait ready] [NCCL collective] [record done]
//
// Nothing here synchronizes with the host. Work::wait() (WorkState::on_wait) makes the device's
// stream wait for the done event, so that what is queued after it sees the result.
//
// Memory. The tensors are freed on the device's stream (the stream-ordered allocator): memory a
// collective still reads or writes on the comm stream must not be freed, and so reused by the
// device stream, before the comm stream is done with it. The rule: the device stream waits for
// the done event before the WorkState lets its tensors (keep_alive) go. Work::wait() queues that
// wait (on_wait) while the state still holds them; a Work dropped without wait() gets the same
// wait queued by the state's deleter, before the tensors are released (Releaser below).
//
// Times. A WorkState is complete as soon as the collective is queued: started and finished are
// both the time it was queued, since when the device ran it is not known without a host sync.
#include <nabla/core/backend.h>
#include <nabla/core/log.h>
#include <nabla/dist/detail.h>

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <fmt/format.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#if NCCL_VERSION_CODE < NCCL_VERSION(2, 10, 0)
#error "nabla's NCCL engine needs NCCL 2.10 or newer (ncclAvg for ReduceOp::mean); configure with -DNABLA_NCCL=OFF"
#endif

namespace nabla::dist::detail {
namespace {

// ---- errors -----------------------------------------------------------------------------------
// Every message names the collective (Fingerprint::describe(), or what was being set up), the
// device, the call that failed and NCCL's or CUDA's own words.

std::string nccl_detail(ncclResult_t r, ncclComm_t comm) {
  std::string s = ncclGetErrorString(r);
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 13, 0)
  // The last error NCCL logged for this thread: often the reason itself ("Duplicate GPU
  // detected", a failed connection). It may come from an earlier call; NCCL does not clear it.
  const char* last = ncclGetLastError(comm);
  if (last && *last) s += fmt::format(" ({})", last);
#else
  (void)comm;
#endif
  return s;
}

// "ncclAllReduce(in.data_ptr(), ...)" -> "ncclAllReduce": the function is what a reader needs.
std::string_view function_of(const char* call) {
  std::string_view s(call);
  return s.substr(0, s.find('('));
}

[[noreturn]] void throw_nccl(ncclResult_t r, ncclComm_t comm, const char* call, const std::string& what, int device) {
  fail<CollectiveError>("nabla::dist: {}, device cuda:{}: {} failed: {} (NCCL_DEBUG=WARN in the environment makes "
                        "NCCL say more)",
                        what, device, function_of(call), nccl_detail(r, comm));
}

[[noreturn]] void throw_cuda(cudaError_t e, const char* call, const std::string& what, int device) {
  fail<CollectiveError>("nabla::dist: {}, device cuda:{}: {} failed: {} ({})", what, device, function_of(call),
                        cudaGetErrorString(e), cudaGetErrorName(e));
}

#define NABLA_NCCL_CHECK(comm, call, what, device)                          \
  do {                                                                      \
    ncclResult_t r_ = (call);                                               \
    if (r_ != ncclSuccess) throw_nccl(r_, (comm), #call, (what), (device)); \
  } while (0)
#define NABLA_NCCL_CUDA_CHECK(call, what, device)                \
  do {                                                           \
    cudaError_t e_ = (call);                                     \
    if (e_ != cudaSuccess) throw_cuda(e_, #call, (what), (device)); \
  } while (0)

// For the paths that must not throw (deleters, shutdown): logs an unexpected failure. At process
// exit the CUDA runtime may already be unloading; that is not worth a word.
void log_cuda(cudaError_t e, const char* call) noexcept {
  if (e == cudaSuccess || e == cudaErrorCudartUnloading || e == cudaErrorContextIsDestroyed) return;
  log_message(LogLevel::error, fmt::format("nabla::dist: {} failed: {}", call, cudaGetErrorString(e)));
}

// Makes `device` current for its lifetime (ncclCommInitRank, streams, events and cudaMalloc
// belong to the current device) and restores the caller's device.
class DeviceGuard {
 public:
  DeviceGuard(int device, const std::string& what) {
    NABLA_NCCL_CUDA_CHECK(cudaGetDevice(&previous_), what, device);
    if (previous_ != device) NABLA_NCCL_CUDA_CHECK(cudaSetDevice(device), what, device);
  }
  ~DeviceGuard() {
    int now = -1;
    if (cudaGetDevice(&now) == cudaSuccess && now != previous_) log_cuda(cudaSetDevice(previous_), "cudaSetDevice");
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

// ---- one device's communicator ------------------------------------------------------------------

// At most this many done events wait in a device's pool; more in flight at once are created and
// destroyed as needed (a training step's bucketed allreduces stay well below).
constexpr size_t kEventPoolMax = 64;

struct DeviceComm {
  int device = 0;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;  // the communication stream (non-blocking: it never waits for stream 0)
  cudaEvent_t ready = nullptr;    // recorded on the device's stream before each collective; reused, since
                                  // cudaStreamWaitEvent takes the record made before it
  int* barrier_buf = nullptr;     // one int on the device: a barrier is an allreduce of it

  std::mutex m;                   // guards what follows, which deleters touch from any thread
  std::vector<cudaEvent_t> free_events;
  bool broken = false;            // an NCCL call failed or reported an asynchronous error: abort, not destroy
  bool closed = false;            // nccl_shutdown ran: events that come back are destroyed

  // A done event (disable-timing: cheaper, and no times are read), from the pool or new. With
  // the device current.
  cudaEvent_t acquire_event(const std::string& what) {
    {
      std::lock_guard<std::mutex> lock(m);
      if (!free_events.empty()) {
        cudaEvent_t e = free_events.back();
        free_events.pop_back();
        return e;
      }
    }
    cudaEvent_t e = nullptr;
    NABLA_NCCL_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), what, device);
    return e;
  }
  // Back to the pool once the device stream's wait on it is queued (that wait keeps the record
  // it saw, so re-recording the event later does not disturb it).
  void release_event(cudaEvent_t e) noexcept {
    {
      std::lock_guard<std::mutex> lock(m);
      if (!closed && free_events.size() < kEventPoolMax) {
        free_events.push_back(e);
        return;
      }
    }
    log_cuda(cudaEventDestroy(e), "cudaEventDestroy");
  }
};

std::mutex g_mutex;  // serializes the collectives (issue order = queue order) and guards g_comms
std::map<int, std::shared_ptr<DeviceComm>> g_comms;

// Creates the communicator of `device` (collective: every rank comes here at the same collective,
// the fingerprint check having passed), its stream, events and barrier buffer.
std::shared_ptr<DeviceComm> create_comm(int device, const std::string& what) {
  auto dc = std::make_shared<DeviceComm>();
  dc->device = device;
  const std::string setup = fmt::format("creating the NCCL communicator for {}", what);
  // Rank 0's id, with whether it could make one: the others then fail at once with rank 0's
  // reason named, instead of waiting in ncclCommInitRank until the timeout.
  struct {
    ncclUniqueId id;
    int32_t ok;
  } boot{};
  ncclResult_t id_result = ncclSuccess;
  if (rank() == 0) {
    id_result = ncclGetUniqueId(&boot.id);
    boot.ok = id_result == ncclSuccess;
  }
  host_broadcast(&boot, sizeof(boot), 0);
  if (id_result != ncclSuccess) throw_nccl(id_result, nullptr, "ncclGetUniqueId", setup, device);
  if (!boot.ok)
    fail<CollectiveError>("nabla::dist: {}, device cuda:{}: rank 0 could not make the NCCL unique id (ncclGetUniqueId "
                          "failed there; see rank 0's error)",
                          setup, device);
  const ncclUniqueId& id = boot.id;

  DeviceGuard guard(device, setup);
  NABLA_NCCL_CHECK(nullptr, ncclCommInitRank(&dc->comm, world_size(), id, rank()), setup, device);
  // From here on a failure leaves a communicator to destroy: the DeviceComm goes to g_comms at
  // once, so that nccl_shutdown finds it whatever happens next.
  g_comms[device] = dc;
  try {
    NABLA_NCCL_CUDA_CHECK(cudaStreamCreateWithFlags(&dc->stream, cudaStreamNonBlocking), setup, device);
    NABLA_NCCL_CUDA_CHECK(cudaEventCreateWithFlags(&dc->ready, cudaEventDisableTiming), setup, device);
    // Stream-ordered on the comm stream (no device-wide sync); zero, so the sums stay zero.
    void* p = nullptr;
    NABLA_NCCL_CUDA_CHECK(cudaMallocAsync(&p, sizeof(int), dc->stream), setup, device);
    dc->barrier_buf = static_cast<int*>(p);
    NABLA_NCCL_CUDA_CHECK(cudaMemsetAsync(p, 0, sizeof(int), dc->stream), setup, device);
  } catch (...) {
    dc->broken = true;
    throw;
  }
  return dc;
}

ncclDataType_t nccl_dtype(DType t) {
  switch (t) {
    case DType::float32: return ncclFloat32;
    case DType::float64: return ncclFloat64;
    case DType::int32: return ncclInt32;
    case DType::int64: return ncclInt64;
  }
  fail("nabla::dist: dtype {} has no NCCL type", static_cast<int>(t));
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return ncclSum;
    // NCCL divides by the number of ranks itself (for floating types: each input times 1 / n,
    // then the sum), on the device and without a kernel of ours.
    case ReduceOp::mean: return ncclAvg;
    case ReduceOp::max: return ncclMax;
    case ReduceOp::min: return ncclMin;
  }
  fail("nabla::dist: unknown ReduceOp {}", static_cast<int>(op));
}

// What a Work needs after the collective is queued: the done event, the device stream to make
// wait on it, and the communicator (for its asynchronous error). Shared by on_wait and the
// state's deleter; the event goes back to the pool when both are gone.
struct Pending {
  std::shared_ptr<DeviceComm> dc;
  cudaStream_t device_stream = nullptr;
  cudaEvent_t done = nullptr;
  std::string what;  // the collective, for messages

  Pending() = default;
  Pending(const Pending&) = delete;
  Pending& operator=(const Pending&) = delete;
  ~Pending() {
    if (done) dc->release_event(done);
  }

  // Work::wait(): the device stream waits for the collective; an asynchronous NCCL error the
  // communicator has seen (a peer gone, a failed connection) is reported here.
  void device_waits() {
    NABLA_NCCL_CUDA_CHECK(cudaStreamWaitEvent(device_stream, done, 0), what, dc->device);
    std::lock_guard<std::mutex> lock(dc->m);
    if (dc->closed || !dc->comm) return;
    ncclResult_t async = ncclSuccess;
    ncclResult_t r = ncclCommGetAsyncError(dc->comm, &async);
    if (r != ncclSuccess) {
      dc->broken = true;
      throw_nccl(r, dc->comm, "ncclCommGetAsyncError", what, dc->device);
    }
    if (async != ncclSuccess && async != ncclInProgress) {
      dc->broken = true;
      throw_nccl(async, dc->comm, "the queued collective, as ncclCommGetAsyncError reports,", what, dc->device);
    }
  }
  // The same from the deleter: never throws.
  void device_waits_noexcept() noexcept { log_cuda(cudaStreamWaitEvent(device_stream, done, 0), "cudaStreamWaitEvent"); }
};

// The deleter of a NCCL WorkState: the device stream waits for the collective before the state
// (and so keep_alive, whose memory the device stream may then reuse) goes. A wait already queued
// by Work::wait() makes this one a no-op on the device.
struct Releaser {
  std::shared_ptr<Pending> pending;
  void operator()(WorkState* s) noexcept {
    if (pending) pending->device_waits_noexcept();
    delete s;
    pending.reset();
  }
};

void check_args(Kind kind, const Tensor& in, const Tensor& out, ReduceOp op, int root) {
  const char* name = to_string(kind);
  if (!in.defined()) fail("nabla::dist::{}: the tensor is undefined", name);
  if (in.device().kind != Device::Kind::CUDA)
    fail("nabla::dist::{}: the NCCL engine takes CUDA tensors, not one on {}", name, in.device());
  if (kind == Kind::barrier) return;  // `in` only names the device
  if (!out.defined() || out.device() != in.device())
    fail("nabla::dist::{}: the output must be on the input's device ({})", name, in.device());
  if (!in.is_contiguous() || !out.is_contiguous()) fail("nabla::dist::{}: the tensors must be contiguous", name);
  if (out.dtype() != in.dtype())
    fail("nabla::dist::{}: the output is {}, the input {}", name, out.dtype(), in.dtype());
  (void)nccl_dtype(in.dtype());
  if (kind == Kind::allreduce && op == ReduceOp::mean && !is_floating(in.dtype()))
    fail("nabla::dist::allreduce: mean of {} tensors (mean is for floating types)", in.dtype());
  if (kind == Kind::broadcast && (root < 0 || root >= world_size()))
    fail("nabla::dist::broadcast: root {} is not a rank of this world of {}", root, world_size());
  const int64_t want = kind == Kind::allgather ? in.numel() * world_size() : in.numel();
  if (out.numel() != want)
    fail("nabla::dist::{}: the output has {} elements, {} expected", name, out.numel(), want);
}

}  // namespace

std::shared_ptr<WorkState> nccl_collective(Kind kind, const Tensor& in, const Tensor& out, ReduceOp op, int root) {
  check_args(kind, in, out, op, root);
  const int device = in.device().index;

  // One collective at a time in this process: the fingerprint's number, the communicator's
  // creation and the queueing happen in issue order on every rank.
  std::lock_guard<std::mutex> lock(g_mutex);
  Fingerprint f;
  f.seq = next_seq();
  f.kind = kind;
  f.device = 1;
  if (kind != Kind::barrier) {
    f.dtype = static_cast<int64_t>(in.dtype());
    f.count = in.numel();
  }
  if (kind == Kind::allreduce) f.op = static_cast<int64_t>(op);
  if (kind == Kind::broadcast) f.root = root;
  // Before any data moves, and before a communicator is created: ranks that disagree fail here
  // with a message, rather than hang in NCCL.
  check_fingerprint(f);
  const std::string what = f.describe();

  std::shared_ptr<DeviceComm> dc;
  if (auto it = g_comms.find(device); it != g_comms.end()) dc = it->second;
  if (dc && dc->broken)
    fail<CollectiveError>("nabla::dist: {}, device cuda:{}: an earlier NCCL error left this device's communicator broken",
                          what, device);
  if (!dc) dc = create_comm(device, what);

  auto device_stream = static_cast<cudaStream_t>(backend(in.device()).native_stream());
  if (!device_stream) fail<CollectiveError>("nabla::dist: {}: {} has no stream to order the collective with", what, in.device());

  DeviceGuard guard(device, what);
  auto pending = std::make_shared<Pending>();
  pending->dc = dc;
  pending->device_stream = device_stream;
  pending->what = what;
  try {
    // The comm stream starts after what the device stream has queued so far (the tensor's
    // producers, and the allocation of `out`).
    NABLA_NCCL_CUDA_CHECK(cudaEventRecord(dc->ready, device_stream), what, device);
    NABLA_NCCL_CUDA_CHECK(cudaStreamWaitEvent(dc->stream, dc->ready, 0), what, device);
    pending->done = dc->acquire_event(what);

    const size_t count = static_cast<size_t>(in.numel());
    // Zero elements: nothing to move on any rank (the fingerprint check saw the same count
    // everywhere), and an empty tensor may have no data pointer for NCCL to take.
    if (kind == Kind::barrier) {
      NABLA_NCCL_CHECK(dc->comm, ncclAllReduce(dc->barrier_buf, dc->barrier_buf, 1, ncclInt32, ncclSum, dc->comm, dc->stream),
                       what, device);
    } else if (count > 0) {
      const ncclDataType_t dt = nccl_dtype(in.dtype());
      switch (kind) {
        case Kind::allreduce:
          NABLA_NCCL_CHECK(dc->comm, ncclAllReduce(in.data_ptr(), out.data_ptr(), count, dt, nccl_op(op), dc->comm, dc->stream),
                           what, device);
          break;
        case Kind::broadcast:
          NABLA_NCCL_CHECK(dc->comm, ncclBroadcast(in.data_ptr(), out.data_ptr(), count, dt, root, dc->comm, dc->stream),
                           what, device);
          break;
        case Kind::allgather:
          NABLA_NCCL_CHECK(dc->comm, ncclAllGather(in.data_ptr(), out.data_ptr(), count, dt, dc->comm, dc->stream), what,
                           device);
          break;
        case Kind::barrier: break;
      }
    }
    NABLA_NCCL_CUDA_CHECK(cudaEventRecord(pending->done, dc->stream), what, device);
  } catch (const CollectiveError&) {
    // A communicator whose call failed is not used again (NCCL's state may be inconsistent
    // across ranks); nccl_shutdown aborts it.
    std::lock_guard<std::mutex> dlock(dc->m);
    dc->broken = true;
    throw;
  }

  std::shared_ptr<WorkState> state(new WorkState, Releaser{pending});
  if (kind != Kind::barrier) {
    state->keep_alive.push_back(in);
    if (kind == Kind::allgather) state->keep_alive.push_back(out);
  }
  state->on_wait = [pending] { pending->device_waits(); };
  state->started = state->finished = std::chrono::steady_clock::now();
  state->finish();
  return state;
}

void nccl_shutdown() noexcept {
  std::lock_guard<std::mutex> lock(g_mutex);
  for (auto& [device, dc] : g_comms) {
    std::lock_guard<std::mutex> dlock(dc->m);
    dc->closed = true;
    int previous = -1;
    const bool have_previous = cudaGetDevice(&previous) == cudaSuccess;
    if (previous != device) log_cuda(cudaSetDevice(device), "cudaSetDevice");
    if (dc->comm) {
      ncclResult_t async = ncclSuccess;
      if (!dc->broken && (ncclCommGetAsyncError(dc->comm, &async) != ncclSuccess || async != ncclSuccess)) dc->broken = true;
      // A healthy communicator is destroyed after its queued work (ncclCommDestroy); a broken
      // one is aborted, since its peers may never take part again and destroying would hang.
      ncclResult_t r = dc->broken ? ncclCommAbort(dc->comm) : ncclCommDestroy(dc->comm);
      if (r != ncclSuccess)
        log_message(LogLevel::error, fmt::format("nabla::dist: {} of the NCCL communicator on cuda:{} failed: {}",
                                                 dc->broken ? "ncclCommAbort" : "ncclCommDestroy", device,
                                                 ncclGetErrorString(r)));
      dc->comm = nullptr;
    }
    // Stream-ordered, after the collectives queued on the comm stream; the stream's and the
    // events' resources are released by CUDA once their work is done.
    if (dc->barrier_buf && dc->stream) log_cuda(cudaFreeAsync(dc->barrier_buf, dc->stream), "cudaFreeAsync");
    dc->barrier_buf = nullptr;
    for (cudaEvent_t e : dc->free_events) log_cuda(cudaEventDestroy(e), "cudaEventDestroy");
    dc->free_events.clear();
    if (dc->ready) log_cuda(cudaEventDestroy(dc->ready), "cudaEventDestroy");
    dc->ready = nullptr;
    if (dc->stream) log_cuda(cudaStreamDestroy(dc->stream), "cudaStreamDestroy");
    dc->stream = nullptr;
    if (have_previous && previous != device) log_cuda(cudaSetDevice(previous), "cudaSetDevice");
  }
  // Work still held elsewhere keeps its DeviceComm (closed: its event is destroyed on release).
  g_comms.clear();
}

}  // namespace nabla::dist::detail
