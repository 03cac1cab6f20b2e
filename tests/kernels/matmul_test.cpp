// matmul, linear, matmul_backward and bias_backward: the CPU against a naive triple loop in f64
// (all transposes, odd sizes, bias, batches, shared operands, strided views), the GPU (cuBLASLt and
// its GemmEx fallback) against the CPU, and argument errors.
#include "kernels/matmul.h"

#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include "tests/common/gpu.h"
#include "tests/common/tolerance.h"

namespace sl {
namespace {
using kernels::matmul;
using test::AllClose;
using test::AllEqual;
using test::Tol;

const Device kGpu = Device::cuda(0);

std::vector<double> host(const Tensor& t) {
  return t.to(Device::cpu()).to(DType::F64).contiguous().to_vector<double>();
}

// The obvious definition, in f64, from the logical shapes: a 2-D operand is shared by the batch.
Tensor naive(const Tensor& a, const Tensor& b, bool ta, bool tb, const Tensor& bias = Tensor()) {
  std::vector<double> av = host(a), bv = host(b), biasv;
  if (bias.defined()) biasv = host(bias);
  int64_t m = ta ? a.size(-1) : a.size(-2), k = ta ? a.size(-2) : a.size(-1);
  int64_t n = tb ? b.size(-2) : b.size(-1);
  bool batched = a.dim() == 3 || b.dim() == 3;
  int64_t batch = a.dim() == 3 ? a.size(0) : (b.dim() == 3 ? b.size(0) : 1);
  int64_t sa = a.dim() == 3 ? m * k : 0, sb = b.dim() == 3 ? k * n : 0;
  std::vector<double> out(size_t(batch * m * n));
  for (int64_t bi = 0; bi < batch; ++bi)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = bias.defined() ? biasv[size_t(j)] : 0.0;
        for (int64_t p = 0; p < k; ++p) {
          double x = ta ? av[size_t(bi * sa + p * m + i)] : av[size_t(bi * sa + i * k + p)];
          double y = tb ? bv[size_t(bi * sb + j * k + p)] : bv[size_t(bi * sb + p * n + j)];
          s += x * y;
        }
        out[size_t((bi * m + i) * n + j)] = s;
      }
  return Tensor::from_vector(out, batched ? Dims{batch, m, n} : Dims{m, n});
}

// How the operands are batched.
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

struct Shape {
  int64_t m, k, n;
};

// Random operands stored as the transpose flags say ([K, M] for a transposed A, ...).
struct Operands {
  Tensor a, b, bias;
};
Operands make_operands(Shape s, bool ta, bool tb, bool with_bias, Mode mode, DType dt, Device dev,
                       uint64_t seed) {
  const int64_t batch = 3;
  Dims as = ta ? Dims{s.k, s.m} : Dims{s.m, s.k};
  Dims bs = tb ? Dims{s.n, s.k} : Dims{s.k, s.n};
  if (mode == Mode::kBatched || mode == Mode::kSharedB) as = Dims{batch, as[0], as[1]};
  if (mode == Mode::kBatched || mode == Mode::kSharedA) bs = Dims{batch, bs[0], bs[1]};
  Operands o{test::randn(as, seed, dt, dev), test::randn(bs, seed + 1, dt, dev), Tensor()};
  if (with_bias) o.bias = test::randn({s.n}, seed + 2, dt, dev);
  return o;
}

// ---------------------------------------------------------------------------------------------
// CPU against the naive loop.

// One case per (transposes, batching); shapes and bias are looped inside to keep the number of
// test processes small.
using Param = std::tuple<bool, bool, Mode>;
std::string param_name(const ::testing::TestParamInfo<Param>& info) {
  auto [ta, tb, mode] = info.param;
  return std::string(ta ? "TA" : "NA") + (tb ? "_TB_" : "_NB_") + mode_name(mode);
}
const auto kSweep = ::testing::Combine(
    ::testing::Bool(), ::testing::Bool(),
    ::testing::Values(Mode::k2D, Mode::kBatched, Mode::kSharedB, Mode::kSharedA));

class CpuMatmul : public ::testing::TestWithParam<Param> {};

TEST_P(CpuMatmul, MatchesNaiveLoopInF64AndF32) {
  auto [ta, tb, mode] = GetParam();
  for (Shape s : {Shape{7, 13, 5}, Shape{33, 65, 17}, Shape{1, 4, 1}})
    for (bool with_bias : {false, true})
      for (DType dt : {DType::F64, DType::F32}) {
        Operands o = make_operands(s, ta, tb, with_bias, mode, dt, Device::cpu(), 11);
        Tensor c = matmul(o.a, o.b, ta, tb, o.bias);
        EXPECT_EQ(c.dtype(), dt);
        EXPECT_TRUE(AllClose(c, naive(o.a, o.b, ta, tb, o.bias), Tol{dt, s.k}))
            << dtype_name(dt) << " " << s.m << "x" << s.k << "x" << s.n << " bias " << with_bias;
      }
}

INSTANTIATE_TEST_SUITE_P(Sweep, CpuMatmul, kSweep, param_name);

TEST(Matmul, HalfPrecisionOnCpuRoundsAnF32Product) {
  for (DType dt : {DType::BF16, DType::F16})
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        Operands o = make_operands({9, 37, 11}, ta, tb, true, Mode::kBatched, dt, Device::cpu(), 5);
        Tensor ref = naive(o.a, o.b, ta, tb, o.bias);
        Tensor c = matmul(o.a, o.b, ta, tb, o.bias);
        EXPECT_EQ(c.dtype(), dt);
        EXPECT_TRUE(AllClose(c, ref, Tol{dt, 37})) << dtype_name(dt) << " " << ta << tb;
        Tensor c32 = matmul(o.a, o.b, ta, tb, o.bias, DType::F32);
        EXPECT_EQ(c32.dtype(), DType::F32);
        EXPECT_TRUE(AllClose(c32, ref, Tol{DType::F32, 37})) << dtype_name(dt) << " " << ta << tb;
      }
}

