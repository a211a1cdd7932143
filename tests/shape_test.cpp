// Views (reshape, view, transpose, slice, unsqueeze, squeeze, expand, flatten, contiguous, clone,
// to(dtype)), concat and dropout: gradients, values, storage sharing and errors.
#include "test_util.h"

#include <cmath>

namespace nb = nabla;
using nb::DType;
using nb::Shape;
using nb::Tensor;
using namespace nb::test;
using ::testing::AllOf;
using ::testing::HasSubstr;

namespace {

// arange(n) as float64 of `shape`
Tensor seq(Shape shape) {
  return nb::arange(0.0, static_cast<double>(nb::numel_of(shape)), 1.0, kF64).reshape(shape);
}

// ---- gradient checks ---------------------------------------------------------------------------

std::vector<GradCase> view_cases() {
  auto one = [](Shape s) { return [=] { return Tensors{input(s)}; }; };
  return {
      {"reshape_2x6_to_3x4", [](const Tensors& x) { return x[0].reshape({3, 4}); }, one({2, 6})},
      {"reshape_infer_2x6_to_4x-1", [](const Tensors& x) { return x[0].reshape({4, -1}); }, one({2, 6})},
      {"reshape_of_transposed_3x4T_to_12", [](const Tensors& x) { return x[0].t().reshape({-1}); }, one({3, 4})},
      {"reshape_0d_to_1x1", [](const Tensors& x) { return x[0].reshape({1, 1}); }, one({})},
      {"view_2x3x4_to_6x4", [](const Tensors& x) { return x[0].view({6, 4}); }, one({2, 3, 4})},
      {"view_then_mul_2x6_3x4", [](const Tensors& x) { return x[0].view({3, 4}) * x[1]; },
       [] { return Tensors{input({2, 6}), input({3, 4})}; }},
      {"flatten_all_2x3x4", [](const Tensors& x) { return x[0].flatten(); }, one({2, 3, 4})},
      {"flatten_1_2x3x4", [](const Tensors& x) { return x[0].flatten(1); }, one({2, 3, 4})},
      {"flatten_0_1_2x3x4", [](const Tensors& x) { return x[0].flatten(0, 1); }, one({2, 3, 4})},
      {"flatten_of_transposed_2x3x4", [](const Tensors& x) { return x[0].transpose(0, 2).flatten(1); },
       one({2, 3, 4})},
      {"transpose_0_2_2x3x4", [](const Tensors& x) { return x[0].transpose(0, 2) * x[1]; },
       [] { return Tensors{input({2, 3, 4}), input({4, 3, 2})}; }},
      {"t_3x4", [](const Tensors& x) { return x[0].t(); }, one({3, 4})},
      {"transpose_twice_2x3x4", [](const Tensors& x) { return x[0].transpose(0, 1).transpose(1, 2); },
       one({2, 3, 4})},
      {"slice_axis1_step2_3x7", [](const Tensors& x) { return x[0].slice(1, 1, 7, 2); }, one({3, 7})},
      {"slice_axis0_step3_7x2x2", [](const Tensors& x) { return x[0].slice(0, 0, 7, 3); }, one({7, 2, 2})},
      {"slice_negative_-3_-1_5x2", [](const Tensors& x) { return x[0].slice(0, -3, -1); }, one({5, 2})},
      {"slice_axis-1_clamped_2x5", [](const Tensors& x) { return x[0].slice(-1, 2, 100); }, one({2, 5})},
      {"slice_of_slice_8x3", [](const Tensors& x) { return x[0].slice(0, 1, 8, 2).slice(0, 1, 4, 2); },
       one({8, 3})},
      {"two_overlapping_slices_6", [](const Tensors& x) { return x[0].slice(0, 0, 4) * x[0].slice(0, 2, 6); },
       one({6})},
      {"unsqueeze_0_3x4", [](const Tensors& x) { return x[0].unsqueeze(0); }, one({3, 4})},
      {"unsqueeze_-1_3x4", [](const Tensors& x) { return x[0].unsqueeze(-1) * x[1]; },
       [] { return Tensors{input({3, 4}), input({3, 4, 2})}; }},
      {"squeeze_1_3x1x4", [](const Tensors& x) { return x[0].squeeze(1); }, one({3, 1, 4})},
      {"unsqueeze_squeeze_roundtrip_3x4",
       [](const Tensors& x) { return x[0].unsqueeze(1).squeeze(1).unsqueeze(0) * x[0]; }, one({3, 4})},
      {"expand_3x1_to_2x3x4", [](const Tensors& x) { return x[0].expand({2, 3, 4}) * x[1]; },
       [] { return Tensors{input({3, 1}), input({2, 3, 4})}; }},
      {"expand_0d_to_2x2", [](const Tensors& x) { return x[0].expand({2, 2}); }, one({})},
      {"expand_1x4_to_3x4_then_contiguous", [](const Tensors& x) { return x[0].expand({3, 4}).contiguous(); },
       one({1, 4})},
      {"contiguous_of_transposed_3x4", [](const Tensors& x) { return x[0].t().contiguous(); }, one({3, 4})},
      {"clone_3x4", [](const Tensors& x) { return x[0].clone() * x[0]; }, one({3, 4})},
      {"clone_of_slice_4x6", [](const Tensors& x) { return x[0].slice(1, 0, 6, 2).clone(); }, one({4, 6})},
      {"to_float64_and_back_3", [](const Tensors& x) { return x[0].to(DType::float64).to(x[0].dtype()) * x[0]; },
       one({3})},
      {"view_chain_2x3x4", [](const Tensors& x) {
         return x[0].t().slice(1, 1, 4, 2).unsqueeze(0).expand({2, 2, 2, 3}).reshape({4, 6});
       },
       one({2, 3, 4})},
      // more shapes and parameters
      {"reshape_2x6_to_3x4_times_3x4", [](const Tensors& x) { return x[0].reshape({3, 4}) * x[1]; },
       [] { return Tensors{input({2, 6}), input({3, 4})}; }},
      {"contiguous_clone_of_transpose_3x4", [](const Tensors& x) { return x[0].t().contiguous().clone(); },
       one({3, 4})},
  };
}

std::vector<GradCase> concat_cases() {
  return {
      {"concat_axis0_1x3_2x3", [](const Tensors& x) { return nb::concat({x[0], x[1]}, 0); },
       [] { return Tensors{input({1, 3}), input({2, 3})}; }},
      {"concat_axis1_2x3_2x1_2x2", [](const Tensors& x) { return nb::concat({x[0], x[1], x[2]}, 1); },
       [] { return Tensors{input({2, 3}), input({2, 1}), input({2, 2})}; }},
      {"concat_axis-1_2x2x1_2x2x3", [](const Tensors& x) { return nb::concat({x[0], x[1]}, -1); },
       [] { return Tensors{input({2, 2, 1}), input({2, 2, 3})}; }},
      {"concat_1d_3_4", [](const Tensors& x) { return nb::concat({x[0], x[1]}); },
       [] { return Tensors{input({3}), input({4})}; }},
      {"concat_single_2x3", [](const Tensors& x) { return nb::concat({x[0]}, 1); },
       [] { return Tensors{input({2, 3})}; }},
      {"concat_same_tensor_twice_2x2", [](const Tensors& x) { return nb::concat({x[0], x[0]}, 0) * x[1]; },
       [] { return Tensors{input({2, 2}), input({4, 2})}; }},
      {"concat_transposed_views_3x2T_2x2_axis1", [](const Tensors& x) { return nb::concat({x[0].t(), x[1]}, 1); },
       [] { return Tensors{input({3, 2}), input({2, 2})}; }},
      {"concat_with_constant_2x2", [](const Tensors& x) { return nb::concat({x[0], nb::ones({1, 2}, x[0].options())}, 0); },
       [] { return Tensors{input({2, 2})}; }},
  };
}

class ShapeGrad : public ::testing::TestWithParam<GradCase> {};

TEST_P(ShapeGrad, CentralDifferenceFloat64) {
  const GradCase& c = GetParam();
  nb::manual_seed(9);
  EXPECT_TRUE(gradcheck(c.f, c.make_inputs(), c.options));
}

TEST_P(ShapeGrad, Float32AgreesWithFloat64) {
  const GradCase& c = GetParam();
  nb::manual_seed(9);
  EXPECT_TRUE(float32_agrees(c.f, c.make_inputs()));
}

INSTANTIATE_TEST_SUITE_P(Views, ShapeGrad, ::testing::ValuesIn(view_cases()), grad_case_name);
INSTANTIATE_TEST_SUITE_P(Concat, ShapeGrad, ::testing::ValuesIn(concat_cases()), grad_case_name);

// Casting is differentiable; float32 rounding defeats finite differences, so the check is
// direct: the gradient comes back in the input's dtype, added to G0.
TEST(ShapeGradCast, Float64ToFloat32AndBack_3) {
  Tensor x = f64({1.5, -2.0, 0.25}).requires_grad_();
  x.set_grad(f64({10, 20, 30}));
  Tensor y = x.to(DType::float32);
  EXPECT_EQ(y.dtype(), DType::float32);
  EXPECT_TRUE(y.requires_grad());
  nb::sum(y * f32({1, 2, 3})).backward();
  EXPECT_EQ(x.grad().dtype(), DType::float64);
  EXPECT_TRUE(near(x.grad(), {11, 22, 33}, {3}));
}

TEST(ShapeGradCast, ToIntegerIsNotRecorded) {
  Tensor x = f64({1.5, -2.0}).requires_grad_();
  Tensor y = x.to(DType::int64);
  EXPECT_FALSE(y.requires_grad());
  EXPECT_EQ(y.to_vector<int64_t>(), (std::vector<int64_t>{1, -2}));
}

// ---- view values and storage sharing -------------------------------------------------------------

TEST(ShapeViews, ReshapeViewValues_6) {
  Tensor x = seq({6});
  EXPECT_TRUE(near(x.reshape({2, 3}), {0, 1, 2, 3, 4, 5}, {2, 3}));
  EXPECT_EQ(x.reshape({-1, 2}).shape(), (Shape{3, 2}));
  EXPECT_EQ(x.reshape({3, -1}).shape(), (Shape{3, 2}));
  EXPECT_EQ(x.view({1, 6, 1}).shape(), (Shape{1, 6, 1}));
  EXPECT_EQ(nb::scalar(3, kF64).reshape({1}).shape(), (Shape{1}));
  EXPECT_EQ(f64({3}).reshape({}).shape(), Shape{});
  EXPECT_EQ(nb::zeros({0, 3}, kF64).reshape({3, 0}).shape(), (Shape{3, 0}));
}

TEST(ShapeViews, ViewSharesStorageReshapeOfTransposedCopies_2x3) {
  Tensor x = seq({2, 3});
  Tensor v = x.view({3, 2});
  EXPECT_EQ(v.data_ptr(), x.data_ptr());
  v.fill_(7);
  EXPECT_TRUE(near(x, std::vector<double>(6, 7), {2, 3}));
  Tensor y = seq({2, 3});
  Tensor r = y.t().reshape({6});  // not viewable: copies
  EXPECT_NE(r.data_ptr(), y.data_ptr());
  EXPECT_TRUE(near(r, {0, 3, 1, 4, 2, 5}, {6}));
}

TEST(ShapeViews, TransposeValuesAndStrides_2x3) {
  Tensor x = seq({2, 3});
  Tensor t = x.t();
  EXPECT_EQ(t.shape(), (Shape{3, 2}));
  EXPECT_EQ(t.strides(), (Shape{1, 3}));
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_EQ(t.data_ptr(), x.data_ptr());
  EXPECT_TRUE(near(t, {0, 3, 1, 4, 2, 5}, {3, 2}));
  EXPECT_TRUE(near(seq({2, 3, 4}).transpose(0, 2).slice(0, 1, 2), {1, 13, 5, 17, 9, 21}, {1, 3, 2}));
  EXPECT_EQ(f64({1, 2}).t().shape(), (Shape{2}));  // 1-D: t() is the identity
}

TEST(ShapeViews, SliceSemantics_10) {
  Tensor x = seq({10});
  EXPECT_TRUE(near(x.slice(0, 1, 8, 3), {1, 4, 7}, {3}));
  EXPECT_TRUE(near(x.slice(0, -3, -1), {7, 8}, {2}));
  EXPECT_TRUE(near(x.slice(0, -3, 10), {7, 8, 9}, {3}));
  EXPECT_TRUE(near(x.slice(0, -100, 100, 4), {0, 4, 8}, {3}));  // bounds clamp, as Python
  EXPECT_TRUE(near(x.slice(0, 5, 2), {}, {0}));                   // empty
  EXPECT_TRUE(near(x.slice(0, 9, 10, 5), {9}, {1}));
  Tensor m = seq({3, 4});
  EXPECT_TRUE(near(m.slice(1, 1, 4, 2), {1, 3, 5, 7, 9, 11}, {3, 2}));
  EXPECT_TRUE(near(m.slice(-2, 1, 3), {4, 5, 6, 7, 8, 9, 10, 11}, {2, 4}));
  // a slice is a view: writing through it changes the original
  m.slice(1, 0, 4, 3).fill_(-1);
  EXPECT_TRUE(near(m, {-1, 1, 2, -1, -1, 5, 6, -1, -1, 9, 10, -1}, {3, 4}));
}

TEST(ShapeViews, UnsqueezeSqueeze_3x4) {
  Tensor x = seq({3, 4});
  EXPECT_EQ(x.unsqueeze(0).shape(), (Shape{1, 3, 4}));
  EXPECT_EQ(x.unsqueeze(1).shape(), (Shape{3, 1, 4}));
  EXPECT_EQ(x.unsqueeze(2).shape(), (Shape{3, 4, 1}));
  EXPECT_EQ(x.unsqueeze(-1).shape(), (Shape{3, 4, 1}));
  EXPECT_EQ(x.unsqueeze(-3).shape(), (Shape{1, 3, 4}));
  EXPECT_TRUE(x.unsqueeze(1).is_contiguous());
  EXPECT_EQ(x.unsqueeze(1).squeeze(1).shape(), (Shape{3, 4}));
  EXPECT_EQ(x.unsqueeze(-1).squeeze(-1).shape(), (Shape{3, 4}));
  EXPECT_TRUE(near(x.t().unsqueeze(1).squeeze(1), x.t().contiguous().to_vector<double>(), {4, 3}));
  EXPECT_EQ(nb::scalar(1, kF64).unsqueeze(0).shape(), (Shape{1}));
  EXPECT_EQ(f64({5}).squeeze(0).shape(), Shape{});
}

TEST(ShapeViews, ExpandValuesAndStrides_3x1) {
  Tensor x = f64({1, 2, 3}, {3, 1});
  Tensor e = x.expand({2, 3, 2});
  EXPECT_EQ(e.strides(), (Shape{0, 1, 0}));
  EXPECT_FALSE(e.is_contiguous());
  EXPECT_TRUE(near(e, {1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3}, {2, 3, 2}));
  EXPECT_TRUE(near(nb::scalar(4, kF64).expand({2}), {4, 4}, {2}));
  EXPECT_TRUE(near(x.expand({3, 1}), {1, 2, 3}, {3, 1}));
}

TEST(ShapeViews, Flatten_2x3x4) {
  Tensor x = seq({2, 3, 4});
  EXPECT_EQ(x.flatten().shape(), (Shape{24}));
  EXPECT_EQ(x.flatten(1).shape(), (Shape{2, 12}));
  EXPECT_EQ(x.flatten(0, 1).shape(), (Shape{6, 4}));
  EXPECT_EQ(x.flatten(-2, -1).shape(), (Shape{2, 12}));
  EXPECT_EQ(x.flatten(1, 1).shape(), (Shape{2, 3, 4}));
  EXPECT_EQ(nb::scalar(2, kF64).flatten().shape(), (Shape{1}));
  EXPECT_TRUE(near(x.transpose(1, 2).flatten(1).slice(0, 0, 1), {0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}, {1, 12}));
}

TEST(ShapeViews, ContiguousAndClone_2x3) {
  Tensor x = seq({2, 3});
  EXPECT_EQ(x.contiguous().data_ptr(), x.data_ptr());  // already contiguous: same storage
  Tensor c = x.t().contiguous();
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_NE(c.data_ptr(), x.data_ptr());
  EXPECT_TRUE(near(c, {0, 3, 1, 4, 2, 5}, {3, 2}));
  Tensor k = x.clone();
  EXPECT_NE(k.data_ptr(), x.data_ptr());
  k.fill_(9);
  EXPECT_TRUE(near(x, {0, 1, 2, 3, 4, 5}, {2, 3}));  // the original is untouched
  Tensor ks = x.slice(1, 0, 3, 2).clone();
  EXPECT_TRUE(ks.is_contiguous());
  EXPECT_TRUE(near(ks, {0, 2, 3, 5}, {2, 2}));
}

TEST(ShapeViews, ToDtypeValues) {
  Tensor x = f64({1.5, -2.7, 3});
  EXPECT_EQ(x.to(DType::int64).to_vector<int64_t>(), (std::vector<int64_t>{1, -2, 3}));  // truncation
  EXPECT_EQ(x.to(DType::int32).to_vector<int32_t>(), (std::vector<int32_t>{1, -2, 3}));
  EXPECT_EQ(x.to(DType::float32).to_vector<float>(), (std::vector<float>{1.5f, -2.7f, 3.0f}));
  EXPECT_TRUE(near(x.t().to(DType::float32), {1.5, -2.7, 3}, {3}, 1e-6));
  // a transposed view converts in its logical order
  EXPECT_TRUE(near(seq({2, 3}).t().to(DType::float32), {0, 3, 1, 4, 2, 5}, {3, 2}));
  EXPECT_EQ(x.to(DType::float64).data_ptr(), x.data_ptr());  // same dtype: no copy
}

// ---- concat values ---------------------------------------------------------------------------------

TEST(ShapeConcat, Values_axis0_axis1) {
  Tensor a = f64({1, 2}, {1, 2}), b = f64({3, 4, 5, 6}, {2, 2});
  EXPECT_TRUE(near(nb::concat({a, b}, 0), {1, 2, 3, 4, 5, 6}, {3, 2}));
  Tensor c = f64({1, 2}, {2, 1});
  EXPECT_TRUE(near(nb::concat({c, b}, 1), {1, 3, 4, 2, 5, 6}, {2, 3}));
  EXPECT_TRUE(near(nb::concat({b, c, c}, -1), {3, 4, 1, 1, 5, 6, 2, 2}, {2, 4}));
  EXPECT_TRUE(near(nb::concat({b.t(), a}, 0), {3, 5, 4, 6, 1, 2}, {3, 2}));
  EXPECT_TRUE(near(nb::concat({nb::zeros({0, 2}, kF64), a}, 0), {1, 2}, {1, 2}));
}

TEST(ShapeConcat, IntegerAndFloat32Tensors) {
  Tensor r = nb::concat({i64({1, 2}), i64({3})});
  EXPECT_EQ(r.dtype(), DType::int64);
  EXPECT_EQ(r.to_vector<int64_t>(), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_TRUE(near(nb::concat({f32({0.5}), f32({1.5, 2.5})}), {0.5, 1.5, 2.5}, {3}));
}

// ---- dropout ---------------------------------------------------------------------------------------

TEST(ShapeDropout, TrainZeroesAboutPAndScales_p03_n100000) {
  nb::manual_seed(123);
  const double p = 0.3;
  Tensor x = nb::ones({100000}, kF64);
  std::vector<double> y = nb::dropout(x, p, true).to_vector<double>();
  int64_t zeros = 0;
  for (double v : y) {
    if (v == 0) {
      ++zeros;
    } else {
      ASSERT_NEAR(v, 1 / (1 - p), 1e-12);
    }
  }
  // binomial sd = sqrt(n p (1-p)) = 145; allow 7 sd
  EXPECT_NEAR(static_cast<double>(zeros), 30000, 1000);
}

TEST(ShapeDropout, GradientEqualsTheMask_p05_4x250) {
  nb::manual_seed(7);
  const double p = 0.5;
  Tensor x = input({4, 250}).requires_grad_();
  x.set_grad(nb::full({4, 250}, 1.0, kF64));  // backward adds to it
  Tensor y = nb::dropout(x, p, true);
  nb::sum(y).backward();
  auto xv = x.detach().to_vector<double>(), yv = y.to_vector<double>(), gv = x.grad().to_vector<double>();
  int kept = 0;
  for (size_t i = 0; i < xv.size(); ++i) {
    const bool keep = yv[i] != 0;
    kept += keep;
    ASSERT_NEAR(gv[i], 1.0 + (keep ? 2.0 : 0.0), 1e-12) << i;
    if (keep) {
      ASSERT_NEAR(yv[i], 2 * xv[i], 1e-12) << i;
    }
  }
  EXPECT_GT(kept, 400);
  EXPECT_LT(kept, 600);
}

// Dropout's gradient is its mask times 1/(1-p): check it against the forward's own mask.
TEST(ShapeDropout, GradientIsTheScaledMask_p025_n1000) {
  nb::manual_seed(7);
  Tensor x = nb::ones({1000}, {.dtype = nb::DType::float64}).requires_grad_(true);
  Tensor y = nb::dropout(x, 0.25, true);
  nb::sum(y).backward();
  auto yv = y.to_vector<double>(), gv = x.grad().to_vector<double>();
  for (size_t i = 0; i < yv.size(); ++i) EXPECT_DOUBLE_EQ(gv[i], yv[i]);  // y = x * mask, x = 1
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& v) { return nb::dropout(v[0], 0.5, false); }, {input({4})}));
}

