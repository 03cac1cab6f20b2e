// Autograd ops of autograd/ops_elementwise.h: every op against central finite differences in f64
// (ag::gradcheck), broadcasting gradients, gradient summation when a Var is used twice (a diamond
// graph), mixed-dtype gradients, view ops, and a GPU graph against the same graph on the CPU.
#include "autograd/ops_elementwise.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "autograd/gradcheck.h"
#include "kernels/elementwise.h"
#include "tests/common/gpu.h"
#include "tests/common/tolerance.h"

namespace sl {
namespace {
using ag::Var;
using test::AllClose;
using test::Tol;

Var leaf(const Dims& shape, uint64_t seed, double lo = 0, double hi = 0) {
  Tensor t =
      lo < hi ? test::rand(shape, seed, lo, hi, DType::F64) : test::randn(shape, seed, DType::F64);
  return Var(t, true);
}

void expect_gradcheck(const std::function<Var(const std::vector<Var>&)>& fn,
                      const std::vector<Var>& inputs, const std::string& what) {
  ag::GradcheckResult r = ag::gradcheck(fn, inputs);
  EXPECT_TRUE(r.ok) << what << ": max abs err " << r.max_abs_err << r.message;
}

struct UnaryCase {
  const char* name;
  std::function<Var(const Var&)> fn;
  double lo, hi;  // input range (lo == hi: N(0, 1) scaled by 3)
};

TEST(OpsElementwise, UnaryGradcheck) {
  const UnaryCase cases[] = {
      {"neg", ag::neg, 0, 0},
      {"exp", ag::exp, 0, 0},
      {"log", ag::log, 0.1, 3},
      {"silu", ag::silu, 0, 0},
      {"gelu", ag::gelu, 0, 0},
      {"relu", ag::relu, 0, 0},
      {"relu2", ag::relu2, 0, 0},
      {"sigmoid", ag::sigmoid, 0, 0},
      {"softplus", ag::softplus, 0, 0},
      {"softplus above threshold", ag::softplus, 15, 30},
      {"scale", [](const Var& x) { return ag::scale(x, -2.5); }, 0, 0},
      {"add_scalar", [](const Var& x) { return ag::add_scalar(x, 0.75); }, 0, 0}};
  uint64_t seed = 1;
  for (const UnaryCase& c : cases) {
    Var x = c.lo < c.hi ? leaf({3, 5}, seed++, c.lo, c.hi)
                        : Var(test::randn({3, 5}, seed++, DType::F64, Device::cpu(), 3.0), true);
    expect_gradcheck([&](const std::vector<Var>& v) { return c.fn(v[0]); }, {x}, c.name);
  }
}

TEST(OpsElementwise, BinaryGradcheckWithBroadcasting) {
  struct Shapes {
    Dims a, b;
  };
  const Shapes shapes[] = {
      {{3, 4}, {3, 4}}, {{3, 1, 5}, {4, 1}}, {{2, 3, 4}, {4}}, {{4}, {2, 3, 4}}, {{2, 3}, {}}};
  const std::pair<const char*, Var (*)(const Var&, const Var&)> ops[] = {
      {"add", ag::add}, {"sub", ag::sub}, {"mul", ag::mul}, {"div", ag::div}};
  uint64_t seed = 20;
  for (auto [name, op] : ops)
    for (const Shapes& s : shapes) {
      Var a = leaf(s.a, seed++), b = leaf(s.b, seed++, 0.5, 2.0);  // b away from 0 for div
      expect_gradcheck([op = op](const std::vector<Var>& v) { return op(v[0], v[1]); }, {a, b},
                       std::string(name) + " " + s.a.str() + " " + s.b.str());
      EXPECT_EQ(a.grad().shape(), s.a);
      EXPECT_EQ(b.grad().shape(), s.b);
    }
}

TEST(OpsElementwise, ReductionsAndSoftmaxGradcheck) {
  Var x = leaf({3, 4, 5}, 40);
  for (int d = -1; d < 3; ++d)
    for (bool keep : {false, true}) {
      std::string where = " dim " + std::to_string(d) + (keep ? " keepdim" : "");
      expect_gradcheck([&](const std::vector<Var>& v) { return ag::sum(v[0], d, keep); }, {x},
                       "sum" + where);
      expect_gradcheck([&](const std::vector<Var>& v) { return ag::mean(v[0], d, keep); }, {x},
                       "mean" + where);
      expect_gradcheck([&](const std::vector<Var>& v) { return ag::max(v[0], d, keep); }, {x},
                       "max" + where);
    }
  expect_gradcheck([](const std::vector<Var>& v) { return ag::sum_all(v[0]); }, {x}, "sum_all");
  expect_gradcheck([](const std::vector<Var>& v) { return ag::mean_all(v[0]); }, {x}, "mean_all");
  Var z = Var(test::randn({4, 7}, 41, DType::F64, Device::cpu(), 2.0), true);
  expect_gradcheck([](const std::vector<Var>& v) { return ag::softmax(v[0]); }, {z}, "softmax");
  expect_gradcheck([](const std::vector<Var>& v) { return ag::log_softmax(v[0]); }, {z},
                   "log_softmax");
}

TEST(OpsElementwise, ViewOpsGradcheck) {
  Var x = leaf({4, 6}, 50);
  expect_gradcheck(
      [](const std::vector<Var>& v) {
        return ag::reshape(v[0], {2, 3, 4});
      },
      {x}, "reshape");
  expect_gradcheck([](const std::vector<Var>& v) { return ag::transpose(v[0], 0, 1); }, {x},
                   "transpose");
  expect_gradcheck([](const std::vector<Var>& v) { return ag::slice(v[0], 1, 1, 4); }, {x},
                   "slice");
  expect_gradcheck([](const std::vector<Var>& v) { return ag::slice(v[0], 0, -3, 4); }, {x},
                   "slice, negative start");
  // A chain through views into ops that read strides: softmax of a transposed slice.
  expect_gradcheck(
      [](const std::vector<Var>& v) {
        return ag::softmax(ag::transpose(ag::slice(v[0], 1, 2, 6), 0, 1));
      },
      {x}, "softmax(transpose(slice))");
}

TEST(OpsElementwise, DiamondGraphSumsGradients) {
  // f(x) = x * sigmoid(x) + exp(x), with x reaching the output along three paths; f' = silu'(x)
  // + exp(x).
  Var x = leaf({2, 7}, 60);
  auto f = [](const std::vector<Var>& v) {
    return ag::add(ag::mul(v[0], ag::sigmoid(v[0])), ag::exp(v[0]));
  };
  expect_gradcheck(f, {x}, "diamond");
  x.zero_grad();
  ag::sum_all(f({x})).backward();
  Tensor dy = Tensor::full(x.shape(), 1.0, DType::F64);
  Tensor expect = kernels::add(kernels::unary_backward(kernels::UnaryOp::Silu, x.value(), dy),
                               kernels::unary(kernels::UnaryOp::Exp, x.value()));
  EXPECT_TRUE(AllClose(x.grad(), expect, Tol{DType::F64, 3}));
  // Overlapping slices of one leaf: their gradients add where they overlap.
  Var y = leaf({6}, 61);
  expect_gradcheck(
      [](const std::vector<Var>& v) {
        return ag::mul(ag::slice(v[0], 0, 0, 4), ag::slice(v[0], 0, 2, 6));
      },
      {y}, "overlapping slices");
}

TEST(OpsElementwise, MixedDtypeGradientsKeepInputDtypes) {
  Var a(test::randn({3, 4}, 70, DType::BF16), true), b(test::randn({4}, 71, DType::F32), true);
  Var out = ag::mul(a, b);
  EXPECT_EQ(out.dtype(), DType::F32);
  ag::sum_all(out).backward();
  EXPECT_EQ(a.grad().dtype(), DType::BF16);
  EXPECT_EQ(b.grad().dtype(), DType::F32);
  EXPECT_EQ(b.grad().shape(), Dims({4}));
  // db = sum over rows of a (exactly representable: bf16 values summed in f32, 3 terms).
  Tensor expect = kernels::sum_to(a.value().to(DType::F32), {4});
  EXPECT_TRUE(AllClose(b.grad(), expect, Tol{DType::F32, 3}));
}

TEST(OpsElementwise, UndefinedInputIsAnError) {
  try {
    ag::mul(Var(), Var(Tensor::zeros({2}, DType::F32)));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("mul"), std::string::npos) << e.what();
  }
}

// A small graph on the GPU against the same graph on the CPU (f32 and bf16).
class OpsElementwiseGpu : public ::testing::TestWithParam<DType> {};

TEST_P(OpsElementwiseGpu, GraphMatchesCpu) {
  SL_REQUIRE_GPU();
  DType dt = GetParam();
  DType ref = dt == DType::F32 ? DType::F64 : DType::F32;
  Tensor x0 = test::randn({5, 300}, 80, dt), w0 = test::randn({300}, 81, dt);
  Tensor b0 = test::randn({5, 1}, 82, dt);
  auto run = [&](Device dev, DType t) {
    Var x(x0.to(t).to(dev), true), w(w0.to(t).to(dev), true), b(b0.to(t).to(dev), true);
    Var h = ag::add(ag::mul(ag::silu(x), w), b);  // [5, 300]
    Var p = ag::log_softmax(ag::gelu(h));         // [5, 300]
    Var loss = ag::add(ag::mean_all(ag::mul(p, ag::relu2(x))), ag::mean_all(ag::mul(h, h)));
    loss.backward();
    return std::vector<Tensor>{loss.value(), x.grad(), w.grad(), b.grad()};
  };
  std::vector<Tensor> g = run(Device::cuda(0), dt), c = run(Device::cpu(), ref);
  // The longest sums: 1500 terms behind the loss, a 300-wide row behind each gradient. (max is
  // left out: an argmax may legitimately differ between precisions; reduce_test checks it.)
  EXPECT_TRUE(AllClose(g[0], c[0], Tol{dt, 1500})) << "loss";
  const char* names[] = {"loss", "dx", "dw", "db"};
  for (size_t i = 1; i < g.size(); ++i) EXPECT_TRUE(AllClose(g[i], c[i], Tol{dt, 300})) << names[i];
}

INSTANTIATE_TEST_SUITE_P(Dtypes, OpsElementwiseGpu, ::testing::Values(DType::F32, DType::BF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace sl
