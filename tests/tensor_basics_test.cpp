// Tensor: factories, conversions, views, printing, in-place copies.
#include "gradcheck.h"

#include <nabla/core/ops.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace nb = nabla;
using nb::DType;
using nb::Tensor;
using nb::testing::error_of;
using ::testing::HasSubstr;

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
