// Tensor basics: factories, random numbers, host access, dtype conversions, printing, layout
// (contiguity, slices), in-place copy_/fill_, set_data, and their errors.
#include "test_util.h"

#include <nabla/core/philox.h>

#include <cmath>
#include <limits>
#include <numeric>
#include <sstream>

namespace nb = nabla;
using nb::Device;
using nb::DType;
using nb::Shape;
using nb::Tensor;
using namespace nb::test;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

namespace {

const DType kAllDtypes[] = {DType::float32, DType::float64, DType::int32, DType::int64};

// ---- factories ---------------------------------------------------------------------------------

TEST(TensorFactories, ZerosOnesFull_2x3) {
  Tensor z = nb::zeros({2, 3});
  EXPECT_EQ(z.shape(), (Shape{2, 3}));
  EXPECT_EQ(z.dtype(), DType::float32);  // the default
  EXPECT_EQ(z.device(), Device::cpu());
  EXPECT_EQ(z.numel(), 6);
  EXPECT_EQ(z.dim(), 2);
  EXPECT_TRUE(z.is_contiguous());
  EXPECT_FALSE(z.requires_grad());
  EXPECT_TRUE(near(z, std::vector<double>(6, 0), {2, 3}));
  EXPECT_TRUE(near(nb::ones({2, 3}, kF64), std::vector<double>(6, 1), {2, 3}));
  EXPECT_TRUE(near(nb::full({4}, -2.5, kF64), {-2.5, -2.5, -2.5, -2.5}, {4}));
  Tensor fi = nb::full({2}, 7.9, {.dtype = DType::int32});
  EXPECT_EQ(fi.dtype(), DType::int32);
  EXPECT_EQ(fi.to_vector<int32_t>(), (std::vector<int32_t>{7, 7}));
  EXPECT_TRUE(nb::zeros({3}, {.dtype = DType::float64, .requires_grad = true}).requires_grad());
}

TEST(TensorFactories, LikeAndScalar) {
  Tensor x = nb::full({2, 2}, 3, kF64);
  Tensor z = nb::zeros_like(x), o = nb::ones_like(x);
  EXPECT_EQ(z.shape(), x.shape());
  EXPECT_EQ(o.dtype(), DType::float64);
  EXPECT_TRUE(near(o, {1, 1, 1, 1}, {2, 2}));
  Tensor s = nb::scalar(4.5, kF64);
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.numel(), 1);
  EXPECT_EQ(s.shape(), Shape{});
  EXPECT_EQ(s.item(), 4.5);
}

TEST(TensorFactories, EmptyShapesAndZeroSizes) {
  Tensor e = Tensor::empty({0, 3});
  EXPECT_EQ(e.numel(), 0);
  EXPECT_EQ(e.to_vector<float>().size(), 0u);
  EXPECT_EQ(nb::zeros({2, 0, 3}).numel(), 0);
  EXPECT_THAT(error_of([] { Tensor::empty({2, -1}); }), AllOf(HasSubstr("empty"), HasSubstr("[2, -1]")));
}

TEST(TensorFactories, ArangeFloat) {
  EXPECT_TRUE(near(nb::arange(0.0, 1.0, 0.25, kF64), {0, 0.25, 0.5, 0.75}, {4}));
  EXPECT_TRUE(near(nb::arange(5.0, 0.0, -2.0, kF64), {5, 3, 1}, {3}));
  EXPECT_TRUE(near(nb::arange(0.0, 1.0, 0.3, kF64), {0, 0.3, 0.6, 0.9}, {4}, 1e-15));
  EXPECT_EQ(nb::arange(1.0, 1.0).numel(), 0);
  // The wrong direction is an error, as in PyTorch (it used to give an empty tensor silently).
  EXPECT_THAT(error_of([] { nb::arange(1.0, 0.0); }),
              AllOf(HasSubstr("arange"), HasSubstr("inconsistent with step sign")));
  EXPECT_THAT(error_of([] { nb::arange(0.0, 3.0, -1.0); }), HasSubstr("inconsistent with step sign"));
  EXPECT_EQ(nb::arange(0.0, 3.0).dtype(), DType::float32);
  EXPECT_THAT(error_of([] { nb::arange(0.0, 1.0, 0.0); }), AllOf(HasSubstr("arange"), HasSubstr("step")));
}

// The generator's counter near 2^64: a draw that fits is written in full (the kernels index
// [offset, offset + n) in uint64); the next one, which would wrap, is an error that leaves the
// state alone. manual_seed restarts the stream.
TEST(TensorFactories, RandomCounterNearTwoTo64FillsOrThrows_n8) {
  const nb::RngState saved = nb::rng_state();
  const uint64_t top = std::numeric_limits<uint64_t>::max();
  nb::set_rng_state({7, top - 15});  // 16 counters left
  Tensor a = nb::rand({8}, kF64, 1, 2);
  for (double v : a.to_vector<double>()) EXPECT_TRUE(v >= 1 && v < 2) << v;
  EXPECT_EQ(nb::rng_state().offset, top - 7);
  EXPECT_THAT(error_of([] { nb::randn({8}); }), AllOf(HasSubstr("randn"), HasSubstr("2^64"), HasSubstr("manual_seed")));
  EXPECT_EQ(nb::rng_state().offset, top - 7);
  nb::manual_seed(7);
  EXPECT_NO_THROW(nb::randn({8}));
  nb::set_rng_state(saved);
}