TEST(ShapeDropout, SeededIsReproducibleAndFreshDrawsDiffer_p05_64) {
  Tensor x = nb::ones({64}, kF64);
  nb::manual_seed(99);
  auto a = nb::dropout(x, 0.5, true).to_vector<double>();
  auto b = nb::dropout(x, 0.5, true).to_vector<double>();
  nb::manual_seed(99);
  auto c = nb::dropout(x, 0.5, true).to_vector<double>();
  EXPECT_EQ(a, c);
  EXPECT_NE(a, b);
}

TEST(ShapeDropout, EvalIsIdentity_p05_3) {
  Tensor x = f64({1, -2, 3}).requires_grad_();
  Tensor y = nb::dropout(x, 0.5, false);
  EXPECT_TRUE(near(y, {1, -2, 3}, {3}));
  nb::sum(y * f64({1, 2, 3})).backward();
  EXPECT_TRUE(near(x.grad(), {1, 2, 3}, {3}));
  EXPECT_TRUE(near(nb::dropout(f64({1, -2, 3}), 0, true), {1, -2, 3}, {3}));  // p = 0 in training
  EXPECT_TRUE(gradcheck([](const Tensors& v) { return nb::dropout(v[0], 0.5, false); }, {input({4})}));
}

TEST(ShapeDropout, POneZeroesEverything_3) {
  Tensor x = f64({1, -2, 3}).requires_grad_();
  Tensor y = nb::dropout(x, 1, true);
  EXPECT_TRUE(near(y, {0, 0, 0}, {3}));
  nb::sum(y).backward();
  EXPECT_TRUE(near(x.grad(), {0, 0, 0}, {3}));
}

