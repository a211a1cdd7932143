// CUDA memory and devices: out-of-memory errors and recovery, reuse of freed blocks by the
// stream-ordered pool, Device::best(), device indices past the last device, and host<->device
// transfers of every dtype.
//
// Tests that need a GPU skip themselves without one; the device-selection tests run everywhere.
// The memory-use tests read the device's free memory, which every process on the GPU changes:
// run this binary alone on the GPU (scripts/gpu-check.sh runs it serially), not beside others.
// Under compute-sanitizer, leave out CudaOom.* (a refused cudaMallocAsync is reported as an API
// error there, though nabla handles it).
#include <nabla/cuda/device.h>
#include <nabla/nabla.h>

#include <gtest/gtest.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "cuda_test_util.h"
#include "test_util.h"

namespace nb = nabla;
using nb::DType;
using nb::Shape;
using nb::Tensor;

using nb::test::error_of;

namespace {

const nb::Device kCuda = nb::Device::cuda(0);
constexpr int64_t kBig = (int64_t{1} << 20) + 3;
constexpr size_t kMiB = size_t{1} << 20;

// The suites' common fixture (cuda_test_util.h): skips without a device, seeds, and charges an
// error a kernel left on the device to the test that caused it.
class CudaMemory : public nabla::test::CudaTest {};

// Out-of-memory tests: their own suite so a compute-sanitizer run can leave them out.
class CudaOom : public CudaMemory {};

// Device free memory once queued work is done.
size_t free_bytes() {
  nb::cuda::synchronize();
  return nb::cuda::device_info(0).free_memory;
}

std::string mib(double bytes) { return fmt::format("{:.1f} MiB", bytes / double(kMiB)); }

// Every run of digits in s, as a number.
std::vector<uint64_t> numbers_in(const std::string& s) {
  std::vector<uint64_t> out;
  for (size_t i = 0; i < s.size();) {
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) {
      ++i;
      continue;
    }
    uint64_t v = 0;
    for (; i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])); ++i) v = v * 10 + uint64_t(s[i] - '0');
    out.push_back(v);
  }
  return out;
}

// A small model trains on the GPU exactly as on the CPU: the device is usable.
void expect_trains_on_gpu() {
  auto make = [] { return nb::Sequential{nb::Dense(20, 16), nb::ReLU(), nb::Dense(16, 4)}; };
  nb::manual_seed(5);
  nb::Sequential cpu = make();
  nb::manual_seed(5);
  nb::Sequential gpu = make();
  gpu.to(kCuda);
  nb::SGD oc(cpu.parameters(), {.lr = 0.1}), og(gpu.parameters(), {.lr = 0.1});
  Tensor x = nb::randn({32, 20});
  Tensor y = nb::from_vector(std::vector<int64_t>(32, 2), {32});
  double first = 0, last = 0;
  for (int step = 0; step < 5; ++step) {
    oc.zero_grad();
    og.zero_grad();
    Tensor lc = nb::cross_entropy(cpu(x), y), lg = nb::cross_entropy(gpu(x.to(kCuda)), y.to(kCuda));
    lc.backward();
    lg.backward();
    oc.step();
    og.step();
    double g = 0;
    ASSERT_NO_THROW(g = lg.item()) << "step " << step;
    EXPECT_NEAR(g, lc.item(), 1e-4 * std::abs(lc.item()) + 1e-6) << "step " << step;
    (step == 0 ? first : last) = g;
  }
  EXPECT_LT(last, first) << "the model did not train";
}

// ---- devices (these run with or without a GPU) ---------------------------------------------

TEST(CudaDevices, BestIsCuda0WithAGpuElseCpu) {
  const nb::Device best = nb::Device::best();
  if (nb::cuda::device_count() > 0)
    EXPECT_TRUE(best == nb::Device::cuda(0)) << best.str();
  else
    EXPECT_TRUE(best == nb::Device::cpu()) << best.str();
  EXPECT_TRUE(nb::Device::parse("best") == best);
}

TEST(CudaDevices, IndexPastTheLastDeviceThrowsNamingIt) {
  const int n = nb::cuda::device_count();
  for (int index : {n, n + 3}) {
    const std::string name = "cuda:" + std::to_string(index);
    std::string what = error_of([&] { nb::zeros({3}, {.device = nb::Device::cuda(index)}); });
    EXPECT_NE(what.find(name), std::string::npos) << "zeros on " << name << ": " << what;
    what = error_of([&] { nb::ones({2}).to(nb::Device::cuda(index)); });
    EXPECT_NE(what.find(name), std::string::npos) << "to(" << name << "): " << what;
  }
}

