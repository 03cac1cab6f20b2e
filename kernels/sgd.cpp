// Op-level SGD step: argument checks, the f32 scalars, device dispatch.
#include "kernels/sgd.h"

#include "kernels/dispatch.h"
#include "kernels/optimizer_checks.h"

namespace sl::kernels {

void sgd_step(const SgdParams& p) {
  const char* op = "sgd_step";
  check_optimizer_tensors(op, p.param, p.grad, {&p.momentum_buf}, p.param_bf16);
  const Device dev = p.param.device();
  SL_CHECK(p.momentum >= 0 && p.momentum < 1)
      << op << ": momentum must lie in [0, 1), got " << p.momentum;
  SL_CHECK(!p.nesterov || p.momentum > 0) << op << ": nesterov needs momentum > 0";

  SgdKernelParams k{};
  k.param = p.param.data<float>();
  k.grad = p.grad.data_ptr();
  k.grad_dtype = p.grad.dtype();
  k.momentum_buf = p.momentum_buf.data<float>();
  k.param_bf16 = p.param_bf16.defined() ? p.param_bf16.data<bf16>() : nullptr;
  k.n = p.param.numel();
  k.grad_scale = float(p.grad_scale);
  k.weight_decay = float(p.weight_decay);
  k.momentum = float(p.momentum);
  k.lr = float(p.lr);
  k.nesterov = p.nesterov;
  if (k.n == 0) return;
  if (dev.is_cuda()) {
    SL_CUDA_CALL(op, sgd_step_cuda(k, dev.index));
  } else {
    sgd_step_cpu(k);
  }
}

}  // namespace sl::kernels
