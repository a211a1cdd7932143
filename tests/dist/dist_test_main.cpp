// main() of the multi-process suites (tests/dist/*_test.cpp): every rank runs every test, in the
// same order, so that their collectives meet. Rank 0 prints GoogleTest's usual report; the
// others print only their failures, each line prefixed "[rank R]", so that a failure seen by one
// rank alone is not lost and the output stays readable. The result is then agreed on: a failure
// on any rank fails the run on every rank (mpiexec would otherwise report the job by the
// slowest rank's status).
#include <nabla/dist/dist.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>

namespace {

// A rank's failures, without the progress lines that every rank would otherwise repeat.
class FailurePrinter : public testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}

  void OnTestPartResult(const testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::printf("[rank %d] %s:%d: Failure\n", rank_, r.file_name() ? r.file_name() : "unknown file",
                r.line_number());
    // The message may have many lines: each gets the prefix.
    const char* line = r.message();
    while (*line != '\0') {
      const char* end = line;
      while (*end != '\0' && *end != '\n') ++end;
      std::printf("[rank %d] %.*s\n", rank_, static_cast<int>(end - line), line);
      line = *end == '\n' ? end + 1 : end;
    }
    std::fflush(stdout);
  }

  void OnTestEnd(const testing::TestInfo& info) override {
    if (info.result()->Failed()) {
      std::printf("[rank %d] [  FAILED  ] %s.%s\n", rank_, info.test_suite_name(), info.name());
      std::fflush(stdout);
    }
  }

 private:
  int rank_;
};

}  // namespace

int main(int argc, char** argv) {
  // A test that leaves a rank behind should fail within a minute, not at ctest's timeout;
  // NABLA_DIST_TIMEOUT still wins when set.
  nabla::dist::InitOptions opts;
  opts.timeout = std::chrono::seconds(60);
  nabla::dist::init(opts);
  testing::InitGoogleTest(&argc, argv);
  const int rank = nabla::dist::rank();
  if (rank != 0) {
    testing::TestEventListeners& listeners = testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new FailurePrinter(rank));
  }
  const int result = RUN_ALL_TESTS();
  int failed = 0;
  try {
    nabla::Tensor any = nabla::full({1}, result != 0 ? 1 : 0, {.dtype = nabla::DType::int64});
    nabla::dist::allreduce(any, nabla::dist::ReduceOp::max);
    failed = any.item<int64_t>() != 0 ? 1 : 0;
  } catch (const std::exception& e) {
    // The group is unusable (a test broke it): end every rank rather than wait for one.
    nabla::dist::abort(std::string("agreeing on the test result failed: ") + e.what());
  }
  if (failed && result == 0) std::printf("[rank %d] another rank had failures (its lines start with [rank R])\n", rank);
  nabla::dist::finalize();
  return failed;
}