TEST_F(CudaMemory, MixingDevicesInOneOpNamesBoth) {
  Tensor a = nb::ones({3}), b = nb::ones({3}, {.device = kCuda});
  const std::string what = error_of([&] { nb::add(a, b); });
  EXPECT_NE(what.find("cpu"), std::string::npos) << what;
  EXPECT_NE(what.find("cuda:0"), std::string::npos) << what;
  const std::string mm = error_of([&] { nb::matmul(nb::ones({2, 2}, {.device = kCuda}), nb::ones({2, 2})); });
  EXPECT_NE(mm.find("cuda:0"), std::string::npos) << mm;
}

// ---- out of memory -----------------------------------------------------------------------------

// Twice the card's memory: the error says how many bytes were asked for and how many are free;
// afterwards the process is usable.
TEST_F(CudaOom, ErrorSaysBytesAskedAndFreeThenTrainingWorks) {
  const nb::cuda::DeviceInfo info = nb::cuda::device_info(0);
  const int64_t n = static_cast<int64_t>(info.total_memory / 4 * 2);
  const uint64_t asked = static_cast<uint64_t>(n) * 4;
  const std::string what = error_of([&] { nb::zeros({n}, {.device = kCuda}); });
  ASSERT_NE(what, "(no error)") << "allocating " << asked << " bytes on a card of " << info.total_memory << " did not throw";
  EXPECT_NE(what.find(std::to_string(asked)), std::string::npos) << "the bytes asked for are not in: " << what;
  EXPECT_NE(what.find("free"), std::string::npos) << what;
  bool names_free = false;  // a byte count that can be the free memory
  for (uint64_t v : numbers_in(what)) names_free |= v != asked && v >= kMiB && v <= info.total_memory;
  EXPECT_TRUE(names_free) << "no free byte count in: " << what;
  EXPECT_EQ(nb::tape_size(), 0u);
  // A large allocation right after works (the pool was not left in a bad state).
  Tensor big;
  ASSERT_NO_THROW(big = nb::full({(int64_t{1} << 28) + 3}, 2.0, {.device = kCuda}));  // 1 GiB
  EXPECT_EQ(big.slice(0, (int64_t{1} << 28) + 2, (int64_t{1} << 28) + 3).item(), 2.0);
  expect_trains_on_gpu();
}

// The output of an op that cannot fit: the op throws before recording anything.
TEST_F(CudaOom, InsideAnOpLeavesNoTapeEntryThenTrainingWorks) {
  const size_t total = nb::cuda::device_info(0).total_memory;
  const int64_t m = static_cast<int64_t>(std::sqrt(double(total) / 2.0)) + 1;  // m * m * 4 > 2 * total
  Tensor a = nb::randn({m, 1}, {.device = kCuda, .requires_grad = true});
  Tensor b = nb::randn({1, m}, {.device = kCuda});
  const std::string what = error_of([&] { nb::matmul(a, b); });
  EXPECT_NE(what.find(std::to_string(uint64_t(m) * uint64_t(m) * 4)), std::string::npos) << what;
  EXPECT_NE(what.find("free"), std::string::npos) << what;
  EXPECT_EQ(nb::tape_size(), 0u) << "the failed op left a tape entry";
  expect_trains_on_gpu();
}

// A block that fits only once the pool gives back what it keeps cached: the allocator trims the
// pool and retries instead of failing.
TEST_F(CudaOom, AllocationThatFitsOnlyAfterTrimmingThePoolSucceeds) {
  const size_t free0 = free_bytes();
  const int64_t n = static_cast<int64_t>(double(free0) * 0.6) / 4;
  {
    Tensor a = Tensor::empty({n}, {.device = kCuda});
    a.fill_(1);
  }
  const size_t free1 = free_bytes();
  const int64_t m = static_cast<int64_t>(double(free0) * 0.7) / 4;
  Tensor b;
  ASSERT_NO_THROW(b = Tensor::empty({m}, {.device = kCuda}))
      << "free before " << mib(double(free0)) << ", after freeing " << mib(double(n) * 4) << ": " << mib(double(free1));
  b.fill_(3);
  EXPECT_EQ(b.slice(0, m - 1, m).item(), 3.0);
  b = Tensor();
  expect_trains_on_gpu();
}

