// Reductions over one dimension (sum, mean, max with argmax) and over all elements.
//
// Every reduction views its (contiguous) input as [outer, r, inner] with r the reduced dim, and
// accumulates in f32 (f64 for f64). Results keep the input's dtype; argmax indices are int64.
// The CUDA launcher picks a row kernel (inner == 1: warp or block per row) or a coalesced column
// kernel (inner > 1: threads along inner), and splits long reductions across blocks through an
// f32 partial buffer when there are too few outputs to fill the card.
#pragma once

#include <cstdint>
#include <utility>

#include "core/tensor.h"

namespace sl::kernels {

enum class ReduceOp : uint8_t { Sum, Mean, Max };

// ---- op-level functions ----

// Output shape: x's shape with `dim` removed, or set to 1 when keepdim.
Tensor sum(const Tensor& x, int dim, bool keepdim = false);
Tensor mean(const Tensor& x, int dim, bool keepdim = false);
// Values and int64 argmax indices (the first index among equal maxima; NaN counts as the max).
std::pair<Tensor, Tensor> max(const Tensor& x, int dim, bool keepdim = false);
// A 0-dim tensor (shape []) of x's dtype.
Tensor sum_all(const Tensor& x);
Tensor mean_all(const Tensor& x);

// Backward functions: dx of x's shape `x_shape` (and dtype of dy) from dy of the output's shape.
Tensor sum_backward(const Tensor& dy, const Dims& x_shape, int dim, bool keepdim);
Tensor mean_backward(const Tensor& dy, const Dims& x_shape, int dim, bool keepdim);
// Routes dy to the argmax positions; zero elsewhere.
Tensor max_backward(const Tensor& dy, const Tensor& indices, const Dims& x_shape, int dim,
                    bool keepdim);
Tensor sum_all_backward(const Tensor& dy, const Dims& x_shape);
Tensor mean_all_backward(const Tensor& dy, const Dims& x_shape);

// ---- parameters and the two implementations ----

struct ReduceParams {
  ReduceOp op;
  DType dtype;
  const void* x;   // contiguous [outer, r, inner]
  void* out;       // contiguous [outer, inner], x's dtype
  int64_t* index;  // [outer, inner] argmax for Max, else null
  int64_t outer, r, inner;
};

// dx[o, k, i] = (k == index[o, i]) ? dy[o, i] : 0.
struct MaxBackwardParams {
  DType dtype;
  const void* dy;        // contiguous [outer, inner]
  const int64_t* index;  // contiguous [outer, inner]
  void* dx;              // contiguous [outer, r, inner], dy's dtype
  int64_t outer, r, inner;
};

void reduce_cpu(const ReduceParams& p);
void max_backward_cpu(const MaxBackwardParams& p);
#if SL_WITH_CUDA
void reduce_cuda(const ReduceParams& p, int device);
void max_backward_cuda(const MaxBackwardParams& p, int device);
#endif

}  // namespace sl::kernels
