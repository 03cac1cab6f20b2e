// Fused AdamW step for one parameter tensor (torch.optim.AdamW semantics, decoupled weight decay,
// bias correction; no amsgrad). One pass reads param, grad, exp_avg, exp_avg_sq and writes param,
// exp_avg, exp_avg_sq and, optionally, the bf16 copy of param that the forward pass uses:
//
//     g     = grad * grad_scale
//     param = param * (1 - lr * weight_decay)
//     m     = beta1 * m + (1 - beta1) * g
//     v     = beta2 * v + (1 - beta2) * g * g
//     param = param - (lr / (1 - beta1^step)) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
//     param_bf16 = bf16(param)                                   (round to nearest even)
//
// The step-dependent scalars are computed once on the host in f64 and passed as f32; each element
// is computed in f32 in the order written above, on both devices. State is per parameter tensor
// (so it can be sharded per parameter): every call works on one parameter's tensors.
#pragma once

#include "core/tensor.h"

namespace sl::kernels {

// Tensors: param, exp_avg, exp_avg_sq f32; grad f32 or bf16; param_bf16 bf16 or undefined. All
// contiguous, same shape and device. step >= 1 is the step being taken (1 for the first one).
struct AdamWParams {
  Tensor param, grad, exp_avg, exp_avg_sq;
  Tensor param_bf16;  // optional: refreshed from the updated param in the same pass
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.01;
  int64_t step = 1;
  double grad_scale = 1.0;  // e.g. the global-norm clip factor
};

void adamw_step(const AdamWParams& p);

// What the CPU reference and the CUDA kernel see: raw pointers and the per-step f32 scalars.
struct AdamWKernelParams {
  float* param;
  const void* grad;
  DType grad_dtype;
  float* exp_avg;
  float* exp_avg_sq;
  bf16* param_bf16;  // may be null
  int64_t n;
  float grad_scale, decay;        // decay = 1 - lr * weight_decay
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float step_size;                // lr / (1 - beta1^step)
  float bias_correction2_sqrt;    // sqrt(1 - beta2^step)
  float eps;
};

void adamw_step_cpu(const AdamWKernelParams& p);
#if SL_WITH_CUDA
void adamw_step_cuda(const AdamWKernelParams& p, int device);
#endif

}  // namespace sl::kernels
