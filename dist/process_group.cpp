// The process group and the MPI engine of nabla::dist (see dist.h for the contract).
//
// One communication thread per process runs the CPU collectives in issue order, so that the
// callers compute on while data moves, and so that MPI is only ever called from one thread at a
// time (init, finalize and abort aside, which run when that thread is not started, stopped, or
// when the process is ending anyway): MPI_THREAD_SERIALIZED is then enough, whatever MPI gives.
//
// Each collective is a Task: first (check_collectives, world > 1) an allgather of its
// Fingerprint, which every rank issues for every collective whatever it is, so that ranks that
// disagree all learn it from one matching MPI call and throw the same CollectiveError before any
// data moves; they have then consumed the same sequence number and the group stays usable. Then
// the data collective, nonblocking, polled against the deadline. A timeout or an MPI error
// breaks the group: a nonblocking collective cannot be cancelled, so nothing later can be
// matched with the other ranks, and MPI_Finalize would wait for ranks that never come.
#include <nabla/dist/detail.h>

#include <nabla/core/test_hooks.h>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <optional>
#include <thread>

#ifdef NABLA_WITH_MPI
#define OMPI_SKIP_MPICXX 1  // the C API only: the deprecated C++ bindings are not needed
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <pthread.h>
#endif

namespace nabla::dist {

using Clock = std::chrono::steady_clock;
using detail::Fingerprint;
using detail::Kind;
using detail::WorkState;

namespace {

// "1,048,579": counts in messages are read by people.
std::string group_digits(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

// allgather_strings goes through the fingerprint check as an allgather of no dtype.
bool is_strings(const Fingerprint& f) { return f.kind == Kind::allgather && f.dtype < 0; }

// "allreduce #12 (sum) of 1,048,579 float32 on CPU", with the number and the device optional.
std::string describe_call(const Fingerprint& f, bool with_seq, bool with_device) {
  std::string s = is_strings(f) ? "allgather_strings" : detail::to_string(f.kind);
  if (with_seq) s += fmt::format(" #{}", f.seq);
  if (f.kind == Kind::allreduce)
    s += fmt::format(" ({})", f.op >= 0 && f.op <= 3 ? to_string(static_cast<ReduceOp>(f.op)) : "unknown reduction");
  if (f.kind == Kind::broadcast) s += fmt::format(" (root {})", f.root);
  if (f.dtype >= 0) {
    const char* dtype = f.dtype <= 3 ? dtype_name(static_cast<DType>(f.dtype)) : "unknown dtype";
    s += fmt::format(" of {} {}", group_digits(f.count), dtype);
  }
  if (with_device) s += f.device == 0 ? " on CPU" : " on CUDA";
  return s;
}

// NABLA_DIST_TIMEOUT, in seconds, wins over the options' timeout when set.
std::chrono::milliseconds timeout_from_env(std::chrono::milliseconds fallback) {
  const char* s = std::getenv("NABLA_DIST_TIMEOUT");
  if (s == nullptr || *s == '\0') return fallback;
  char* end = nullptr;
  const double seconds = std::strtod(s, &end);
  while (end != nullptr && (*end == ' ' || *end == '\t')) ++end;
  // At most about 30 years: the deadline arithmetic on steady_clock must not overflow.
  NABLA_CHECK(end != s && *end == '\0' && std::isfinite(seconds) && seconds > 0 && seconds < 1e9,
              "nabla::dist::init: the environment variable NABLA_DIST_TIMEOUT is '{}', expected a number of "
              "seconds > 0 (e.g. 300 or 0.5)",
              s);
  return std::max(std::chrono::milliseconds(1), std::chrono::milliseconds(std::llround(seconds * 1000)));
}

struct Task {
  Fingerprint fp;
  bool check = true;  // compare fp across ranks first
  std::string what;   // fp described for messages: "allreduce #3 (sum) of 10 float32"
  std::shared_ptr<WorkState> state;
  std::function<void(Clock::time_point deadline, const std::string& what)> run;  // moves the data; throws
};

struct Group {
  std::mutex init_mutex;  // init and finalize
  bool initialized = false, finalized = false;
  bool owns_mpi = false;  // nabla called MPI_Init_thread, so nabla finalizes
  bool check = true;
  std::atomic<int> rank{0}, world{1}, local_rank{0}, local_size{1};
  std::atomic<int64_t> timeout_ms{std::chrono::milliseconds(std::chrono::minutes(5)).count()};
  std::atomic<bool> finalized_flag{false};  // for the collectives' check, without init_mutex
  std::atomic<int64_t> max_chunk{INT_MAX};   // elements per MPI call (a test hook lowers it)

  std::mutex m;  // the queue, the sequence counter and the broken state
  std::condition_variable cv;
  std::deque<Task> queue;
  int64_t seq = 0;
  bool stopping = false;
  std::thread thread;
  bool broken = false;
  std::string broken_what;  // the error that broke the group
  // What MPI may still read or write after a timeout (a request that cannot be cancelled): kept
  // alive for good rather than freed under it.
  std::vector<std::shared_ptr<void>> dangling;
#ifdef NABLA_WITH_MPI
  MPI_Comm comm = MPI_COMM_NULL;
#endif
};

// Never destroyed: the exit handler and the communication thread use it while statics go.
Group& group() {
  static Group* g = new Group;
  return *g;
}

bool group_broken(std::string* what = nullptr) {
  Group& g = group();
  std::lock_guard lock(g.m);
  if (what != nullptr) *what = g.broken_what;
  return g.broken;
}

std::shared_ptr<WorkState> completed_state() {
  auto s = std::make_shared<WorkState>();
  s->started = s->finished = Clock::now();
  s->done = true;
  return s;
}

#ifdef NABLA_WITH_MPI

std::string seconds_str(std::chrono::milliseconds t) { return fmt::format("{:g} s", t.count() / 1000.0); }

// "0, 2-5, 7"
std::string rank_list(const std::vector<int>& ranks) {
  std::string s;
  for (size_t i = 0; i < ranks.size();) {
    size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
    if (!s.empty()) s += ", ";
    s += j == i ? std::to_string(ranks[i]) : fmt::format("{}-{}", ranks[i], ranks[j]);
    i = j + 1;
  }
  return s;
}

constexpr int kFingerprintInts = 8;

void to_ints(const Fingerprint& f, int64_t* v) {
  const int64_t ints[kFingerprintInts] = {f.seq, static_cast<int64_t>(f.kind), f.dtype, f.count, f.op, f.root,
                                          f.device, 0 /* spare */};
  std::copy(ints, ints + kFingerprintInts, v);
}

Fingerprint from_ints(const int64_t* v) {
  Fingerprint f;
  f.seq = v[0];
  f.kind = static_cast<Kind>(v[1]);
  f.dtype = v[2];
  f.count = v[3];
  f.op = v[4];
  f.root = v[5];
  f.device = v[6];
  return f;
}

// The error for fingerprints that differ: every rank's call, ranks that agree grouped.
std::string mismatch_message(const std::vector<Fingerprint>& all) {
  bool same_seq = true, same_device = true;
  for (const Fingerprint& f : all) {
    same_seq = same_seq && f.seq == all[0].seq;
    same_device = same_device && f.device == all[0].device;
  }
  std::vector<std::string> calls;
  std::vector<std::vector<int>> ranks;
  for (size_t r = 0; r < all.size(); ++r) {
    std::string call = describe_call(all[r], !same_seq, !same_device);
    auto it = std::find(calls.begin(), calls.end(), call);
    if (it == calls.end()) {
      calls.push_back(call);
      ranks.push_back({static_cast<int>(r)});
    } else {
      ranks[it - calls.begin()].push_back(static_cast<int>(r));
    }
  }
  std::string parts;
  for (size_t i = 0; i < calls.size(); ++i) {
    if (i > 0) parts += ", ";
    parts += fmt::format("{} {} called {}", ranks[i].size() == 1 ? "rank" : "ranks", rank_list(ranks[i]), calls[i]);
  }
  return fmt::format("nabla::dist: collective mismatch{}: {}; every rank must call the same collectives in the "
                     "same order",
                     same_seq ? fmt::format(" at collective #{}", all[0].seq) : std::string(), parts);
}

// Marks the group broken, keeping the first error for the collectives after, and throws.
[[noreturn]] void break_group(const std::string& message, std::shared_ptr<void> hold = nullptr) {
  Group& g = group();
  {
    std::lock_guard lock(g.m);
    if (!g.broken) {
      g.broken = true;
      g.broken_what = message;
    }
    if (hold) g.dangling.push_back(std::move(hold));
  }
  throw CollectiveError(message);
}

Fingerprint fingerprint_of(Kind kind, const Tensor& t, ReduceOp op, int root) {
  Fingerprint f;
  f.kind = kind;
  f.dtype = t.defined() ? static_cast<int64_t>(t.dtype()) : -1;
  f.count = t.defined() ? t.numel() : 0;
  f.op = kind == Kind::allreduce ? static_cast<int64_t>(op) : -1;
  f.root = kind == Kind::broadcast ? root : -1;
  f.device = t.defined() && t.device().is_cuda() ? 1 : 0;
  return f;
}

std::string mpi_error_string(int rc) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, buf, &len) != MPI_SUCCESS) return fmt::format("MPI error code {}", rc);
  return std::string(buf, static_cast<size_t>(len));
}

