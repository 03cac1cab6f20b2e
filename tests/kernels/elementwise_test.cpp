// Elementwise kernels (kernels/elementwise.h): CPU forward against formulas written out here in
// f64, broadcasting and sum_to against explicit loops, strided inputs, errors, and every CUDA path
// (contiguous, inner-vectorized broadcast, strided) against the CPU reference in f32 and bf16.
// Backward formulas are checked by gradcheck in tests/autograd/ops_elementwise_test.cpp.
#include "kernels/elementwise.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "tests/common/gpu.h"
#include "tests/common/tolerance.h"

namespace sl {
namespace {
using kernels::BinaryOp;
using kernels::UnaryOp;
using test::AllClose;
using test::AllEqual;
using test::Tol;

const UnaryOp kUnaryOps[] = {UnaryOp::Neg,      UnaryOp::Exp,   UnaryOp::Log,      UnaryOp::Silu,
                             UnaryOp::Gelu,     UnaryOp::Relu,  UnaryOp::Relu2,    UnaryOp::Sigmoid,
                             UnaryOp::Softplus, UnaryOp::Scale, UnaryOp::AddScalar};
const BinaryOp kBinaryOps[] = {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div};
constexpr double kAlpha = -1.75;

// The textbook definitions, independent of the kernels' formulation.
double expected_unary(UnaryOp op, double x) {
  switch (op) {
    case UnaryOp::Neg:
      return -x;
    case UnaryOp::Exp:
      return std::exp(x);
    case UnaryOp::Log:
      return std::log(x);
    case UnaryOp::Silu:
      return x / (1 + std::exp(-x));
    case UnaryOp::Gelu:
      return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    case UnaryOp::Relu:
      return std::max(x, 0.0);
    case UnaryOp::Relu2:
      return std::max(x, 0.0) * std::max(x, 0.0);
    case UnaryOp::Sigmoid:
      return 1 / (1 + std::exp(-x));
    case UnaryOp::Softplus:
      return x > 20 ? x : std::log(1 + std::exp(x));
    case UnaryOp::Scale:
      return kAlpha * x;
    case UnaryOp::AddScalar:
      return x + kAlpha;
  }
  return 0;
}

double expected_binary(BinaryOp op, double a, double b) {
  switch (op) {
    case BinaryOp::Add:
      return a + b;
    case BinaryOp::Sub:
      return a - b;
    case BinaryOp::Mul:
      return a * b;
    case BinaryOp::Div:
      return a / b;
  }
  return 0;
}

// Inputs inside each op's domain (log needs x > 0).
Tensor unary_input(UnaryOp op, const Dims& shape, uint64_t seed, DType dt, Device dev) {
  if (op == UnaryOp::Log) return test::rand(shape, seed, 0.05, 4.0, dt, dev);
  return test::randn(shape, seed, dt, dev, 3.0);
}

class UnaryTest : public ::testing::TestWithParam<UnaryOp> {};

TEST_P(UnaryTest, CpuForwardMatchesDefinition) {
  UnaryOp op = GetParam();
  Tensor x = unary_input(op, {5, 7}, 1, DType::F64, Device::cpu());
  std::vector<double> xv = x.to_vector<double>(), ev;
  for (double v : xv) ev.push_back(expected_unary(op, v));
  Tensor y = kernels::unary(op, x, kAlpha);
  EXPECT_EQ(y.dtype(), DType::F64);
  // factor 4: the kernels and the definitions above round differently (x * sigmoid(x) against
  // x / (1 + e^-x), log1p against log), a few f64 roundings apart.
  EXPECT_TRUE(AllClose(y, Tensor::from_vector(ev, x.shape()), Tol{DType::F64, 1, 0, 4}))
      << kernels::unary_name(op);
}

TEST_P(UnaryTest, StridedInputEqualsContiguous) {
  UnaryOp op = GetParam();
  Tensor x = unary_input(op, {6, 9}, 2, DType::F32, Device::cpu());
  Tensor xt = x.transpose(0, 1).slice(0, 1, 8, 2);  // non-contiguous, offset 6
  Tensor dy = test::randn(xt.shape(), 3);
  EXPECT_TRUE(
      AllEqual(kernels::unary(op, xt, kAlpha), kernels::unary(op, xt.contiguous(), kAlpha)));
  EXPECT_TRUE(AllEqual(
      kernels::unary_backward(op, xt, dy.transpose(0, 1).contiguous().transpose(0, 1), kAlpha),
      kernels::unary_backward(op, xt.contiguous(), dy, kAlpha)));
}

INSTANTIATE_TEST_SUITE_P(Ops, UnaryTest, ::testing::ValuesIn(kUnaryOps), [](const auto& info) {
  return std::string(kernels::unary_name(info.param));
});

TEST(Unary, ExtremeInputsStayFinite) {
  Tensor x = Tensor::from_vector<double>({-1000, -50, 0, 25, 1000}, {5});
  std::vector<double> s = kernels::unary(UnaryOp::Sigmoid, x).to_vector<double>();
  EXPECT_EQ(s[0], 0.0);
  EXPECT_EQ(s[2], 0.5);
  EXPECT_EQ(s[4], 1.0);
  std::vector<double> sp = kernels::unary(UnaryOp::Softplus, x).to_vector<double>();
  EXPECT_EQ(sp[0], 0.0);
  EXPECT_NEAR(sp[1], std::exp(-50.0), 1e-30);
  EXPECT_EQ(sp[3], 25.0);  // above the threshold softplus is the identity
  EXPECT_EQ(sp[4], 1000.0);
  std::vector<double> si = kernels::unary(UnaryOp::Silu, x).to_vector<double>();
  EXPECT_EQ(si[0], 0.0);
  EXPECT_EQ(si[4], 1000.0);
}

TEST(Unary, RejectsBadInput) {
  Tensor xi = Tensor::zeros({3}, DType::I32);
  try {
    kernels::unary(UnaryOp::Silu, xi);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("silu"), std::string::npos) << e.what();
  }
  Tensor x = Tensor::zeros({3, 4}, DType::F32);
  EXPECT_THROW(kernels::unary_backward(UnaryOp::Gelu, x, Tensor::zeros({4, 3}, DType::F32)), Error);
}

// out = a (op) b over the broadcast shape, by explicit index arithmetic.
Tensor broadcast_loops(BinaryOp op, const Tensor& a, const Tensor& b, const Dims& out) {
  std::vector<double> av = a.to(DType::F64).contiguous().to_vector<double>();
  std::vector<double> bv = b.to(DType::F64).contiguous().to_vector<double>();
  std::vector<double> ov(size_t(out.numel()));
  for (int64_t i = 0; i < out.numel(); ++i) {
    int64_t rem = i, ia = 0, ib = 0, sa = 1, sb = 1;
    for (int d = out.n - 1; d >= 0; --d) {
      int64_t idx = rem % out[d];
      rem /= out[d];
      int da = d - (out.n - a.dim()), db = d - (out.n - b.dim());
      if (da >= 0) {
        ia += (a.shape()[da] == 1 ? 0 : idx) * sa;
        sa *= a.shape()[da];
      }
      if (db >= 0) {
        ib += (b.shape()[db] == 1 ? 0 : idx) * sb;
        sb *= b.shape()[db];
      }
    }
    ov[size_t(i)] = expected_binary(op, av[size_t(ia)], bv[size_t(ib)]);
  }
  return Tensor::from_vector(ov, out);
}

struct BroadcastCase {
  Dims a, b, out;
};
const BroadcastCase kBroadcastCases[] = {
    {{3, 1, 5}, {4, 1}, {3, 4, 5}},   {{2, 3, 4}, {4}, {2, 3, 4}},
    {{4}, {2, 3, 4}, {2, 3, 4}},      {{2, 3}, {}, {2, 3}},
    {{5, 1}, {1, 6}, {5, 6}},         {{2, 3, 4}, {2, 3, 4}, {2, 3, 4}},
    {{7, 1, 1}, {7, 2, 3}, {7, 2, 3}}};

TEST(Binary, CpuBroadcastingMatchesLoops) {
  for (BinaryOp op : kBinaryOps)
    for (const BroadcastCase& c : kBroadcastCases) {
      Tensor a = test::randn(c.a, 10, DType::F64), b = test::rand(c.b, 11, 0.5, 2.0, DType::F64);
      Tensor out = kernels::binary(op, a, b);
      EXPECT_EQ(out.shape(), c.out);
      EXPECT_TRUE(AllClose(out, broadcast_loops(op, a, b, c.out), Tol{DType::F64}))
          << kernels::binary_name(op) << " " << c.a.str() << " " << c.b.str();
    }
}

TEST(Binary, StridedOperandsAndMixedDtypes) {
  Tensor a = test::randn({5, 8}, 12), b = test::randn({8, 5}, 13);
  Tensor bt = b.transpose(0, 1);
  EXPECT_TRUE(AllEqual(kernels::mul(a, bt), kernels::mul(a, bt.contiguous())));
  Tensor ab = test::randn({5, 8}, 14, DType::BF16);
  Tensor mixed = kernels::add(ab, a);
  EXPECT_EQ(mixed.dtype(), DType::F32);
  EXPECT_TRUE(AllEqual(mixed, kernels::add(ab.to(DType::F32), a)));
  EXPECT_EQ(kernels::sub(a, ab).dtype(), DType::F32);
}

TEST(Binary, RejectsBadInput) {
  Tensor a = Tensor::zeros({3}, DType::F32), b = Tensor::zeros({4}, DType::F32);
  try {
    kernels::add(a, b);
    FAIL() << "no error";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("add"), std::string::npos) << m;
    EXPECT_NE(m.find("[3]"), std::string::npos) << m;
    EXPECT_NE(m.find("[4]"), std::string::npos) << m;
  }
  EXPECT_THROW(kernels::mul(a, Tensor::zeros({3}, DType::I64)), Error);
}

