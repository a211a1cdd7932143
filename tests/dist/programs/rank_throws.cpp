// A job that fails on purpose, for the failure tests of nabla::dist (failure_test.cmake runs it
// under mpiexec -n 2 and checks how the job ends). Rank 0 waits in an allreduce while rank 1:
//   throw     throws a nabla::Error that nothing catches;
//   abort     calls nabla::dist::abort;
//   timeout   sleeps 30 s before its allreduce, so that rank 0's fails at its timeout
//             (NABLA_DIST_TIMEOUT), and rank 0 then ends the job with nabla::dist::abort.
// And on every rank:
//   after_finalize  an allreduce after nabla::dist::finalize() (an Error nothing catches).
// Each way, the whole job must end within seconds, with a non-zero status and the failing
// rank's message in its output.
#include <nabla/dist/dist.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

namespace dist = nabla::dist;

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode != "throw" && mode != "abort" && mode != "timeout" && mode != "after_finalize") {
    std::fprintf(stderr, "usage: %s throw|abort|timeout|after_finalize\n", argv[0]);
    return 2;
  }
  dist::init();
  if (dist::world_size() != 2) {
    std::fprintf(stderr, "rank_throws: run it with mpiexec -n 2 (world size %d)\n", dist::world_size());
    return 2;
  }
  nabla::Tensor t = nabla::ones({1000});
  if (mode == "after_finalize") {
    dist::finalize();
    dist::allreduce(t);
  }
  if (dist::rank() == 1) {
    // Long enough for rank 0 to be waiting inside MPI when this rank fails.
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    if (mode == "throw") throw nabla::Error("rank 1 failed on purpose");
    if (mode == "abort") dist::abort("rank 1 gave up on purpose", 3);
    std::this_thread::sleep_for(std::chrono::seconds(30));
  }
  try {
    dist::allreduce(t);
  } catch (const dist::CollectiveError& e) {
    dist::abort(e.what());
  }
  std::printf("rank %d: the allreduce returned, which it must not\n", dist::rank());
  return 0;
}