void mpi_check(int rc, const char* call, const std::string& what) {
  if (rc != MPI_SUCCESS)
    break_group(fmt::format("nabla::dist: {} on rank {} failed in {}: {}", what, group().rank.load(), call,
                            mpi_error_string(rc)));
}

// Polls the request until it completes, without taking a core from the compute threads while
// it waits for another rank: between tests it yields, then sleeps, from 20 us growing to 1 ms.
// But Open MPI's nonblocking collectives move data only inside MPI calls, one step per test,
// so sleeping while data flows makes a 4 MiB allreduce 50 times slower (measured: 95 ms
// against 1.9 ms). A test that took more than a couple of microseconds did work (copied or
// reduced a piece): polling then goes back to fast. Waiting for a late rank costs ~4% of a
// core this way (measured over 0.5 s).
void wait_request(MPI_Request* req, Clock::time_point deadline, const std::string& what, const char* call,
                  const std::shared_ptr<void>& hold) {
  constexpr auto kBusyTest = std::chrono::microseconds(2);
  constexpr int kFastPolls = 64;
  auto nap = std::chrono::microseconds(20);
  for (int polls = 0;; ++polls) {
    int done = 0;
    const Clock::time_point before = Clock::now();
    mpi_check(MPI_Test(req, &done, MPI_STATUS_IGNORE), call, what);
    if (done) return;
    const Clock::time_point now = Clock::now();
    if (now >= deadline) {
      Group& g = group();
      break_group(fmt::format("nabla::dist: {} on rank {} did not complete within {}: another rank died, hangs, "
                              "or called a different collective",
                              what, g.rank.load(), seconds_str(std::chrono::milliseconds(g.timeout_ms.load()))),
                  hold);
    }
    if (now - before > kBusyTest) {
      polls = 0;
      nap = std::chrono::microseconds(20);
    }
    if (polls < kFastPolls) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(nap);
      nap = std::min<std::chrono::microseconds>(nap * 2, std::chrono::milliseconds(1));
    }
  }
}

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::float32: return MPI_FLOAT;
    case DType::float64: return MPI_DOUBLE;
    case DType::int32: return MPI_INT32_T;
    case DType::int64: return MPI_INT64_T;
  }
  NABLA_ASSERT(false);
  return MPI_DATATYPE_NULL;
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
    case ReduceOp::mean: return MPI_SUM;  // then divided by the world size
    case ReduceOp::max: return MPI_MAX;
    case ReduceOp::min: return MPI_MIN;
  }
  NABLA_ASSERT(false);
  return MPI_OP_NULL;
}

