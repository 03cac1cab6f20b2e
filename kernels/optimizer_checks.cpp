// The argument checks of the fused optimizer steps (kernels/optimizer_checks.h).
#include "kernels/optimizer_checks.h"

#include "kernels/dispatch.h"

namespace sl::kernels {

void check_optimizer_tensors(const char* op, const Tensor& param, const Tensor& grad,
                             std::initializer_list<const Tensor*> state, const Tensor& param_bf16) {
  SL_CHECK_DTYPE(op, param, DType::F32);
  SL_CHECK_DTYPE(op, grad, DType::F32, DType::BF16);
  for (const Tensor* t : state) SL_CHECK_DTYPE(op, *t, DType::F32);
  const Device dev = param.device();
  SL_CHECK_DEVICE(op, grad, dev);
  for (const Tensor* t : state) SL_CHECK_DEVICE(op, *t, dev);
  auto same_shape_contiguous = [&](const Tensor& t) {
    SL_CHECK(t.shape() == param.shape())
        << op << ": " << t.str() << " does not match param " << param.str();
    SL_CHECK(t.is_contiguous()) << op << ": " << t.str() << " must be contiguous";
  };
  same_shape_contiguous(param);
  same_shape_contiguous(grad);
  for (const Tensor* t : state) same_shape_contiguous(*t);
  if (param_bf16.defined()) {
    SL_CHECK_DTYPE(op, param_bf16, DType::BF16);
    SL_CHECK_DEVICE(op, param_bf16, dev);
    same_shape_contiguous(param_bf16);
  }
}

}  // namespace sl::kernels
