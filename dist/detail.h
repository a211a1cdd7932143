// Internal to dist/: what the MPI engine (process_group.cpp) and the NCCL engine (nccl.cpp, or
// nccl_stub.cpp in a build without NCCL) share. Not installed.
#pragma once

#include <nabla/dist/dist.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace nabla::dist::detail {

enum class Kind : int64_t { allreduce = 1, broadcast = 2, allgather = 3, barrier = 4 };
const char* to_string(Kind k);

// What a collective is, compared across ranks before it runs (check_collectives).
struct Fingerprint {
  int64_t seq = 0;    // the process group's count of collectives issued so far (1-based)
  Kind kind = Kind::barrier;
  int64_t dtype = -1;  // DType as an integer; -1 for a barrier
  int64_t count = 0;   // elements of the input
  int64_t op = -1;     // ReduceOp for allreduce, else -1
  int64_t root = -1;   // broadcast's root, else -1
  int64_t device = 0;  // 0: CPU (MPI), 1: CUDA (NCCL)
  // "allreduce #12 (sum) of 1,048,579 float32 on CPU"
  std::string describe() const;
};

// The state behind a Work. The engine sets started/finished and calls finish() exactly once.
struct WorkState {
  std::mutex m;
  std::condition_variable cv;
  bool done = false;
  std::exception_ptr error;
  std::chrono::steady_clock::time_point started{}, finished{};
  std::vector<Tensor> keep_alive;       // the tensors the collective reads and writes
  std::function<void()> on_wait;        // run by Work::wait() on the caller's thread once done (NCCL: stream wait)
  void finish(std::exception_ptr e = nullptr);
};

// The MPI side, for the NCCL engine: blocking, run on the communication thread in issue order
// with the timeout. Broadcasts `bytes` of host memory from root (the NCCL unique id).
void host_broadcast(void* data, size_t bytes, int root);
// Compares f across ranks (through MPI); throws CollectiveError naming every rank's collective
// when they differ. No-op when check_collectives is off or the world has one process.
void check_fingerprint(const Fingerprint& f);
// The next collective number (the same counter for both engines).
int64_t next_seq();

// The NCCL engine. nccl_collective queues one collective of CUDA tensors (in, out: same device,
// contiguous; out == in for allreduce and broadcast) and returns its state; throws Error in a
// build without NCCL ("this build of nabla has no NCCL: ...").
std::shared_ptr<WorkState> nccl_collective(Kind kind, const Tensor& in, const Tensor& out, ReduceOp op, int root);
// Destroys the communicators (from finalize()).
void nccl_shutdown() noexcept;

}  // namespace nabla::dist::detail
