#include "kernels/dropout.h"

#include "kernels/dispatch.h"

namespace sl::kernels {

Tensor dropout_forward(const Tensor& x_in, double p, uint64_t seed, uint64_t offset) {
  constexpr const char* kOp = "dropout";
  SL_CHECK_DEFINED(kOp, x_in);
  SL_CHECK_DTYPE(kOp, x_in, DType::F32, DType::BF16, DType::F16, DType::F64);
  SL_CHECK(p >= 0 && p < 1) << kOp << ": p = " << p << " must be in [0, 1)";
  if (p == 0) return x_in;
  Tensor x = x_in.contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  DropoutParams dp;
  dp.x = x.data_ptr();
  dp.y = y.data_ptr();
  dp.dtype = x.dtype();
  dp.n = x.numel();
  dp.p = float(p);
  dp.scale64 = 1.0 / (1.0 - p);
  dp.scale = float(dp.scale64);
  dp.seed = seed;
  dp.offset = offset;
  if (dp.n == 0) return y;
  if (x.is_cuda()) {
    SL_CUDA_CALL(kOp, dropout_cuda(dp, x.device().index));
  } else {
    dropout_cpu(dp);
  }
  return y;
}

Tensor dropout_backward(const Tensor& dy, double p, uint64_t seed, uint64_t offset) {
  return dropout_forward(dy, p, seed, offset);
}

}  // namespace sl::kernels