TEST(SumTo, ReducesBroadcastDims) {
  Tensor g = test::randn({3, 4, 5}, 20, DType::F64);
  std::vector<double> gv = g.to_vector<double>();
  std::vector<double> e4(4, 0), e5(5, 0), e315(15, 0);
  double all = 0;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j)
      for (int k = 0; k < 5; ++k) {
        double v = gv[size_t((i * 4 + j) * 5 + k)];
        e4[size_t(j)] += v;
        e5[size_t(k)] += v;
        e315[size_t(i * 5 + k)] += v;
        all += v;
      }
  Tol tol{DType::F64, 12};
  EXPECT_TRUE(AllClose(kernels::sum_to(g, {4, 1}), Tensor::from_vector(e4, {4, 1}), tol));
  EXPECT_TRUE(AllClose(kernels::sum_to(g, {5}), Tensor::from_vector(e5, {5}), tol));
  EXPECT_TRUE(AllClose(kernels::sum_to(g, {3, 1, 5}), Tensor::from_vector(e315, {3, 1, 5}), tol));
  EXPECT_TRUE(
      AllClose(kernels::sum_to(g, {}), Tensor::from_vector(std::vector<double>{all}, {}), tol));
  EXPECT_EQ(kernels::sum_to(g, {3, 4, 5}).storage(), g.storage());
  EXPECT_THROW(kernels::sum_to(g, {2, 5}), Error);
}