TEST(Matmul, StridedViewsMatchTheirContiguousCopies) {
  const int64_t m = 6, k = 11, n = 9;
  // A transposed view, as A and as B, with and without the transpose flag.
  Tensor at = test::randn({k, m}, 1, DType::F64).transpose(0, 1);  // [m, k], strides [1, m]
  Tensor bt = test::randn({n, k}, 2, DType::F64).transpose(0, 1);  // [k, n], strides [1, k]
  ASSERT_FALSE(at.is_contiguous());
  EXPECT_TRUE(AllClose(matmul(at, bt), naive(at.contiguous(), bt.contiguous(), false, false),
                       Tol{DType::F64, k}));
  EXPECT_TRUE(AllClose(matmul(at, bt.transpose(0, 1), false, true),
                       naive(at.contiguous(), bt.transpose(0, 1).contiguous(), false, true),
                       Tol{DType::F64, k}));
  // A column slice (row stride > cols, nonzero offset) and a step slice (needs a copy).
  Tensor as = test::randn({m, k + 5}, 3, DType::F64).slice(1, 2, 2 + k);
  Tensor bs = test::randn({k, 2 * n}, 4, DType::F64).slice(1, 0, 2 * n, 2);
  Tensor bias = test::randn({2 * n}, 5, DType::F64).slice(0, 1, 2 * n, 2);
  EXPECT_TRUE(AllClose(matmul(as, bs, false, false, bias),
                       naive(as.contiguous(), bs.contiguous(), false, false, bias),
                       Tol{DType::F64, k}));
  // Batched transposed views, and a batch taken with a step.
  Tensor ab = test::randn({3, k, m}, 6, DType::F32).transpose(1, 2);  // [3, m, k]
  Tensor bb = test::randn({6, k, n}, 7, DType::F32).slice(0, 0, 6, 2);
  EXPECT_TRUE(AllClose(matmul(ab, bb), naive(ab.contiguous(), bb.contiguous(), false, false),
                       Tol{DType::F32, k}));
  Tensor b2 = test::randn({m, n}, 8, DType::F32);
  EXPECT_TRUE(AllClose(matmul(ab, b2, true, false), naive(ab.contiguous(), b2, true, false),
                       Tol{DType::F32, m}));
}

