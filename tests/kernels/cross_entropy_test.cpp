// Fused cross-entropy: CPU against an explicit f64 log-softmax (ignored rows, an all-ignored
// batch, sum reduction), backward against gradcheck, GPU against the CPU reference (f32 and bf16,
// vector and scalar row paths), and the errors for bad targets and shapes.
#include "kernels/cross_entropy.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "autograd/gradcheck.h"
#include "autograd/ops_nn.h"
#include "tests/common/gpu.h"
#include "tests/common/tolerance.h"

namespace sl {
namespace {
using kernels::CeReduction;
using test::AllClose;
using test::Tol;

const Device kGpu = Device::cuda(0);

// Targets in [0, v), with every `ignore_every`-th row set to -100 (0: none ignored).
Tensor make_targets(int64_t n, int64_t v, int ignore_every, uint64_t seed,
                    DType dt = DType::I64) {
  std::mt19937_64 rng(seed);
  std::vector<int64_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    t[size_t(i)] = (ignore_every > 0 && i % ignore_every == 1) ? -100 : int64_t(rng() % v);
  return Tensor::from_vector(t, {n}).to(dt);
}

struct Expected {
  double loss;
  std::vector<double> lse;
  Tensor dlogits;  // f64, for dloss = 1
};

// Explicit log-softmax in f64.
Expected expected(const Tensor& logits, const Tensor& targets, CeReduction red) {
  int64_t n = logits.size(0), v = logits.size(1);
  std::vector<double> x = logits.to(DType::F64).to_vector<double>();
  std::vector<int64_t> t = targets.to(DType::I64).to_vector<int64_t>();
  Expected e{0, std::vector<double>(size_t(n)), Tensor()};
  std::vector<double> d(size_t(n * v), 0.0);
  int64_t valid = 0;
  for (int64_t r = 0; r < n; ++r) {
    double m = -INFINITY, s = 0;
    for (int64_t j = 0; j < v; ++j) m = std::max(m, x[size_t(r * v + j)]);
    for (int64_t j = 0; j < v; ++j) s += std::exp(x[size_t(r * v + j)] - m);
    e.lse[size_t(r)] = m + std::log(s);
    if (t[size_t(r)] == -100) continue;
    ++valid;
    e.loss += e.lse[size_t(r)] - x[size_t(r * v + t[size_t(r)])];
  }
  double scale = red == CeReduction::kMean ? 1.0 / double(std::max<int64_t>(valid, 1)) : 1.0;
  e.loss *= scale;
  for (int64_t r = 0; r < n; ++r) {
    if (t[size_t(r)] == -100) continue;
    for (int64_t j = 0; j < v; ++j)
      d[size_t(r * v + j)] = (std::exp(x[size_t(r * v + j)] - e.lse[size_t(r)]) -
                              (j == t[size_t(r)] ? 1.0 : 0.0)) * scale;
  }
  e.dlogits = Tensor::from_vector(d, {n, v});
  return e;
}

TEST(CrossEntropy, CpuMatchesExplicitLogSoftmax) {
  for (CeReduction red : {CeReduction::kMean, CeReduction::kSum}) {
    const int64_t n = 13, v = 37;
    Tensor logits = test::randn({n, v}, 1, DType::F32, Device::cpu(), 3.0);
    Tensor targets = make_targets(n, v, 4, 2, DType::I32);
    Expected e = expected(logits, targets, red);
    kernels::CrossEntropyResult r = kernels::cross_entropy_forward(logits, targets, -100, red);
    EXPECT_TRUE(AllClose(r.loss, Tensor::from_vector(std::vector<double>{e.loss}, {}),
                         Tol{DType::F32, n * v}));
    EXPECT_TRUE(AllClose(r.lse, Tensor::from_vector(e.lse, {n}), Tol{DType::F32, v}));
    EXPECT_EQ(r.n_valid.item(), double(n - 3));
    Tensor dl = kernels::cross_entropy_backward(logits, targets, r.lse, r.n_valid,
                                                Tensor::full({}, 1.0, DType::F32), -100, red);
    EXPECT_TRUE(AllClose(dl, e.dlogits, Tol{DType::F32, v}));
  }
}

TEST(CrossEntropy, AllIgnoredGivesZeroLossAndZeroGrad) {
  const int64_t n = 5, v = 9;
  Tensor logits = test::randn({n, v}, 3);
  Tensor targets = Tensor::full({n}, -7, DType::I64);
  kernels::CrossEntropyResult r = kernels::cross_entropy_forward(logits, targets, -7);
  EXPECT_EQ(r.loss.item(), 0.0);
  EXPECT_EQ(r.n_valid.item(), 0.0);
  Tensor dl = kernels::cross_entropy_backward(logits, targets, r.lse, r.n_valid,
                                              Tensor::full({}, 1.0, DType::F32), -7);
  EXPECT_TRUE(test::AllEqual(dl, Tensor::zeros({n, v}, DType::F32)));
}

TEST(CrossEntropy, GradcheckF64WithIgnoredRows) {
  const int64_t n = 6, v = 7;
  for (CeReduction red : {CeReduction::kMean, CeReduction::kSum}) {
    ag::Var logits(test::randn({n, v}, 4, DType::F64, Device::cpu(), 2.0), true, "logits");
    Tensor targets = make_targets(n, v, 3, 5);
    auto res = ag::gradcheck(
        [&](const std::vector<ag::Var>& in) {
          return ag::cross_entropy(in[0], targets, -100, red);
        },
        {logits});
    EXPECT_TRUE(res.ok) << res.message;
  }
}

TEST(CrossEntropy, BadTargetsAndShapesThrow) {
  Tensor logits = test::randn({4, 10}, 6);
  Tensor bad = Tensor::from_vector(std::vector<int64_t>{1, 2, 10, -100}, {4});
  try {
    kernels::cross_entropy_forward(logits, bad);
    ADD_FAILURE() << "no error for target 10 >= V";
  } catch (const Error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("cross_entropy"), std::string::npos) << what;
    EXPECT_NE(what.find("row 2"), std::string::npos) << what;
  }
  Tensor neg = Tensor::from_vector(std::vector<int64_t>{1, -1, 0, 0}, {4});
  EXPECT_THROW(kernels::cross_entropy_forward(logits, neg), Error);
  Tensor short_targets = Tensor::from_vector(std::vector<int64_t>{1, 2, 3}, {3});
  try {
    kernels::cross_entropy_forward(logits, short_targets);
    ADD_FAILURE() << "no error for mismatched targets";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cross_entropy"), std::string::npos) << e.what();
  }
  EXPECT_THROW(kernels::cross_entropy_forward(logits, short_targets.to(DType::F32)), Error);
}

struct GpuCase {
  DType dtype;
  int64_t n, v;
  int ignore_every;
};

class CrossEntropyGpu : public ::testing::TestWithParam<GpuCase> {};

TEST_P(CrossEntropyGpu, MatchesCpu) {
  SL_REQUIRE_GPU();
  const GpuCase c = GetParam();
  Tensor logits = test::randn({c.n, c.v}, 7 + uint64_t(c.v), c.dtype, Device::cpu(), 4.0);
  Tensor targets = make_targets(c.n, c.v, c.ignore_every, 8, DType::I32);
  kernels::CrossEntropyResult ref = kernels::cross_entropy_forward(logits, targets);
  kernels::CrossEntropyResult out =
      kernels::cross_entropy_forward(logits.to(kGpu), targets.to(kGpu));
  EXPECT_TRUE(AllClose(out.lse, ref.lse, Tol{DType::F32, c.v}));
  EXPECT_TRUE(AllClose(out.loss, ref.loss, Tol{DType::F32, c.n * c.v}));
  EXPECT_EQ(out.n_valid.item(), ref.n_valid.item());
  Tensor dloss = Tensor::full({}, 0.75, DType::F32);
  Tensor dref = kernels::cross_entropy_backward(logits, targets, ref.lse, ref.n_valid, dloss);
  Tensor dout = kernels::cross_entropy_backward(logits.to(kGpu), targets.to(kGpu), out.lse,
                                                out.n_valid, dloss.to(kGpu));
  EXPECT_TRUE(AllClose(dout, dref, Tol{c.dtype, c.v}));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CrossEntropyGpu,
    ::testing::Values(GpuCase{DType::F32, 37, 1003, 5}, GpuCase{DType::BF16, 37, 1003, 5},
                      GpuCase{DType::F32, 21, 4096, 3}, GpuCase{DType::BF16, 21, 32000, 0},
                      GpuCase{DType::BF16, 3, 131072, 2}, GpuCase{DType::F32, 4, 1, 0}));

TEST(CrossEntropyGpuErrors, OutOfRangeTargetAndAllIgnored) {
  SL_REQUIRE_GPU();
  Tensor logits = test::randn({5, 64}, 9, DType::BF16, kGpu);
  Tensor bad = Tensor::from_vector(std::vector<int64_t>{1, 2, 3, 64, -100}, {5}).to(kGpu);
  try {
    kernels::cross_entropy_forward(logits, bad);
    ADD_FAILURE() << "no error for target 64 >= V on the GPU";
  } catch (const Error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("row 3"), std::string::npos) << what;
    EXPECT_NE(what.find("64"), std::string::npos) << what;
  }
  Tensor ignored = Tensor::full({5}, -100, DType::I64, kGpu);
  kernels::CrossEntropyResult r = kernels::cross_entropy_forward(logits, ignored);
  EXPECT_EQ(r.loss.item(), 0.0);
  Tensor dl = kernels::cross_entropy_backward(logits, ignored, r.lse, r.n_valid,
                                              Tensor::full({}, 1.0, DType::F32, kGpu));
  EXPECT_TRUE(test::AllEqual(dl, Tensor::zeros({5, 64}, DType::BF16)));
}

}  // namespace
}  // namespace sl
