// Gradient accumulation: dst += src, and a + b into a new tensor. Used by the autograd engine
// (Note [gradient accumulation rule]); shapes must match exactly (no broadcasting here).
#pragma once

#include "core/tensor.h"

namespace sl::kernels {

struct AccumulateParams {
  void* dst;
  const void* src;
  DType dst_dtype, src_dtype;
  int64_t n;
  Dims shape, dst_strides, src_strides;
};

// dst += src (src is cast to dst's dtype; sum computed in f32, or f64 for f64).
void accumulate_(const Tensor& dst, const Tensor& src);
// a + b as a new contiguous tensor with a's dtype.
Tensor sum_of(const Tensor& a, const Tensor& b);

void accumulate_cpu(const AccumulateParams& p);
#if SL_WITH_CUDA
void accumulate_cuda(const AccumulateParams& p, int device);
#endif

}  // namespace sl::kernels
