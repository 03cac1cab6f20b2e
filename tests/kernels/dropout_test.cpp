// Dropout: the mask is Philox's (seed, offset, i), kept values scaled by 1/(1-p); the kept
// fraction is within 5 sigma of 1-p; backward is mask * dy / (1-p); CPU and GPU masks are
// identical; p = 0 is the identity; bad p throws.
#include "kernels/dropout.h"

#include <gtest/gtest.h>

#include <cmath>

#include "autograd/gradcheck.h"
#include "autograd/ops_nn.h"
#include "core/philox.h"
#include "tests/common/gpu.h"
#include "tests/common/tolerance.h"

namespace sl {
namespace {
using test::AllEqual;

const Device kGpu = Device::cuda(0);

TEST(Dropout, CpuMaskScaleAndKeptFraction) {
  const int64_t n = 200003;
  const double p = 0.3;
  Tensor ones = Tensor::full({n}, 1.0, DType::F32);
  std::vector<float> y = kernels::dropout_forward(ones, p, 42, 5).to_vector<float>();
  const float scale = float(1.0 / (1.0 - p));
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    bool keep = philox_uniform_at(42, 5, uint64_t(i)) >= float(p);
    ASSERT_EQ(y[size_t(i)], keep ? scale : 0.0f) << i;
    kept += keep;
  }
  const double sigma = std::sqrt(double(n) * p * (1 - p));
  EXPECT_LT(std::fabs(double(kept) - double(n) * (1 - p)), 5 * sigma);
}

TEST(Dropout, BackwardIsMaskTimesDyAndGradcheck) {
  Tensor x = test::randn({3, 7, 11}, 1, DType::F64);
  Tensor dy = test::randn({3, 7, 11}, 2, DType::F64);
  Tensor y = kernels::dropout_forward(x, 0.4, 9, 3);
  Tensor dx = kernels::dropout_backward(dy, 0.4, 9, 3);
  std::vector<double> xv = x.to_vector<double>(), yv = y.to_vector<double>();
  std::vector<double> dyv = dy.to_vector<double>(), dxv = dx.to_vector<double>();
  for (size_t i = 0; i < xv.size(); ++i) {
    bool keep = yv[i] != 0;
    EXPECT_EQ(keep, philox_uniform_at(9, 3, i) >= 0.4f);
    EXPECT_DOUBLE_EQ(dxv[i], keep ? dyv[i] / 0.6 : 0.0);
  }
  ag::Var xv2(x, true, "x");
  Generator gen(77);
  auto res = ag::gradcheck(
      [&](const std::vector<ag::Var>& in) {
        Generator g = gen;  // the same mask on every evaluation
        return ag::dropout(in[0], 0.5, g);
      },
      {xv2});
  EXPECT_TRUE(res.ok) << res.message;
  ag::Var a(x, true);
  Generator g2(1);
  EXPECT_EQ(ag::dropout(a, 0.5, g2).value().numel(), x.numel());
  EXPECT_EQ(g2.offset, 1u);
}

TEST(Dropout, ZeroIsIdentityAndBadPThrows) {
  Tensor x = test::randn({5, 3}, 3);
  EXPECT_TRUE(AllEqual(kernels::dropout_forward(x, 0.0, 1, 0), x));
  try {
    kernels::dropout_forward(x, 1.0, 1, 0);
    ADD_FAILURE() << "no error for p = 1";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("dropout"), std::string::npos) << e.what();
  }
  EXPECT_THROW(kernels::dropout_forward(x, -0.1, 1, 0), Error);
}

class DropoutGpu : public ::testing::TestWithParam<DType> {};

TEST_P(DropoutGpu, SameMaskAndValuesAsCpu) {
  SL_REQUIRE_GPU();
  const DType dt = GetParam();
  for (int64_t n : {int64_t(1), int64_t(37 * 129), int64_t(1 << 20) + 3}) {
    Tensor x = test::randn({n}, uint64_t(n), dt);
    // Same f32 multiply on both sides, so the outputs agree bit for bit.
    EXPECT_TRUE(AllEqual(kernels::dropout_forward(x.to(kGpu), 0.1, 1234, 17),
                         kernels::dropout_forward(x, 0.1, 1234, 17)));
    EXPECT_TRUE(AllEqual(kernels::dropout_backward(x.to(kGpu), 0.7, 5, 2),
                         kernels::dropout_backward(x, 0.7, 5, 2)));
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, DropoutGpu, ::testing::Values(DType::F32, DType::BF16));

}  // namespace
}  // namespace sl