TEST(ShapeDropout, Float32) {
  nb::manual_seed(1);
  Tensor y = nb::dropout(nb::ones({1000}), 0.2, true);
  EXPECT_EQ(y.dtype(), DType::float32);
  for (float v : y.to_vector<float>()) ASSERT_TRUE(v == 0.0f || std::abs(v - 1.25f) < 1e-6f);
}

// ---- errors ----------------------------------------------------------------------------------------

TEST(ShapeErrors, ViewOnNonContiguous_2x3T) {
  std::string msg = error_of([] { seq({2, 3}).t().view({6}); });
  EXPECT_THAT(msg, AllOf(HasSubstr("view"), HasSubstr("[3, 2]"), HasSubstr("contiguous")));
}

TEST(ShapeErrors, ReshapeWrongNumel_2x3_to_4) {
  std::string msg = error_of([] { seq({2, 3}).reshape({4}); });
  EXPECT_THAT(msg, AllOf(HasSubstr("reshape"), HasSubstr("[2, 3]"), HasSubstr("[4]")));
  msg = error_of([] { seq({2, 3}).view({4, 2}); });
  EXPECT_THAT(msg, AllOf(HasSubstr("view"), HasSubstr("[2, 3]"), HasSubstr("[4, 2]")));
  msg = error_of([] { seq({2, 3}).reshape({4, -1}); });
  EXPECT_THAT(msg, AllOf(HasSubstr("reshape"), HasSubstr("[2, 3]"), HasSubstr("[4, -1]")));
  msg = error_of([] { seq({2, 3}).reshape({-1, -1}); });
  EXPECT_THAT(msg, AllOf(HasSubstr("reshape"), HasSubstr("-1")));
  msg = error_of([] { seq({2, 3}).t().reshape({5}); });
  EXPECT_THAT(msg, AllOf(HasSubstr("reshape"), HasSubstr("[3, 2]"), HasSubstr("[5]")));
}

