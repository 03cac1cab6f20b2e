#include "kernels/rope.h"

#include <cmath>

#include "kernels/dispatch.h"

namespace sl::kernels {
namespace {

constexpr const char* kOp = "rope";

Tensor apply(const Tensor& x_in, const RopeOptions& opt, bool inverse) {
  SL_CHECK_DEFINED(kOp, x_in);
  SL_CHECK_SHAPE(kOp, x_in, -1, -1, -1, -1);
  SL_CHECK_DTYPE(kOp, x_in, DType::F32, DType::BF16, DType::F16, DType::F64);
  const int64_t d = x_in.size(3);
  const int64_t rot = opt.rotary_dim == 0 ? d : opt.rotary_dim;
  SL_CHECK(rot > 0 && rot % 2 == 0 && rot <= d && rot / 2 <= kRopeMaxHalf)
      << kOp << ": rotary_dim " << rot << " must be even, positive, <= D = " << d << " and <= "
      << 2 * kRopeMaxHalf << " (x " << x_in.shape_str() << ")";
  SL_CHECK(opt.theta > 0) << kOp << ": theta " << opt.theta << " must be positive";
  Tensor x = x_in.contiguous();
  Tensor pos;
  if (opt.positions.defined()) {
    const Tensor& positions = opt.positions;
    SL_CHECK_SHAPE(kOp, positions, x.size(0), x.size(1));
    SL_CHECK_DTYPE(kOp, positions, DType::I32, DType::I64);
    SL_CHECK_DEVICE(kOp, positions, x.device());
    pos = positions.contiguous();
  }
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  RopeParams p;
  p.x = x.data_ptr();
  p.y = y.data_ptr();
  p.dtype = x.dtype();
  p.b = x.size(0);
  p.t = x.size(1);
  p.h = x.size(2);
  p.d = d;
  p.rot = rot;
  p.start = opt.start;
  p.positions = pos.defined() ? pos.data_ptr() : nullptr;
  p.pos_dtype = pos.defined() ? pos.dtype() : DType::I64;
  p.inverse = inverse;
  for (int64_t i = 0; i < kRopeMaxHalf; ++i)
    p.inv_freq[i] = i < rot / 2 ? std::pow(opt.theta, -2.0 * double(i) / double(rot)) : 0.0;
  if (x.numel() == 0) return y;
  if (x.is_cuda()) {
    SL_CUDA_CALL(kOp, rope_cuda(p, x.device().index));
  } else {
    rope_cpu(p);
  }
  return y;
}

}  // namespace

Tensor rope_forward(const Tensor& x, const RopeOptions& opt) { return apply(x, opt, false); }
Tensor rope_backward(const Tensor& dy, const RopeOptions& opt) { return apply(dy, opt, true); }

}  // namespace sl::kernels
