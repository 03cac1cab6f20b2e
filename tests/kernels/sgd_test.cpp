// Fused SGD step: CPU against the torch.optim.SGD formula written out here in f64 over three
// steps (momentum, Nesterov, weight decay, f32 and bf16 gradients); exact cases (momentum 0, the
// first step's buffer); GPU against the CPU reference (vectorised and scalar paths); the bf16 copy
// equals the rounded f32 master weights.
#include "kernels/sgd.h"

#include <gtest/gtest.h>

#include <cmath>

#include "tests/common/gpu.h"
#include "tests/common/tolerance.h"

namespace sl {
namespace {
using test::AllClose;
using test::AllEqual;
using test::Tol;

// Each output is a chain of about six rounded f32 operations per step, three steps.
const Tol kTolF32{DType::F32, 6};

struct Case {
  DType grad_dtype;
  double wd;
  bool nesterov;
};
std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  return std::string(dtype_name(info.param.grad_dtype)) + (info.param.wd > 0 ? "_wd" : "_nowd") +
         (info.param.nesterov ? "_nesterov" : "");
}

const double kLr = 0.05, kMomentum = 0.9, kScale = 0.7;

// torch.optim.SGD (single-tensor path, dampening 0) in f64:
//   d_p = grad.add(param, alpha=wd); buf = d_p.clone() on the first step, else
//   buf.mul_(momentum).add_(d_p); d_p = d_p.add(buf, alpha=momentum) if nesterov else buf;
//   param.add_(d_p, alpha=-lr)
void torch_sgd_f64(std::vector<double>& w, std::vector<double>& buf,
                   const std::vector<double>& grad, const Case& c, int step) {
  for (size_t i = 0; i < w.size(); ++i) {
    double d = grad[i] * kScale + c.wd * w[i];
    buf[i] = step == 1 ? d : kMomentum * buf[i] + d;
    d = c.nesterov ? d + kMomentum * buf[i] : buf[i];
    w[i] -= kLr * d;
  }
}

std::vector<double> as_f64(const Tensor& t) { return t.to(DType::F64).to_vector<double>(); }
Tensor from_f64(const std::vector<double>& v) {
  return Tensor::from_vector(v, {int64_t(v.size())}).to(DType::F32);
}

kernels::SgdParams make_params(Tensor w, Tensor g, Tensor b, Tensor w16, const Case& c) {
  kernels::SgdParams p;
  p.param = w, p.grad = g, p.momentum_buf = b, p.param_bf16 = w16;
  p.lr = kLr, p.momentum = kMomentum, p.weight_decay = c.wd, p.nesterov = c.nesterov;
  p.grad_scale = kScale;
  return p;
}

class SgdCpu : public ::testing::TestWithParam<Case> {};

TEST_P(SgdCpu, ThreeStepsMatchTorchFormulaInF64) {
  const Case c = GetParam();
  const int64_t n = 1031;
  Tensor w = test::randn({n}, 1), b = Tensor::zeros({n}, DType::F32);
  Tensor w16 = Tensor::zeros({n}, DType::BF16);
  std::vector<double> rw = as_f64(w), rb(size_t(n), 0.0), w0 = rw;
  for (int step = 1; step <= 3; ++step) {
    Tensor g = test::randn({n}, 10 + step, c.grad_dtype, Device::cpu(), step == 2 ? 1e-3 : 1.0);
    torch_sgd_f64(rw, rb, as_f64(g), c, step);
    kernels::sgd_step(make_params(w, g, b, w16, c));
    EXPECT_TRUE(AllClose(w, from_f64(rw), kTolF32)) << "param, step " << step;
    EXPECT_TRUE(AllClose(b, from_f64(rb), kTolF32)) << "momentum_buf, step " << step;
    EXPECT_TRUE(AllEqual(w16, w.to(DType::BF16))) << "bf16 copy, step " << step;
  }
  double moved = 0;
  for (size_t i = 0; i < rw.size(); ++i) moved = std::max(moved, std::fabs(rw[i] - w0[i]));
  EXPECT_GT(moved, 1e-2);
}

INSTANTIATE_TEST_SUITE_P(Grads, SgdCpu,
                         ::testing::Values(Case{DType::F32, 0.0, false}, Case{DType::F32, 0.1, false},
                                           Case{DType::F32, 0.1, true}, Case{DType::BF16, 0.0, true},
                                           Case{DType::BF16, 0.1, false}),
                         case_name);

TEST(SgdCpuSingle, ExactSmallIntegerCases) {
  // Values exact in f32: w = 4, g = 2, lr = 0.5, wd = 0.25. First step: d = 2 + 1 = 3, buf = 3,
  // w = 4 - 1.5 = 2.5. Nesterov: d = 3 + 0.5 * 3 = 4.5, w = 4 - 2.25 = 1.75.
  for (bool nesterov : {false, true}) {
    Tensor w = Tensor::full({5}, 4.0, DType::F32), g = Tensor::full({5}, 2.0, DType::F32);
    Tensor b = Tensor::zeros({5}, DType::F32);
    kernels::SgdParams p;
    p.param = w, p.grad = g, p.momentum_buf = b;
    p.lr = 0.5, p.momentum = 0.5, p.weight_decay = 0.25, p.nesterov = nesterov;
    kernels::sgd_step(p);
    EXPECT_TRUE(AllEqual(b, Tensor::full({5}, 3.0, DType::F32)));
    EXPECT_TRUE(AllEqual(w, Tensor::full({5}, nesterov ? 1.75 : 2.5, DType::F32)));
  }
  // Momentum 0 is plain SGD: w - lr * g.
  Tensor w = Tensor::full({3}, 1.0, DType::F32), g = Tensor::full({3}, -8.0, DType::F32);
  Tensor b = Tensor::full({3}, 123.0, DType::F32);
  kernels::SgdParams p;
  p.param = w, p.grad = g, p.momentum_buf = b, p.lr = 0.25, p.momentum = 0.0;
  kernels::sgd_step(p);
  EXPECT_TRUE(AllEqual(w, Tensor::full({3}, 3.0, DType::F32)));
}

TEST(SgdCpuSingle, BadArgumentsNameTheOp) {
  Tensor w = test::randn({8}, 4), z = Tensor::zeros({8}, DType::F32);
  const Case c{DType::F32, 0.0, false};
  auto expect_error = [](const kernels::SgdParams& p) {
    try {
      kernels::sgd_step(p);
      ADD_FAILURE() << "expected an sl::Error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("sgd_step"), std::string::npos) << e.what();
    }
  };
  expect_error(make_params(w.to(DType::BF16), z, z.clone(), Tensor(), c));
  expect_error(make_params(w, Tensor::zeros({9}, DType::F32), z.clone(), Tensor(), c));
  expect_error(make_params(w, z, z.clone(), Tensor::zeros({8}, DType::F32), c));
  kernels::SgdParams p = make_params(w, z, z.clone(), Tensor(), Case{DType::F32, 0.0, true});
  p.momentum = 0;
  expect_error(p);
  Tensor w2 = test::randn({4, 2}, 5).transpose(0, 1);
  Tensor z2 = Tensor::zeros({2, 4}, DType::F32);
  expect_error(make_params(w2, z2, z2.clone(), Tensor(), c));
}

// ---- GPU against the CPU reference ----

class SgdGpu : public ::testing::TestWithParam<Case> {};

// Three steps on both devices from the same start. `offset` shifts every tensor by that many
// elements inside a larger buffer (1 breaks 16-byte alignment: the scalar kernel).
void check_gpu_against_cpu(const Case& c, int64_t n, int64_t offset) {
  auto shifted = [&](const Tensor& t) {
    Tensor big = Tensor::zeros({n + offset}, t.dtype(), t.device());
    Tensor view = big.slice(0, offset, offset + n);
    view.copy_(t);
    return view;
  };
  const Device gpu = Device::cuda(0);
  Tensor w = test::randn({n}, 21), b = test::randn({n}, 22, DType::F32, Device::cpu(), 0.1);
  Tensor w16 = Tensor::zeros({n}, DType::BF16);
  Tensor dw = shifted(w.to(gpu)), db = shifted(b.to(gpu)), dw16 = shifted(w16.to(gpu));
  for (int step = 1; step <= 3; ++step) {
    Tensor g = test::randn({n}, 30 + step, c.grad_dtype);
    kernels::sgd_step(make_params(w, g, b, w16, c));
    kernels::sgd_step(make_params(dw, shifted(g.to(gpu)), db, dw16, c));
  }
  EXPECT_TRUE(AllClose(dw, w, kTolF32)) << "param, offset " << offset;
  EXPECT_TRUE(AllClose(db, b, kTolF32)) << "momentum_buf, offset " << offset;
  EXPECT_TRUE(AllEqual(dw16, dw.to(DType::BF16))) << "bf16 copy is the rounded param";
  EXPECT_TRUE(AllClose(dw16, w16, Tol{DType::BF16})) << "bf16 copy vs CPU";
  std::vector<float> x = dw.to_vector<float>(), y = w.to_vector<float>();
  int64_t differ = 0;
  for (size_t i = 0; i < x.size(); ++i) differ += x[i] != y[i];
  std::printf("[ info ] %s offset %lld: %lld of %lld params differ from the CPU bitwise\n",
              dtype_name(c.grad_dtype), (long long)offset, (long long)differ, (long long)n);
}

TEST_P(SgdGpu, MatchesCpuVectorisedAndScalarPaths) {
  SL_REQUIRE_GPU();
  check_gpu_against_cpu(GetParam(), 3 * 37 * 129 * 71 + 1, 0);  // n % 4 == 2: vector + tail
  check_gpu_against_cpu(GetParam(), 100003, 1);
  check_gpu_against_cpu(GetParam(), 3, 0);
}

INSTANTIATE_TEST_SUITE_P(Grads, SgdGpu,
                         ::testing::Values(Case{DType::F32, 0.0, false}, Case{DType::F32, 0.1, true},
                                           Case{DType::BF16, 0.0, true},
                                           Case{DType::BF16, 0.1, false}),
                         case_name);

}  // namespace
}  // namespace sl