TEST(ShapeErrors, TransposeSliceAxisOutOfRange_2x3) {
  EXPECT_THAT(error_of([] { seq({2, 3}).transpose(0, 2); }), AllOf(HasSubstr("transpose"), HasSubstr("axis 2")));
  EXPECT_THAT(error_of([] { seq({2, 3}).slice(2, 0, 1); }), AllOf(HasSubstr("slice"), HasSubstr("axis 2")));
  EXPECT_THAT(error_of([] { seq({2, 3}).slice(1, 0, 3, 0); }), AllOf(HasSubstr("slice"), HasSubstr("step")));
  EXPECT_THAT(error_of([] { seq({2, 3}).slice(1, 3, 0, -1); }), AllOf(HasSubstr("slice"), HasSubstr("-1")));
  EXPECT_THAT(error_of([] { nb::scalar(1, kF64).slice(0, 0, 1); }), AllOf(HasSubstr("slice"), HasSubstr("0-dim")));
}

TEST(ShapeErrors, SqueezeUnsqueeze_2x3) {
  EXPECT_THAT(error_of([] { seq({2, 3}).squeeze(0); }),
              AllOf(HasSubstr("squeeze"), HasSubstr("[2, 3]"), HasSubstr("size 2")));
  EXPECT_THAT(error_of([] { seq({2, 3}).unsqueeze(3); }), AllOf(HasSubstr("unsqueeze"), HasSubstr("axis 3")));
  EXPECT_THAT(error_of([] { seq({2, 3}).unsqueeze(-4); }), AllOf(HasSubstr("unsqueeze"), HasSubstr("-4")));
}

