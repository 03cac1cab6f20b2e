// Softmax and log-softmax over the last dimension (rows), numerically stable: each row is shifted
// by its maximum, and the maximum and the sum of exponentials are kept in f32 (f64 for f64).
//
// The backward functions take the forward output y, not x: softmax's derivative needs only y
// (dx = y * (dy - sum(dy * y))), and log-softmax's only exp(y) (dx = dy - exp(y) * sum(dy)).
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace sl::kernels {

// ---- op-level functions: any shape with at least one dim, any strides; new contiguous output ----
Tensor softmax(const Tensor& x);
Tensor log_softmax(const Tensor& x);
// y is the forward output, dy the gradient of the same shape; dx has y's dtype.
Tensor softmax_backward(const Tensor& y, const Tensor& dy);
Tensor log_softmax_backward(const Tensor& y, const Tensor& dy);

// ---- parameters and the two implementations ----

// Forward: in0 = x, out = y. Backward: in0 = y, in1 = dy, out = dx. All contiguous [rows, cols] of
// one dtype.
struct SoftmaxParams {
  bool log;
  bool backward;
  DType dtype;
  const void* in0;
  const void* in1;
  void* out;
  int64_t rows, cols;
};

void softmax_cpu(const SoftmaxParams& p);
#if SL_WITH_CUDA
void softmax_cuda(const SoftmaxParams& p, int device);
#endif

}  // namespace sl::kernels