TEST(Matmul, LinearIsXTimesWTransposedPlusBias) {
  Tensor x = test::randn({2, 3, 7}, 1, DType::F64), w = test::randn({5, 7}, 2, DType::F64);
  Tensor b = test::randn({5}, 3, DType::F64);
  Tensor y = kernels::linear(x, w, b);
  EXPECT_EQ(y.shape(), Dims({2, 3, 5}));
  EXPECT_TRUE(
      AllClose(y, naive(x.reshape({6, 7}), w, false, true, b).view({2, 3, 5}), Tol{DType::F64, 7}));
  Tensor x1 = test::randn({7}, 4, DType::F64);
  Tensor y1 = kernels::linear(x1, w);
  EXPECT_EQ(y1.shape(), Dims({5}));
  EXPECT_TRUE(AllClose(y1, naive(x1.view({1, 7}), w, false, true).view({5}), Tol{DType::F64, 7}));
}

TEST(Matmul, EmptyInnerDimGivesTheBias) {
  Tensor a = Tensor::zeros({3, 0}, DType::F32), b = Tensor::zeros({0, 4}, DType::F32);
  EXPECT_TRUE(AllEqual(matmul(a, b), Tensor::zeros({3, 4}, DType::F32)));
  Tensor bias = Tensor::from_vector(std::vector<float>{1, 2, 3, 4}, {4});
  EXPECT_TRUE(AllEqual(matmul(a, b, false, false, bias), bias.view({1, 4}).expand({3, 4})));
}

TEST(Matmul, BiasBackwardAndSumLeadingSumOverLeadingDims) {
  Tensor dc = test::randn({2, 3, 5}, 9, DType::F64);
  std::vector<double> v = host(dc), db(5, 0.0), sl(15, 0.0);
  for (size_t i = 0; i < v.size(); ++i) {
    db[i % 5] += v[i];
    sl[i % 15] += v[i];
  }
  EXPECT_TRUE(AllClose(kernels::bias_backward(dc, DType::F64), Tensor::from_vector(db, {5}),
                       Tol{DType::F64, 6}));
  EXPECT_TRUE(AllClose(kernels::sum_leading(dc, DType::F64), Tensor::from_vector(sl, {3, 5}),
                       Tol{DType::F64, 2}));
  Tensor g = kernels::bias_backward(dc.to(DType::BF16), DType::F32);
  EXPECT_EQ(g.dtype(), DType::F32);
  EXPECT_TRUE(AllClose(g, kernels::bias_backward(dc.to(DType::BF16).to(DType::F64), DType::F64),
                       Tol{DType::F32, 6}));
}

template <class F>
void expect_error(F f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    std::string what = e.what();
    for (const std::string& p : parts) EXPECT_NE(what.find(p), std::string::npos) << what;
  }
}

TEST(Matmul, BadArgumentsNameTheOpAndTheShapes) {
  Tensor a = Tensor::zeros({7, 13}, DType::F32), b = Tensor::zeros({12, 5}, DType::F32);
  expect_error([&] { matmul(a, b); }, {"matmul", "[7, 13]", "[12, 5]"});
  expect_error([&] { matmul(a, b, true, false); }, {"matmul", "[7, 13]", "[12, 5]"});
  expect_error(
      [&] {
        matmul(Tensor::zeros({2, 7, 13}, DType::F32), Tensor::zeros({3, 13, 5}, DType::F32));
      },
      {"matmul", "[2, 7, 13]", "[3, 13, 5]"});
  expect_error(
      [&] {
        matmul(a, Tensor::zeros({13, 5}, DType::F32), false, false, Tensor::zeros({4}, DType::F32));
      },
      {"matmul", "bias", "[4]"});
  expect_error([&] { matmul(a, Tensor::zeros({13, 5}, DType::F64)); }, {"matmul"});
  expect_error([&] { matmul(Tensor::zeros({7}, DType::F32), b); }, {"matmul", "[7]"});
  expect_error(
      [&] {
        kernels::linear(Tensor::zeros({2, 6}, DType::F32), Tensor::zeros({4, 5}, DType::F32));
      },
      {"linear", "[2, 6]", "[4, 5]"});
  expect_error(
      [&] {
        kernels::matmul_backward(a, Tensor::zeros({13, 5}, DType::F32),
                                 Tensor::zeros({7, 4}, DType::F32), false, false, true, true);
      },
      {"matmul_backward", "[7, 4]"});
}

