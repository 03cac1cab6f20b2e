// Differentiable Mamba-2 ops on ag::Var: the SSD scan and the causal depthwise conv1d + SiLU.
// Thin wrappers over kernels/ssd.h and kernels/conv1d.h (formulas, shapes, dtypes and the
// document-reset rule live there); the backward lambdas reuse the kernels' backward functions.
#pragma once

#include "autograd/variable.h"
#include "kernels/conv1d.h"
#include "kernels/ssd.h"

namespace sl::ag {

struct SsdScanResult {
  Var y;            // [B, T, H, P]
  Var final_state;  // [B, H, P, N], state dtype
};

// x [B, T, H, P], dt [B, T, H], A [H], Bm/Cm [B, T, G, N], D [H]; init_state [B, H, P, N] (an
// undefined Var for none) and seq_idx [B, T] i32 (undefined for none). Gradients reach x, dt, A,
// Bm, Cm, D and init_state, from both y and final_state. The two outputs share one graph node
// each; the backward recomputes what it needs from the inputs (nothing else is saved).
SsdScanResult ssd_scan(const Var& x, const Var& dt, const Var& A, const Var& Bm, const Var& Cm,
                       const Var& D, const Var& init_state = Var(), const Tensor& seq_idx = {},
                       const kernels::SsdOptions& opt = {});

// x [B, T, Cc], w [Cc, W], bias [Cc]; init_state [B, Cc, W-1] (undefined for none); seq_idx
// [B, T] i32 (undefined for none). Gradients reach x, w, bias and init_state.
Var causal_conv1d_silu(const Var& x, const Var& w, const Var& bias, const Var& init_state = Var(),
                       const Tensor& seq_idx = {});

}  // namespace sl::ag
