// Differentiable shape ops: concat, split, gather and scatter_add on ag::Var.
//
// split is composite: each output is an ag::slice (autograd/ops_elementwise.h; a view of the
// input), whose backward writes its gradient into zeros of the input's shape; the engine sums the
// pieces (Note [gradient accumulation rule]). So split needs no backward code of its own. gather and scatter_add are each
// other's backward (kernels/shape_ops.h gives the index rules and the deterministic summation).
#pragma once

#include <vector>

#include "autograd/variable.h"

namespace sl::ag {

// Backward: the slice of the gradient that each input occupied.
Var concat(const std::vector<Var>& xs, int dim);
// Consecutive slices of the given sizes (which sum to x.size(dim)), as views.
std::vector<Var> split(const Var& x, const std::vector<int64_t>& sizes, int dim);
// torch.gather. Backward: dx = scatter_add(zeros like x, dim, index, g).
Var gather(const Var& x, int dim, const Tensor& index);
// Functional torch.scatter_add: dst with src scattered into it. Backward: ddst = g,
// dsrc = gather(g, dim, index) (zero where src is larger than index).
Var scatter_add(const Var& dst, int dim, const Tensor& index, const Var& src);

}  // namespace sl::ag
