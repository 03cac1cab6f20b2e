// Differentiable neural-network ops on ag::Var: fused cross-entropy, embedding, RMSNorm, gated
// RMSNorm, RoPE and dropout. Each is a thin wrapper over its kernels/ file (the formulas and
// contracts live there); the backward lambdas reuse the kernels' backward functions and capture
// only what those need.
#pragma once

#include <cstdint>

#include "autograd/variable.h"
#include "kernels/cross_entropy.h"
#include "kernels/rope.h"

namespace sl::ag {

// Scalar loss of logits [N, V] against integer targets [N] (kernels/cross_entropy.h); rows whose
// target is ignore_index do not count. Gradient w.r.t. logits only.
Var cross_entropy(const Var& logits, const Tensor& targets, int64_t ignore_index = -100,
                  kernels::CeReduction reduction = kernels::CeReduction::kMean);
// weight [V, C], ids any shape (i32/i64) -> [ids..., C]. Deterministic dW (kernels/embedding.h).
Var embedding(const Var& weight, const Tensor& ids);
// x [..., C], w [C].
Var rmsnorm(const Var& x, const Var& w, double eps = 1e-5);
// Mamba-2 gated RMSNorm, norm_before_gate=False: x, z [..., C], w [C], group_size divides C.
Var gated_rmsnorm(const Var& x, const Var& z, const Var& w, int64_t group_size,
                  double eps = 1e-5);
// x [B, T, H, D]; rotate-half RoPE (kernels/rope.h).
Var rope(const Var& x, const kernels::RopeOptions& opt = {});
// Takes one offset from gen; the backward regenerates the same mask. p = 0 is the identity.
Var dropout(const Var& x, double p, Generator& gen);

}  // namespace sl::ag
