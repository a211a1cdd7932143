// Work handles, their shared state, the error kind and the names: what both engines (MPI in
// process_group.cpp, NCCL in nccl.cpp) and builds without MPI share.
#include <nabla/dist/detail.h>

#include <fmt/format.h>

#include <string>

namespace nabla::dist {

void CollectiveError::throw_with(const std::string& what) const { throw CollectiveError(what); }

const char* to_string(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return "sum";
    case ReduceOp::mean: return "mean";
    case ReduceOp::max: return "max";
    case ReduceOp::min: return "min";
  }
  return "unknown reduction";
}

void Work::wait() {
  if (!state_) return;
  detail::WorkState& s = *state_;
  std::function<void()> on_wait;
  std::exception_ptr error;
  {
    std::unique_lock lock(s.m);
    s.cv.wait(lock, [&] { return s.done; });
    on_wait = std::move(s.on_wait);  // moved out: it runs at the first wait only
    s.on_wait = nullptr;
    error = s.error;
  }
  // A failed collective has nothing for the caller's stream to wait for (NCCL's event may never
  // be recorded), so on_wait runs only for a success.
  if (on_wait && !error) on_wait();
  if (error) std::rethrow_exception(error);
}

bool Work::completed() const {
  if (!state_) return true;
  std::lock_guard lock(state_->m);
  return state_->done;
}

std::chrono::steady_clock::time_point Work::started() const {
  if (!state_) return {};
  std::lock_guard lock(state_->m);
  return state_->started;
}

std::chrono::steady_clock::time_point Work::finished() const {
  if (!state_) return {};
  std::lock_guard lock(state_->m);
  return state_->finished;
}

namespace detail {

const char* to_string(Kind k) {
  switch (k) {
    case Kind::allreduce: return "allreduce";
    case Kind::broadcast: return "broadcast";
    case Kind::allgather: return "allgather";
    case Kind::barrier: return "barrier";
  }
  return "unknown collective";
}

void WorkState::finish(std::exception_ptr e) {
  {
    std::lock_guard lock(m);
    error = std::move(e);
    done = true;
  }
  cv.notify_all();
}

}  // namespace detail

}  // namespace nabla::dist
