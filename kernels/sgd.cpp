// Op-level SGD step: argument checks, the f32 scalars, device dispatch.
#include "kernels/sgd.h"

#include "kernels/dispatch.h"

namespace sl::kernels {

void sgd_step(const SgdParams& p) {
  const char* op = "sgd_step";
  SL_CHECK_DTYPE(op, p.param, DType::F32);
  SL_CHECK_DTYPE(op, p.grad, DType::F32, DType::BF16);
  SL_CHECK_DTYPE(op, p.momentum_buf, DType::F32);
  Device dev = p.param.device();
  SL_CHECK_DEVICE(op, p.grad, dev);
  SL_CHECK_DEVICE(op, p.momentum_buf, dev);
  for (const Tensor* t : {&p.grad, &p.momentum_buf})
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
  for (const Tensor* t : {&p.param, &p.grad, &p.momentum_buf})
    SL_CHECK(t->is_contiguous()) << op << ": " << t->str() << " must be contiguous";
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
