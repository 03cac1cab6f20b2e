// Causal depthwise conv1d + SiLU: CPU against explicit zero-padded loops in f64; an incoming
// state against prepending it to the input; packed documents against separate runs; GPU forward
// and backward against the CPU reference (f32 and bf16, odd shapes); errors for bad arguments.
// (Gradients against finite differences: tests/autograd/ops_ssd_test.cpp.)
#include "kernels/conv1d.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kernels/shape_ops.h"
#include "tests/common/gpu.h"
#include "tests/common/tolerance.h"

namespace sl {
namespace {
using test::AllClose;
using test::Tol;

const Device kGpu = Device::cuda(0);

// silu(bias + sum_k w[c, k] x[t - (W-1) + k]) with zeros before time 0, in f64.
Tensor by_loops(const Tensor& x, const Tensor& w, const Tensor& bias) {
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2), W = w.size(1);
  auto xv = x.to(DType::F64).to_vector<double>(), wv = w.to(DType::F64).to_vector<double>();
  auto bv = bias.to(DType::F64).to_vector<double>();
  std::vector<double> y(xv.size());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t c = 0; c < C; ++c) {
        double z = bv[size_t(c)];
        for (int64_t k = 0; k < W; ++k) {
          const int64_t u = t - (W - 1) + k;
          if (u >= 0) z += wv[size_t(c * W + k)] * xv[size_t((b * T + u) * C + c)];
        }
        y[size_t((b * T + t) * C + c)] = z / (1 + std::exp(-z));
      }
  return Tensor::from_vector(y, x.shape());
}

TEST(Conv1dCpu, MatchesZeroPaddedLoops) {
  for (int64_t w : {1, 2, 4}) {
    Tensor x = test::randn({2, 11, 7}, 1);
    Tensor wt = test::randn({7, w}, 2), bias = test::randn({7}, 3);
    Tensor y = kernels::causal_conv1d_silu_forward(x, wt, bias, Tensor(), Tensor());
    EXPECT_TRUE(AllClose(y, by_loops(x, wt, bias), Tol{DType::F32, w + 1})) << "W = " << w;
  }
}

// The incoming state acts as the W-1 inputs before time 0.
TEST(Conv1dCpu, StateEqualsPrependedInput) {
  const int64_t B = 2, T = 9, C = 5, W = 4;
  Tensor x = test::randn({B, T, C}, 4), wt = test::randn({C, W}, 5), bias = test::randn({C}, 6);
  Tensor state = test::randn({B, C, W - 1}, 7);
  Tensor y = kernels::causal_conv1d_silu_forward(x, wt, bias, state, Tensor());
  Tensor longer = kernels::concat({state.transpose(1, 2), x}, 1);
  Tensor ref = by_loops(longer, wt, bias).slice(1, W - 1, W - 1 + T);
  EXPECT_TRUE(AllClose(y, ref, Tol{DType::F32, W + 1}));
}

// On each document of a packed row, the output is that of the document alone (the first one
// reading the incoming state, the others zero-padded).
TEST(Conv1dCpu, PackedDocumentsEqualSeparateRuns) {
  const int64_t T = 20, C = 6, W = 4;
  Tensor x = test::randn({1, T, C}, 8), wt = test::randn({C, W}, 9), bias = test::randn({C}, 10);
  Tensor state = test::randn({1, C, W - 1}, 11);
  const int64_t starts[] = {0, 2, 3, 11, 20};
  std::vector<int32_t> ids(static_cast<size_t>(T));
  for (int d = 0; d < 4; ++d)
    for (int64_t t = starts[d]; t < starts[d + 1]; ++t) ids[size_t(t)] = 3 * d;
  Tensor seq = Tensor::from_vector(ids, {1, T});
  Tensor y = kernels::causal_conv1d_silu_forward(x, wt, bias, state, seq);
  for (int d = 0; d < 4; ++d) {
    const int64_t a = starts[d], e = starts[d + 1];
    Tensor alone = kernels::causal_conv1d_silu_forward(x.slice(1, a, e), wt, bias,
                                                       d == 0 ? state : Tensor(), Tensor());
    EXPECT_TRUE(AllClose(y.slice(1, a, e), alone, Tol{DType::F32, W + 1})) << "document " << d;
  }
  // Gradients do not cross documents either: dy on document 2 only leaves dx zero elsewhere.
  Tensor dy = Tensor::zeros({1, T, C}, DType::F32);
  dy.slice(1, 3, 11).copy_(test::randn({1, 8, C}, 12));
  kernels::Conv1dGrads g = kernels::causal_conv1d_silu_backward(dy, x, wt, bias, state, seq);
  EXPECT_TRUE(test::AllEqual(g.dx.slice(1, 0, 3), Tensor::zeros({1, 3, C}, DType::F32)));
  EXPECT_TRUE(test::AllEqual(g.dx.slice(1, 11, T), Tensor::zeros({1, T - 11, C}, DType::F32)));
  EXPECT_TRUE(test::AllEqual(g.d_init_state, Tensor::zeros({1, C, W - 1}, DType::F32)));
}