// ---- reuse of freed memory ---------------------------------------------------------------------

// Memory that may move between measurements without anything leaking: pool bookkeeping and
// the driver's page granularity.
constexpr size_t kSlack = 32 * kMiB;

TEST_F(CudaMemory, FreedBlockStaysInThePool) {
  const int64_t n = (int64_t{3} << 30) / 4 + 5;  // 3 GiB: more than earlier tests leave cached
  const size_t before = free_bytes();
  Tensor t = Tensor::empty({n}, {.device = kCuda});
  t.fill_(1);
  const size_t held = free_bytes();
  if (before < held + size_t(n) * 2) GTEST_SKIP() << "the block came from the pool's cache; nothing to see";
  t = Tensor();
  const size_t after = free_bytes();
  // The pool's release threshold keeps freed memory for the next allocation: a training step
  // allocates without calling the driver (DESIGN: Devices and memory).
  EXPECT_LT(after + size_t(n) * 2, before) << "freeing " << mib(double(n) * 4) << " gave it back to the driver: free "
                                           << mib(double(before)) << " -> " << mib(double(held)) << " -> "
                                           << mib(double(after));
}

TEST_F(CudaMemory, RepeatedAllocFreeOfOneSizeDoesNotGrow) {
  const int64_t n = (int64_t{256} << 20) / 4 + 7;  // 256 MiB and a bit
  auto cycle = [&](int i) {
    Tensor t = Tensor::empty({n}, {.device = kCuda});
    t.fill_(i);
  };
  cycle(0);
  const size_t after_first = free_bytes();
  for (int i = 1; i <= 50; ++i) cycle(i);
  const size_t after_loop = free_bytes();
  EXPECT_GE(after_loop + kSlack, after_first)
      << mib(double(after_first) - double(after_loop)) << " more in use after 50 more cycles of " << mib(double(n) * 4);
}

TEST_F(CudaMemory, MixedSizeCyclesDoNotGrow) {
  const std::vector<int64_t> sizes = {(int64_t{64} << 20) / 4 + 3, (int64_t{128} << 20) / 4 + 1,
                                      (int64_t{96} << 20) / 4 + 5, 257, 7, 1, kBig};
  auto cycle = [&](int i) {
    std::vector<Tensor> held;
    for (int64_t s : sizes) {
      held.push_back(Tensor::empty({s}, {.device = kCuda}));
      held.back().fill_(i);
    }
    // Freed in an order other than the reverse of allocation.
    for (size_t k = 0; k < held.size(); k += 2) held[k] = Tensor();
    for (size_t k = 1; k < held.size(); k += 2) held[k] = Tensor();
  };
  cycle(0);
  cycle(1);
  const size_t after_warmup = free_bytes();
  for (int i = 2; i < 40; ++i) cycle(i);
  const size_t after_loop = free_bytes();
  EXPECT_GE(after_loop + kSlack, after_warmup) << mib(double(after_warmup) - double(after_loop)) << " more in use";
}

// Steady-state training allocates and frees the same blocks every step: no growth, nothing
// left on the tape.
TEST_F(CudaMemory, TrainingStepsDoNotGrowMemory) {
  nb::Sequential model{nb::Dense(784, 256), nb::ReLU(), nb::Dense(256, 128), nb::ReLU(), nb::Dense(128, 10)};
  model.to(kCuda);
  nb::Adam opt(model.parameters(), {.lr = 1e-3});
  Tensor x = nb::randn({128, 784}, {.device = kCuda});
  Tensor y = nb::from_vector(std::vector<int64_t>(128, 3), {128}, {.dtype = DType::int64, .device = kCuda});
  auto step = [&] {
    opt.zero_grad();
    Tensor loss = nb::cross_entropy(model(x), y);
    loss.backward();
    opt.step();
  };
  for (int i = 0; i < 5; ++i) step();
  const size_t warm = free_bytes();
  for (int i = 0; i < 500; ++i) step();
  const size_t after = free_bytes();
  EXPECT_GE(after + kSlack, warm) << mib(double(warm) - double(after)) << " more in use after 500 steps";
  EXPECT_EQ(nb::tape_size(), 0u);
}

// ---- transfers ---------------------------------------------------------------------------------

