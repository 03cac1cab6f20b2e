// Dropout with a counter-based mask: element i (row-major index) is kept when
// philox_uniform_at(seed, offset, i) >= p, and kept values are scaled by 1 / (1 - p).
//
// The one non-obvious decision: the mask is never stored. It is a pure function of (seed, offset,
// i) (core/philox.h), identical on CPU and GPU, so the backward regenerates it:
// dx = mask * dy / (1 - p) is the same function applied to dy. p = 0 is the identity.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace sl::kernels {

struct DropoutParams {
  const void* x = nullptr;
  void* y = nullptr;
  DType dtype = DType::F32;
  int64_t n = 0;
  float p = 0.f;          // keep when the uniform is >= p (float(p), the same on every device)
  float scale = 1.f;      // 1 / (1 - p), rounded to f32 once on the host
  double scale64 = 1.0;   // 1 / (1 - p) for f64 tensors
  uint64_t seed = 0, offset = 0;
};

// p in [0, 1). Returns a new contiguous tensor (x itself when p == 0).
Tensor dropout_forward(const Tensor& x, double p, uint64_t seed, uint64_t offset);
// dx = mask * dy / (1 - p) for the mask of (seed, offset).
Tensor dropout_backward(const Tensor& dy, double p, uint64_t seed, uint64_t offset);

void dropout_cpu(const DropoutParams& p);
#if SL_WITH_CUDA
void dropout_cuda(const DropoutParams& p, int device);
#endif

}  // namespace sl::kernels
