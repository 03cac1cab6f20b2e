// Differentiable matmul and linear (kernels/matmul.h): forward through the kernels, backward
// through matmul_backward and bias_backward.
#pragma once

#include "autograd/variable.h"

namespace sl::ag {

// op(a) op(b), 2-D or batched (3-D; a 2-D operand is shared across the batch, and its gradient
// is summed over the batch). Shapes as in kernels::matmul.
Var matmul(const Var& a, const Var& b, bool trans_a = false, bool trans_b = false);

// x wᵀ + bias over any leading dims: x [..., in], w [out, in], bias [out] or an undefined Var.
Var linear(const Var& x, const Var& w, const Var& bias = Var());

}  // namespace sl::ag
