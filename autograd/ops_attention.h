// Differentiable flash attention on ag::Var: a thin wrapper over kernels/attention.h (shapes,
// key ranges and the GPU/CPU split are documented there). The backward reuses the forward's
// output and log-sum-exp; nothing else is saved.
#pragma once

#include "autograd/variable.h"
#include "kernels/attention.h"

namespace sl::ag {

// q [B, Lq, Hq, D], k and v [B, Lk, Hkv, D] -> [B, Lq, Hq, D]; gradients reach q, k and v.
Var flash_attention(const Var& q, const Var& k, const Var& v,
                    const kernels::AttentionOptions& opt = {});

}  // namespace sl::ag
