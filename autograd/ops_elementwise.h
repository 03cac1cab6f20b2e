// Differentiable elementwise ops, reductions, softmax and the basic view ops (reshape, transpose,
// slice) on ag::Var. Thin wrappers over kernels/elementwise.h, kernels/reduce.h and
// kernels/softmax.h, where the formulas and contracts live.
//
// Binary ops broadcast like NumPy; their backward sums the gradient back to each input's shape
// (kernels::sum_to). View ops return views of the input's value; their backward maps the gradient
// back into the input's layout (transpose and slice produce contiguous gradients).
#pragma once

#include <cstdint>

#include "autograd/variable.h"

namespace sl::ag {

// ---- binary, with broadcasting; mixed f32/bf16 gives f32 ----
Var add(const Var& a, const Var& b);
Var sub(const Var& a, const Var& b);
Var mul(const Var& a, const Var& b);
Var div(const Var& a, const Var& b);

// ---- unary (kernels::UnaryOp documents each; gelu is the tanh approximation) ----
Var neg(const Var& x);
Var exp(const Var& x);
Var log(const Var& x);
Var silu(const Var& x);
Var gelu(const Var& x);
Var relu(const Var& x);
Var relu2(const Var& x);  // relu(x)^2
Var sigmoid(const Var& x);
Var softplus(const Var& x);
Var scale(const Var& x, double alpha);       // alpha * x
Var add_scalar(const Var& x, double alpha);  // x + alpha

// ---- reductions ----
Var sum(const Var& x, int dim, bool keepdim = false);
Var mean(const Var& x, int dim, bool keepdim = false);
// Values only; the gradient goes to the first maximal element.
Var max(const Var& x, int dim, bool keepdim = false);
Var sum_all(const Var& x);   // shape []
Var mean_all(const Var& x);  // shape []

// ---- softmax over the last dim ----
Var softmax(const Var& x);
Var log_softmax(const Var& x);

// ---- views ----
Var reshape(const Var& x, const Dims& shape);  // a view when strides allow (Tensor::reshape)
Var transpose(const Var& x, int d0, int d1);
Var slice(const Var& x, int dim, int64_t start, int64_t end);  // [start, end) along dim

}  // namespace sl::ag