TEST(Conv1dCpu, BadArgumentsThrowNamingTheOp) {
  Tensor x = test::randn({2, 5, 3}, 13), wt = test::randn({3, 4}, 14), bias = test::randn({3}, 15);
  auto expect_error = [](auto&& f) {
    try {
      f();
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("causal_conv1d_silu"), std::string::npos) << e.what();
    }
  };
  expect_error([&] {
    kernels::causal_conv1d_silu_forward(x, test::randn({4, 4}, 1), bias, Tensor(), Tensor());
  });
  expect_error([&] {
    kernels::causal_conv1d_silu_forward(x, wt, bias.to(DType::F64), Tensor(), Tensor());
  });
  expect_error([&] {
    kernels::causal_conv1d_silu_forward(x, wt, bias, test::randn({2, 3, 4}, 1), Tensor());
  });
  expect_error([&] {
    kernels::causal_conv1d_silu_forward(x, wt, bias, Tensor(),
                                        Tensor::zeros({2, 5}, DType::I64));
  });
  expect_error([&] { kernels::causal_conv1d_silu_forward(wt, wt, bias, Tensor(), Tensor()); });
}

struct GpuCase {
  DType dtype;
  int64_t b, t, c, w;
  bool state, seq;
};

class Conv1dGpu : public ::testing::TestWithParam<GpuCase> {};

TEST_P(Conv1dGpu, ForwardAndBackwardMatchCpu) {
  SL_REQUIRE_GPU();
  const GpuCase k = GetParam();
  Tensor x = test::randn({k.b, k.t, k.c}, 20, k.dtype);
  Tensor wt = test::randn({k.c, k.w}, 21, k.dtype, Device::cpu(), 0.5);
  Tensor bias = test::randn({k.c}, 22, k.dtype);
  Tensor state = k.state ? test::randn({k.b, k.c, k.w - 1}, 23, k.dtype) : Tensor();
  Tensor seq;
  if (k.seq) {
    std::mt19937_64 rng(24);
    std::vector<int32_t> ids(size_t(k.b * k.t));
    for (size_t i = 1; i < ids.size(); ++i) ids[i] = ids[i - 1] + (rng() % 7 == 0 ? 1 : 0);
    seq = Tensor::from_vector(ids, {k.b, k.t});
  }
  Tensor dy = test::randn({k.b, k.t, k.c}, 25, k.dtype);
  auto gpu = [](const Tensor& t) { return t.defined() ? t.to(kGpu) : Tensor(); };
  auto f32 = [](const Tensor& t) { return t.defined() ? t.to(DType::F32) : Tensor(); };
  Tensor ref = kernels::causal_conv1d_silu_forward(f32(x), f32(wt), f32(bias), f32(state), seq);
  Tensor out = kernels::causal_conv1d_silu_forward(gpu(x), gpu(wt), gpu(bias), gpu(state),
                                                   gpu(seq));
  kernels::Conv1dGrads gr =
      kernels::causal_conv1d_silu_backward(f32(dy), f32(x), f32(wt), f32(bias), f32(state), seq);
  kernels::Conv1dGrads go = kernels::causal_conv1d_silu_backward(
      gpu(dy), gpu(x), gpu(wt), gpu(bias), gpu(state), gpu(seq));
  if (k.dtype == DType::F32) {
    // f32: the literal rule against f64, the CPU f32 run being the naive implementation (silu
    // and its derivative compose several roundings the closed-form bound does not model).
    auto f64 = [](const Tensor& t) { return t.defined() ? t.to(DType::F64) : Tensor(); };
    Tensor r64 =
        kernels::causal_conv1d_silu_forward(f64(x), f64(wt), f64(bias), f64(state), seq);
    kernels::Conv1dGrads g64 = kernels::causal_conv1d_silu_backward(f64(dy), f64(x), f64(wt),
                                                                    f64(bias), f64(state), seq);
    EXPECT_TRUE(test::AllCloseToNaive(out, ref, r64, DType::F32));
    EXPECT_TRUE(test::AllCloseToNaive(go.dx, gr.dx, g64.dx, DType::F32)) << "dx";
    EXPECT_TRUE(test::AllCloseToNaive(go.dw, gr.dw, g64.dw, DType::F32)) << "dw";
    EXPECT_TRUE(test::AllCloseToNaive(go.dbias, gr.dbias, g64.dbias, DType::F32)) << "dbias";
  } else {
    EXPECT_TRUE(AllClose(out, ref, Tol{k.dtype, k.w + 1}));
    EXPECT_TRUE(AllClose(go.dx, gr.dx, Tol{k.dtype, k.w + 1})) << "dx";
    EXPECT_TRUE(AllClose(go.dw, gr.dw, Tol{k.dtype, k.b * k.t})) << "dw";
    EXPECT_TRUE(AllClose(go.dbias, gr.dbias, Tol{k.dtype, k.b * k.t})) << "dbias";
  }
  if (k.state) {
    EXPECT_TRUE(AllClose(go.d_init_state, gr.d_init_state, Tol{k.dtype, k.w + 1})) << "dstate";
  }
  // Deterministic: a second run gives the same bits.
  kernels::Conv1dGrads again = kernels::causal_conv1d_silu_backward(
      gpu(dy), gpu(x), gpu(wt), gpu(bias), gpu(state), gpu(seq));
  EXPECT_TRUE(test::AllEqual(again.dw, go.dw));
}

INSTANTIATE_TEST_SUITE_P(Cases, Conv1dGpu,
                         ::testing::Values(GpuCase{DType::F32, 3, 37, 129, 4, false, false},
                                           GpuCase{DType::F32, 3, 37, 129, 4, true, true},
                                           GpuCase{DType::F32, 2, 1031, 77, 3, true, true},
                                           GpuCase{DType::F32, 1, 5, 33, 1, false, true},
                                           GpuCase{DType::BF16, 3, 37, 129, 4, true, true},
                                           GpuCase{DType::BF16, 2, 4099, 520, 4, true, true}));

}  // namespace
}  // namespace sl