TEST(TensorFactories, ArangeInt) {
  Tensor a = nb::arange(int64_t{5});
  EXPECT_EQ(a.dtype(), DType::int64);
  EXPECT_EQ(a.to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  Tensor b = nb::arange(2.0, 11.0, 3.0, {.dtype = DType::int32});
  EXPECT_EQ(b.dtype(), DType::int32);
  EXPECT_EQ(b.to_vector<int32_t>(), (std::vector<int32_t>{2, 5, 8}));
  EXPECT_EQ(nb::arange(int64_t{0}).numel(), 0);
  EXPECT_EQ(nb::arange(5).dtype(), DType::int64);  // an int literal picks the integer overload
  EXPECT_EQ(nb::arange(int64_t{3}, kF64).to_vector<double>(), (std::vector<double>{0, 1, 2}));
}

TEST(TensorFactories, FromVectorShapesAndDtypes) {
  Tensor a = nb::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(a.dtype(), DType::float64);  // from the element type
  EXPECT_EQ(a.shape(), (Shape{2, 3}));
  EXPECT_TRUE(near(a, {1, 2, 3, 4, 5, 6}, {2, 3}));
  Tensor b = nb::from_vector(std::vector<int64_t>{1, -2, 3});
  EXPECT_EQ(b.dtype(), DType::int64);
  EXPECT_EQ(b.shape(), (Shape{3}));  // 1-D by default
  Tensor c = nb::from_vector(std::vector<int64_t>{1, -2, 3}, {3, 1}, {.dtype = DType::float32});
  EXPECT_EQ(c.dtype(), DType::float32);
  EXPECT_EQ(c.to_vector<float>(), (std::vector<float>{1, -2, 3}));
  Tensor d = nb::from_vector(std::vector<double>{1.9, -1.9}, {2}, {.dtype = DType::int32});
  EXPECT_EQ(d.to_vector<int32_t>(), (std::vector<int32_t>{1, -1}));  // truncation toward zero
  Tensor e = nb::from_vector({0.5, 1.5}, {1, 2});  // initializer list: float32 by default
  EXPECT_EQ(e.dtype(), DType::float32);
  EXPECT_EQ(e.shape(), (Shape{1, 2}));
  Tensor f = nb::from_vector(std::vector<float>{0.5f}, {1}, {.dtype = DType::float64, .requires_grad = true});
  EXPECT_TRUE(f.requires_grad());
  EXPECT_TRUE(f.is_leaf());
  EXPECT_EQ(nb::from_vector(std::vector<int32_t>{}).shape(), (Shape{0}));
}

TEST(TensorFactories, FromVectorWrongSize) {
  std::string msg = error_of([] { nb::from_vector(std::vector<double>{1, 2, 3}, {2, 2}); });
  EXPECT_THAT(msg, AllOf(HasSubstr("from_vector"), HasSubstr("3 values"), HasSubstr("[2, 2]"), HasSubstr("4")));
}

// ---- random numbers --------------------------------------------------------------------------------

TEST(TensorRandom, SeededIsReproducibleAndMoreDrawsDiffer_1000) {
  nb::manual_seed(42);
  auto a = nb::rand({1000}, kF64).to_vector<double>();
  auto b = nb::rand({1000}, kF64).to_vector<double>();
  nb::manual_seed(42);
  auto c = nb::rand({1000}, kF64).to_vector<double>();
  EXPECT_EQ(a, c);
  EXPECT_NE(a, b);
  nb::manual_seed(43);
  EXPECT_NE(nb::rand({1000}, kF64).to_vector<double>(), a);
  nb::manual_seed(42);
  auto n1 = nb::randn({1000}, kF64).to_vector<double>();
  nb::manual_seed(42);
  EXPECT_EQ(nb::randn({1000}, kF64).to_vector<double>(), n1);
}

TEST(TensorRandom, RngStateSaveRestore) {
  nb::manual_seed(7);
  nb::rand({5});
  const nb::RngState s = nb::rng_state();
  auto a = nb::randn({17}, kF64).to_vector<double>();
  nb::rand({3});
  nb::set_rng_state(s);
  EXPECT_EQ(nb::randn({17}, kF64).to_vector<double>(), a);
}

TEST(TensorRandom, UniformRangeAndMoments_100000) {
  nb::manual_seed(1);
  auto v = nb::rand({100000}, kF64, -2, 3).to_vector<double>();
  double sum = 0, sq = 0;
  for (double x : v) {
    ASSERT_GE(x, -2);
    ASSERT_LT(x, 3);
    sum += x;
    sq += x * x;
  }
  const double mean = sum / v.size(), var = sq / v.size() - mean * mean;
  EXPECT_NEAR(mean, 0.5, 0.02);               // sd of the mean: 5/sqrt(12)/316 = 0.0046
  EXPECT_NEAR(var, 25.0 / 12, 0.05);
  auto f = nb::rand({1000}, kF32).to_vector<float>();
  for (float x : f) ASSERT_TRUE(x >= 0.0f && x < 1.0f) << x;
}

TEST(TensorRandom, NormalMoments_100000) {
  nb::manual_seed(2);
  auto v = nb::randn({100000}, kF64, 1.5, 2).to_vector<double>();
  double sum = 0, sq = 0;
  for (double x : v) {
    ASSERT_TRUE(std::isfinite(x));
    sum += x;
    sq += x * x;
  }
  const double mean = sum / v.size(), sd = std::sqrt(sq / v.size() - mean * mean);
  EXPECT_NEAR(mean, 1.5, 0.03);  // sd of the mean: 2/316 = 0.0063
  EXPECT_NEAR(sd, 2.0, 0.03);
}

TEST(TensorRandom, Errors) {
  EXPECT_THAT(error_of([] { nb::rand({2}, {.dtype = DType::int64}); }), AllOf(HasSubstr("rand"), HasSubstr("int64")));
  EXPECT_THAT(error_of([] { nb::randn({2}, {.dtype = DType::int32}); }), AllOf(HasSubstr("randn"), HasSubstr("int32")));
  EXPECT_THAT(error_of([] { nb::rand({2}, kF64, 1, 0); }), HasSubstr("rand"));
  EXPECT_THAT(error_of([] { nb::randn({2}, kF64, 0, -1); }), HasSubstr("randn"));
}

// ---- host access -----------------------------------------------------------------------------------

TEST(TensorHost, Item) {
  EXPECT_EQ(nb::scalar(2.5).item(), 2.5);
  EXPECT_EQ(f64({7}, {1, 1}).item(), 7);
  EXPECT_EQ(i64({-3}).item<int64_t>(), -3);
  EXPECT_EQ(nb::full({}, 9, {.dtype = DType::int32}).item<int32_t>(), 9);
  std::string msg = error_of([] { nb::zeros({2, 3}).item(); });
  EXPECT_THAT(msg, AllOf(HasSubstr("item"), HasSubstr("[2, 3]"), HasSubstr("6 elements")));
}

TEST(TensorHost, ToVectorOfViewsAndConversions) {
  Tensor x = f64({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(x.t().to_vector<double>(), (std::vector<double>{1, 4, 2, 5, 3, 6}));
  EXPECT_EQ(x.slice(1, 1, 3).to_vector<int64_t>(), (std::vector<int64_t>{2, 3, 5, 6}));
  EXPECT_EQ(x.slice(0, 1, 2).expand({3, 3}).to_vector<float>(), (std::vector<float>{4, 5, 6, 4, 5, 6, 4, 5, 6}));
  EXPECT_THAT(error_of([&] { x.data<float>(); }), AllOf(HasSubstr("data<float32>"), HasSubstr("float64")));
  EXPECT_EQ(x.data<double>()[4], 5);
}

// ---- dtype round trips ----------------------------------------------------------------------------

class TensorDtypeRoundTrip : public ::testing::TestWithParam<std::tuple<DType, DType>> {};

TEST_P(TensorDtypeRoundTrip, ExactValuesSurvive) {
  const auto [from, to] = GetParam();
  // values every dtype holds exactly
  const std::vector<double> v = {-3, 0, 7, 100, -65536, 16777216};
  Tensor a = nb::from_vector(v, {2, 3}, {.dtype = from});
  Tensor b = a.to(to);
  EXPECT_EQ(b.dtype(), to);
  EXPECT_EQ(b.shape(), (Shape{2, 3}));
  EXPECT_EQ(b.to_vector<double>(), v);
  Tensor c = b.to(from);
  EXPECT_EQ(c.dtype(), from);
  EXPECT_EQ(c.to_vector<double>(), v);
  // from a non-contiguous view, in logical order
  EXPECT_EQ(a.t().to(to).to_vector<double>(), (std::vector<double>{-3, 100, 0, -65536, 7, 16777216}));
}

std::string round_trip_name(const ::testing::TestParamInfo<std::tuple<DType, DType>>& info) {
  return std::string(nb::dtype_name(std::get<0>(info.param))) + "_to_" + nb::dtype_name(std::get<1>(info.param));
}

INSTANTIATE_TEST_SUITE_P(AllPairs, TensorDtypeRoundTrip,
                         ::testing::Combine(::testing::ValuesIn(kAllDtypes), ::testing::ValuesIn(kAllDtypes)),
                         round_trip_name);

TEST(TensorDtype, FractionsAndRounding) {
  Tensor x = f64({0.1, -2.75, 1e10});
  EXPECT_EQ(x.to(DType::float32).to_vector<float>(), (std::vector<float>{0.1f, -2.75f, 1e10f}));
  EXPECT_EQ(x.to(DType::int64).to_vector<int64_t>(), (std::vector<int64_t>{0, -2, 10000000000}));
  EXPECT_EQ(nb::dtype_size(DType::float32), 4u);
  EXPECT_EQ(nb::dtype_size(DType::int64), 8u);
  EXPECT_STREQ(nb::dtype_name(DType::int32), "int32");
}

// ---- printing --------------------------------------------------------------------------------------

TEST(TensorPrint, ShapeDtypeDeviceAndValues_2x3) {
  Tensor x = f32({1.5, 2, -3, 4, 5, 6.25}, {2, 3});
  const std::string s = x.to_string();
  EXPECT_THAT(s, AllOf(HasSubstr("shape=[2, 3]"), HasSubstr("dtype=float32"), HasSubstr("device=cpu"),
                       HasSubstr("1.5"), HasSubstr("-3"), HasSubstr("6.25")));
  EXPECT_THAT(s, HasSubstr("[[1.5, 2, -3],\n [4, 5, 6.25]]"));
  EXPECT_THAT(s, Not(HasSubstr("requires_grad")));
  std::ostringstream os;
  os << x;
  EXPECT_EQ(os.str(), s);
}

TEST(TensorPrint, IntegersRequiresGradScalarEmptyUndefined) {
  EXPECT_THAT(i64({3, -4}).to_string(), AllOf(HasSubstr("dtype=int64"), HasSubstr("[3, -4]")));
  EXPECT_THAT(f64({1}).requires_grad_().to_string(), AllOf(HasSubstr("float64"), HasSubstr("requires_grad")));
  EXPECT_THAT(nb::scalar(2.5).to_string(), AllOf(HasSubstr("shape=[]"), HasSubstr("2.5")));
  EXPECT_THAT(nb::zeros({0, 2}).to_string(), AllOf(HasSubstr("shape=[0, 2]"), HasSubstr("[]")));
  EXPECT_EQ(Tensor().to_string(), "Tensor(undefined)");
}

TEST(TensorPrint, LongDimensionsAreElided_100_and_20x20) {
  const std::string s = nb::arange(0.0, 100.0, 1.0, kF64).to_string();
  EXPECT_THAT(s, HasSubstr("[0, 1, 2, ..., 97, 98, 99]"));
  EXPECT_THAT(s, Not(HasSubstr(" 50,")));
  const std::string m = nb::arange(0.0, 400.0, 1.0, kF64).reshape({20, 20}).to_string(4);
  EXPECT_THAT(m, AllOf(HasSubstr("shape=[20, 20]"), HasSubstr("[[0, 1, ..., 18, 19]"), HasSubstr("..."),
                       HasSubstr("[380, 381, ..., 398, 399]]")));
  EXPECT_THAT(m, Not(HasSubstr("200")));
  EXPECT_LT(m.size(), 400u);
}

TEST(TensorPrint, TinyMaxPerDimStillShowsFirstAndLast_10) {
  const Tensor x = nb::arange(0.0, 10.0, 1.0, kF64);
  EXPECT_THAT(x.to_string(1), HasSubstr("[0, ..., 9]"));
  EXPECT_THAT(x.to_string(0), HasSubstr("[0, ..., 9]"));
  EXPECT_THAT(x.to_string(5), HasSubstr("[0, 1, ..., 8, 9]"));
  EXPECT_THAT(x.to_string(10), HasSubstr("[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"));
}

TEST(TensorPrint, NonContiguousViewPrintsLogicalOrder_2x3T) {
  EXPECT_THAT(f64({1, 2, 3, 4, 5, 6}, {2, 3}).t().to_string(), HasSubstr("[[1, 4],\n [2, 5],\n [3, 6]]"));
}

// ---- layout ----------------------------------------------------------------------------------------

TEST(TensorLayout, ContiguityDetection) {
  Tensor x = nb::zeros({3, 4});
  EXPECT_TRUE(x.is_contiguous());
  EXPECT_EQ(x.strides(), (Shape{4, 1}));
  EXPECT_FALSE(x.t().is_contiguous());
  EXPECT_TRUE(x.t().t().is_contiguous());
  EXPECT_TRUE(x.slice(0, 1, 3).is_contiguous());       // whole rows
  EXPECT_FALSE(x.slice(1, 0, 2).is_contiguous());      // part of each row
  EXPECT_FALSE(x.slice(0, 0, 3, 2).is_contiguous());   // every other row
  EXPECT_FALSE(x.slice(0, 0, 1).expand({5, 4}).is_contiguous());
  EXPECT_TRUE(nb::zeros({3, 1}).t().is_contiguous());  // size-1 axes do not matter
  EXPECT_TRUE(x.unsqueeze(1).is_contiguous());
  EXPECT_TRUE(x.slice(1, 1, 2).slice(0, 1, 2).is_contiguous());  // one element
  EXPECT_EQ(x.slice(0, 1, 3).offset(), 4);
}

TEST(TensorLayout, SizeAndOptions) {
  Tensor x = nb::zeros({2, 3, 4}, kF64);
  EXPECT_EQ(x.size(0), 2);
  EXPECT_EQ(x.size(-1), 4);
  EXPECT_THAT(error_of([&] { x.size(3); }), HasSubstr("axis 3"));
  EXPECT_EQ(x.options().dtype, DType::float64);
  // a 0-d tensor has no axis: errors, not reads past its empty shape
  Tensor s = nb::scalar(1, kF64);
  EXPECT_THAT(error_of([&] { s.size(0); }), AllOf(HasSubstr("size"), HasSubstr("axis 0"), HasSubstr("0 dimensions")));
  EXPECT_THAT(error_of([&] { s.size(-1); }), HasSubstr("axis -1"));
  EXPECT_THAT(error_of([&] { s.squeeze(0); }), AllOf(HasSubstr("squeeze"), HasSubstr("axis 0")));
  EXPECT_EQ(s.unsqueeze(0).shape(), (Shape{1}));
  EXPECT_EQ(s.unsqueeze(-1).shape(), (Shape{1}));
  EXPECT_FALSE(Tensor().defined());
  EXPECT_THAT(error_of([] { Tensor().shape(); }), HasSubstr("undefined"));
}

TEST(TensorLayout, SliceNegativeIndicesAndStep_int64_12) {
  Tensor x = nb::arange(int64_t{12});
  EXPECT_EQ(x.slice(0, -4, 12).to_vector<int64_t>(), (std::vector<int64_t>{8, 9, 10, 11}));
  EXPECT_EQ(x.slice(0, 1, -1, 4).to_vector<int64_t>(), (std::vector<int64_t>{1, 5, 9}));
  EXPECT_EQ(x.slice(0, -1, 12).to_vector<int64_t>(), (std::vector<int64_t>{11}));
  EXPECT_EQ(x.slice(0, 0, -12).numel(), 0);
  Tensor m = x.reshape({3, 4});
  Tensor s = m.slice(1, -3, 4, 2);  // columns 1 and 3
  EXPECT_EQ(s.shape(), (Shape{3, 2}));
  EXPECT_EQ(s.strides(), (Shape{4, 2}));
  EXPECT_EQ(s.offset(), 1);
  EXPECT_EQ(s.to_vector<int64_t>(), (std::vector<int64_t>{1, 3, 5, 7, 9, 11}));
  EXPECT_EQ(s.slice(0, -1, 3).to_vector<int64_t>(), (std::vector<int64_t>{9, 11}));
}

// ---- in place ----------------------------------------------------------------------------------------

TEST(TensorInPlace, CopyWithBroadcastingAndConversion_2x3) {
  Tensor x = nb::zeros({2, 3}, kF64);
  x.copy_(f64({1, 2, 3}));
  EXPECT_TRUE(near(x, {1, 2, 3, 1, 2, 3}, {2, 3}));
  x.copy_(f64({10, 20}, {2, 1}));
  EXPECT_TRUE(near(x, {10, 10, 10, 20, 20, 20}, {2, 3}));
  x.copy_(nb::scalar(-1, kF64));
  EXPECT_TRUE(near(x, std::vector<double>(6, -1), {2, 3}));
  x.copy_(i64({1, 2, 3, 4, 5, 6}, {2, 3}));  // int64 source into float64
  EXPECT_TRUE(near(x, {1, 2, 3, 4, 5, 6}, {2, 3}));
  Tensor y = nb::zeros({3, 2}, kF64);
  y.copy_(x.t());  // a transposed source
  EXPECT_TRUE(near(y, {1, 4, 2, 5, 3, 6}, {3, 2}));
  Tensor i = nb::zeros({3}, {.dtype = DType::int32});
  i.copy_(f64({1.7, -2.2, 3}));
  EXPECT_EQ(i.to_vector<int32_t>(), (std::vector<int32_t>{1, -2, 3}));
}

TEST(TensorInPlace, CopyIntoANonContiguousView_3x4) {
  Tensor x = nb::zeros({3, 4}, kF64);
  x.t().copy_(nb::arange(0.0, 12.0, 1.0, kF64).reshape({4, 3}));  // x[j, i] = 3i + j
  EXPECT_TRUE(near(x, {0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11}, {3, 4}));
  x.slice(1, 0, 4, 2).copy_(f64({-1, -2}));
  EXPECT_TRUE(near(x, {-1, 3, -2, 9, -1, 4, -2, 10, -1, 5, -2, 11}, {3, 4}));
}

TEST(TensorInPlace, CopyErrorsNameShapes) {
  std::string msg = error_of([] { nb::zeros({2, 3}).copy_(nb::zeros({4})); });
  EXPECT_THAT(msg, AllOf(HasSubstr("copy_"), HasSubstr("[4]"), HasSubstr("[2, 3]")));
  msg = error_of([] { nb::zeros({3}).copy_(nb::zeros({2, 3})); });  // copy_ never reduces
  EXPECT_THAT(msg, AllOf(HasSubstr("copy_"), HasSubstr("[2, 3]"), HasSubstr("[3]")));
  msg = error_of([] { nb::zeros({3}).copy_(Tensor()); });
  EXPECT_THAT(msg, AllOf(HasSubstr("copy_"), HasSubstr("undefined")));
}

TEST(TensorInPlace, CopyIsNotRecorded) {
  Tensor src = f64({1, 2}).requires_grad_();
  Tensor dst = nb::zeros({2}, kF64);
  const size_t before = nb::tape_size();
  dst.copy_(src * 2.0);
  EXPECT_FALSE(dst.requires_grad());
  EXPECT_EQ(nb::tape_size(), before);
  EXPECT_TRUE(near(dst, {2, 4}, {2}));
}

TEST(TensorInPlace, FillOnNonContiguousViews_3x4) {
  Tensor x = nb::zeros({3, 4}, kF64);
  x.slice(1, 1, 4, 2).fill_(5);  // columns 1 and 3
  EXPECT_TRUE(near(x, {0, 5, 0, 5, 0, 5, 0, 5, 0, 5, 0, 5}, {3, 4}));
  x.t().slice(0, 0, 1).fill_(-1);  // column 0 through a transposed view
  EXPECT_TRUE(near(x, {-1, 5, 0, 5, -1, 5, 0, 5, -1, 5, 0, 5}, {3, 4}));
  x.slice(0, 1, 2).fill_(2);  // a contiguous row in the middle
  EXPECT_TRUE(near(x, {-1, 5, 0, 5, 2, 2, 2, 2, -1, 5, 0, 5}, {3, 4}));
  Tensor i = nb::zeros({4}, {.dtype = DType::int64});
  i.slice(0, 0, 4, 3).fill_(7);
  EXPECT_EQ(i.to_vector<int64_t>(), (std::vector<int64_t>{7, 0, 0, 7}));
}

TEST(TensorInPlace, SetDataKeepsIdentity) {
  Tensor p = f64({1, 2}).requires_grad_();
  Tensor alias = p;  // e.g. an optimizer holding the parameter
  nb::TensorImpl* impl = p.impl();
  Tensor fresh = f64({7, 8});
  p.set_data(fresh);
  EXPECT_EQ(p.impl(), impl);
  EXPECT_EQ(alias.data_ptr(), fresh.data_ptr());
  EXPECT_TRUE(near(alias, {7, 8}, {2}));
  EXPECT_TRUE(alias.requires_grad());
  EXPECT_TRUE(alias.is_leaf());
  nb::sum(alias * 2.0).backward();  // still a working leaf
  EXPECT_TRUE(near(p.grad(), {2, 2}, {2}));
  Tensor q = f64({1, 2}).requires_grad_();
  q.set_grad(f64({0.5, 0.25}));
  Tensor other = f32({3, 4});
  q.set_data(other);
  EXPECT_EQ(q.data_ptr(), other.data_ptr());  // shares the new data
  EXPECT_EQ(q.grad().dtype(), DType::float32);  // the gradient follows the dtype
  EXPECT_TRUE(near(q.grad(), {0.5, 0.25}, {2}));
  EXPECT_THAT(error_of([&] { q.set_data(Tensor()); }), AllOf(HasSubstr("set_data"), HasSubstr("undefined")));
}

// ---- devices -----------------------------------------------------------------------------------------

TEST(TensorDevice, ParseAndNames) {
  EXPECT_EQ(Device::parse("cpu"), Device::cpu());
  EXPECT_EQ(Device::parse("cuda"), Device::cuda(0));
  EXPECT_EQ(Device::parse("cuda:1"), Device::cuda(1));
  EXPECT_EQ(Device::cuda(2).str(), "cuda:2");
  EXPECT_THAT(error_of([] { Device::parse("gpu"); }), AllOf(HasSubstr("Device"), HasSubstr("gpu")));
  EXPECT_THAT(error_of([] { Device::parse("cuda:x"); }), HasSubstr("cuda:x"));
  Tensor x = f64({1, 2});
  EXPECT_EQ(x.to(Device::cpu()).data_ptr(), x.data_ptr());  // same device: no copy
}

// ---- factories, conversions, views, printing, devices ---------------------------------------------

TEST(Factories, ZerosOnesFullScalar) {
  EXPECT_EQ(nb::zeros({2, 3}).to_vector<float>(), std::vector<float>(6, 0));
  EXPECT_EQ(nb::ones({4}, {.dtype = DType::int32}).to_vector<int32_t>(), std::vector<int32_t>(4, 1));
  EXPECT_EQ(nb::full({2}, 2.5, {.dtype = DType::float64}).to_vector<double>(), (std::vector<double>{2.5, 2.5}));
  Tensor s = nb::scalar(7);
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.numel(), 1);
  EXPECT_EQ(s.item(), 7.0);
  EXPECT_EQ(nb::zeros({0, 3}).numel(), 0);
  EXPECT_THAT(error_of([] { nb::zeros({2, -1}); }), HasSubstr("negative dimension"));
}

TEST(Factories, Arange) {
  EXPECT_EQ(nb::arange(5).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(nb::arange(5).dtype(), DType::int64);
  EXPECT_EQ(nb::arange(1, 2, 0.25).to_vector<float>(), (std::vector<float>{1, 1.25, 1.5, 1.75}));
  EXPECT_EQ(nb::arange(3, 0, -1, {.dtype = DType::int32}).to_vector<int32_t>(), (std::vector<int32_t>{3, 2, 1}));
  EXPECT_EQ(nb::arange(2, 2).numel(), 0);
  EXPECT_THAT(error_of([] { nb::arange(0, 1, 0); }), HasSubstr("step"));
}

TEST(Factories, RandIsSeededAndInRange_1000) {
  nb::manual_seed(5);
  auto a = nb::rand({1000}, {}, -1, 3).to_vector<float>();
  auto b = nb::rand({1000}, {}, -1, 3).to_vector<float>();
  nb::manual_seed(5);
  auto c = nb::rand({1000}, {}, -1, 3).to_vector<float>();
  EXPECT_EQ(a, c);
  EXPECT_NE(a, b);
  double mean = 0;
  for (float v : a) {
    EXPECT_GE(v, -1.0f);
    EXPECT_LT(v, 3.0f);
    mean += v;
  }
  EXPECT_NEAR(mean / 1000, 1.0, 0.15);
  nb::manual_seed(6);
  auto n = nb::randn({4000}, {.dtype = DType::float64}, 2, 0.5).to_vector<double>();
  double m = 0, v = 0;
  for (double e : n) m += e;
  m /= n.size();
  for (double e : n) v += (e - m) * (e - m);
  EXPECT_NEAR(m, 2, 0.05);
  EXPECT_NEAR(std::sqrt(v / n.size()), 0.5, 0.03);
  EXPECT_THAT(error_of([] { nb::rand({2}, {.dtype = DType::int64}); }), HasSubstr("int64"));
}

TEST(Factories, FromVectorShapesAndConversion) {
  Tensor t = nb::from_vector(std::vector<int64_t>{1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(t.dtype(), DType::int64);
  EXPECT_EQ(t.shape(), (nb::Shape{2, 3}));
  EXPECT_EQ(nb::from_vector({1.5, 2.5}).dtype(), DType::float32);
  EXPECT_EQ(nb::from_vector(std::vector<float>{1.5f}, {}, {.dtype = DType::float64}).dtype(), DType::float64);
  EXPECT_THAT(error_of([] { nb::from_vector({1, 2, 3}, {2, 2}); }), HasSubstr("3 values do not fill shape [2, 2]"));
}

TEST(Conversions, DtypeRoundTripsAllFour) {
  Tensor f = nb::from_vector({-2.0, 0.0, 3.0, 7.0});
  for (DType d : {DType::float32, DType::float64, DType::int32, DType::int64}) {
    Tensor r = f.to(d).to(DType::float32);
    EXPECT_EQ(f.to(d).dtype(), d);
    EXPECT_EQ(r.to_vector<float>(), f.to_vector<float>()) << nb::dtype_name(d);
  }
  EXPECT_EQ(nb::from_vector({2.7, -2.7}).to(DType::int32).to_vector<int32_t>(), (std::vector<int32_t>{2, -2}));
  Tensor same = f.to(nb::Device::cpu());
  EXPECT_EQ(same.impl(), f.impl());  // no copy to the same device
  EXPECT_THAT(error_of([] { nb::from_vector({1.0, 2.0}).item(); }), HasSubstr("exactly one element"));
}

TEST(Views, ReshapeViewContiguity) {
  Tensor t = nb::arange(0, 12, 1, {.dtype = DType::float32});
  Tensor v = t.view({3, 4});
  EXPECT_EQ(v.data_ptr(), t.data_ptr());  // no copy
  Tensor tr = v.t();
  EXPECT_FALSE(tr.is_contiguous());
  EXPECT_EQ(tr.shape(), (nb::Shape{4, 3}));
  EXPECT_EQ(tr.contiguous().to_vector<float>(),
            (std::vector<float>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}));
  EXPECT_THAT(error_of([&] { tr.view({12}); }), HasSubstr("not contiguous"));
  EXPECT_EQ(tr.reshape({12}).to_vector<float>()[1], 4.0f);  // reshape copies
  EXPECT_EQ(t.reshape({2, -1, 3}).shape(), (nb::Shape{2, 2, 3}));
  EXPECT_THAT(error_of([&] { t.reshape({5, -1}); }), HasSubstr("cannot reshape [12]"));
  EXPECT_EQ(v.unsqueeze(0).shape(), (nb::Shape{1, 3, 4}));
  EXPECT_EQ(v.unsqueeze(-1).shape(), (nb::Shape{3, 4, 1}));
  EXPECT_EQ(v.unsqueeze(0).squeeze(0).shape(), (nb::Shape{3, 4}));
  EXPECT_THAT(error_of([&] { v.squeeze(0); }), HasSubstr("expected 1"));
  EXPECT_EQ(v.flatten().shape(), (nb::Shape{12}));
}

TEST(Views, SliceLikePython) {
  Tensor t = nb::arange(0, 10, 1, {.dtype = DType::float32});
  EXPECT_EQ(t.slice(0, 2, 8, 3).to_vector<float>(), (std::vector<float>{2, 5}));
  EXPECT_EQ(t.slice(0, -3, 100).to_vector<float>(), (std::vector<float>{7, 8, 9}));
  EXPECT_EQ(t.slice(0, 5, 2).numel(), 0);
  Tensor m = t.view({2, 5});
  EXPECT_EQ(m.slice(1, 1, 3).to_vector<float>(), (std::vector<float>{1, 2, 6, 7}));
  EXPECT_THAT(error_of([&] { t.slice(0, 0, 5, 0); }), HasSubstr("step"));
  EXPECT_THAT(error_of([&] { m.slice(2, 0, 1); }), HasSubstr("axis 2 out of range"));
}

TEST(Views, ExpandAndCopyWithBroadcast) {
  Tensor row = nb::from_vector({1, 2, 3});
  Tensor e = row.expand({2, 3});
  EXPECT_EQ(e.strides()[0], 0);
  EXPECT_EQ(e.contiguous().to_vector<float>(), (std::vector<float>{1, 2, 3, 1, 2, 3}));
  Tensor dst = nb::zeros({2, 3});
  dst.copy_(row);
  EXPECT_EQ(dst.to_vector<float>(), (std::vector<float>{1, 2, 3, 1, 2, 3}));
  dst.t().slice(0, 1, 2).fill_(9);  // a non-contiguous view of the middle column
  EXPECT_EQ(dst.to_vector<float>(), (std::vector<float>{1, 9, 3, 1, 9, 3}));
  EXPECT_THAT(error_of([&] { dst.copy_(nb::zeros({4})); }), HasSubstr("do not broadcast"));
  EXPECT_THAT(error_of([&] { row.expand({2, 4}); }), HasSubstr("expand"));
}

TEST(Views, SetDataKeepsIdentity) {
  Tensor p = nb::zeros({2});
  Tensor alias = p;
  p.set_data(nb::ones({3}, {.dtype = DType::float64}));
  EXPECT_EQ(alias.shape(), (nb::Shape{3}));
  EXPECT_EQ(alias.dtype(), DType::float64);
  EXPECT_EQ(alias.to_vector<double>(), (std::vector<double>{1, 1, 1}));
}

TEST(Printing, ShowsShapeDtypeDeviceAndValues) {
  std::string s = nb::from_vector({1.5, -2, 3, 4}, {2, 2}).to_string();
  EXPECT_THAT(s, HasSubstr("shape=[2, 2]"));
  EXPECT_THAT(s, HasSubstr("dtype=float32"));
  EXPECT_THAT(s, HasSubstr("device=cpu"));
  EXPECT_THAT(s, HasSubstr("[[1.5, -2],"));
  std::string longs = nb::arange(100).to_string();
  EXPECT_THAT(longs, HasSubstr("0, 1, 2, ..., 97, 98, 99]"));
  EXPECT_THAT(nb::ones({1}).requires_grad_().to_string(), HasSubstr("requires_grad"));
  EXPECT_EQ(Tensor().to_string(), "Tensor(undefined)");
  EXPECT_THAT(error_of([] { Tensor().shape(); }), HasSubstr("undefined tensor"));
}

TEST(Devices, ParseAndBest) {
  EXPECT_EQ(nb::Device::parse("cpu"), nb::Device::cpu());
  EXPECT_EQ(nb::Device::parse("cuda:1"), nb::Device::cuda(1));
  EXPECT_EQ(nb::Device::cuda(2).str(), "cuda:2");
  EXPECT_THAT(error_of([] { nb::Device::parse("tpu"); }), HasSubstr("'tpu'"));
  nb::Device best = nb::Device::best();
  EXPECT_TRUE(best.is_cpu() || best.is_cuda());
}

// ---- values worked out by hand, one test per case, and the errors each op raises ----------------

TEST(Errors, Item_MultiElement_2x2) {
  std::string msg = error_of([] { nb::zeros({2, 2}).item(); });
  EXPECT_THAT(msg, AllOf(HasSubstr("item():"), HasSubstr("[2, 2]"), HasSubstr("4 elements")));
  EXPECT_EQ(error_of([] { nb::zeros({1, 1}).item(); }), "(no error)");
}

// ---- CPU kernels, called directly through nabla::Backend on host buffers (test_util.h: cpu()) ----
// (in a namespace of their own: their helper and case names may repeat the suite's above)
namespace cpu_kernels {

using nb::StridedLayout;

// ---- memory and backend identity ----------------------------------------------------------------

TEST(CpuBackend, NameAndDeviceCount) {
  EXPECT_STREQ(cpu().name(), "cpu");
  EXPECT_EQ(cpu().device_count(), 1);
  EXPECT_THROW(nb::backend_for(nb::Device::Kind::CPU, 1), nb::Error);
}

TEST(CpuBackend, AllocateIs64ByteAlignedIncludingZeroBytes) {
  for (size_t bytes :
       {size_t{0}, size_t{1}, size_t{63}, size_t{64}, size_t{1000}, size_t{1} << 20}) {
    void* p = cpu().allocate(bytes);
    ASSERT_NE(p, nullptr) << bytes;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u) << bytes;
    if (bytes > 0) std::memset(p, 0xab, bytes);
    cpu().deallocate(p, bytes);
  }
}

TEST(CpuBackend, AllocateTooMuchThrowsNamingTheSize) {
  const size_t huge = std::numeric_limits<size_t>::max() / 2;
  try {
    cpu().allocate(huge);
    FAIL() << "no exception";
  } catch (const nb::Error& e) {
    EXPECT_NE(std::string(e.what()).find(std::to_string(huge)), std::string::npos) << e.what();
  }
}

TEST(CpuBackend, CopiesRoundTrip) {
  std::vector<float> host{1, 2, 3, 4, 5}, back(5, 0);
  void* dev = cpu().allocate(host.size() * 4);
  void* dev2 = cpu().allocate(host.size() * 4);
  cpu().copy_from_host(dev, host.data(), host.size() * 4);
  cpu().copy(dev2, dev, host.size() * 4);
  cpu().copy_to_host(back.data(), dev2, back.size() * 4);
  cpu().synchronize();
  EXPECT_EQ(back, host);
  cpu().copy(dev2, dev, 0);
  cpu().deallocate(dev, 20);
  cpu().deallocate(dev2, 20);
}

// ---- fill, copy_strided, cast -------------------------------------------------------------------

TEST(CpuFill, AllDtypes_n1000) {
  std::vector<float> f(1000);
  std::vector<double> d(1000);
  std::vector<int32_t> i32(1000);
  std::vector<int64_t> i64(1000);
  cpu().fill(DType::float32, f.data(), 1000, 2.5);
  cpu().fill(DType::float64, d.data(), 1000, -1.25);
  cpu().fill(DType::int32, i32.data(), 1000, 7);
  cpu().fill(DType::int64, i64.data(), 1000, -3);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(f[i], 2.5f);
    ASSERT_EQ(d[i], -1.25);
    ASSERT_EQ(i32[i], 7);
    ASSERT_EQ(i64[i], -3);
  }
}

TEST(CpuFill, Large_n100000_ParallelPath) {
  std::vector<float> f(100000, 0.f);
  cpu().fill(DType::float32, f.data(), 100000, 1.5);
  for (float v : f) ASSERT_EQ(v, 1.5f);
}

TEST(CpuCopyStrided, Transpose_3x4_float32_and_int64) {
  // a: (3, 4) contiguous; out: (4, 3) = a^T, iterated over out's shape.
  std::vector<float> a(12);
  std::vector<int64_t> ai(12);
  for (int i = 0; i < 12; ++i) a[i] = float(i), ai[i] = i * 10;
  std::vector<float> out(12, -1);
  std::vector<int64_t> outi(12, -1);
  auto l = layout({4, 3}, {3, 1}, {1, 4});
  cpu().copy_strided(DType::float32, out.data(), a.data(), l);
  cpu().copy_strided(DType::int64, outi.data(), ai.data(), l);
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 3; ++c) {
      EXPECT_EQ(out[r * 3 + c], a[c * 4 + r]);
      EXPECT_EQ(outi[r * 3 + c], ai[c * 4 + r]);
    }
}

TEST(CpuCopyStrided, BroadcastRow_5x7_float64) {
  std::vector<double> row{1, 2, 3, 4, 5, 6, 7}, out(35, 0);
  cpu().copy_strided(DType::float64, out.data(), row.data(), layout({5, 7}, {7, 1}, {0, 1}));
  for (int r = 0; r < 5; ++r)
    for (int c = 0; c < 7; ++c) EXPECT_EQ(out[r * 7 + c], row[c]);
}

TEST(CpuCopyStrided, BroadcastColumn_Permuted3d_4x5x6_int32) {
  // out is written through a permuted layout: out strides (1, 4, 20) for shape (4, 5, 6).
  std::vector<int32_t> a(4 * 6);
  std::iota(a.begin(), a.end(), 0);
  std::vector<int32_t> out(120, -1);
  auto l = layout({4, 5, 6}, {1, 4, 20}, {6, 0, 1});
  cpu().copy_strided(DType::int32, out.data(), a.data(), l);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 5; ++j)
      for (int k = 0; k < 6; ++k) EXPECT_EQ(out[i + 4 * j + 20 * k], a[i * 6 + k]);
}

TEST(CpuCopyStrided, ScalarAndEmpty) {
  double a = 3.5, out = 0;
  StridedLayout scalar;  // ndim 0: one element
  cpu().copy_strided(DType::float64, &out, &a, scalar);
  EXPECT_EQ(out, 3.5);
  double untouched = -1;
  cpu().copy_strided(DType::float64, &untouched, &a, layout({3, 0}, {0, 1}, {0, 1}));
  EXPECT_EQ(untouched, -1);
}

TEST(CpuCopyStrided, LargeTranspose_300x257_ParallelPath) {
  const int R = 300, C = 257;
  std::vector<float> a(R * C), out(R * C);
  for (int i = 0; i < R * C; ++i) a[i] = float(i);
  cpu().copy_strided(DType::float32, out.data(), a.data(), layout({C, R}, {R, 1}, {1, C}));
  for (int r = 0; r < C; ++r)
    for (int c = 0; c < R; ++c) ASSERT_EQ(out[r * R + c], a[c * C + r]);
}

TEST(CpuCast, FloatToIntTruncatesAndIntToFloat_n4) {
  std::vector<double> d{2.7, -2.7, 0.0, 1e6};
  std::vector<int32_t> i32(4);
  cpu().cast(DType::int32, i32.data(), DType::float64, d.data(), 4);
  EXPECT_EQ(i32, (std::vector<int32_t>{2, -2, 0, 1000000}));
  std::vector<int64_t> i64{-5, 0, 3, int64_t{1} << 40};
  std::vector<float> f(4);
  cpu().cast(DType::float32, f.data(), DType::int64, i64.data(), 4);
  EXPECT_EQ(f, (std::vector<float>{-5.f, 0.f, 3.f, float(int64_t{1} << 40)}));
  std::vector<double> back(4);
  std::vector<float> fs{0.1f, -1.5f, 3.f, 1e30f};
  cpu().cast(DType::float64, back.data(), DType::float32, fs.data(), 4);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(back[i], double(fs[i]));
  std::vector<int64_t> same(4);
  cpu().cast(DType::int64, same.data(), DType::int64, i64.data(), 4);
  EXPECT_EQ(same, i64);
}

// ---- random -------------------------------------------------------------------------------------

TEST(Philox, Random123KnownAnswers) {
  using nb::philox::philox4x32_10;
  using nb::philox::Words;
  auto check = [](Words ctr, uint32_t k0, uint32_t k1, Words want) {
    const Words got = philox4x32_10(ctr, k0, k1);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(got.w[i], want.w[i]) << "word " << i;
  };
  check({{0, 0, 0, 0}}, 0, 0, {{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}});
  check({{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}}, 0xffffffffu, 0xffffffffu,
        {{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}});
  check({{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}}, 0xa4093822u, 0x299f31d0u,
        {{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}});
  static_assert(philox4x32_10(Words{{0, 0, 0, 0}}, 0, 0).w[0] == 0x6627e8d5u,
                "Philox is usable in constant expressions");
}

enum class Dist { uniform, normal };

struct RandCase {
  Dist dist;
  DType dtype;
};

std::string rand_name(const RandCase& c) {
  return std::string(c.dist == Dist::uniform ? "uniform_" : "normal_") + nb::dtype_name(c.dtype);
}

// Runs the kernel and returns its output as doubles.
std::vector<double> draw(const RandCase& c, int64_t n, uint64_t seed, uint64_t offset, double p0,
                         double p1) {
  std::vector<double> out(n);
  if (c.dtype == DType::float32) {
    std::vector<float> f(n, -12345.f);
    if (c.dist == Dist::uniform)
      cpu().rand_uniform(c.dtype, f.data(), n, seed, offset, p0, p1);
    else
      cpu().rand_normal(c.dtype, f.data(), n, seed, offset, p0, p1);
    out.assign(f.begin(), f.end());
  } else {
    std::fill(out.begin(), out.end(), -12345.0);
    if (c.dist == Dist::uniform)
      cpu().rand_uniform(c.dtype, out.data(), n, seed, offset, p0, p1);
    else
      cpu().rand_normal(c.dtype, out.data(), n, seed, offset, p0, p1);
  }
  return out;
}

class CpuRandom : public ::testing::TestWithParam<RandCase> {};

TEST_P(CpuRandom, SameSeedAndOffsetGiveSameNumbers_n1000) {
  const auto c = GetParam();
  auto a = draw(c, 1000, 42, 7, 0, 1), b = draw(c, 1000, 42, 7, 0, 1);
  EXPECT_EQ(a, b);
  auto other = draw(c, 1000, 43, 7, 0, 1);
  int same = 0;
  for (int i = 0; i < 1000; ++i) same += a[i] == other[i];
  EXPECT_LT(same, 5);
}

TEST_P(CpuRandom, OffsetShiftsTheStream_n301) {
  // Element i of a call with offset k is element i + k of a call with offset 0.
  const auto c = GetParam();
  const int64_t n = 301;
  auto base = draw(c, n + 16, 5, 0, -2, 3);
  for (uint64_t k : {1u, 2u, 3u, 4u, 5u, 11u}) {
    auto shifted = draw(c, n, 5, k, -2, 3);
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(shifted[i], base[i + k]) << "offset " << k << " i " << i;
  }
}

TEST_P(CpuRandom, KernelMatchesElementFunctions_n50_offset3) {
  const auto c = GetParam();
  auto got = draw(c, 50, 99, 3, 1.5, 0.5);
  for (uint64_t i = 0; i < 50; ++i) {
    const uint64_t index = 3 + i;
    double want = 0;
    if (c.dist == Dist::uniform)
      want = c.dtype == DType::float32 ? nb::philox::uniform_float_at(99, index, 1.5, 0.5)
                                       : nb::philox::uniform_double_at(99, index, 1.5, 0.5);
    else
      want = c.dtype == DType::float32 ? nb::philox::normal_float_at(99, index, 1.5, 0.5)
                                       : nb::philox::normal_double_at(99, index, 1.5, 0.5);
    ASSERT_EQ(got[i], want) << i;
  }
}

TEST_P(CpuRandom, ShortRangesCutAnywhereInABlock_n1to9_offset0to7) {
  const auto c = GetParam();
  for (int64_t n = 1; n <= 9; ++n)
    for (uint64_t offset = 0; offset < 8; ++offset) {
      auto got = draw(c, n, 7, offset, -1, 2);
      auto whole = draw(c, 24, 7, 0, -1, 2);
      for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(got[i], whole[offset + i]) << "n " << n << " offset " << offset << " i " << i;
    }
}

TEST_P(CpuRandom, MomentsAndRange_n1048576) {
  const auto c = GetParam();
  const int64_t n = int64_t{1} << 20;  // also the parallel path
  const double p0 = c.dist == Dist::uniform ? -1.0 : 2.0, p1 = c.dist == Dist::uniform ? 3.0 : 0.5;
  auto x = draw(c, n, 1234, 0, p0, p1);
  double sum = 0, sq = 0, lo = kInf, hi = -kInf;
  for (double v : x) {
    sum += v;
    sq += v * v;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  const double mean = sum / double(n), stddev = std::sqrt(sq / double(n) - mean * mean);
  if (c.dist == Dist::uniform) {
    EXPECT_NEAR(mean, 1.0, 0.01);
    EXPECT_NEAR(stddev, 4.0 / std::sqrt(12.0), 0.01);
    EXPECT_GE(lo, -1.0);
    EXPECT_LT(hi, 3.0);
    EXPECT_LT(lo, -0.999);
    EXPECT_GT(hi, 2.999);
  } else {
    EXPECT_NEAR(mean, 2.0, 0.005);
    EXPECT_NEAR(stddev, 0.5, 0.005);
    EXPECT_TRUE(std::isfinite(lo) && std::isfinite(hi));
    // About 1 in 15800 draws is beyond 4 sigma: a 2^20 sample has some on each side.
    EXPECT_LT(lo, 2.0 - 4 * 0.5);
    EXPECT_GT(hi, 2.0 + 4 * 0.5);
  }
}

INSTANTIATE_TEST_SUITE_P(Kinds, CpuRandom,
                         ::testing::Values(RandCase{Dist::uniform, DType::float32},
                                           RandCase{Dist::uniform, DType::float64},
                                           RandCase{Dist::normal, DType::float32},
                                           RandCase{Dist::normal, DType::float64}),
                         [](const auto& info) { return rand_name(info.param); });

}  // namespace cpu_kernels

}  // namespace