// Calls f(offset, count) over [0, n) in pieces of at most `chunk` elements (MPI counts are
// ints); at least once, so that every rank makes the same calls even for 0 elements.
template <typename F>
void for_chunks(int64_t n, int64_t chunk, F&& f) {
  int64_t offset = 0;
  do {
    const int64_t count = std::min(chunk, n - offset);
    f(offset, static_cast<int>(count));
    offset += count;
  } while (offset < n);
}

// Compares f across the ranks; throws the mismatch (the group stays usable: every rank made the
// same one call and throws too).
void exchange_fingerprints(const Fingerprint& f, Clock::time_point deadline, const std::string& what) {
  Group& g = group();
  const int world = g.world.load();
  auto buf = std::make_shared<std::vector<int64_t>>(static_cast<size_t>(world + 1) * kFingerprintInts);
  int64_t* mine = buf->data() + static_cast<size_t>(world) * kFingerprintInts;
  to_ints(f, mine);
  MPI_Request req;
  mpi_check(MPI_Iallgather(mine, kFingerprintInts, MPI_INT64_T, buf->data(), kFingerprintInts, MPI_INT64_T, g.comm,
                           &req),
            "MPI_Iallgather", what);
  wait_request(&req, deadline, what, "MPI_Iallgather", buf);
  bool same = true;
  for (int r = 1; r < world; ++r)
    same = same && std::equal(buf->data(), buf->data() + kFingerprintInts, buf->data() + r * kFingerprintInts);
  if (same) return;
  std::vector<Fingerprint> all;
  for (int r = 0; r < world; ++r) all.push_back(from_ints(buf->data() + r * kFingerprintInts));
  throw CollectiveError(mismatch_message(all));
}

void run_task(Task& task) {
  Group& g = group();
  std::exception_ptr error;
  std::string broken_what;
  if (group_broken(&broken_what)) {
    error = std::make_exception_ptr(CollectiveError(fmt::format(
        "nabla::dist: {} on rank {} was not run: an earlier collective failed, and the process group cannot "
        "be used since: {}",
        task.what, g.rank.load(), broken_what)));
  } else {
    try {
      const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(g.timeout_ms.load());
      if (task.check && g.check) exchange_fingerprints(task.fp, deadline, task.what);
      {
        std::lock_guard lock(task.state->m);
        task.state->started = Clock::now();
      }
      if (task.run) task.run(deadline, task.what);
      std::lock_guard lock(task.state->m);
      task.state->finished = Clock::now();
    } catch (...) {
      error = std::current_exception();
      // After a timeout MPI may still write into the tensors: they must outlive the request.
      if (group_broken()) {
        std::lock_guard lock(g.m);
        g.dangling.push_back(task.state);
      }
    }
  }
  task.state->finish(error);
}

