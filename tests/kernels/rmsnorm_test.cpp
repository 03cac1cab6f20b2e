// RMSNorm and gated RMSNorm: CPU against the formulas written out in f64, backward against
// gradcheck (one group and several), GPU against the CPU reference (f32 and bf16; vector, scalar
// and register-overflow paths), GPU dw determinism, and argument errors.
#include "kernels/rmsnorm.h"

#include <gtest/gtest.h>

#include <cmath>

#include "autograd/gradcheck.h"
#include "autograd/ops_nn.h"
#include "tests/common/gpu.h"
#include "tests/common/tolerance.h"

namespace sl {
namespace {
using test::AllClose;
using test::Tol;

const Device kGpu = Device::cuda(0);

// y = h / sqrt(mean_group(h^2) + eps) * w with h = x * silu(z) (or x), in f64.
Tensor naive(const Tensor& x, const Tensor* z, const Tensor& w, int64_t gs, double eps) {
  const int64_t c = x.size(-1), rows = x.numel() / c;
  std::vector<double> xv = x.to(DType::F64).contiguous().to_vector<double>();
  std::vector<double> zv = z ? z->to(DType::F64).contiguous().to_vector<double>()
                             : std::vector<double>();
  std::vector<double> wv = w.to(DType::F64).to_vector<double>(), y(xv.size());
  for (size_t i = 0; i < xv.size() && z; ++i) xv[i] *= zv[i] / (1 + std::exp(-zv[i]));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g0 = 0; g0 < c; g0 += gs) {
      double ss = 0;
      for (int64_t j = g0; j < g0 + gs; ++j) ss += xv[size_t(r * c + j)] * xv[size_t(r * c + j)];
      double rs = 1 / std::sqrt(ss / double(gs) + eps);
      for (int64_t j = g0; j < g0 + gs; ++j)
        y[size_t(r * c + j)] = xv[size_t(r * c + j)] * rs * wv[size_t(j)];
    }
  }
  return Tensor::from_vector(y, x.shape());
}

TEST(RmsNorm, CpuForwardMatchesFormula) {
  Tensor x = test::randn({3, 5, 24}, 1), w = test::randn({24}, 2);
  kernels::RmsNormResult r = kernels::rmsnorm_forward(x, w, 1e-5);
  EXPECT_TRUE(AllClose(r.y, naive(x, nullptr, w, 24, 1e-5), Tol{DType::F32, 24}));
  EXPECT_EQ(r.rstd.shape(), Dims({3, 5}));
}

TEST(GatedRmsNorm, CpuForwardMatchesFormula) {
  Tensor x = test::randn({7, 24}, 3), z = test::randn({7, 24}, 4), w = test::randn({24}, 5);
  for (int64_t gs : {24, 6}) {
    kernels::RmsNormResult r = kernels::gated_rmsnorm_forward(x, z, w, gs, 1e-6);
    EXPECT_TRUE(AllClose(r.y, naive(x, &z, w, gs, 1e-6), Tol{DType::F32, gs})) << gs;
    EXPECT_EQ(r.rstd.shape(), Dims({7, 24 / gs}));
  }
}

TEST(RmsNorm, GradcheckF64) {
  ag::Var x(test::randn({3, 4, 10}, 6, DType::F64), true, "x");
  ag::Var w(test::randn({10}, 7, DType::F64), true, "w");
  auto res = ag::gradcheck(
      [](const std::vector<ag::Var>& in) { return ag::rmsnorm(in[0], in[1], 1e-5); }, {x, w});
  EXPECT_TRUE(res.ok) << res.message;
}

TEST(GatedRmsNorm, GradcheckF64OneAndSeveralGroups) {
  for (int64_t gs : {12, 4}) {
    ag::Var x(test::randn({5, 12}, 8, DType::F64), true, "x");
    ag::Var z(test::randn({5, 12}, 9, DType::F64, Device::cpu(), 2.0), true, "z");
    ag::Var w(test::randn({12}, 10, DType::F64), true, "w");
    auto res = ag::gradcheck(
        [gs](const std::vector<ag::Var>& in) {
          return ag::gated_rmsnorm(in[0], in[1], in[2], gs, 1e-5);
        },
        {x, z, w});
    EXPECT_TRUE(res.ok) << "group size " << gs << res.message;
  }
}

TEST(RmsNorm, BadArgumentsThrow) {
  Tensor x = test::randn({4, 10}, 11);
  try {
    kernels::rmsnorm_forward(x, test::randn({9}, 12));
    ADD_FAILURE() << "no error for w of the wrong size";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rmsnorm"), std::string::npos) << e.what();
  }
  try {
    kernels::gated_rmsnorm_forward(x, x, test::randn({10}, 13), 3);
    ADD_FAILURE() << "no error for a group size that does not divide C";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("gated_rmsnorm"), std::string::npos) << e.what();
  }
  EXPECT_THROW(kernels::gated_rmsnorm_forward(x, test::randn({4, 11}, 14), test::randn({10}, 15),
                                              5),
               Error);
  EXPECT_THROW(kernels::rmsnorm_forward(x, test::randn({10}, 16, DType::F64)), Error);
}

