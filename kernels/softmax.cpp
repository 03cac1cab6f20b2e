// Op-level softmax: checks, the [rows, cols] view of the last dim, dispatch.
#include "kernels/softmax.h"

#include "kernels/dispatch.h"

namespace sl::kernels {
namespace {

Tensor run(const char* op, bool log, const Tensor& in0, const Tensor* in1) {
  SL_CHECK_DEFINED(op, in0);
  SL_CHECK_DTYPE(op, in0, DType::F32, DType::BF16, DType::F16, DType::F64);
  SL_CHECK(in0.dim() >= 1) << op << ": input must have at least one dim, got " << in0.shape_str();
  Tensor a = in0.contiguous(), b;
  if (in1) {
    SL_CHECK_DEFINED(op, *in1);
    SL_CHECK(in1->shape() == in0.shape()) << op << " backward: dy " << in1->shape_str()
                                          << " must have the shape of y " << in0.shape_str();
    SL_CHECK_DEVICE(op, *in1, in0.device());
    b = in1->to(in0.dtype()).contiguous();
  }
  Tensor out = Tensor::empty(in0.shape(), in0.dtype(), in0.device());
  int64_t cols = in0.shape()[in0.dim() - 1];
  SoftmaxParams p{log,
                  in1 != nullptr,
                  in0.dtype(),
                  a.data_ptr(),
                  b.defined() ? b.data_ptr() : nullptr,
                  out.data_ptr(),
                  cols == 0 ? 0 : in0.numel() / cols,
                  cols};
  if (in0.numel() == 0) return out;
  if (in0.is_cuda()) {
    SL_CUDA_CALL(op, softmax_cuda(p, in0.device().index));
  } else {
    softmax_cpu(p);
  }
  return out;
}

}  // namespace

Tensor softmax(const Tensor& x) {
  return run("softmax", false, x, nullptr);
}
Tensor log_softmax(const Tensor& x) {
  return run("log_softmax", true, x, nullptr);
}
Tensor softmax_backward(const Tensor& y, const Tensor& dy) {
  return run("softmax", false, y, &dy);
}
Tensor log_softmax_backward(const Tensor& y, const Tensor& dy) {
  return run("log_softmax", true, y, &dy);
}

}  // namespace sl::kernels