void comm_thread_main() {
  Group& g = group();
  pthread_setname_np(pthread_self(), "nabla-dist");
  for (;;) {
    Task task;
    {
      std::unique_lock lock(g.m);
      g.cv.wait(lock, [&] { return !g.queue.empty() || g.stopping; });
      if (g.queue.empty()) return;  // stopping, and everything queued has run
      task = std::move(g.queue.front());
      g.queue.pop_front();
    }
    run_task(task);
  }
}

// Queues a task. fp.seq is assigned here, under the queue's lock so that the numbers follow the
// issue order, unless `seq` gives it (the NCCL engine numbers its own; 0: not numbered).
struct Numbering {
  std::optional<int64_t> seq;  // unset: the next number
  std::string what;            // unset: fp described
};

std::shared_ptr<WorkState> enqueue(Fingerprint fp, bool check, std::vector<Tensor> keep,
                                   std::function<void(Clock::time_point, const std::string&)> run,
                                   const Numbering& numbering = {}) {
  Group& g = group();
  auto state = std::make_shared<WorkState>();
  state->keep_alive = std::move(keep);
  {
    std::lock_guard lock(g.m);
    fp.seq = numbering.seq ? *numbering.seq : ++g.seq;
    Task task;
    task.what = numbering.what.empty() ? describe_call(fp, true, false) : numbering.what;
    task.fp = fp;
    task.check = check;
    task.state = state;
    task.run = std::move(run);
    g.queue.push_back(std::move(task));
  }
  g.cv.notify_all();
  return state;
}

// Runs `run` on the communication thread (after what is queued) and waits for it.
void run_blocking(const Fingerprint& fp, bool check, std::function<void(Clock::time_point, const std::string&)> run,
                  const Numbering& numbering = {}) {
  Work(enqueue(fp, check, {}, std::move(run), numbering)).wait();
}

#endif  // NABLA_WITH_MPI

// ---- argument checks (the same with and without MPI, whatever the world size) --------------------

void check_usable(const char* op) {
  NABLA_CHECK(!group().finalized_flag.load(),
              "nabla::dist::{}: called after nabla::dist::finalize(); collectives are only possible between init() "
              "and finalize()",
              op);
}

void check_tensor(const char* op, const Tensor& t, const char* name) {
  NABLA_CHECK(t.defined(), "nabla::dist::{}: {} is undefined (a default-constructed Tensor)", op, name);
  // An empty tensor has no layout to speak of (Tensor::is_contiguous says no to some, e.g.
  // [2, 0] with strides [1, 1]): MPI moves nothing for it.
  NABLA_CHECK(t.numel() == 0 || t.is_contiguous(), "nabla::dist::{}: {} must be contiguous (shape {}, strides {}); call .contiguous()",
              op, name, shape_str(t.shape()), shape_str(t.strides()));
  const DType d = t.dtype();
  NABLA_CHECK_DTYPE(d == DType::float32 || d == DType::float64 || d == DType::int32 || d == DType::int64,
                    "nabla::dist::{}: {} has dtype {}, expected float32, float64, int32 or int64", op, name, d);
}

void check_root(const char* op, int root) {
  const int world = group().world.load();
  NABLA_CHECK_INDEX(root >= 0 && root < world,
                    "nabla::dist::{}: root {} is out of range for a world of {} process{} (ranks 0 to {})", op, root,
                    world, world == 1 ? "" : "es", world - 1);
}

// Collectives after init on more than one process go to the engine; the rest are identities.
bool multi_process() {
  Group& g = group();
  return g.world.load() > 1;
}

std::terminate_handler g_previous_terminate = nullptr;

// An uncaught exception on one rank would otherwise end that rank alone, with the others
// waiting in their next collective until the launcher notices (or their timeout): MPI_Abort
// ends the job at once, with the exception's message and the rank.
[[noreturn]] void on_terminate() {
  std::string what = "std::terminate was called without an active exception";
  if (std::exception_ptr e = std::current_exception()) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      what = fmt::format("uncaught exception: {}", x.what());
    } catch (...) {
      what = "uncaught exception (not derived from std::exception)";
    }
  }
  if (world_size() > 1) dist::abort(what, 1);
  if (g_previous_terminate != nullptr) g_previous_terminate();
  std::abort();
}