struct GpuCase {
  DType dtype;
  int64_t rows, c, gs;  // gs == 0: plain RMSNorm
};

class RmsNormGpu : public ::testing::TestWithParam<GpuCase> {};

TEST_P(RmsNormGpu, ForwardBackwardMatchCpuAndDwIsDeterministic) {
  SL_REQUIRE_GPU();
  const GpuCase k = GetParam();
  const bool gated = k.gs > 0;
  const int64_t gs = gated ? k.gs : k.c;
  const uint64_t s = uint64_t(k.c * 10 + k.gs);
  Tensor x = test::randn({k.rows, k.c}, s, k.dtype), z = test::randn({k.rows, k.c}, s + 1, k.dtype);
  Tensor w = test::rand({k.c}, s + 2, 0.5, 1.5, k.dtype), dy = test::randn({k.rows, k.c}, s + 3, k.dtype);
  auto fwd = [&](const Device& d) {
    return gated ? kernels::gated_rmsnorm_forward(x.to(d), z.to(d), w.to(d), gs)
                 : kernels::rmsnorm_forward(x.to(d), w.to(d));
  };
  auto bwd = [&](const Device& d, const Tensor& rstd) {
    return gated ? kernels::gated_rmsnorm_backward(dy.to(d), x.to(d), z.to(d), w.to(d), rstd, gs)
                 : kernels::rmsnorm_backward(dy.to(d), x.to(d), w.to(d), rstd);
  };
  kernels::RmsNormResult ref = fwd(Device::cpu()), out = fwd(kGpu);
  kernels::RmsNormGrads gref = bwd(Device::cpu(), ref.rstd), gout = bwd(kGpu, out.rstd);
  if (k.dtype == DType::F32) {
    // f32: the literal rule against an f64 reference, the CPU f32 run being the naive one. The
    // gradients depend on C-long statistics and on cancellations no closed-form bound sees.
    auto f64 = [](const Tensor& t) { return t.to(DType::F64); };
    kernels::RmsNormResult r64 = gated
                                     ? kernels::gated_rmsnorm_forward(f64(x), f64(z), f64(w), gs)
                                     : kernels::rmsnorm_forward(f64(x), f64(w));
    kernels::RmsNormGrads g64 =
        gated ? kernels::gated_rmsnorm_backward(f64(dy), f64(x), f64(z), f64(w), r64.rstd, gs)
              : kernels::rmsnorm_backward(f64(dy), f64(x), f64(w), r64.rstd);
    EXPECT_TRUE(test::AllCloseToNaive(out.rstd, ref.rstd, r64.rstd, DType::F32));
    EXPECT_TRUE(test::AllCloseToNaive(out.y, ref.y, r64.y, DType::F32));
    EXPECT_TRUE(test::AllCloseToNaive(gout.dx, gref.dx, g64.dx, DType::F32)) << "dx";
    if (gated) {
      EXPECT_TRUE(test::AllCloseToNaive(gout.dz, gref.dz, g64.dz, DType::F32)) << "dz";
    }
    EXPECT_TRUE(test::AllCloseToNaive(gout.dw, gref.dw, g64.dw, DType::F32)) << "dw";
  } else {
    EXPECT_TRUE(AllClose(out.rstd, ref.rstd, Tol{DType::F32, gs}));
    EXPECT_TRUE(AllClose(out.y, ref.y, Tol{k.dtype, gs}));
    EXPECT_TRUE(AllClose(gout.dx, gref.dx, Tol{k.dtype, gs}));
    if (gated) {
      EXPECT_TRUE(AllClose(gout.dz, gref.dz, Tol{k.dtype, gs}));
    }
    EXPECT_TRUE(AllClose(gout.dw, gref.dw, Tol{k.dtype, k.rows}));
  }
  kernels::RmsNormGrads again = bwd(kGpu, out.rstd);
  EXPECT_TRUE(test::AllEqual(again.dw, gout.dw));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, RmsNormGpu,
    ::testing::Values(GpuCase{DType::F32, 37, 129, 0}, GpuCase{DType::BF16, 37, 129, 0},
                      GpuCase{DType::F32, 37, 1000, 0}, GpuCase{DType::BF16, 37, 1000, 0},
                      GpuCase{DType::BF16, 300, 4096, 0}, GpuCase{DType::F32, 5, 20000, 0},
                      GpuCase{DType::BF16, 3, 5001, 0}, GpuCase{DType::F32, 37, 129, 43},
                      GpuCase{DType::BF16, 37, 1000, 250}, GpuCase{DType::BF16, 64, 4096, 1024},
                      GpuCase{DType::F32, 19, 4096, 4096}));

}  // namespace
}  // namespace sl
