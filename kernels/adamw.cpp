// Op-level AdamW step: argument checks, the per-step scalars in f64, device dispatch.
#include "kernels/adamw.h"

#include <cmath>

#include "kernels/dispatch.h"
#include "kernels/optimizer_checks.h"

namespace sl::kernels {

void adamw_step(const AdamWParams& p) {
  const char* op = "adamw_step";
  check_optimizer_tensors(op, p.param, p.grad, {&p.exp_avg, &p.exp_avg_sq}, p.param_bf16);
  const Device dev = p.param.device();
  SL_CHECK(p.step >= 1) << op << ": step must be >= 1, got " << p.step;
  SL_CHECK(p.beta1 >= 0 && p.beta1 < 1 && p.beta2 >= 0 && p.beta2 < 1)
      << op << ": betas must lie in [0, 1), got " << p.beta1 << ", " << p.beta2;

  double bc1 = 1 - std::pow(p.beta1, double(p.step));
  double bc2 = 1 - std::pow(p.beta2, double(p.step));
  AdamWKernelParams k{};
  k.param = p.param.data<float>();
  k.grad = p.grad.data_ptr();
  k.grad_dtype = p.grad.dtype();
  k.exp_avg = p.exp_avg.data<float>();
  k.exp_avg_sq = p.exp_avg_sq.data<float>();
  k.param_bf16 = p.param_bf16.defined() ? p.param_bf16.data<bf16>() : nullptr;
  k.n = p.param.numel();
  k.grad_scale = float(p.grad_scale);
  k.decay = float(1 - p.lr * p.weight_decay);
  k.beta1 = float(p.beta1);
  k.one_minus_beta1 = float(1 - p.beta1);
  k.beta2 = float(p.beta2);
  k.one_minus_beta2 = float(1 - p.beta2);
  k.step_size = float(p.lr / bc1);
  k.bias_correction2_sqrt = float(std::sqrt(bc2));
  k.eps = float(p.eps);
  if (k.n == 0) return;
  if (dev.is_cuda()) {
    SL_CUDA_CALL(op, adamw_step_cuda(k, dev.index));
  } else {
    adamw_step_cpu(k);
  }
}

}  // namespace sl::kernels