void at_exit() {
  try {
    finalize();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nabla.dist: rank %d: finalize at exit failed: %s\n", rank(), e.what());
  }
  std::string what;
  if (group_broken(&what))
    dist::abort(fmt::format("exiting with a broken process group; ending every process of the job (the error: {})",
                            what),
                1);
}

}  // namespace

std::string detail::Fingerprint::describe() const { return describe_call(*this, true, true); }

// ---- the process group ---------------------------------------------------------------------------

void init(const InitOptions& opts) {
  Group& g = group();
  std::lock_guard lock(g.init_mutex);
  if (g.initialized) return;
  NABLA_CHECK(!g.finalized, "nabla::dist::init: called after finalize(); MPI cannot be initialized twice in one "
                            "process");
  NABLA_CHECK(opts.timeout.count() > 0, "nabla::dist::init: InitOptions::timeout is {} ms, expected > 0",
              opts.timeout.count());
  const std::chrono::milliseconds timeout = timeout_from_env(opts.timeout);
#ifdef NABLA_WITH_MPI
  int mpi_initialized = 0, provided = MPI_THREAD_SINGLE;
  MPI_Initialized(&mpi_initialized);
  if (mpi_initialized) {
    MPI_Query_thread(&provided);
  } else {
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided);
    g.owns_mpi = true;
  }
  NABLA_CHECK(provided >= MPI_THREAD_SERIALIZED,
              "nabla::dist::init: MPI provides thread level {}, and nabla::dist needs MPI_THREAD_SERIALIZED ({}) or "
              "more (its collectives run on a thread of their own){}",
              provided, static_cast<int>(MPI_THREAD_SERIALIZED),
              g.owns_mpi ? "" : "; initialize MPI with MPI_Init_thread(..., MPI_THREAD_MULTIPLE, ...)");
  MPI_Comm comm = MPI_COMM_NULL;
  int rc = MPI_Comm_dup(MPI_COMM_WORLD, &comm);
  NABLA_CHECK(rc == MPI_SUCCESS, "nabla::dist::init: MPI_Comm_dup failed: {}", mpi_error_string(rc));
  // Errors come back as codes, to become CollectiveErrors, rather than aborting the job.
  MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  int rank = 0, world = 1, local_rank = 0, local_size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &world);
  MPI_Comm local = MPI_COMM_NULL;
  if (MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &local) == MPI_SUCCESS) {
    MPI_Comm_rank(local, &local_rank);
    MPI_Comm_size(local, &local_size);
    MPI_Comm_free(&local);
  }
  g.comm = comm;
  g.rank = rank;
  g.world = world;
  g.local_rank = local_rank;
  g.local_size = local_size;
#endif
  g.timeout_ms = timeout.count();
  g.check = opts.check_collectives;
#ifdef NABLA_WITH_MPI
  if (g.world.load() > 1) g.thread = std::thread(comm_thread_main);
#endif
  g_previous_terminate = std::set_terminate(on_terminate);
  static bool exit_registered = false;
  if (!exit_registered) {
    std::atexit(at_exit);
    exit_registered = true;
  }
  g.initialized = true;
}

bool initialized() {
  Group& g = group();
  std::lock_guard lock(g.init_mutex);
  return g.initialized && !g.finalized;
}

void finalize() {
  Group& g = group();
  std::lock_guard lock(g.init_mutex);
  if (!g.initialized || g.finalized) return;
  g.finalized = true;
  g.finalized_flag = true;
#ifdef NABLA_WITH_MPI
  if (g.thread.joinable()) {
    {
      std::lock_guard qlock(g.m);
      g.stopping = true;
    }
    g.cv.notify_all();
    g.thread.join();  // after the queued collectives (each bounded by the timeout)
  }
#endif
  detail::nccl_shutdown();
#ifdef NABLA_WITH_MPI
  if (!group_broken()) {
    MPI_Comm_free(&g.comm);
    int mpi_finalized = 0;
    MPI_Finalized(&mpi_finalized);
    if (g.owns_mpi && !mpi_finalized) MPI_Finalize();
  }
#endif
}

bool mpi_built() {
#ifdef NABLA_WITH_MPI
  return true;
#else
  return false;
#endif
}

bool nccl_built() {
#ifdef NABLA_WITH_NCCL
  return true;
#else
  return false;
#endif
}

int rank() { return group().rank.load(); }
int world_size() { return group().world.load(); }
int local_rank() { return group().local_rank.load(); }
int local_size() { return group().local_size.load(); }

std::chrono::milliseconds timeout() { return std::chrono::milliseconds(group().timeout_ms.load()); }

void set_timeout(std::chrono::milliseconds t) {
  NABLA_CHECK(t.count() > 0, "nabla::dist::set_timeout: the timeout is {} ms, expected > 0", t.count());
  group().timeout_ms = t.count();
}

// ---- collectives ---------------------------------------------------------------------------------

