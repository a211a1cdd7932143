// The NCCL engine (dist/nccl.cpp): collectives of CUDA tensors give what the CPU engine (MPI)
// gives for the same values, and averaging gradients through it at world size 1 leaves training
// exactly as it was.
//
// Runs where the build has NCCL and the machine a CUDA device; skips otherwise, saying why. Each
// rank uses Device::cuda(local_rank() % device count). When ranks on one machine would share a GPU
// (the np2 run on a one-GPU machine) every test skips: NCCL does not support one GPU as two ranks
// of a communicator (its documentation: "not supported and may lead to hangs"; recent versions
// fail with "Duplicate GPU detected").
//
// The values are multiples of 1/4 of at most a few hundred, so that sums are exact in any order
// and the CPU engine's reduction order does not matter: results must be equal bit for bit. Only a
// mean over a world whose size is not a power of two may differ by rounding (NCCL multiplies each
// input by 1/n before summing; the CPU engine divides the sum), and is compared within 2 ulps.
#include <nabla/dist/dist.h>
#include <nabla/nabla.h>

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace nb = nabla;
namespace dist = nabla::dist;
using nb::DType;
using nb::Tensor;

namespace {

bool power_of_two(int n) { return n > 0 && (n & (n - 1)) == 0; }

// Why this rank cannot run the NCCL tests ("" when it can).
std::string local_skip_reason() {
  if (!dist::nccl_built()) return "this build of nabla has no NCCL engine (NABLA_WITH_NCCL off)";
  const int gpus = nb::device_count(nb::Device::Kind::CUDA);
  if (gpus == 0) return "no CUDA device";
  if (dist::local_size() > gpus)
    return fmt::format("{} ranks on this machine share {} GPU(s): NCCL does not support two ranks of one communicator "
                       "on the same GPU",
                       dist::local_size(), gpus);
  return "";
}

class Nccl : public ::testing::Test {
 protected:
  void SetUp() override {
    // Decided together: a rank that skipped while another ran would leave it waiting in a
    // collective.
    std::string why;
    for (const std::string& r : dist::allgather_strings(local_skip_reason()))
      if (!r.empty()) why = r;
    if (!why.empty()) GTEST_SKIP() << why;
    dev_ = nb::Device::cuda(dist::local_rank() % nb::device_count(nb::Device::Kind::CUDA));
    nb::set_tf32(false);
  }
  void TearDown() override {
    if (dev_.kind != nb::Device::Kind::CUDA) return;
    try {
      nb::synchronize(dev_);  // a device error the test left belongs to it
    } catch (const nb::Error& e) {
      ADD_FAILURE() << "device error pending after the test: " << e.what();
    }
  }
  nb::Device dev_ = nb::Device::cpu();
};

// n values on the CPU, different on each rank (and for each `salt`), multiples of 1/4 for the
// floating types.
Tensor values(int64_t n, DType dtype, int salt = 0) {
  std::vector<double> v(static_cast<size_t>(n));
  const int r = dist::rank();
  for (int64_t i = 0; i < n; ++i) {
    const double k = static_cast<double>((i * 37 + 11 * r + 5 * salt) % 64 - 32);
    v[static_cast<size_t>(i)] = nb::is_floating(dtype) ? k * 0.25 : k;
  }
  return nb::from_vector(v, {n}, {.dtype = dtype});
}

double element(const Tensor& cpu, int64_t i) {
  const void* p = cpu.data_ptr();
  switch (cpu.dtype()) {
    case DType::float32: return static_cast<const float*>(p)[i];
    case DType::float64: return static_cast<const double*>(p)[i];
    case DType::int32: return static_cast<const int32_t*>(p)[i];
    case DType::int64: return static_cast<double>(static_cast<const int64_t*>(p)[i]);
  }
  return 0;
}

// got (any device) equals want (CPU) bit for bit, or within `ulps` units in the last place.
::testing::AssertionResult same(const Tensor& got_any, const Tensor& want, const std::string& what, int ulps = 0) {
  Tensor got = got_any.to(nb::Device::cpu()).contiguous();
  Tensor w = want.contiguous();
  if (got.shape() != w.shape() || got.dtype() != w.dtype())
    return ::testing::AssertionFailure() << what << ": shape or dtype differ (" << nb::dtype_name(got.dtype()) << " vs " << nb::dtype_name(w.dtype())
                                         << ")";
  const size_t esize = nb::dtype_size(w.dtype());
  const int64_t n = w.numel();
  if (ulps == 0 && std::memcmp(got.data_ptr(), w.data_ptr(), static_cast<size_t>(n) * esize) == 0)
    return ::testing::AssertionSuccess();
  for (int64_t i = 0; i < n; ++i) {
    const double g = element(got, i), e = element(w, i);
    bool ok;
    if (ulps == 0) {
      ok = std::memcmp(static_cast<const char*>(got.data_ptr()) + i * esize,
                       static_cast<const char*>(w.data_ptr()) + i * esize, esize) == 0;
    } else {
      const double eps = w.dtype() == DType::float32 ? 0x1p-23 : 0x1p-52;
      ok = std::fabs(g - e) <= ulps * eps * std::fabs(e);
    }
    if (!ok)
      return ::testing::AssertionFailure() << what << ": element " << i << " is " << fmt::format("{:.17g}", g)
                                           << ", expected " << fmt::format("{:.17g}", e);
  }
  return ::testing::AssertionSuccess();
}

const std::vector<int64_t> kSizes = {1, 7, 70001};

TEST_F(Nccl, AllreduceEqualsTheCpuEngine) {
  for (DType dtype : {DType::float32, DType::float64, DType::int32, DType::int64}) {
    for (dist::ReduceOp op : {dist::ReduceOp::sum, dist::ReduceOp::mean, dist::ReduceOp::max, dist::ReduceOp::min}) {
      if (op == dist::ReduceOp::mean && !nb::is_floating(dtype)) continue;
      for (int64_t n : kSizes) {
        const std::string what = fmt::format("allreduce {} of {} {}", dist::to_string(op), n, nb::dtype_name(dtype));
        SCOPED_TRACE(what);
        Tensor want = values(n, dtype);
        Tensor gpu = want.to(dev_);
        dist::allreduce(want, op);  // the CPU engine
        dist::allreduce(gpu, op);   // NCCL
        const int ulps = op == dist::ReduceOp::mean && !power_of_two(dist::world_size()) ? 2 : 0;
        ASSERT_TRUE(same(gpu, want, what, ulps));
      }
    }
  }
}

TEST_F(Nccl, BroadcastEqualsTheCpuEngine) {
  for (DType dtype : {DType::float32, DType::float64, DType::int64}) {
    for (int root : {0, dist::world_size() - 1}) {
      for (int64_t n : kSizes) {
        const std::string what = fmt::format("broadcast from {} of {} {}", root, n, nb::dtype_name(dtype));
        SCOPED_TRACE(what);
        Tensor want = values(n, dtype, 1);
        Tensor gpu = want.to(dev_);
        dist::broadcast(want, root);
        dist::broadcast(gpu, root);
        ASSERT_TRUE(same(gpu, want, what));
      }
    }
  }
}

TEST_F(Nccl, AllgatherEqualsTheCpuEngine) {
  for (DType dtype : {DType::float32, DType::float64, DType::int32}) {
    for (int64_t n : kSizes) {
      const std::string what = fmt::format("allgather of {} {}", n, nb::dtype_name(dtype));
      SCOPED_TRACE(what);
      Tensor x = values(n, dtype, 2).reshape({1, n});
      Tensor want = dist::allgather(x);
      Tensor got = dist::allgather(x.to(dev_));
      EXPECT_EQ(got.device(), dev_);
      ASSERT_EQ(got.shape(), (nb::Shape{dist::world_size(), 1, n}));
      ASSERT_TRUE(same(got, want, what));
    }
  }
}

// Work of a CUDA collective: complete once queued (the device orders the rest), with its
// times; the result is there for the device's stream after wait().
TEST_F(Nccl, AsyncWorkIsCompleteWhenQueued) {
  Tensor want = values(4097, DType::float32);
  Tensor gpu = want.to(dev_);
  dist::Work w = dist::allreduce_async(gpu, dist::ReduceOp::sum);
  EXPECT_TRUE(w.completed());
  EXPECT_NE(w.started(), std::chrono::steady_clock::time_point{});
  EXPECT_LE(w.started(), w.finished());
  w.wait();
  w.wait();  // again: returns at once
  dist::allreduce(want, dist::ReduceOp::sum);
  // Read on the device's stream, after the wait: must see the reduced values.
  ASSERT_TRUE(same(gpu * 2.0, want * 2.0, "allreduce_async then an op on the device"));
}

// A Work dropped without wait() whose tensor goes too: the device stream must wait for the
// collective before the tensor's memory is reused (the state's deleter). New allocations and
// kernels right after must neither fail nor disturb a later collective.
TEST_F(Nccl, DroppedWorkAndTensorAreSafe) {
  for (int i = 0; i < 20; ++i) {
    Tensor gpu = values(1 << 16, DType::float32, i).to(dev_);
    (void)dist::allreduce_async(gpu, dist::ReduceOp::sum);
  }
  Tensor want = values(1 << 16, DType::float32, 99);
  Tensor gpu = want.to(dev_);
  Tensor scratch = nb::full({1 << 16}, 3.0, {.device = dev_});  // likely reuses a dropped tensor's memory
  dist::allreduce(gpu, dist::ReduceOp::sum);
  dist::allreduce(want, dist::ReduceOp::sum);
  ASSERT_TRUE(same(gpu, want, "allreduce after dropped work"));
  ASSERT_TRUE(same(scratch, nb::full({1 << 16}, 3.0), "a tensor allocated after dropped work"));
}

TEST_F(Nccl, RejectsWhatNcclCannotDo) {
  Tensor ints = values(8, DType::int64).to(dev_);
  EXPECT_THROW(dist::allreduce(ints, dist::ReduceOp::mean), nb::Error);
  Tensor strided = values(16, DType::float32).to(dev_).reshape({4, 4}).transpose(0, 1);
  EXPECT_THROW(dist::allreduce(strided, dist::ReduceOp::sum), nb::Error);
}

// Data-parallel training at world size 1 (or any power of two, every rank with the same data):
// averaging the gradients through NCCL changes nothing, bit for bit. ncclAvg multiplies each
// rank's gradient by 1/n, exact for a power of two n (barring subnormals), and sums n equal
// values, exact too; with one rank it is the identity.
TEST_F(Nccl, MeanOfGradientsLeavesTrainingUnchanged) {
  if (!power_of_two(dist::world_size()))
    GTEST_SKIP() << "a world of " << dist::world_size() << " ranks: 1/n is not exact, the steps may differ by rounding";
  auto make = [&] {
    nb::manual_seed(11);
    auto m = std::make_shared<nb::Sequential>(nb::Dense(8, 16), nb::ReLU(), nb::Dense(16, 3));
    m->to(dev_);
    return m;
  };
  auto plain = make(), averaged = make();
  nb::SGD opt_plain(plain->parameters(), nb::SGDOptions{.lr = 0.1, .momentum = 0.9});
  nb::SGD opt_avg(averaged->parameters(), nb::SGDOptions{.lr = 0.1, .momentum = 0.9});
  std::vector<int64_t> labels(12);
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<int64_t>(i % 3);
  const Tensor y = nb::from_vector(labels).to(dev_);
  for (int step = 1; step <= 5; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    nb::manual_seed(100 + static_cast<uint64_t>(step));  // the same batch on every rank
    const Tensor x = nb::randn({12, 8}).to(dev_);

    opt_plain.zero_grad();
    nb::cross_entropy((*plain)(x), y).backward();
    opt_plain.step();

    opt_avg.zero_grad();
    nb::cross_entropy((*averaged)(x), y).backward();
    std::vector<dist::Work> works;  // all in flight at once, as a training loop would
    for (const Tensor& p : averaged->parameters())
      if (p.grad().defined()) works.push_back(dist::allreduce_async(p.grad(), dist::ReduceOp::mean));
    for (dist::Work& w : works) w.wait();
    opt_avg.step();

    const auto a = averaged->parameters(), b = plain->parameters();
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i)
      ASSERT_TRUE(same(a[i], b[i].to(nb::Device::cpu()), fmt::format("parameter {}", i)));
  }
}

}  // namespace