// ---- GPU against the CPU reference ----

// The reference: the CPU op on f64 inputs for f32, on f32 inputs for bf16.
DType ref_dtype(DType dt) {
  return dt == DType::F32 ? DType::F64 : DType::F32;
}

class ElementwiseGpu : public ::testing::TestWithParam<DType> {};

TEST_P(ElementwiseGpu, UnaryForwardBackwardAllPaths) {
  SL_REQUIRE_GPU();
  DType dt = GetParam();
  Device gpu = Device::cuda(0);
  for (UnaryOp op : kUnaryOps) {
    Tensor base = unary_input(op, {3, 37, 131}, 30, dt, gpu);
    Tensor dyb = test::randn({3, 37, 131}, 31, dt, gpu);
    // contiguous (with a tail), transposed, and misaligned (offset 1) inputs.
    std::vector<std::pair<Tensor, Tensor>> inputs = {{base, dyb},
                                                     {base.transpose(1, 2), dyb.transpose(1, 2)},
                                                     {base.reshape({-1}).slice(0, 1, 3 * 37 * 131),
                                                      dyb.reshape({-1}).slice(0, 1, 3 * 37 * 131)}};
    for (auto& [x, dy] : inputs) {
      Tensor xr = x.to(Device::cpu()).to(ref_dtype(dt)),
             dyr = dy.to(Device::cpu()).to(ref_dtype(dt));
      Tensor fwd = kernels::unary(op, x, kAlpha), bwd = kernels::unary_backward(op, x, dy, kAlpha);
      Tensor fwd_ref = kernels::unary(op, xr, kAlpha),
             bwd_ref = kernels::unary_backward(op, xr, dyr, kAlpha);
      if (dt == DType::F32) {
        // f32: the literal rule against f64, with the CPU f32 run as the naive implementation
        // (derivatives like silu's compose several roundings; GPU libm differs in the last ulp).
        Tensor xc = x.to(Device::cpu()), dyc = dy.to(Device::cpu());
        EXPECT_TRUE(test::AllCloseToNaive(fwd, kernels::unary(op, xc, kAlpha), fwd_ref, dt))
            << kernels::unary_name(op) << " " << x.shape_str();
        EXPECT_TRUE(test::AllCloseToNaive(bwd, kernels::unary_backward(op, xc, dyc, kAlpha),
                                          bwd_ref, dt))
            << kernels::unary_name(op) << " backward " << x.shape_str();
      } else {
        EXPECT_TRUE(AllClose(fwd, fwd_ref, Tol{dt}))
            << kernels::unary_name(op) << " " << x.shape_str();
        EXPECT_TRUE(AllClose(bwd, bwd_ref, Tol{dt}))
            << kernels::unary_name(op) << " backward " << x.shape_str();
      }
    }
  }
}