Work allreduce_async(const Tensor& t, ReduceOp op) {
  const char* name = "allreduce";
  check_usable(name);
  check_tensor(name, t, "the tensor");
  NABLA_CHECK(op == ReduceOp::sum || op == ReduceOp::mean || op == ReduceOp::max || op == ReduceOp::min,
              "nabla::dist::allreduce: unknown ReduceOp {}", static_cast<int>(op));
  NABLA_CHECK_DTYPE(op != ReduceOp::mean || is_floating(t.dtype()),
                    "nabla::dist::allreduce: mean needs a floating-point tensor (float32 or float64), got {}; reduce "
                    "with sum and divide",
                    t.dtype());
  if (t.device().is_cuda()) return Work(detail::nccl_collective(Kind::allreduce, t, t, op, -1));
  t.bump_version();
  if (!multi_process()) return Work(completed_state());  // a world of one: sum, mean, max, min of one
#ifdef NABLA_WITH_MPI
  const int64_t chunk = group().max_chunk.load();
  auto run = [t, op, chunk](Clock::time_point deadline, const std::string& what) {
    Group& g = group();
    char* data = static_cast<char*>(t.data_ptr());
    const size_t esize = dtype_size(t.dtype());
    for_chunks(t.numel(), chunk, [&](int64_t offset, int count) {
      if (g.check) {
        // The fingerprints went round: every rank is in this very collective, so the blocking
        // call cannot wait for a rank that is elsewhere (one that dies mid-way takes the job
        // down through mpirun). Open MPI's blocking allreduce is its tuned one: 0.9 MiB of
        // float32 between two ranks here took 0.12 ms, the nonblocking one (libnbc) 0.37 ms.
        mpi_check(MPI_Allreduce(MPI_IN_PLACE, data + offset * esize, count, mpi_type(t.dtype()), mpi_op(op), g.comm),
                  "MPI_Allreduce", what);
        return;
      }
      MPI_Request req;
      mpi_check(MPI_Iallreduce(MPI_IN_PLACE, data + offset * esize, count, mpi_type(t.dtype()), mpi_op(op), g.comm,
                               &req),
                "MPI_Iallreduce", what);
      wait_request(&req, deadline, what, "MPI_Iallreduce", nullptr);
    });
    if (op == ReduceOp::mean) {
      const int64_t n = t.numel();
      const int world = g.world.load();
      if (t.dtype() == DType::float32) {
        float* p = static_cast<float*>(t.data_ptr());
        for (int64_t i = 0; i < n; ++i) p[i] /= static_cast<float>(world);
      } else {
        double* p = static_cast<double*>(t.data_ptr());
        for (int64_t i = 0; i < n; ++i) p[i] /= static_cast<double>(world);
      }
    }
  };
  return Work(enqueue(fingerprint_of(Kind::allreduce, t, op, -1), true, {t}, run));
#endif
  NABLA_ASSERT(false);
}

Work broadcast_async(const Tensor& t, int root) {
  const char* name = "broadcast";
  check_usable(name);
  check_tensor(name, t, "the tensor");
  check_root(name, root);
  if (t.device().is_cuda()) return Work(detail::nccl_collective(Kind::broadcast, t, t, ReduceOp::sum, root));
  t.bump_version();
  if (!multi_process()) return Work(completed_state());
#ifdef NABLA_WITH_MPI
  const int64_t chunk = group().max_chunk.load();
  auto run = [t, root, chunk](Clock::time_point deadline, const std::string& what) {
    char* data = static_cast<char*>(t.data_ptr());
    const size_t esize = dtype_size(t.dtype());
    for_chunks(t.numel(), chunk, [&](int64_t offset, int count) {
      if (group().check) {  // every rank is here (see allreduce)
        mpi_check(MPI_Bcast(data + offset * esize, count, mpi_type(t.dtype()), root, group().comm), "MPI_Bcast", what);
        return;
      }
      MPI_Request req;
      mpi_check(MPI_Ibcast(data + offset * esize, count, mpi_type(t.dtype()), root, group().comm, &req),
                "MPI_Ibcast", what);
      wait_request(&req, deadline, what, "MPI_Ibcast", nullptr);
    });
  };
  return Work(enqueue(fingerprint_of(Kind::broadcast, t, ReduceOp::sum, root), true, {t}, run));
#endif
  NABLA_ASSERT(false);
}

