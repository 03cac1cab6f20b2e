// RMSNorm and gated RMSNorm over the last dimension C, statistics in f32 (f64 for f64 tensors).
//
// RMSNorm:  rstd_r = 1 / sqrt(mean_c x[r, c]^2 + eps),   y[r, c] = x[r, c] * rstd_r * w[c].
// Backward, with g = dy * w and xh = x * rstd:
//   dx = rstd * (g - xh * mean_c(g * xh)),   dw[c] = sum_r dy[r, c] * xh[r, c].
//
// Gated RMSNorm (Mamba-2 / Nemotron-H MambaRMSNormGated, norm_before_gate=False), group size G
// dividing C, rstd per (row, group k):
//   h = x * silu(z),   silu(z) = z * sigmoid(z),
//   rstd_{r,k} = 1 / sqrt(mean_{c in group k} h[r, c]^2 + eps),   y = h * rstd * w.
// Backward: dh = rstd * (g - hh * mean_group(g * hh)) with g = dy * w, hh = h * rstd;
//   dx = dh * silu(z),   dz = dh * x * sigmoid(z) * (1 + z * (1 - sigmoid(z))),
//   dw[c] = sum_r dy[r, c] * hh[r, c].
// Plain RMSNorm is the gated one with no gate and one group of C. (transformers computes
// w * (h * rstd).to(input dtype); here the product is rounded once, at the end.)
//
// The one non-obvious decision: dw is reduced deterministically on the GPU — each block owns a
// fixed set of rows and keeps per-column partial sums, a second kernel adds the partials in a
// fixed order — so two runs give the same bits (no float atomics).
//
// Inputs are made contiguous; x, z, dy and w share one dtype (f32/bf16 on CUDA; f64/f16 too on
// the CPU); outputs take that dtype.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace sl::kernels {

struct RmsNormParams {
  const void* x = nullptr;   // [rows, c]
  const void* z = nullptr;   // [rows, c] gate, or null for plain RMSNorm
  const void* w = nullptr;   // [c]
  DType dtype = DType::F32;  // of x, z, w, y, dy, dx, dz, dw
  int64_t rows = 0, c = 0, group_size = 0;  // group_size divides c (c for plain RMSNorm)
  double eps = 1e-5;
  void* y = nullptr;           // [rows, c]
  void* rstd = nullptr;        // [rows, c / group_size], f32 (f64 for f64)
  // backward
  const void* dy = nullptr;
  const void* rstd_in = nullptr;
  void* dx = nullptr;
  void* dz = nullptr;  // only for the gated variant
  void* dw = nullptr;
};

struct RmsNormResult {
  Tensor y;     // x's shape and dtype
  Tensor rstd;  // x's leading shape (plain) or [..., C / G] (gated); f32, f64 for f64
};
struct RmsNormGrads {
  Tensor dx, dz, dw;  // dz undefined for plain RMSNorm
};

// x [..., C], w [C].
RmsNormResult rmsnorm_forward(const Tensor& x, const Tensor& w, double eps = 1e-5);
RmsNormGrads rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& w,
                              const Tensor& rstd);
// x, z [..., C], w [C], group_size divides C.
RmsNormResult gated_rmsnorm_forward(const Tensor& x, const Tensor& z, const Tensor& w,
                                    int64_t group_size, double eps = 1e-5);
RmsNormGrads gated_rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& z,
                                    const Tensor& w, const Tensor& rstd, int64_t group_size);

void rmsnorm_forward_cpu(const RmsNormParams& p);
void rmsnorm_backward_cpu(const RmsNormParams& p);
#if SL_WITH_CUDA
void rmsnorm_forward_cuda(const RmsNormParams& p, int device);
void rmsnorm_backward_cuda(const RmsNormParams& p, int device);
#endif

}  // namespace sl::kernels
