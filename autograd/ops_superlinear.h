// Differentiable superlinear attention (spec §9): the routing is trained through the gate, so
// the search query Qs and the keys K receive gradient from the gate as well as from attention.
#pragma once

#include "autograd/variable.h"
#include "kernels/superlinear.h"

namespace sl::ag {

// O = superlinear attention of (qa, qs, k, v) (kernels::superlinear_forward: shapes, GQA,
// doc_starts and q_start as documented there). Backward gives dQa, dQs, dK, dV
// (kernels::superlinear_backward); top-k and span bounds are discrete and get no gradient.
// `doc_starts` is an integer tensor (no gradient). The config is used as given: check coverage
// once with kernels::validate(cfg) when the model is configured. keep_partials: the backward
// reads the window and span outputs the forward kept instead of recomputing them (Note [kept
// partials] in kernels/superlinear.h: faster, (k + 1) outputs' worth of memory until then).
Var superlinear_attention(const Var& qa, const Var& qs, const Var& k, const Var& v,
                          const kernels::SuperlinearConfig& cfg,
                          const Tensor& doc_starts = Tensor(), int64_t q_start = -1,
                          bool keep_partials = false);

}  // namespace sl::ag