// Values of dtype t that a copy must keep bit for bit: the edge values first (NaN, infinities,
// -0, subnormals, extremes), then random ones.
Tensor transfer_source(DType t, const Shape& s) {
  const int64_t n = nb::numel_of(s);
  Tensor r = nb::rand({std::max<int64_t>(n, 1)}, {.dtype = DType::float64}, -1e6, 1e6);
  std::vector<double> v = r.to_vector<double>();
  v.resize(static_cast<size_t>(n));
  const Shape shape = s.empty() ? Shape{} : s;
  auto finish = [&](Tensor flat) { return flat.reshape(shape); };
  switch (t) {
    case DType::float32: {
      std::vector<float> f(v.begin(), v.end());
      const float edge[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(), -0.0f, std::numeric_limits<float>::denorm_min(),
                            std::numeric_limits<float>::max(), std::numeric_limits<float>::lowest(), 1e-40f};
      for (size_t i = 0; i < f.size() && i < 8; ++i) f[i] = edge[i];
      return finish(nb::from_vector(f, {n}));
    }
    case DType::float64: {
      const double edge[] = {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(),
                             -std::numeric_limits<double>::infinity(), -0.0, std::numeric_limits<double>::denorm_min(),
                             std::numeric_limits<double>::max(), std::numeric_limits<double>::lowest(), 1e-310};
      for (size_t i = 0; i < v.size() && i < 8; ++i) v[i] = edge[i];
      return finish(nb::from_vector(v, {n}));
    }
    case DType::int32: {
      std::vector<int32_t> iv(v.begin(), v.end());
      const int32_t edge[] = {0, -1, INT32_MAX, INT32_MIN, 1, 123456789, -987654321, 7};
      for (size_t i = 0; i < iv.size() && i < 8; ++i) iv[i] = edge[i];
      return finish(nb::from_vector(iv, {n}));
    }
    case DType::int64: {
      std::vector<int64_t> iv;
      for (double d : v) iv.push_back(static_cast<int64_t>(d) * 1000003);
      const int64_t edge[] = {0, -1, INT64_MAX, INT64_MIN, int64_t{1} << 53, -(int64_t{1} << 40) - 1, 1, 42};
      for (size_t i = 0; i < iv.size() && i < 8; ++i) iv[i] = edge[i];
      return finish(nb::from_vector(iv, {n}));
    }
  }
  return {};
}

::testing::AssertionResult same_bits(const Tensor& got, const Tensor& want) {
  if (!got.device().is_cpu()) return ::testing::AssertionFailure() << "result is on " << got.device().str();
  if (got.shape() != want.shape() || got.dtype() != want.dtype())
    return ::testing::AssertionFailure() << "shape or dtype changed: " << nb::shape_str(got.shape()) << " "
                                         << nb::dtype_name(got.dtype()) << " vs " << nb::shape_str(want.shape()) << " "
                                         << nb::dtype_name(want.dtype());
  Tensor g = got.contiguous(), w = want.contiguous();
  const size_t es = nb::dtype_size(g.dtype());
  const auto* pg = static_cast<const unsigned char*>(g.data_ptr());
  const auto* pw = static_cast<const unsigned char*>(w.data_ptr());
  for (int64_t i = 0; i < g.numel(); ++i)
    if (std::memcmp(pg + i * es, pw + i * es, es) != 0)
      return ::testing::AssertionFailure() << "element " << i << " of " << g.numel() << " differs";
  return ::testing::AssertionSuccess();
}

using TransferParam = std::tuple<DType, Shape>;
class Transfer : public CudaMemory, public ::testing::WithParamInterface<TransferParam> {};

TEST_P(Transfer, RoundTripKeepsEveryBit) {
  const auto& [t, s] = GetParam();
  Tensor src = transfer_source(t, s);
  Tensor g = src.to(kCuda);
  ASSERT_TRUE(g.device() == kCuda);
  EXPECT_EQ(g.shape(), src.shape());
  EXPECT_EQ(g.dtype(), t);
  EXPECT_TRUE(same_bits(g.to(nb::Device::cpu()), src)) << "host -> device -> host";
  // To its own device: the same tensor, no copy.
  EXPECT_EQ(g.to(kCuda).data_ptr(), g.data_ptr());
  if (s.size() == 1 && s[0] >= 3) {
    const int64_t n = s[0];
    // Strided views both ways (to() makes them contiguous on their own device first).
    EXPECT_TRUE(same_bits(src.slice(0, 1, n, 2).to(kCuda).to(nb::Device::cpu()), src.slice(0, 1, n, 2).contiguous()))
        << "strided host view";
    EXPECT_TRUE(same_bits(g.slice(0, 1, n, 2).to(nb::Device::cpu()), src.slice(0, 1, n, 2).contiguous()))
        << "strided device view";
    // A contiguous view at an odd offset.
    EXPECT_TRUE(same_bits(g.slice(0, 1, n).to(nb::Device::cpu()), src.slice(0, 1, n).contiguous())) << "offset view";
  }
}