Work allgather_async(const Tensor& t, const Tensor& out) {
  const char* name = "allgather";
  check_usable(name);
  check_tensor(name, t, "the tensor");
  check_tensor(name, out, "out");
  const int world = world_size();
  Shape expected = t.shape();
  expected.insert(expected.begin(), world);
  NABLA_CHECK_SHAPE(out.shape() == expected,
                    "nabla::dist::allgather: out has shape {}, expected {} (the world size {}, then the tensor's shape "
                    "{})",
                    shape_str(out.shape()), shape_str(expected), world, shape_str(t.shape()));
  NABLA_CHECK_DTYPE(out.dtype() == t.dtype(), "nabla::dist::allgather: out has dtype {}, expected the tensor's {}",
                    out.dtype(), t.dtype());
  NABLA_CHECK(out.device() == t.device(), "nabla::dist::allgather: out is on {}, expected the tensor's device {}",
              out.device(), t.device());
  NABLA_CHECK(out.impl()->storage != t.impl()->storage || out.numel() == 0,
              "nabla::dist::allgather: out shares its memory with the tensor; give it a buffer of its own");
  if (t.device().is_cuda()) return Work(detail::nccl_collective(Kind::allgather, t, out, ReduceOp::sum, -1));
  out.bump_version();
  if (!multi_process()) {
    if (t.numel() > 0)
      std::memcpy(out.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()) * dtype_size(t.dtype()));
    return Work(completed_state());
  }
#ifdef NABLA_WITH_MPI
  const int64_t chunk = group().max_chunk.load();
  auto run = [t, out, chunk](Clock::time_point deadline, const std::string& what) {
    const char* in = static_cast<const char*>(t.data_ptr());
    char* dst = static_cast<char*>(out.data_ptr());
    const int64_t n = t.numel();
    const size_t esize = dtype_size(t.dtype());
    const MPI_Datatype type = mpi_type(t.dtype());
    MPI_Comm comm = group().comm;
    if (n <= chunk) {
      MPI_Request req;
      mpi_check(MPI_Iallgather(in, static_cast<int>(n), type, dst, static_cast<int>(n), type, comm, &req),
                "MPI_Iallgather", what);
      wait_request(&req, deadline, what, "MPI_Iallgather", nullptr);
      return;
    }
    // More than an int's count per rank: chunk c of every rank r belongs at out[r][c's offset].
    // A receive type of one chunk stretched to one rank's whole row (its extent) puts it there.
    for_chunks(n, chunk, [&](int64_t offset, int count) {
      MPI_Datatype piece, row;
      mpi_check(MPI_Type_contiguous(count, type, &piece), "MPI_Type_contiguous", what);
      mpi_check(MPI_Type_create_resized(piece, 0, static_cast<MPI_Aint>(n * esize), &row), "MPI_Type_create_resized",
                what);
      mpi_check(MPI_Type_commit(&row), "MPI_Type_commit", what);
      MPI_Request req;
      mpi_check(MPI_Iallgather(in + offset * esize, count, type, dst + offset * esize, 1, row, comm, &req),
                "MPI_Iallgather", what);
      wait_request(&req, deadline, what, "MPI_Iallgather", nullptr);
      MPI_Type_free(&row);
      MPI_Type_free(&piece);
    });
  };
  return Work(enqueue(fingerprint_of(Kind::allgather, t, ReduceOp::sum, -1), true, {t, out}, run));
#endif
  NABLA_ASSERT(false);
}

Work barrier_async() {
  check_usable("barrier");
  if (!multi_process()) return Work(completed_state());
#ifdef NABLA_WITH_MPI
  auto run = [](Clock::time_point deadline, const std::string& what) {
    MPI_Request req;
    mpi_check(MPI_Ibarrier(group().comm, &req), "MPI_Ibarrier", what);
    wait_request(&req, deadline, what, "MPI_Ibarrier", nullptr);
  };
  return Work(enqueue(fingerprint_of(Kind::barrier, Tensor(), ReduceOp::sum, -1), true, {}, run));
#endif
  NABLA_ASSERT(false);
}

void allreduce(const Tensor& t, ReduceOp op) { allreduce_async(t, op).wait(); }
void broadcast(const Tensor& t, int root) { broadcast_async(t, root).wait(); }
void barrier() { barrier_async().wait(); }

Tensor allgather(const Tensor& t) {
  check_usable("allgather");
  check_tensor("allgather", t, "the tensor");
  Shape shape = t.shape();
  shape.insert(shape.begin(), world_size());
  Tensor out = Tensor::empty(shape, {.dtype = t.dtype(), .device = t.device()}, "nabla::dist::allgather");
  allgather_async(t, out).wait();
  return out;
}

