// concat, split, gather and scatter_add: CPU against loops over host vectors, backward against
// gradcheck, GPU against the CPU reference (bit for bit: gather moves values, and scatter_add sums
// in the same fixed order on both devices, Note [deterministic scatter_add]).
#include "kernels/shape_ops.h"

#include <gtest/gtest.h>

#include <random>

#include "autograd/gradcheck.h"
#include "autograd/ops_shape.h"
#include "tests/common/gpu.h"
#include "tests/common/tolerance.h"

namespace sl {
namespace {
using test::AllClose;
using test::AllEqual;
using test::Tol;

const Device kGpu = Device::cuda(0);

// Row-major coordinates of a linear position.
std::vector<int64_t> coords_of(int64_t linear, const Dims& shape) {
  std::vector<int64_t> c(size_t(shape.n));
  for (int i = shape.n - 1; i >= 0; --i) {
    c[size_t(i)] = linear % shape[i];
    linear /= shape[i];
  }
  return c;
}
int64_t linear_of(const std::vector<int64_t>& c, const Dims& shape) {
  int64_t l = 0;
  for (int i = 0; i < shape.n; ++i) l = l * shape[i] + c[size_t(i)];
  return l;
}

// Index of `shape` with values in [0, range), i64 or i32.
Tensor random_index(const Dims& shape, int64_t range, uint64_t seed, DType dt = DType::I64) {
  std::mt19937_64 rng(seed);
  std::vector<int64_t> v(size_t(shape.numel()));
  for (auto& e : v) e = int64_t(rng() % uint64_t(range));
  return Tensor::from_vector(v, shape).to(dt);
}

// Small integers: sums of a few of them are exact in every float dtype.
Tensor small_ints(const Dims& shape, uint64_t seed, DType dt = DType::F32) {
  std::mt19937_64 rng(seed);
  std::vector<float> v(size_t(shape.numel()));
  for (auto& e : v) e = float(int(rng() % 17) - 8);
  return Tensor::from_vector(v, shape).to(dt);
}

Tensor gather_by_loops(const Tensor& x, int dim, const Tensor& index) {
  std::vector<double> xv = x.to(DType::F64).contiguous().to_vector<double>();
  std::vector<int64_t> iv = index.to(DType::I64).contiguous().to_vector<int64_t>();
  std::vector<double> out(iv.size());
  for (size_t p = 0; p < iv.size(); ++p) {
    std::vector<int64_t> c = coords_of(int64_t(p), index.shape());
    c[size_t(dim)] = iv[p];
    out[p] = xv[size_t(linear_of(c, x.shape()))];
  }
  return Tensor::from_vector(out, index.shape());
}

Tensor scatter_add_by_loops(const Tensor& dst, int dim, const Tensor& index, const Tensor& src) {
  std::vector<double> dv = dst.to(DType::F64).contiguous().to_vector<double>();
  std::vector<double> sv = src.to(DType::F64).contiguous().to_vector<double>();
  std::vector<int64_t> iv = index.to(DType::I64).contiguous().to_vector<int64_t>();
  for (size_t p = 0; p < iv.size(); ++p) {
    std::vector<int64_t> c = coords_of(int64_t(p), index.shape());
    double s = sv[size_t(linear_of(c, src.shape()))];
    c[size_t(dim)] = iv[p];
    dv[size_t(linear_of(c, dst.shape()))] += s;
  }
  return Tensor::from_vector(dv, dst.shape());
}

template <class F>
void expect_error_naming(F&& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected an sl::Error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

// ---- concat and split ----

TEST(Concat, MatchesPiecesAlongEveryDim) {
  for (int dim = 0; dim < 3; ++dim) {
    Dims a{2, 3, 4}, b{2, 3, 4}, c{2, 3, 4};
    a[dim] = 1, b[dim] = 3, c[dim] = 2;
    std::vector<Tensor> xs = {test::randn(a, 1), test::randn(b, 2), test::randn(c, 3)};
    Tensor out = kernels::concat(xs, dim - 3);  // negative dims wrap
    Dims want{2, 3, 4};
    want[dim] = 6;
    ASSERT_EQ(out.shape(), want);
    std::vector<float> ov = out.to_vector<float>();
    for (int64_t p = 0; p < out.numel(); ++p) {
      std::vector<int64_t> cd = coords_of(p, out.shape());
      size_t piece = 0;
      while (cd[size_t(dim)] >= xs[piece].size(dim)) cd[size_t(dim)] -= xs[piece++].size(dim);
      ASSERT_EQ(ov[size_t(p)], xs[piece].to_vector<float>()[size_t(linear_of(cd, xs[piece].shape()))])
          << "dim " << dim << " position " << p;
    }
  }
}

TEST(Concat, RejectsMismatchedInputs) {
  Tensor a = test::randn({2, 3}, 1), b = test::randn({3, 3}, 2);
  expect_error_naming([&] { kernels::concat({a, b}, 1); }, "concat");
  expect_error_naming([&] { kernels::concat({a, a.to(DType::BF16)}, 0); }, "concat");
  EXPECT_EQ(kernels::concat({a, b}, 0).shape(), Dims({5, 3}));
}

TEST(Split, ReturnsViewsOfTheInput) {
  Tensor x = test::randn({4, 9}, 5);
  std::vector<Tensor> parts = kernels::split(x, {2, 0, 7}, 1);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[0].shape(), Dims({4, 2}));
  EXPECT_EQ(parts[1].shape(), Dims({4, 0}));
  EXPECT_EQ(parts[2].shape(), Dims({4, 7}));
  for (const Tensor& p : parts) EXPECT_EQ(p.storage(), x.storage());
  EXPECT_EQ(parts[2].offset(), x.offset() + 2);
  EXPECT_TRUE(AllEqual(kernels::concat(parts, 1), x));
  expect_error_naming([&] { kernels::split(x, {2, 6}, 1); }, "split");
}

// ---- gather and scatter_add, CPU ----

struct AxisCase {
  int dim;
  DType index_dtype;
};
class GatherScatter : public ::testing::TestWithParam<AxisCase> {};

TEST_P(GatherScatter, GatherMatchesLoops) {
  auto [dim, idt] = GetParam();
  Tensor x = test::randn({5, 6, 7}, 10 + dim);
  // index smaller than x in the other dims, larger along dim (repeats are allowed).
  Dims ishape{4, 5, 6};
  ishape[dim] = 9;
  Tensor index = random_index(ishape, x.size(dim), 20 + dim, idt);
  Tensor out = kernels::gather(x, dim, index);
  EXPECT_EQ(out.shape(), ishape);
  EXPECT_TRUE(AllEqual(out, gather_by_loops(x, dim, index).to(DType::F32)));
  // Strided x and index.
  Tensor xt = test::randn({7, 6, 5}, 30).transpose(0, 2);
  Tensor it = random_index({ishape[2], ishape[1], ishape[0]}, 5, 31, idt).transpose(0, 2);
  if (dim == 0) {
    EXPECT_TRUE(AllEqual(kernels::gather(xt, 0, it), gather_by_loops(xt, 0, it).to(DType::F32)));
  }
}

TEST_P(GatherScatter, ScatterAddMatchesLoops) {
  auto [dim, idt] = GetParam();
  Dims dshape{5, 6, 7};
  Dims ishape{4, 5, 6};
  ishape[dim] = 11;  // many contributions per destination
  Dims sshape{6, 5, 7};
  sshape[dim] = 12;  // src may be larger than index
  Tensor dst = small_ints(dshape, 40), src = small_ints(sshape, 41);
  Tensor index = random_index(ishape, dshape[dim], 42 + dim, idt);
  Tensor ref = scatter_add_by_loops(dst, dim, index, src);
  EXPECT_TRUE(AllEqual(kernels::scatter_add(dst, dim, index, src), ref.to(DType::F32)));
  Tensor d2 = dst.clone();
  kernels::scatter_add_(d2, dim, index, src);
  EXPECT_TRUE(AllEqual(d2, ref.to(DType::F32)));
  // bf16 holds these small integer sums exactly.
  EXPECT_TRUE(AllEqual(kernels::scatter_add(dst.to(DType::BF16), dim, index, src.to(DType::BF16)),
                       ref.to(DType::BF16)));
}

INSTANTIATE_TEST_SUITE_P(Dims, GatherScatter,
                         ::testing::Values(AxisCase{0, DType::I64}, AxisCase{1, DType::I32},
                                           AxisCase{2, DType::I64}, AxisCase{2, DType::I32}));

TEST(GatherScatterCpu, ScatterAddIntoStridedDst) {
  Tensor base = small_ints({7, 5}, 50);
  Tensor dst = base.transpose(0, 1);  // [5, 7], strides [1, 5]
  Tensor index = random_index({3, 7}, 5, 51);
  Tensor src = small_ints({3, 7}, 52);
  Tensor ref = scatter_add_by_loops(dst, 0, index, src).to(DType::F32);
  kernels::scatter_add_(dst, 0, index, src);
  EXPECT_TRUE(AllEqual(dst.contiguous(), ref));
  EXPECT_TRUE(AllEqual(base.transpose(0, 1).contiguous(), ref));
}

TEST(GatherScatterCpu, GatherMovesAnyDtypeExactly) {
  std::vector<int64_t> v = {10, -20, int64_t(1) << 40, 7, 8, 9};
  Tensor x = Tensor::from_vector(v, {2, 3});
  Tensor index = Tensor::from_vector(std::vector<int32_t>{2, 0, 1, 1}, {2, 2});
  std::vector<int64_t> out = kernels::gather(x, 1, index).to_vector<int64_t>();
  EXPECT_EQ(out, (std::vector<int64_t>{int64_t(1) << 40, 10, 8, 8}));
  Tensor xb = test::randn({4, 3}, 53, DType::BF16);
  Tensor ib = random_index({6, 3}, 4, 54);
  EXPECT_TRUE(AllEqual(kernels::gather(xb, 0, ib), gather_by_loops(xb, 0, ib).to(DType::BF16)));
}

TEST(GatherScatterCpu, OutOfRangeIndexNamesOpPositionAndValue) {
  Tensor x = test::randn({3, 4}, 60);
  Tensor index = Tensor::from_vector(std::vector<int64_t>{0, 1, 2, 3, 1, 4}, {2, 3});
  expect_error_naming([&] { kernels::gather(x, 1, index); }, "gather: index out of range: index[1, 2] = 4");
  Tensor neg = Tensor::from_vector(std::vector<int32_t>{0, -1}, {1, 2});
  expect_error_naming([&] { kernels::gather(x, 0, neg); }, "index[0, 1] = -1");
  Tensor dst = small_ints({3, 4}, 61), before = dst.clone();
  expect_error_naming([&] { kernels::scatter_add_(dst, 1, index, small_ints({2, 3}, 62)); },
                      "scatter_add: index out of range: index[1, 2] = 4");
  EXPECT_TRUE(AllEqual(dst, before));  // nothing written
  expect_error_naming([&] { kernels::gather(x, 0, index.to(DType::F32)); }, "gather");
  expect_error_naming([&] { kernels::gather(x, 0, random_index({4, 5}, 3, 63)); }, "gather");
  expect_error_naming([&] { kernels::scatter_add_(dst, 0, neg, small_ints({1, 2}, 64, DType::BF16)); },
                      "scatter_add");
}

// ---- backward (f64, central differences) ----

TEST(ShapeOpsGrad, ConcatNarrowSplit) {
  auto x = ag::Var(test::randn({2, 3, 4}, 70).to(DType::F64), true, "x");
  auto y = ag::Var(test::randn({2, 2, 4}, 71).to(DType::F64), true, "y");
  auto z = ag::Var(test::randn({2, 1, 4}, 72).to(DType::F64), false, "z");
  auto r = ag::gradcheck([](const std::vector<ag::Var>& v) { return ag::concat(v, 1); }, {x, y, z});
  EXPECT_TRUE(r.ok) << r.message;
  // split into three, put back in another order, with one piece used twice.
  auto r2 = ag::gradcheck(
      [](const std::vector<ag::Var>& v) {
        std::vector<ag::Var> p = ag::split(v[0], {1, 2, 1}, -1);
        return ag::concat({p[2], p[0], p[2], p[1]}, 2);
      },
      {x});
  EXPECT_TRUE(r2.ok) << r2.message;
}

TEST(ShapeOpsGrad, GatherAndScatterAdd) {
  auto x = ag::Var(test::randn({4, 5, 3}, 80).to(DType::F64), true, "x");
  Tensor index = random_index({3, 7, 2}, 5, 81);
  auto r = ag::gradcheck([&](const std::vector<ag::Var>& v) { return ag::gather(v[0], 1, index); },
                         {x});
  EXPECT_TRUE(r.ok) << r.message;
  auto dst = ag::Var(test::randn({4, 5, 3}, 82).to(DType::F64), true, "dst");
  auto src = ag::Var(test::randn({4, 8, 3}, 83).to(DType::F64), true, "src");  // > index in dim 1
  auto r2 = ag::gradcheck(
      [&](const std::vector<ag::Var>& v) { return ag::scatter_add(v[0], 1, index, v[1]); },
      {dst, src});
  EXPECT_TRUE(r2.ok) << r2.message;
}

// ---- GPU against the CPU reference ----

class ShapeOpsGpu : public ::testing::TestWithParam<DType> {};

TEST_P(ShapeOpsGpu, ConcatSplitGatherMatchCpu) {
  SL_REQUIRE_GPU();
  DType dt = GetParam();
  Tensor a = test::randn({3, 37, 129}, 90, dt), b = test::randn({3, 5, 129}, 91, dt);
  Tensor cpu = kernels::concat({a, b}, 1);
  Tensor gpu = kernels::concat({a.to(kGpu), b.to(kGpu)}, 1);
  EXPECT_TRUE(AllEqual(gpu, cpu));
  std::vector<Tensor> parts = kernels::split(gpu, {30, 12}, 1);
  EXPECT_TRUE(AllEqual(parts[1], cpu.slice(1, 30, 42).contiguous()));
  for (int dim = 0; dim < 3; ++dim) {
    Dims ishape{3, 37, 129};
    ishape[dim] = 50;
    for (DType idt : {DType::I32, DType::I64}) {
      Tensor index = random_index(ishape, a.size(dim), 92 + dim, idt);
      EXPECT_TRUE(AllEqual(kernels::gather(a.to(kGpu), dim, index.to(kGpu)),
                           kernels::gather(a, dim, index)))
          << "dim " << dim;
    }
  }
  // Strided source and index.
  Tensor it = random_index({3, 20, 129}, 37, 99).transpose(0, 2);
  EXPECT_TRUE(AllEqual(kernels::gather(a.to(kGpu).transpose(0, 2), 1, it.to(kGpu)),
                       kernels::gather(a.transpose(0, 2), 1, it)));
}

TEST_P(ShapeOpsGpu, ScatterAddMatchesCpuBitForBitAndRepeats) {
  SL_REQUIRE_GPU();
  DType dt = GetParam();
  for (int dim = 0; dim < 3; ++dim) {
    Dims dshape{3, 37, 129};
    Dims ishape{3, 37, 129};
    ishape[dim] = dim == 1 ? 301 : 7;  // dim 1: ~8 contributions per destination
    Tensor dst = test::randn(dshape, 100 + dim, dt);
    Tensor src = test::randn(ishape, 110 + dim, dt);
    Tensor index = random_index(ishape, dshape[dim], 120 + dim);
    Tensor cpu = kernels::scatter_add(dst, dim, index, src);
    Tensor g1 = kernels::scatter_add(dst.to(kGpu), dim, index.to(kGpu), src.to(kGpu));
    Tensor g2 = kernels::scatter_add(dst.to(kGpu), dim, index.to(kGpu), src.to(kGpu));
    EXPECT_TRUE(AllEqual(g1, cpu)) << "dim " << dim;
    EXPECT_TRUE(AllEqual(g1, g2)) << "dim " << dim;
    // And against an f64 sum under the tolerance rule (the CPU order is not special); no
    // destination here takes more than ~30 contributions.
    EXPECT_TRUE(AllClose(g1, scatter_add_by_loops(dst, dim, index, src), Tol{dt, 32}));
  }
  // Heavy runs: every position of 100k hits one of 3 rows.
  Tensor dst = test::randn({3, 17}, 130, dt), src = test::randn({100000, 17}, 131, dt);
  Tensor index = random_index({100000, 17}, 3, 132, DType::I32);
  EXPECT_TRUE(AllEqual(kernels::scatter_add(dst.to(kGpu), 0, index.to(kGpu), src.to(kGpu)),
                       kernels::scatter_add(dst, 0, index, src)));
}

TEST_P(ShapeOpsGpu, BackwardMatchesCpu) {
  SL_REQUIRE_GPU();
  DType dt = GetParam();
  Tensor xv = test::randn({3, 37, 129}, 140, dt), sv = test::randn({3, 40, 129}, 141, dt);
  Tensor index = random_index({3, 40, 129}, 37, 142);
  Tensor w = test::randn({3, 77, 129}, 143, dt);
  auto run = [&](Device dev) {
    ag::Var x(xv.to(dev), true), s(sv.to(dev), true);
    ag::Var g = ag::gather(x, 1, index.to(dev));                // [3, 40, 129]
    ag::Var sa = ag::scatter_add(x, 1, index.to(dev), s);       // [3, 37, 129]
    std::vector<ag::Var> parts = ag::split(sa, {30, 7}, 1);
    ag::Var out = ag::concat({parts[1], g, parts[0]}, 1);       // [3, 77, 129]
    out.backward(w.to(dev));
    return std::make_pair(x.grad(), s.grad());
  };
  auto [gx_cpu, gs_cpu] = run(Device::cpu());
  auto [gx_gpu, gs_gpu] = run(kGpu);
  // Each x gradient element sums at most a handful of bf16/f32 terms in the same order.
  EXPECT_TRUE(AllEqual(gx_gpu, gx_cpu));
  EXPECT_TRUE(AllEqual(gs_gpu, gs_cpu));
}

TEST(ShapeOpsGpuErrors, OutOfRangeIndexIsAnErrorAndDstIsUntouched) {
  SL_REQUIRE_GPU();
  Tensor x = test::randn({3, 4}, 150, DType::F32, kGpu);
  std::vector<int64_t> iv(3000, 1);
  iv[1234] = 9;
  iv[2000] = -3;
  Tensor index = Tensor::from_vector(iv, {3, 1000}).to(kGpu);
  expect_error_naming([&] { kernels::gather(x, 1, index); },
                      "gather: index out of range: index[1, 234] = 9");
  Tensor dst = test::randn({3, 4}, 151, DType::F32, kGpu), before = dst.clone();
  expect_error_naming(
      [&] { kernels::scatter_add_(dst, 1, index.to(DType::I32), test::randn({3, 1000}, 152, DType::F32, kGpu)); },
      "scatter_add: index out of range: index[1, 234] = 9");
  EXPECT_TRUE(AllEqual(dst, before));
  // The device is still usable after the error.
  EXPECT_TRUE(AllEqual(kernels::gather(x, 1, Tensor::zeros({3, 2}, DType::I64, kGpu)),
                       kernels::gather(x.to(Device::cpu()), 1, Tensor::zeros({3, 2}, DType::I64))));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, ShapeOpsGpu, ::testing::Values(DType::F32, DType::BF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace sl