// ---------------------------------------------------------------------------------------------
// GPU against the CPU: f32 against the f64 loop, bf16 against the CPU's f32 product of the same
// bf16 values; both under the rule with n_reduce = K.

Tensor reference(const Operands& o, bool ta, bool tb, DType dt, DType out) {
  Tensor a = o.a.to(Device::cpu()), b = o.b.to(Device::cpu());
  Tensor bias = o.bias.defined() ? o.bias.to(Device::cpu()) : Tensor();
  if (dt == DType::F32 || out == DType::F32) return naive(a, b, ta, tb, bias);
  return matmul(a, b, ta, tb, bias, DType::F32);
}

// Sets the GemmEx-only switch for one scope.
class ForceGemmEx {
 public:
  explicit ForceGemmEx(bool on) : prev_(kernels::matmul_options().force_gemm_ex) {
    kernels::matmul_options().force_gemm_ex = on;
  }
  ~ForceGemmEx() { kernels::matmul_options().force_gemm_ex = prev_; }

 private:
  bool prev_;
};

class GpuMatmul : public ::testing::TestWithParam<Param> {};

TEST_P(GpuMatmul, MatchesCpu) {
  SL_REQUIRE_GPU();
  auto [ta, tb, mode] = GetParam();
  for (bool gemm_ex : {false, true}) {
    ForceGemmEx force(gemm_ex);
    for (DType dt : {DType::F32, DType::BF16})
      for (bool with_bias : {false, true})
        for (Shape s : {Shape{37, 129, 19}, Shape{64, 256, 136}, Shape{5, 3, 1}}) {
          Operands o = make_operands(s, ta, tb, with_bias, mode, dt, kGpu, 21);
          Tensor c = matmul(o.a, o.b, ta, tb, o.bias);
          ASSERT_TRUE(c.is_cuda());
          EXPECT_EQ(c.dtype(), dt);
          EXPECT_TRUE(AllClose(c, reference(o, ta, tb, dt, dt), Tol{dt, s.k}))
              << dtype_name(dt) << " " << s.m << "x" << s.k << "x" << s.n << " bias " << with_bias
              << (gemm_ex ? " GemmEx" : " cuBLASLt");
        }
  }
}

INSTANTIATE_TEST_SUITE_P(Sweep, GpuMatmul, kSweep, param_name);

TEST(GpuMatmulMore, Bf16InputsWithF32Output) {
  SL_REQUIRE_GPU();
  for (bool ta : {false, true}) {
    Operands o = make_operands({33, 70, 21}, ta, true, true, Mode::kSharedB, DType::BF16, kGpu, 3);
    o.bias = o.bias.to(DType::F32);
    Tensor c = matmul(o.a, o.b, ta, true, o.bias, DType::F32);
    EXPECT_EQ(c.dtype(), DType::F32);
    EXPECT_TRUE(AllClose(c, reference(o, ta, true, DType::BF16, DType::F32), Tol{DType::F32, 70}));
  }
}

TEST(GpuMatmulMore, StridedAndMisalignedViews) {
  SL_REQUIRE_GPU();
  const int64_t m = 45, k = 67, n = 29;
  for (DType dt : {DType::F32, DType::BF16}) {
    Tensor at = test::randn({k, m}, 1, dt, kGpu).transpose(0, 1);
    Tensor as =
        test::randn({m, k + 3}, 2, dt, kGpu).slice(1, 1, 1 + k);  // offset 1: 2-byte aligned
    Tensor bs = test::randn({n + 1, k}, 3, dt, kGpu).slice(0, 1, n + 1);
    Tensor bias = test::randn({n + 1}, 4, dt, kGpu).slice(0, 1, n + 1);
    for (const Tensor& a : {at, as}) {
      Tensor ref = reference(Operands{a.contiguous(), bs.contiguous(), bias.contiguous()}, false,
                             true, dt, dt);
      EXPECT_TRUE(AllClose(matmul(a, bs, false, true, bias), ref, Tol{dt, k})) << dtype_name(dt);
    }
  }
}

