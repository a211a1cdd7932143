// nabla::dist: process groups and collectives for data-parallel training on many processes.
//
//   mpirun -np 2 ./train            # one process per GPU, CPU socket or machine
//
//   nabla::dist::init();            // MPI_Init_thread under mpirun; world size 1 without it
//   auto t = nabla::full({4}, float(nabla::dist::rank()));
//   nabla::dist::allreduce(t);      // every rank now holds 0 + 1 + ... + (world - 1)
//   nabla::dist::Work w = nabla::dist::allreduce_async(g, nabla::dist::ReduceOp::mean);
//   ...                             // compute on; g must stay untouched until
//   w.wait();
//
// Engines: CPU tensors go through MPI (Open MPI; `mpirun` is the launcher, on one machine or
// many, with nothing else to configure); CUDA tensors through NCCL on the device's stream,
// bootstrapped through MPI, never staged through the host. A build without MPI (NABLA_MPI=OFF or
// no MPI found) runs as a world of one process: the collectives are then identities. A build
// without NCCL rejects CUDA tensors in collectives with a clear error.
//
// Order and checks. Every rank must call the same collectives in the same order (as MPI and
// NCCL require). Each collective is numbered; with InitOptions::check_collectives (the default)
// its kind, dtype, element count, reduction, root and number are compared across ranks before any
// data moves, and a difference (a rank that skipped a collective, different parameter shapes) is
// a CollectiveError on every rank naming what each rank called. A collective that has not
// completed within InitOptions::timeout (a rank died, hangs, or waits in a different
// collective) is a CollectiveError too. With the check on, the timeout watches the ranks'
// arrival (the exchange of descriptions); the data then moves through MPI's blocking
// collectives (its fastest), which cannot wait for a rank that is elsewhere. Without it, the
// data moves through nonblocking ones polled against the timeout.
//
// Asynchrony. CPU collectives run on one communication thread per process, in the order they
// were issued, so the calling thread computes on while data moves; the tensor passed in must
// stay alive and unchanged (and unread, for the output) until Work::wait() returns. CUDA
// collectives are queued on a communication stream that waits for the work already queued on
// the device's stream; Work::wait() makes the device's stream wait for them (no host sync).
//
// Failure. A rank that cannot go on calls abort(message): the message goes to stderr with the
// rank, and MPI_Abort ends every process of the job (mpirun returns non-zero within seconds).
// Model::fit does this for an exception on a distributed model (see train/model.h).
#pragma once

#include <nabla/export.h>

#include <nabla/core/error.h>
#include <nabla/core/tensor.h>

#include <chrono>
#include <memory>
#include <string>

namespace nabla::dist {

// A collective failed: ranks called different collectives (or the same with different tensors),
// one did not complete within the timeout, or the engine (MPI, NCCL) reported an error.
class NABLA_API CollectiveError : public Error {
 public:
  using Error::Error;

 private:
  void throw_with(const std::string& what) const override;
};

struct InitOptions {
  // How long a collective may take before it is an error (waiting included: a rank that
  // arrives late by more than this fails it). Also NABLA_DIST_TIMEOUT (seconds) in the
  // environment, which wins when set.
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
  // Compare every collective's description across ranks before it runs (a small allgather
  // of 8 integers on the communication thread).
  bool check_collectives = true;
};

// Starts the process group: MPI_Init_thread when MPI is built in and not yet initialized (the
// environment that mpirun sets up tells the ranks who they are), the communication thread, and
// NCCL lazily at the first CUDA collective. Idempotent (options of later calls are ignored).
// MPI is finalized at exit (or by finalize()); after abort() or a collective error it is not,
// since the other ranks may never arrive: the process then ends through MPI_Abort.
NABLA_API void init(const InitOptions& opts = {});
NABLA_API bool initialized();
// Waits for outstanding collectives, stops the communication thread, finalizes MPI (if nabla
// initialized it). Called at exit when init() was; collectives after it are errors.
NABLA_API void finalize();

// Whether this build has the MPI engine, and the NCCL engine.
NABLA_API bool mpi_built();
NABLA_API bool nccl_built();

// This process's rank and the number of processes (0 and 1 before init() or without MPI);
// the rank among the processes on this machine and their number (for choosing a GPU:
// Device::cuda(local_rank() % device_count)).
NABLA_API int rank();
NABLA_API int world_size();
NABLA_API int local_rank();
NABLA_API int local_size();
inline bool is_main_process() { return rank() == 0; }

NABLA_API std::chrono::milliseconds timeout();
NABLA_API void set_timeout(std::chrono::milliseconds t);

enum class ReduceOp { sum, mean, max, min };
NABLA_API const char* to_string(ReduceOp op);

namespace detail {
struct WorkState;
}

// A handle on a collective in flight. Default-constructed: already complete.
class NABLA_API Work {
 public:
  Work() = default;
  explicit Work(std::shared_ptr<detail::WorkState> state) : state_(std::move(state)) {}
  // Blocks until the collective is complete (CPU), or makes the device's stream wait for it
  // (CUDA); rethrows its error. Waiting again returns at once (or rethrows again).
  void wait();
  // Whether it has completed (never blocks).
  bool completed() const;
  // When the engine started moving data and when it finished (steady_clock; default
  // time_points before that), for timelines.
  std::chrono::steady_clock::time_point started() const;
  std::chrono::steady_clock::time_point finished() const;

 private:
  std::shared_ptr<detail::WorkState> state_;
};

// In place on t (contiguous; float32, float64, int64, int32; mean only for floating types):
// every rank ends with the reduction of all ranks' t.
NABLA_API void allreduce(const Tensor& t, ReduceOp op = ReduceOp::sum);
[[nodiscard]] NABLA_API Work allreduce_async(const Tensor& t, ReduceOp op = ReduceOp::sum);
// Every rank ends with root's t (same shape and dtype everywhere).
NABLA_API void broadcast(const Tensor& t, int root = 0);
[[nodiscard]] NABLA_API Work broadcast_async(const Tensor& t, int root = 0);
// Concatenation of every rank's t (same shape everywhere) along a new leading axis:
// [world_size, t.shape()...], on t's device.
NABLA_API Tensor allgather(const Tensor& t);
// Into `out` ([world_size, t.shape()...], contiguous, t's dtype and device).
[[nodiscard]] NABLA_API Work allgather_async(const Tensor& t, const Tensor& out);
NABLA_API void barrier();
[[nodiscard]] NABLA_API Work barrier_async();

// Every rank's string, in rank order (a host-side helper for checks and messages; blocking).
NABLA_API std::vector<std::string> allgather_strings(const std::string& s);

// Ends the whole job: prints "nabla.dist: rank R of W: <message>" to stderr, then MPI_Abort
// (every process of the job ends; mpirun returns `code`). Without MPI, std::exit(code).
[[noreturn]] NABLA_API void abort(const std::string& message, int code = 1);

}  // namespace nabla::dist
