// CPU reference for the fused AdamW step: one plain loop, f32, in the order of kernels/adamw.h.
#include <cmath>

#include "kernels/adamw.h"

namespace sl::kernels {
namespace {

template <class G>
void adamw_typed(const AdamWKernelParams& p) {
  const G* grad = static_cast<const G*>(p.grad);
  for (int64_t i = 0; i < p.n; ++i) {
    float g = ScalarTraits<G>::to_compute(grad[i]) * p.grad_scale;
    float m = p.beta1 * p.exp_avg[i] + p.one_minus_beta1 * g;
    float v = p.beta2 * p.exp_avg_sq[i] + p.one_minus_beta2 * (g * g);
    float w = p.param[i] * p.decay;
    float denom = std::sqrt(v) / p.bias_correction2_sqrt + p.eps;
    w = w - p.step_size * (m / denom);
    p.exp_avg[i] = m;
    p.exp_avg_sq[i] = v;
    p.param[i] = w;
    if (p.param_bf16) p.param_bf16[i] = float_to_bf16(w);
  }
}

}  // namespace

void adamw_step_cpu(const AdamWKernelParams& p) {
  if (p.grad_dtype == DType::BF16)
    adamw_typed<bf16>(p);
  else
    adamw_typed<float>(p);
}

}  // namespace sl::kernels