TEST_P(ElementwiseGpu, BinaryBroadcastAllPaths) {
  SL_REQUIRE_GPU();
  DType dt = GetParam();
  Device gpu = Device::cuda(0);
  struct Case {
    Tensor a, b;
  };
  Tensor big = test::randn({37, 256}, 40, dt, gpu);
  std::vector<Case> cases = {
      {big, test::randn({37, 256}, 41, dt, gpu)},                            // contiguous
      {test::randn({1001}, 42, dt, gpu), test::randn({1001}, 43, dt, gpu)},  // contiguous + tail
      {big, test::rand({256}, 44, 0.5, 2, dt, gpu)},                         // row broadcast, packs
      {big, test::rand({37, 1}, 45, 0.5, 2, dt, gpu)},  // column broadcast, packs
      {test::randn({3, 1, 5}, 46, dt, gpu), test::rand({4, 1}, 47, 0.5, 2, dt, gpu)},  // strided
      {test::randn({2, 3, 4}, 48, dt, gpu), test::rand({4}, 49, 0.5, 2, dt, gpu)},
      {big.slice(1, 1, 129), test::rand({128}, 50, 0.5, 2, dt, gpu)},     // misaligned rows
      {big.transpose(0, 1), test::rand({256, 37}, 51, 0.5, 2, dt, gpu)},  // transposed
      {test::randn({64, 7, 8}, 52, dt, gpu), test::rand({7, 1}, 53, 0.5, 2, dt, gpu)}};
  for (BinaryOp op : kBinaryOps)
    for (const Case& c : cases) {
      Tensor ar = c.a.to(Device::cpu()).to(ref_dtype(dt)),
             br = c.b.to(Device::cpu()).to(ref_dtype(dt));
      EXPECT_TRUE(AllClose(kernels::binary(op, c.a, c.b), kernels::binary(op, ar, br), Tol{dt}))
          << kernels::binary_name(op) << " " << c.a.shape_str() << " " << c.b.shape_str();
      Dims out = kernels::broadcast_shapes(c.a.shape(), c.b.shape());
      Tensor g = test::randn(out, 54, dt, gpu);
      auto [da, db] = kernels::binary_backward(op, c.a, c.b, g);
      auto [dar, dbr] = kernels::binary_backward(op, ar, br, g.to(Device::cpu()).to(ref_dtype(dt)));
      int64_t na = out.numel() / c.a.numel(), nb = out.numel() / c.b.numel();
      // Div's db rounds three products to dt before the sum: one more rounding than the rule's
      // single one per element.
      double f = op == BinaryOp::Div ? 2 : 1;
      EXPECT_TRUE(AllClose(da, dar, Tol{dt, na, 0, f})) << kernels::binary_name(op) << " da";
      EXPECT_TRUE(AllClose(db, dbr, Tol{dt, nb, 0, f})) << kernels::binary_name(op) << " db";
    }
}

TEST_P(ElementwiseGpu, MixedDtypesAndSumTo) {
  SL_REQUIRE_GPU();
  DType dt = GetParam();
  Device gpu = Device::cuda(0);
  Tensor a = test::randn({9, 33}, 60, DType::BF16, gpu), b = test::randn({33}, 61, DType::F32, gpu);
  Tensor m = kernels::mul(a, b);
  EXPECT_EQ(m.dtype(), DType::F32);
  EXPECT_TRUE(AllClose(
      m, kernels::mul(a.to(Device::cpu()).to(DType::F64), b.to(Device::cpu()).to(DType::F64)),
      Tol{DType::F32}));
  Tensor g = test::randn({4, 300, 65}, 62, dt, gpu);
  Tensor gr = g.to(Device::cpu()).to(ref_dtype(dt));
  for (Dims target : {Dims{65}, Dims{300, 1}, Dims{4, 1, 65}, Dims{}})
    EXPECT_TRUE(AllClose(kernels::sum_to(g, target), kernels::sum_to(gr, target),
                         Tol{dt, g.numel() / std::max<int64_t>(1, target.numel())}))
        << target.str();
}

INSTANTIATE_TEST_SUITE_P(Dtypes, ElementwiseGpu, ::testing::Values(DType::F32, DType::BF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace sl
