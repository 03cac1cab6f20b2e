// Op-level AdamW step: argument checks, the per-step scalars in f64, device dispatch.
#include "kernels/adamw.h"

#include <cmath>

#include "kernels/dispatch.h"

namespace sl::kernels {

void adamw_step(const AdamWParams& p) {
  const char* op = "adamw_step";
  SL_CHECK_DTYPE(op, p.param, DType::F32);
  SL_CHECK_DTYPE(op, p.grad, DType::F32, DType::BF16);
  SL_CHECK_DTYPE(op, p.exp_avg, DType::F32);
  SL_CHECK_DTYPE(op, p.exp_avg_sq, DType::F32);
  Device dev = p.param.device();
  SL_CHECK_DEVICE(op, p.grad, dev);
  SL_CHECK_DEVICE(op, p.exp_avg, dev);
  SL_CHECK_DEVICE(op, p.exp_avg_sq, dev);
  for (const Tensor* t : {&p.grad, &p.exp_avg, &p.exp_avg_sq})
    SL_CHECK(t->shape() == p.param.shape())
        << op << ": " << t->str() << " does not match param " << p.param.str();
  if (p.param_bf16.defined()) {
    SL_CHECK_DTYPE(op, p.param_bf16, DType::BF16);
    SL_CHECK_DEVICE(op, p.param_bf16, dev);
    SL_CHECK(p.param_bf16.shape() == p.param.shape())
        << op << ": param_bf16 " << p.param_bf16.str() << " does not match param "
        << p.param.str();
    SL_CHECK(p.param_bf16.is_contiguous()) << op << ": param_bf16 must be contiguous";
  }
  for (const Tensor* t : {&p.param, &p.grad, &p.exp_avg, &p.exp_avg_sq})
    SL_CHECK(t->is_contiguous()) << op << ": " << t->str() << " must be contiguous";
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