TEST(ShapeErrors, ExpandIncompatible_3x2) {
  EXPECT_THAT(error_of([] { seq({3, 2}).expand({3, 4}); }),
              AllOf(HasSubstr("expand"), HasSubstr("[3, 2]"), HasSubstr("[3, 4]")));
  EXPECT_THAT(error_of([] { seq({3, 2}).expand({2}); }),
              AllOf(HasSubstr("expand"), HasSubstr("[3, 2]"), HasSubstr("[2]")));
  // expand never shrinks a dimension: [3, 1] to [3, 1] is fine, [3, 2] to [1, 2] is not
  EXPECT_THAT(error_of([] { seq({3, 2}).expand({1, 2}); }),
              AllOf(HasSubstr("expand"), HasSubstr("[3, 2]"), HasSubstr("[1, 2]")));
}

TEST(ShapeErrors, FlattenBadRange_2x3x4) {
  EXPECT_THAT(error_of([] { seq({2, 3, 4}).flatten(2, 1); }), AllOf(HasSubstr("flatten"), HasSubstr("2")));
  EXPECT_THAT(error_of([] { seq({2, 3, 4}).flatten(0, 3); }), AllOf(HasSubstr("flatten"), HasSubstr("axis 3")));
}

TEST(ShapeErrors, ConcatMismatches) {
  EXPECT_THAT(error_of([] { nb::concat({seq({2, 3}), seq({2, 4})}, 0); }),
              AllOf(HasSubstr("concat"), HasSubstr("[2, 3]"), HasSubstr("[2, 4]")));
  EXPECT_THAT(error_of([] { nb::concat({seq({2, 3}), seq({2, 3, 1})}, 0); }),
              AllOf(HasSubstr("concat"), HasSubstr("[2, 3]"), HasSubstr("[2, 3, 1]")));
  EXPECT_THAT(error_of([] { nb::concat({seq({2, 3}), nb::zeros({2, 3})}, 0); }),
              AllOf(HasSubstr("concat"), HasSubstr("float32"), HasSubstr("float64")));
  EXPECT_THAT(error_of([] { nb::concat({}, 0); }), HasSubstr("concat"));
  EXPECT_THAT(error_of([] { nb::concat({seq({2, 3})}, 2); }), AllOf(HasSubstr("concat"), HasSubstr("axis 2")));
  EXPECT_THAT(error_of([] { nb::concat({nb::scalar(1, kF64)}); }), AllOf(HasSubstr("concat"), HasSubstr("0-dim")));
}