TEST(GpuMatmulMore, LargeBf16AndRepeatedCallsAreDeterministic) {
  SL_REQUIRE_GPU();
  Operands o = make_operands({1024, 1024, 768}, false, true, true, Mode::k2D, DType::BF16, kGpu, 8);
  Tensor c1 = matmul(o.a, o.b, false, true, o.bias);
  Tensor other = matmul(o.b, o.a, false, true);  // another plan in between
  Tensor c2 = matmul(o.a, o.b, false, true, o.bias);
  EXPECT_TRUE(AllEqual(c1, c2));
  EXPECT_TRUE(
      AllClose(c1, reference(o, false, true, DType::BF16, DType::BF16), Tol{DType::BF16, 1024}));
  EXPECT_EQ(other.shape(), Dims({768, 1024}));
}

TEST(GpuMatmulMore, Tf32OptionStaysWithinTf32Precision) {
  SL_REQUIRE_GPU();
  kernels::matmul_options().allow_tf32 = true;
  Operands o =
      make_operands({128, 512, 96}, false, false, true, Mode::kBatched, DType::F32, kGpu, 4);
  Tensor c = matmul(o.a, o.b, false, false, o.bias);
  kernels::matmul_options().allow_tf32 = false;
  // TF32 keeps f16's 10-bit mantissa, so the rule is applied with f16's eps.
  EXPECT_TRUE(
      AllClose(c, reference(o, false, false, DType::F32, DType::F32), Tol{DType::F16, 512}));
}

TEST(GpuMatmulMore, LinearMatchesCpu) {
  SL_REQUIRE_GPU();
  for (DType dt : {DType::F32, DType::BF16}) {
    Tensor x = test::randn({3, 37, 129}, 1, dt, kGpu), w = test::randn({67, 129}, 2, dt, kGpu);
    Tensor b = test::randn({67}, 3, dt, kGpu);
    Tensor y = kernels::linear(x, w, b);
    Tensor ref =
        kernels::linear(x.to(Device::cpu()).to(DType::F64), w.to(Device::cpu()).to(DType::F64),
                        b.to(Device::cpu()).to(DType::F64));
    EXPECT_TRUE(AllClose(y, ref, Tol{dt, 129})) << dtype_name(dt);
  }
}

class GpuMatmulBackward : public ::testing::TestWithParam<Param> {};

TEST_P(GpuMatmulBackward, MatchesCpu) {
  SL_REQUIRE_GPU();
  auto [ta, tb, mode] = GetParam();
  Shape s{37, 61, 19};
  int64_t batch = mode == Mode::k2D ? 1 : 3;
  auto cpu64 = [](const Tensor& t) { return t.to(Device::cpu()).to(DType::F64); };
  for (DType dt : {DType::F32, DType::BF16}) {
    Operands o = make_operands(s, ta, tb, false, mode, dt, kGpu, 31);
    Dims cs = mode == Mode::k2D ? Dims{s.m, s.n} : Dims{batch, s.m, s.n};
    Tensor dc = test::randn(cs, 33, dt, kGpu);
    std::vector<Tensor> g = kernels::matmul_backward(o.a, o.b, dc, ta, tb, true, true);
    std::vector<Tensor> r =
        kernels::matmul_backward(cpu64(o.a), cpu64(o.b), cpu64(dc), ta, tb, true, true);
    ASSERT_EQ(g[0].shape(), o.a.shape());
    ASSERT_EQ(g[1].shape(), o.b.shape());
    EXPECT_EQ(g[0].dtype(), dt);
    EXPECT_EQ(g[1].dtype(), dt);
    // da sums over N (and over the batch when A is shared), db over M (and the batch).
    EXPECT_TRUE(AllClose(g[0], r[0], Tol{dt, s.n * batch})) << "da " << dtype_name(dt);
    EXPECT_TRUE(AllClose(g[1], r[1], Tol{dt, s.m * batch})) << "db " << dtype_name(dt);
    Tensor gb = kernels::bias_backward(dc, dt);
    EXPECT_TRUE(AllClose(gb, kernels::bias_backward(cpu64(dc), DType::F64), Tol{dt, s.m * batch}))
        << "dbias " << dtype_name(dt);
  }
}

INSTANTIATE_TEST_SUITE_P(Sweep, GpuMatmulBackward, kSweep, param_name);

}  // namespace
}  // namespace sl