std::vector<std::string> allgather_strings(const std::string& s) {
  check_usable("allgather_strings");
  if (!multi_process()) return {s};
#ifdef NABLA_WITH_MPI
  NABLA_CHECK(s.size() <= static_cast<size_t>(INT_MAX),
              "nabla::dist::allgather_strings: the string has {} bytes, at most {} are possible", s.size(), INT_MAX);
  const int world = world_size();
  std::vector<std::string> result;
  Fingerprint fp;
  fp.kind = Kind::allgather;  // dtype -1: the strings; their lengths may differ, so no count
  run_blocking(fp, true, [&](Clock::time_point deadline, const std::string& what) {
    struct Buffers {
      std::string mine;
      std::vector<int64_t> lengths;
      std::vector<char> all;
    };
    auto b = std::make_shared<Buffers>();
    b->mine = s;  // MPI may read it after a timeout, when `s` is gone
    b->lengths.assign(static_cast<size_t>(world) + 1, 0);
    b->lengths[world] = static_cast<int64_t>(s.size());
    MPI_Comm comm = group().comm;
    MPI_Request req;
    mpi_check(MPI_Iallgather(&b->lengths[world], 1, MPI_INT64_T, b->lengths.data(), 1, MPI_INT64_T, comm, &req),
              "MPI_Iallgather", what);
    wait_request(&req, deadline, what, "MPI_Iallgather", b);
    std::vector<int> counts(static_cast<size_t>(world)), displs(static_cast<size_t>(world));
    int64_t total = 0;
    for (int r = 0; r < world; ++r) {
      counts[r] = static_cast<int>(b->lengths[r]);
      displs[r] = static_cast<int>(std::min<int64_t>(total, INT_MAX));
      total += b->lengths[r];
    }
    // Every rank sees the same lengths, so every rank throws here and the group stays usable.
    if (total > INT_MAX)
      throw CollectiveError(fmt::format("nabla::dist::allgather_strings: the strings have {} bytes in all, at most {} "
                                        "are possible",
                                        group_digits(total), group_digits(INT_MAX)));
    b->all.resize(static_cast<size_t>(total));
    mpi_check(MPI_Iallgatherv(b->mine.data(), static_cast<int>(b->mine.size()), MPI_CHAR, b->all.data(),
                              counts.data(), displs.data(), MPI_CHAR, comm, &req),
              "MPI_Iallgatherv", what);
    wait_request(&req, deadline, what, "MPI_Iallgatherv", b);
    for (int r = 0; r < world; ++r) result.emplace_back(b->all.data() + displs[r], static_cast<size_t>(counts[r]));
  });
  return result;
#endif
  NABLA_ASSERT(false);
}

void abort(const std::string& message, int code) {
  static std::atomic<bool> aborting{false};
  thread_local bool in_abort = false;
  if (in_abort) std::_Exit(code);  // called again from what the first call runs (exit handlers)
  in_abort = true;
  // A second thread waits here for the first one to end the process.
  if (aborting.exchange(true))
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  std::fflush(stdout);
  const std::string line = fmt::format("nabla.dist: rank {} of {}: {}\n", rank(), world_size(), message);
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
#ifdef NABLA_WITH_MPI
  int mpi_initialized = 0, mpi_finalized = 0;
  MPI_Initialized(&mpi_initialized);
  MPI_Finalized(&mpi_finalized);
  if (mpi_initialized && !mpi_finalized) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::exit(code);
}

// ---- the MPI side of the NCCL engine -------------------------------------------------------------

namespace detail {

void host_broadcast(void* data, size_t bytes, int root) {
  check_usable("host_broadcast");
  check_root("host_broadcast", root);
  if (!multi_process()) return;
#ifndef NABLA_WITH_MPI
  (void)data;
  (void)bytes;
#else
  Fingerprint fp;  // described in messages only: not compared, not numbered
  fp.kind = Kind::broadcast;
  fp.root = root;
  run_blocking(
      fp, false,
      [&](Clock::time_point deadline, const std::string& what) {
        auto copy = std::make_shared<std::vector<char>>(static_cast<char*>(data), static_cast<char*>(data) + bytes);
        for_chunks(static_cast<int64_t>(bytes), group().max_chunk.load(), [&](int64_t offset, int count) {
          MPI_Request req;
          mpi_check(MPI_Ibcast(copy->data() + offset, count, MPI_BYTE, root, group().comm, &req), "MPI_Ibcast", what);
          wait_request(&req, deadline, what, "MPI_Ibcast", copy);
        });
        std::memcpy(data, copy->data(), bytes);
      },
      Numbering{0, fmt::format("host broadcast of {} bytes from root {}", group_digits(static_cast<int64_t>(bytes)),
                               root)});
#endif
}

void check_fingerprint(const Fingerprint& f) {
  check_usable(to_string(f.kind));
  if (!multi_process() || !group().check) return;
#ifdef NABLA_WITH_MPI
  run_blocking(f, true, nullptr, Numbering{f.seq, {}});
#endif
}

int64_t next_seq() {
  Group& g = group();
  std::lock_guard lock(g.m);
  return ++g.seq;
}

}  // namespace detail

}  // namespace nabla::dist

namespace nabla::test_hooks {

void set_dist_max_chunk(int64_t elements) {
  dist::group().max_chunk = elements > 0 ? std::min<int64_t>(elements, INT_MAX) : INT_MAX;
}

}  // namespace nabla::test_hooks