TEST(ShapeErrors, DropoutBadProbabilityOrDtype) {
  EXPECT_THAT(error_of([] { nb::dropout(seq({2}), 1.5, true); }), AllOf(HasSubstr("dropout"), HasSubstr("1.5")));
  EXPECT_THAT(error_of([] { nb::dropout(seq({2}), -0.1, false); }), AllOf(HasSubstr("dropout"), HasSubstr("-0.1")));
  EXPECT_THAT(error_of([] { nb::dropout(i64({1, 2}), 0.5, true); }), AllOf(HasSubstr("dropout"), HasSubstr("int64")));
}

// ---- values worked out by hand, one test per case, and the errors each op raises ----------------

TEST(Concat, Axis0_1x2_and_2x2) {
  Tensor y = nb::concat({f32({1, 2}, {1, 2}), f32({3, 4, 5, 6}, {2, 2})}, 0);
  EXPECT_TRUE(values(y, {3, 2}, {1, 2, 3, 4, 5, 6}));
}

TEST(Concat, Axis1_2x1_2x2_2x3) {
  Tensor y = nb::concat({f64({1, 2}, {2, 1}), f64({3, 4, 5, 6}, {2, 2}), f64({7, 8, 9, 10, 11, 12}, {2, 3})}, 1);
  EXPECT_TRUE(values(y, {2, 6}, {1, 3, 4, 7, 8, 9, 2, 5, 6, 10, 11, 12}, kTight));
  Tensor z = nb::concat({f64({1, 2}, {2, 1}), f64({3, 4, 5, 6}, {2, 2})}, -1);
  EXPECT_TRUE(values(z, {2, 3}, {1, 3, 4, 2, 5, 6}, kTight));
}

