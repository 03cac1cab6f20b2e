// Reductions (kernels/reduce.h): CPU sum/mean/max over every dim against explicit loops (exact on
// small integers), argmax tie and NaN rules, errors, and each CUDA path (warp rows, block rows,
// split rows, columns, split columns) against the CPU reference in f32 and bf16.
#include "kernels/reduce.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "tests/common/gpu.h"
#include "tests/common/tolerance.h"

namespace sl {
namespace {
using test::AllClose;
using test::AllEqual;
using test::Tol;

// Small integers: every sum below is exact in f32 and bf16 (|sum| <= 5 * 4 = 20 < 256).
Tensor small_ints(const Dims& shape, DType dt) {
  std::vector<float> v(size_t(shape.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(int((i * 7 + 3) % 9) - 4);
  return Tensor::from_vector(v, shape).to(dt);
}

TEST(Reduce, CpuSumMeanMaxEveryDimMatchLoops) {
  const int64_t A = 3, B = 4, C = 5;
  for (DType dt : {DType::F32, DType::BF16, DType::F64}) {
    Tensor x = small_ints({A, B, C}, dt);
    std::vector<float> xv = x.to(DType::F32).to_vector<float>();
    auto at = [&](int64_t i, int64_t j, int64_t k) { return xv[size_t((i * B + j) * C + k)]; };
    for (int d = 0; d < 3; ++d) {
      int64_t n[3] = {A, B, C};
      Dims out_shape;
      for (int e = 0; e < 3; ++e)
        if (e != d) out_shape.push_back(n[e]);
      std::vector<double> es, em, ex;
      std::vector<int64_t> ei;
      for (int64_t p = 0; p < n[d == 0 ? 1 : 0]; ++p)
        for (int64_t q = 0; q < n[d == 2 ? 1 : 2]; ++q) {
          double s = 0, m = -1e30;
          int64_t arg = -1;
          for (int64_t r = 0; r < n[d]; ++r) {
            double v = d == 0 ? at(r, p, q) : d == 1 ? at(p, r, q) : at(p, q, r);
            s += v;
            if (v > m) m = v, arg = r;
          }
          es.push_back(s);
          em.push_back(s / double(n[d]));
          ex.push_back(m);
          ei.push_back(arg);
        }
      EXPECT_TRUE(AllEqual(kernels::sum(x, d), Tensor::from_vector(es, out_shape))) << d;
      EXPECT_TRUE(AllClose(kernels::mean(x, d), Tensor::from_vector(em, out_shape), Tol{dt}));
      auto [mv, mi] = kernels::max(x, d);
      EXPECT_TRUE(AllEqual(mv, Tensor::from_vector(ex, out_shape))) << d;
      EXPECT_TRUE(AllEqual(mi, Tensor::from_vector(ei, out_shape))) << d;
      Dims keep = x.shape();
      keep[d] = 1;
      EXPECT_EQ(kernels::sum(x, d, true).shape(), keep);
      EXPECT_EQ(kernels::max(x, d - 3, true).second.shape(), keep);  // negative dims
    }
  }
}

TEST(Reduce, SumAllMeanAllAndStridedInput) {
  Tensor x = small_ints({6, 7}, DType::F32);
  std::vector<float> xv = x.to_vector<float>();
  float total = 0;
  for (float v : xv) total += v;
  Tensor s = kernels::sum_all(x);
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.item(), total);
  EXPECT_NEAR(kernels::mean_all(x).item(), total / 42.0, 1e-6);
  Tensor xt = x.transpose(0, 1);  // [7, 6], non-contiguous
  EXPECT_TRUE(AllEqual(kernels::sum(xt, 1), kernels::sum(x, 0)));
  EXPECT_TRUE(AllEqual(kernels::max(xt, 0).second, kernels::max(x, 1).second));
}

TEST(Reduce, MaxTiesTakeFirstIndexAndNaNWins) {
  Tensor x = Tensor::from_vector<float>({1, 3, 3, 2, /**/ 1, NAN, 5, NAN}, {2, 4});
  auto [v, i] = kernels::max(x, 1);
  std::vector<int64_t> iv = i.to_vector<int64_t>();
  EXPECT_EQ(iv[0], 1);
  EXPECT_EQ(iv[1], 1);
  EXPECT_EQ(v.to_vector<float>()[0], 3.f);
  EXPECT_TRUE(std::isnan(v.to_vector<float>()[1]));
  // Backward routes each gradient to its argmax only.
  Tensor dx =
      kernels::max_backward(Tensor::from_vector<float>({10, 20}, {2}), i, x.shape(), 1, false);
  EXPECT_TRUE(AllEqual(dx, Tensor::from_vector<float>({0, 10, 0, 0, 0, 20, 0, 0}, {2, 4})));
}

TEST(Reduce, BackwardShapes) {
  Tensor dy = Tensor::from_vector<float>({1, 2, 3}, {3});
  Tensor g = kernels::mean_backward(dy, {3, 4}, 1, false);
  EXPECT_TRUE(AllEqual(
      g, Tensor::from_vector<float>(
             {.25f, .25f, .25f, .25f, .5f, .5f, .5f, .5f, .75f, .75f, .75f, .75f}, {3, 4})));
  EXPECT_TRUE(AllEqual(kernels::sum_backward(dy.view({3, 1}), {3, 2}, -1, true),
                       Tensor::from_vector<float>({1, 1, 2, 2, 3, 3}, {3, 2})));
  EXPECT_THROW(kernels::sum_backward(dy, {4, 4}, 1, false), Error);
}

TEST(Reduce, RejectsBadInput) {
  Tensor x = Tensor::zeros({3, 4}, DType::F32);
  for (const char* op : {"sum", "max"}) {
    try {
      if (std::string(op) == "sum") {
        kernels::sum(x, 2);
      } else {
        kernels::max(Tensor::zeros({3, 0}, DType::F32), 1);
      }
      FAIL() << "no error for " << op;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(op), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(kernels::mean(Tensor::zeros({3}, DType::I64), 0), Error);
}

// ---- GPU against the CPU reference ----

DType ref_dtype(DType dt) {
  return dt == DType::F32 ? DType::F64 : DType::F32;
}

struct ReduceCase {
  Dims shape;
  int dim;
  const char* path;
};
// Each CUDA path of Note [reduction kernels], with odd sizes.
const ReduceCase kGpuCases[] = {
    {{37, 129}, 1, "rows, warp"},
    {{3, 1}, 1, "rows of one"},
    {{5, 1024}, -1, "rows, warp, longest"},
    {{9, 5000}, 1, "rows, block, packed"},
    {{7, 5001}, 1, "rows, block, unaligned"},
    {{2, 300001}, 1, "rows, split"},
    {{3, 37, 129}, 1, "columns"},
    {{129, 37}, 0, "columns, one outer"},
    {{1, 70001, 33}, 1, "columns, split"},
    {{20000, 3}, 0, "columns, split, narrow"},
    {{1000, 4096}, 0, "columns, 16-byte packs, clustered"},
    {{2, 600, 256}, 1, "columns, 16-byte packs, batched"},
    {{6000, 64}, 0, "columns, 16-byte packs, tall"},
};

class ReduceGpu : public ::testing::TestWithParam<DType> {};

TEST_P(ReduceGpu, SumMeanMaxEveryPath) {
  SL_REQUIRE_GPU();
  DType dt = GetParam();
  uint64_t seed = 100;
  for (const ReduceCase& c : kGpuCases) {
    Tensor x = test::randn(c.shape, seed++, dt, Device::cuda(0));
    Tensor xr = x.to(Device::cpu()).to(ref_dtype(dt));
    int64_t r = c.shape[c.dim < 0 ? c.shape.n + c.dim : c.dim];
    EXPECT_TRUE(AllClose(kernels::sum(x, c.dim), kernels::sum(xr, c.dim), Tol{dt, r})) << c.path;
    EXPECT_TRUE(AllClose(kernels::mean(x, c.dim, true), kernels::mean(xr, c.dim, true), Tol{dt, r}))
        << c.path;
    // Max is exact: compare with the CPU on the same dtype.
    auto [v, i] = kernels::max(x, c.dim);
    auto [vc, ic] = kernels::max(x.to(Device::cpu()), c.dim);
    EXPECT_TRUE(AllEqual(v, vc)) << c.path;
    EXPECT_TRUE(AllEqual(i, ic)) << c.path;
    Tensor dy = test::randn(v.shape(), seed++, dt, Device::cuda(0));
    EXPECT_TRUE(AllEqual(kernels::max_backward(dy, i, c.shape, c.dim, false),
                         kernels::max_backward(dy.to(Device::cpu()), ic, c.shape, c.dim, false)))
        << c.path;
  }
}

TEST_P(ReduceGpu, MaxTiesAndAllReductions) {
  SL_REQUIRE_GPU();
  DType dt = GetParam();
  // Many ties: small integers; the first index must win on every path.
  for (Dims shape : {Dims{33, 700}, Dims{5, 3000}, Dims{4, 2000, 40}}) {
    Tensor x = small_ints(shape, dt).to(Device::cuda(0));
    for (int d = 0; d < shape.n; ++d) {
      EXPECT_TRUE(AllEqual(kernels::max(x, d).second, kernels::max(x.to(Device::cpu()), d).second))
          << shape.str() << " dim " << d;
      EXPECT_TRUE(AllEqual(kernels::sum(x, d), kernels::sum(x.to(Device::cpu()), d)));
    }
  }
  Tensor x = test::randn({3, 1000, 333}, 7, dt, Device::cuda(0));
  Tensor xr = x.to(Device::cpu()).to(ref_dtype(dt));
  EXPECT_TRUE(AllClose(kernels::sum_all(x), kernels::sum_all(xr), Tol{dt, x.numel()}));
  EXPECT_TRUE(AllClose(kernels::mean_all(x), kernels::mean_all(xr), Tol{dt, x.numel()}));
  Tensor xt = x.transpose(0, 2);  // strided input
  EXPECT_TRUE(AllClose(kernels::sum(xt, 1), kernels::sum(xr.transpose(0, 2), 1), Tol{dt, 1000}));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, ReduceGpu, ::testing::Values(DType::F32, DType::BF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace sl
