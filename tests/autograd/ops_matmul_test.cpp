// ag::matmul and ag::linear: gradients against central differences in f64 (every transpose pair,
// 2-D, batched and shared operands), then the GPU gradients against the CPU ones.
#include "autograd/ops_matmul.h"

#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include "autograd/gradcheck.h"
#include "tests/common/gpu.h"
#include "tests/common/tolerance.h"

namespace sl {
namespace {
using test::AllClose;
using test::Tol;

const Device kGpu = Device::cuda(0);

// How the operands are batched: A and B 2-D, both 3-D, A 3-D with B shared, A shared with B 3-D.
enum class Mode { k2D, kBatched, kSharedB, kSharedA };
const char* mode_name(Mode m) {
  switch (m) {
    case Mode::k2D:
      return "2D";
    case Mode::kBatched:
      return "Batched";
    case Mode::kSharedB:
      return "SharedB";
    case Mode::kSharedA:
      return "SharedA";
  }
  return "";
}

Dims stored(int64_t rows, int64_t cols, bool trans, bool batched) {
  Dims d = trans ? Dims{cols, rows} : Dims{rows, cols};
  return batched ? Dims{2, d[0], d[1]} : d;
}

using Param = std::tuple<bool, bool, Mode>;
class MatmulGrad : public ::testing::TestWithParam<Param> {};

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
  auto [ta, tb, mode] = info.param;
  return std::string(ta ? "TA" : "NA") + (tb ? "_TB_" : "_NB_") + mode_name(mode);
}

TEST_P(MatmulGrad, MatchesFiniteDifferences) {
  auto [ta, tb, mode] = GetParam();
  const int64_t m = 3, k = 4, n = 5;
  bool a3 = mode == Mode::kBatched || mode == Mode::kSharedB;
  bool b3 = mode == Mode::kBatched || mode == Mode::kSharedA;
  ag::Var a(test::randn(stored(m, k, ta, a3), 1, DType::F64), true, "a");
  ag::Var b(test::randn(stored(k, n, tb, b3), 2, DType::F64), true, "b");
  auto f = [ta, tb](const std::vector<ag::Var>& in) { return ag::matmul(in[0], in[1], ta, tb); };
  ag::GradcheckResult r = ag::gradcheck(f, {a, b});
  EXPECT_TRUE(r.ok) << r.message;
}

INSTANTIATE_TEST_SUITE_P(Sweep, MatmulGrad,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool(),
                                            ::testing::Values(Mode::k2D, Mode::kBatched,
                                                              Mode::kSharedB, Mode::kSharedA)),
                         param_name);

TEST(MatmulGrad, OnlyTheOperandThatNeedsItGetsAGradient) {
  ag::Var a(test::randn({3, 4}, 1, DType::F64), true, "a");
  ag::Var b(test::randn({4, 5}, 2, DType::F64), false, "b");
  ag::matmul(a, b).backward(Tensor::full({3, 5}, 1.0, DType::F64));
  EXPECT_TRUE(a.grad().defined());
  EXPECT_EQ(a.grad().shape(), Dims({3, 4}));
  EXPECT_FALSE(b.grad().defined());
}

TEST(LinearGrad, MatchesFiniteDifferencesWithAndWithoutBias) {
  ag::Var x(test::randn({2, 3, 4}, 1, DType::F64), true, "x");
  ag::Var w(test::randn({5, 4}, 2, DType::F64), true, "w");
  ag::Var bias(test::randn({5}, 3, DType::F64), true, "bias");
  auto with_bias = [](const std::vector<ag::Var>& in) { return ag::linear(in[0], in[1], in[2]); };
  ag::GradcheckResult r = ag::gradcheck(with_bias, {x, w, bias});
  EXPECT_TRUE(r.ok) << r.message;
  auto without = [](const std::vector<ag::Var>& in) { return ag::linear(in[0], in[1]); };
  r = ag::gradcheck(without, {x, w});
  EXPECT_TRUE(r.ok) << r.message;
  ag::Var x1(test::randn({4}, 4, DType::F64), true, "x1");
  r = ag::gradcheck(with_bias, {x1, w, bias});
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(LinearGrad, GpuMatchesCpu) {
  SL_REQUIRE_GPU();
  const int64_t rows = 3 * 37, in = 129, out = 67;
  for (DType dt : {DType::F32, DType::BF16}) {
    Tensor xv = test::randn({3, 37, in}, 1, dt), wv = test::randn({out, in}, 2, dt);
    Tensor bv = test::randn({out}, 3, dt), gv = test::randn({3, 37, out}, 4, dt);
    auto grads = [&](Device dev, DType cd) {
      ag::Var x(xv.to(dev, cd), true), w(wv.to(dev, cd), true), b(bv.to(dev, cd), true);
      ag::linear(x, w, b).backward(gv.to(dev, cd));
      return std::vector<Tensor>{x.grad(), w.grad(), b.grad()};
    };
    std::vector<Tensor> g = grads(kGpu, dt), r = grads(Device::cpu(), DType::F64);
    for (const Tensor& t : g) EXPECT_EQ(t.dtype(), dt);
    EXPECT_TRUE(AllClose(g[0], r[0], Tol{dt, out})) << "dx " << dtype_name(dt);
    EXPECT_TRUE(AllClose(g[1], r[1], Tol{dt, rows})) << "dw " << dtype_name(dt);
    EXPECT_TRUE(AllClose(g[2], r[2], Tol{dt, rows})) << "dbias " << dtype_name(dt);
  }
}

TEST(MatmulGrad, BatchedGpuMatchesCpu) {
  SL_REQUIRE_GPU();
  for (DType dt : {DType::F32, DType::BF16}) {
    Tensor av = test::randn({4, 29, 45}, 1, dt), bv = test::randn({29, 19}, 2, dt);
    Tensor gv = test::randn({4, 45, 19}, 3, dt);
    auto grads = [&](Device dev, DType cd) {
      ag::Var a(av.to(dev, cd), true), b(bv.to(dev, cd), true);
      ag::matmul(a, b, true, false).backward(gv.to(dev, cd));
      return std::vector<Tensor>{a.grad(), b.grad()};
    };
    std::vector<Tensor> g = grads(kGpu, dt), r = grads(Device::cpu(), DType::F64);
    EXPECT_TRUE(AllClose(g[0], r[0], Tol{dt, 19})) << "da " << dtype_name(dt);
    EXPECT_TRUE(AllClose(g[1], r[1], Tol{dt, 4 * 45})) << "db " << dtype_name(dt);
  }
}

}  // namespace
}  // namespace sl