INSTANTIATE_TEST_SUITE_P(Cuda, Transfer,
                         ::testing::Combine(::testing::Values(DType::float32, DType::float64, DType::int32, DType::int64),
                                            ::testing::Values(Shape{}, Shape{0}, Shape{1}, Shape{7}, Shape{4097},
                                                              Shape{kBig}, Shape{3, 0, 5}, Shape{513, 1023})),
                         [](const ::testing::TestParamInfo<TransferParam>& i) {
                           const Shape& s = std::get<1>(i.param);
                           return fmt::format("{}_{}", nb::dtype_name(std::get<0>(i.param)),
                                              s.empty() ? std::string("scalar") : fmt::format("{}", fmt::join(s, "x")));
                         });

TEST_F(CudaMemory, LargeTransferRoundTrip512MiB) {
  const int64_t n = (int64_t{1} << 27) + 3;
  Tensor src = nb::rand({n}, {}, -1, 1);
  EXPECT_TRUE(same_bits(src.to(kCuda).to(nb::Device::cpu()), src));
}

TEST_F(CudaMemory, ItemAndToVectorReadDeviceValues) {
  Tensor g = nb::arange(-3.0, 4.0, 1.0, {.device = kCuda});
  EXPECT_EQ(g.to_vector<double>(), (std::vector<double>{-3, -2, -1, 0, 1, 2, 3}));
  EXPECT_EQ(g.slice(0, 5, 6).item(), 2.0);
  EXPECT_EQ(nb::scalar(-7, {.dtype = DType::int64, .device = kCuda}).item<int64_t>(), -7);
}

// Module::to moves parameters in place: an optimizer made before the move updates the moved
// parameters, and the model trains on the GPU as its CPU twin does.
TEST_F(CudaMemory, ModuleToCudaKeepsParameterIdentity) {
  nb::manual_seed(8);
  nb::Sequential cpu{nb::Dense(6, 5), nb::ReLU(), nb::Dense(5, 2)};
  nb::manual_seed(8);
  nb::Sequential gpu{nb::Dense(6, 5), nb::ReLU(), nb::Dense(5, 2)};
  nb::Adam oc(cpu.parameters(), {.lr = 1e-2}), og(gpu.parameters(), {.lr = 1e-2});
  gpu.to(kCuda);
  for (const Tensor& p : gpu.parameters()) EXPECT_TRUE(p.device() == kCuda);
  for (const Tensor& p : og.params()) EXPECT_TRUE(p.device() == kCuda) << "the optimizer holds other tensors";
  Tensor x = nb::randn({4, 6});
  Tensor y = nb::from_vector(std::vector<int64_t>{0, 1, 1, 0}, {4});
  for (int step = 0; step < 3; ++step) {
    oc.zero_grad();
    og.zero_grad();
    nb::cross_entropy(cpu(x), y).backward();
    nb::cross_entropy(gpu(x.to(kCuda)), y.to(kCuda)).backward();
    oc.step();
    og.step();
  }
  auto pc = cpu.parameters(), pg = gpu.parameters();
  for (size_t i = 0; i < pc.size(); ++i) {
    const auto a = pg[i].to_vector<double>(), b = pc[i].to_vector<double>();
    for (size_t k = 0; k < a.size(); ++k) EXPECT_NEAR(a[k], b[k], 1e-5 * std::abs(b[k]) + 1e-6) << "parameter " << i;
  }
  // And back: to(CPU) keeps the values bit for bit.
  std::vector<Tensor> on_gpu;
  for (const Tensor& p : pg) on_gpu.push_back(p.detach().clone());
  gpu.to(nb::Device::cpu());
  for (size_t i = 0; i < pg.size(); ++i) EXPECT_TRUE(same_bits(gpu.parameters()[i], on_gpu[i].to(nb::Device::cpu())));
}

}  // namespace