TEST(Concat, TransposedView_2x2T_and_2x1) {
  // v.t() = [[1, 2], [3, 4]]
  Tensor v = f32({1, 3, 2, 4}, {2, 2});
  EXPECT_TRUE(values(nb::concat({v.t(), f32({9, 9}, {2, 1})}, 1), {2, 3}, {1, 2, 9, 3, 4, 9}));
}

TEST(Concat, OneD_3_and_2) {
  EXPECT_TRUE(values(nb::concat({f32({1, 2, 3}), f32({4, 5})}), {5}, {1, 2, 3, 4, 5}));
}

const std::vector<double> A0 = {1, 2, 3, 4, 5, 6};

TEST(Dropout, EvalIsIdentity_2x3) {
  Tensor x = f32(A0, {2, 3});
  EXPECT_TRUE(values(nb::dropout(x, 0.9, false), {2, 3}, A0));
  EXPECT_TRUE(values(nb::dropout(x, 1.0, false), {2, 3}, A0));
}

TEST(Dropout, TrainingPZeroIsIdentity_2x3) {
  EXPECT_TRUE(values(nb::dropout(f32(A0, {2, 3}), 0.0, true), {2, 3}, A0));
}

TEST(Dropout, TrainingPOne_IsAllZeros_4) {
  EXPECT_TRUE(values(nb::dropout(f32({1, 2, 3, 4}), 1.0, true), {4}, {0, 0, 0, 0}));
}

