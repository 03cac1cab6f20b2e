// Fused SGD-with-momentum step for one parameter tensor (torch.optim.SGD semantics with
// dampening 0: weight decay is L2, added to the gradient; optional Nesterov). One pass reads
// param, grad, momentum_buf and writes param, momentum_buf and, optionally, the bf16 copy of param
// that the forward pass uses:
//
//     g     = grad * grad_scale
//     g     = g + weight_decay * param
//     buf   = momentum * buf + g
//     d     = nesterov ? g + momentum * buf : buf
//     param = param - lr * d
//     param_bf16 = bf16(param)                                   (round to nearest even)
//
// The buffer starts at zero, so the first step sets buf = g exactly, as torch's clone of the
// first gradient does. Each element is computed in f32 in the order written above, on both
// devices. State is per parameter tensor: every call works on one parameter's tensors.
#pragma once

#include "core/tensor.h"

namespace sl::kernels {

// Tensors: param, momentum_buf f32; grad f32 or bf16; param_bf16 bf16 or undefined. All
// contiguous, same shape and device. nesterov needs momentum > 0.
struct SgdParams {
  Tensor param, grad, momentum_buf;
  Tensor param_bf16;  // optional: refreshed from the updated param in the same pass
  double lr = 1e-2, momentum = 0.9, weight_decay = 0.0;
  bool nesterov = false;
  double grad_scale = 1.0;  // e.g. the global-norm clip factor
};

void sgd_step(const SgdParams& p);

// What the CPU reference and the CUDA kernel see: raw pointers and the f32 scalars.
struct SgdKernelParams {
  float* param;
  const void* grad;
  DType grad_dtype;
  float* momentum_buf;
  bf16* param_bf16;  // may be null
  int64_t n;
  float grad_scale, weight_decay, momentum, lr;
  bool nesterov;
};

void sgd_step_cpu(const SgdKernelParams& p);
#if SL_WITH_CUDA
void sgd_step_cuda(const SgdKernelParams& p, int device);
#endif

}  // namespace sl::kernels
