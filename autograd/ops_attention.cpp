// Differentiable flash attention (autograd/ops_attention.h).
#include "autograd/ops_attention.h"

namespace sl::ag {

Var flash_attention(const Var& q, const Var& k, const Var& v,
                    const kernels::AttentionOptions& opt) {
  SL_CHECK(q.defined() && k.defined() && v.defined()) << "flash_attention: undefined input";
  kernels::AttentionOutput r = kernels::attention_forward(q.value(), k.value(), v.value(), opt);
  return make_result("flash_attention", r.out, {q, k, v},
                     [qv = q.value(), kv = k.value(), vv = v.value(), out = r.out, lse = r.lse,
                      opt](const Tensor& g, const std::vector<bool>&) {
                       kernels::AttentionGrads d =
                           kernels::attention_backward(qv, kv, vv, out, lse, g, opt);
                       return std::vector<Tensor>{d.dq, d.dk, d.dv};
                     });
}

}  // namespace sl::ag
