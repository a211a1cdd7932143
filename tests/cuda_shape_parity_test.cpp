// CPU-vs-CUDA parity of the shape ops, views, concat, dropout and the scalar operators, forward
// and backward. The parity check is in cuda_test_util.h.
//
// Every test skips itself without a CUDA device.
#include "cuda_test_util.h"

namespace nb = nabla;

namespace {

using namespace nabla::test::parity;

// ---- shape ops, views, dropout, scalar operators --------------------------------------------

std::vector<Case> shape_cases() {
  using L = Layout;
  const Options exact = f32({0, 0}, {0, 0});
  return {
      {"concat_axis0_2x5_3x5_1x5", {arg({2, 5}), arg({3, 5}), arg({1, 5})},
       [](const auto& x) { return nb::concat({x[0], x[1], x[2]}, 0); }, exact},
      {"concat_axis1_4x1_4x7_4x1023", {arg({4, 1}), arg({4, 7}), arg({4, 1023})},
       [](const auto& x) { return nb::concat({x[0], x[1], x[2]}, 1); }, exact},
      {"concat_axism1_transposed_2x3x4_2x3x1_2x3x5", {arg({2, 3, 4}, -2, 2, L::transposed), arg({2, 3, 1}), arg({2, 3, 5})},
       [](const auto& x) { return nb::concat({x[0], x[1], x[2]}, -1); }, exact},
      {"concat_axis1_2x1x3_2x4x3", {arg({2, 1, 3}), arg({2, 4, 3}, -2, 2, L::strided)},
       [](const auto& x) { return nb::concat({x[0], x[1]}, 1); }, exact},
      {"concat_axis1_1025x512_1025x511", {arg({1025, 512}), arg({1025, 511})},
       [](const auto& x) { return nb::concat({x[0], x[1]}, 1); }, exact},
      {"reshape_6x35_to_5x42", {arg({6, 35})}, [](const auto& x) { return x[0].reshape({5, 42}); }, exact},
      {"reshape_transposed_35x6_to_flat", {arg({35, 6}, -2, 2, L::transposed)},
       [](const auto& x) { return x[0].reshape({-1}); }, exact},
      {"view_flatten_unsqueeze_squeeze_3x4x5", {arg({3, 4, 5})},
       [](const auto& x) { return x[0].flatten(1).unsqueeze(0).squeeze(0).view({60}); }, exact},
      {"transpose_0_2_contiguous_3x4x5", {arg({3, 4, 5})},
       [](const auto& x) { return x[0].transpose(0, 2).contiguous(); }, exact},
      {"slice_step3_4x33", {arg({4, 33})}, [](const auto& x) { return x[0].slice(1, 2, 30, 3); }, exact},
      {"slice_chain_contiguous_9x1023", {arg({9, 1023})},
       [](const auto& x) { return x[0].slice(0, 1, 8, 2).slice(1, 5, 1000, 7).contiguous().reshape({-1}); }, exact},
      {"expand_1x7_to_9x7", {arg({1, 7})}, [](const auto& x) { return x[0].expand({9, 7}); }, f32({0, 0}, sum_tol(9))},
      {"expand_contiguous_1025x1_to_1025x1023", {arg({1025, 1})},
       [](const auto& x) { return x[0].expand({1025, 1023}).contiguous(); }, f32({0, 0}, sum_tol(1023))},
      {"clone_strided_17x241", {arg({17, 241}, -2, 2, L::strided)}, [](const auto& x) { return x[0].clone(); }, exact},
      {"contiguous_big_narrow_1025x1023", {arg({1025, 1023}, -2, 2, L::narrow)},
       [](const auto& x) { return x[0].contiguous(); }, exact},
      {"to_float64_and_back_17x241", {arg({17, 241})},
       [](const auto& x) { return nb::mul(x[0].to(DType::float64), x[0].to(DType::float64)).to(DType::float32); },
       f32({1e-7, 0}, {1e-7, 0})},
      {"dropout_p0p3_17x241", {arg({17, 241})},
       [](const auto& x) {
         nb::manual_seed(99);  // the same mask on both devices
         return nb::dropout(x[0], 0.3, true);
       },
       f32({1e-6, 0}, {1e-6, 0})},
      {"dropout_p0p5_big", {arg({kBig})},
       [](const auto& x) {
         nb::manual_seed(98);
         return nb::dropout(x[0], 0.5, true);
       },
       f32({1e-6, 0}, {1e-6, 0})},
      {"dropout_p1_7x9", {arg({7, 9})}, [](const auto& x) { return nb::dropout(x[0], 1.0, true); }, exact},
      {"scalar_ops_17x241", {arg({17, 241}, -2, 2)},
       [](const auto& x) { return ((x[0] + 2.5) * -3.0 - 1.0) / 4.0 + (2.0 - x[0]) + -x[0]; }, f32()},
      {"scalar_over_tensor_17x241", {[] {
         Arg a = arg({17, 241});
         a.gap = 0.5;
         return a;
       }()},
       [](const auto& x) { return 3.0 / x[0]; }, f32()},
      {"scalar_tensor_0d_ops", {arg({}), arg({})},
       [](const auto& x) { return nb::exp(x[0]) * x[1] + nb::maximum(x[0], x[1]); }, f32()},
  };
}
INSTANTIATE_TEST_SUITE_P(Shapes, Parity, ::testing::ValuesIn(shape_cases()), case_name);

}  // namespace
