// CPU reference for the fused SGD step: one plain loop, f32, in the order of kernels/sgd.h.
#include "kernels/sgd.h"

namespace sl::kernels {
namespace {

template <class G>
void sgd_typed(const SgdKernelParams& p) {
  const G* grad = static_cast<const G*>(p.grad);
  for (int64_t i = 0; i < p.n; ++i) {
    float w = p.param[i];
    float g = ScalarTraits<G>::to_compute(grad[i]) * p.grad_scale;
    g = g + p.weight_decay * w;
    float b = p.momentum * p.momentum_buf[i] + g;
    float d = p.nesterov ? g + p.momentum * b : b;
    w = w - p.lr * d;
    p.momentum_buf[i] = b;
    p.param[i] = w;
    if (p.param_bf16) p.param_bf16[i] = float_to_bf16(w);
  }
}

}  // namespace

void sgd_step_cpu(const SgdKernelParams& p) {
  if (p.grad_dtype == DType::BF16)
    sgd_typed<bf16>(p);
  else
    sgd_typed<float>(p);
}

}  // namespace sl::kernels