TEST(Dropout, TrainingHalf_10000Ones_HalfZerosRestTwo) {
  nb::manual_seed(1234);
  Tensor y = nb::dropout(nb::ones({10000}), 0.5, true);
  EXPECT_EQ(y.shape(), (Shape{10000}));
  int zeros = 0, twos = 0, other = 0;
  for (float v : y.to_vector<float>()) {
    if (v == 0.0f)
      ++zeros;
    else if (v == 2.0f)
      ++twos;
    else
      ++other;
  }
  EXPECT_EQ(other, 0);
  // Binomial(10000, 0.5): mean 5000, standard deviation 50; allow 6 of them.
  EXPECT_GT(zeros, 4700);
  EXPECT_LT(zeros, 5300);
  EXPECT_EQ(zeros + twos, 10000);
}

TEST(Dropout, TrainingQuarter_10000Ones_KeptScaledBy4Over3_Float64) {
  nb::manual_seed(99);
  Tensor y = nb::dropout(nb::ones({100, 100}, {.dtype = DType::float64}), 0.25, true);
  int zeros = 0, kept = 0;
  for (double v : y.to_vector<double>()) {
    if (v == 0.0)
      ++zeros;
    else if (std::abs(v - 4.0 / 3.0) < 1e-15)
      ++kept;
  }
  EXPECT_EQ(zeros + kept, 10000);
  // Binomial(10000, 0.25): mean 2500, standard deviation ~43.3
  EXPECT_GT(zeros, 2240);
  EXPECT_LT(zeros, 2760);
}

TEST(Errors, Concat_MismatchedShapes_2x3_and_3x3_Axis1) {
  std::string msg = error_of([] { nb::concat({nb::zeros({2, 3}), nb::zeros({3, 3})}, 1); });
  EXPECT_THAT(msg, AllOf(HasSubstr("concat:"), HasSubstr("[2, 3]"), HasSubstr("[3, 3]")));
  msg = error_of([] { nb::concat({nb::zeros({2, 3}), nb::zeros({6})}, 0); });
  EXPECT_THAT(msg, AllOf(HasSubstr("concat:"), HasSubstr("[2, 3]"), HasSubstr("[6]")));
  msg = error_of([] { nb::concat({nb::zeros({2}), nb::zeros({2}, {.dtype = DType::float64})}); });
  EXPECT_THAT(msg, AllOf(HasSubstr("concat:"), HasSubstr("float32"), HasSubstr("float64")));
  msg = error_of([] { nb::concat({}); });
  EXPECT_THAT(msg, HasSubstr("concat:"));
}

TEST(Errors, View_NonContiguous_3x2T) {
  std::string msg = error_of([] { nb::zeros({3, 2}).t().view({6}); });
  EXPECT_THAT(msg, AllOf(HasSubstr("view:"), HasSubstr("[2, 3]"), HasSubstr("contiguous")));
  // reshape copies instead
  EXPECT_TRUE(values(f32({1, 4, 2, 5, 3, 6}, {3, 2}).t().reshape({6}), {6}, {1, 2, 3, 4, 5, 6}));
}

TEST(Errors, Reshape_WrongElementCount_2x3_to_4) {
  std::string msg = error_of([] { nb::zeros({2, 3}).reshape({4}); });
  EXPECT_THAT(msg, AllOf(HasSubstr("reshape:"), HasSubstr("[2, 3]"), HasSubstr("[4]")));
  msg = error_of([] { nb::zeros({2, 3}).reshape({4, -1}); });
  EXPECT_THAT(msg, AllOf(HasSubstr("reshape:"), HasSubstr("[2, 3]"), HasSubstr("[4, -1]")));
  msg = error_of([] { nb::zeros({2, 3}).view({7}); });
  EXPECT_THAT(msg, AllOf(HasSubstr("view:"), HasSubstr("[2, 3]"), HasSubstr("[7]")));
}

TEST(Errors, Dropout_POutside01) {
  std::string msg = error_of([] { nb::dropout(nb::zeros({2}), 1.5, true); });
  EXPECT_THAT(msg, AllOf(HasSubstr("dropout:"), HasSubstr("1.5")));
  msg = error_of([] { nb::dropout(nb::zeros({2}), -0.25, false); });
  EXPECT_THAT(msg, AllOf(HasSubstr("dropout:"), HasSubstr("-0.25")));
}

}  // namespace
