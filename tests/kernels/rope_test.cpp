// RoPE: CPU against the rotation written out in f64 (implicit positions with an offset, explicit
// positions, partial rotary dim), backward against gradcheck and the inverse rotation, GPU against
// the CPU reference (f32, bf16), and argument errors.
#include "kernels/rope.h"

#include <gtest/gtest.h>

#include <cmath>

#include "autograd/gradcheck.h"
#include "autograd/ops_nn.h"
#include "tests/common/gpu.h"
#include "tests/common/tolerance.h"

namespace sl {
namespace {
using kernels::RopeOptions;
using test::AllClose;
using test::Tol;

const Device kGpu = Device::cuda(0);

// The rotation in f64 by the contract's angle float(pos) * float(theta^(-2i/R)) (rope.h).
Tensor naive_rope(const Tensor& x, const std::vector<int64_t>& pos, int64_t rot, double theta) {
  const int64_t b = x.size(0), t = x.size(1), h = x.size(2), d = x.size(3), half = rot / 2;
  std::vector<double> xv = x.to(DType::F64).to_vector<double>(), y = xv;
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t ti = 0; ti < t; ++ti)
      for (int64_t hi = 0; hi < h; ++hi)
        for (int64_t i = 0; i < half; ++i) {
          float inv_freq = float(std::pow(theta, -2.0 * double(i) / double(rot)));
          double a = double(float(pos[size_t(bi * t + ti)]) * inv_freq);
          size_t o = size_t(((bi * t + ti) * h + hi) * d + i);
          y[o] = xv[o] * std::cos(a) - xv[o + size_t(half)] * std::sin(a);
          y[o + size_t(half)] = xv[o + size_t(half)] * std::cos(a) + xv[o] * std::sin(a);
        }
  return Tensor::from_vector(y, x.shape());
}

TEST(Rope, CpuMatchesRotationImplicitAndExplicitPositions) {
  Tensor x = test::randn({2, 5, 3, 10}, 1);
  RopeOptions opt;
  opt.start = 7;
  std::vector<int64_t> pos(10);
  for (int64_t k = 0; k < 10; ++k) pos[size_t(k)] = 7 + k % 5;
  EXPECT_TRUE(AllClose(kernels::rope_forward(x, opt), naive_rope(x, pos, 10, 1e4),
                       Tol{DType::F32, 2}));
  RopeOptions ex;
  ex.theta = 500;
  ex.rotary_dim = 6;
  for (int64_t k = 0; k < 10; ++k) pos[size_t(k)] = (k * 37) % 101;
  ex.positions = Tensor::from_vector(pos, {2, 5}).to(DType::I32);
  EXPECT_TRUE(AllClose(kernels::rope_forward(x, ex), naive_rope(x, pos, 6, 500),
                       Tol{DType::F32, 2}));
  Tensor back = kernels::rope_backward(kernels::rope_forward(x, ex), ex);
  EXPECT_TRUE(AllClose(back, x, Tol{DType::F32, 4}));
}

TEST(Rope, GradcheckF64) {
  RopeOptions opt;
  opt.rotary_dim = 4;
  opt.start = 3;
  ag::Var x(test::randn({2, 3, 2, 6}, 2, DType::F64), true, "x");
  auto res = ag::gradcheck(
      [&](const std::vector<ag::Var>& in) { return ag::rope(in[0], opt); }, {x});
  EXPECT_TRUE(res.ok) << res.message;
}

TEST(Rope, BadArgumentsThrow) {
  Tensor x = test::randn({2, 3, 4, 8}, 3);
  RopeOptions odd;
  odd.rotary_dim = 5;
  try {
    kernels::rope_forward(x, odd);
    ADD_FAILURE() << "no error for an odd rotary dim";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rope"), std::string::npos) << e.what();
  }
  EXPECT_THROW(kernels::rope_forward(test::randn({3, 4, 8}, 4)), Error);
  RopeOptions badpos;
  badpos.positions = Tensor::zeros({2, 4}, DType::I64);
  EXPECT_THROW(kernels::rope_forward(x, badpos), Error);
}

class RopeGpu : public ::testing::TestWithParam<DType> {};

TEST_P(RopeGpu, MatchesCpu) {
  SL_REQUIRE_GPU();
  const DType dt = GetParam();
  Tensor x = test::randn({3, 37, 5, 64}, 5, dt);
  RopeOptions a;
  a.start = 11;
  RopeOptions b;
  b.rotary_dim = 32;
  b.theta = 1e6;
  std::vector<int64_t> pos(3 * 37);
  for (size_t k = 0; k < pos.size(); ++k) pos[k] = int64_t((k * 131) % 4099);
  b.positions = Tensor::from_vector(pos, {3, 37});
  RopeOptions bg = b;
  bg.positions = b.positions.to(kGpu);
  EXPECT_TRUE(AllClose(kernels::rope_forward(x.to(kGpu), a), kernels::rope_forward(x, a),
                       Tol{dt, 2}));
  EXPECT_TRUE(AllClose(kernels::rope_forward(x.to(kGpu), bg), kernels::rope_forward(x, b),
                       Tol{dt, 2}));
  EXPECT_TRUE(AllClose(kernels::rope_backward(x.to(kGpu), bg), kernels::rope_backward(x, b),
                       Tol{dt, 2}));
  Tensor odd = test::randn({2, 7, 3, 18}, 6, dt);
  EXPECT_TRUE(AllClose(kernels::rope_forward(odd.to(kGpu), a), kernels::rope_forward(odd, a),
                       Tol{dt, 2}));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, RopeGpu, ::testing::Values(DType::F32, DType::BF16));

}  // namespace
}  // namespace sl
