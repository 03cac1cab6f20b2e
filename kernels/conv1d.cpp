// Causal conv1d + SiLU op-level functions: argument checks, allocation, dispatch
// (kernels/conv1d.h).
#include "kernels/conv1d.h"

#include <string>

#include "kernels/dispatch.h"

namespace sl::kernels {
namespace {

constexpr const char* kOp = "causal_conv1d_silu";

Conv1dParams check_inputs(const Tensor& x, const Tensor& w, const Tensor& bias,
                          const Tensor& init_state, const Tensor& seq_idx) {
  SL_CHECK_DEFINED(kOp, x);
  SL_CHECK_DEFINED(kOp, w);
  SL_CHECK_DEFINED(kOp, bias);
  SL_CHECK(x.dim() == 3) << kOp << ": x must be [B, T, Cc], got " << x.shape_str();
  SL_CHECK_DTYPE(kOp, x, DType::F32, DType::BF16, DType::F16, DType::F64);
  SL_CHECK(w.dim() == 2 && w.size(1) >= 1)
      << kOp << ": w must be [Cc, W] with W >= 1, got " << w.shape_str();
  const int64_t b = x.size(0), t = x.size(1), c = x.size(2), width = w.size(1);
  SL_CHECK_SHAPE(kOp, w, c, width);
  SL_CHECK_SHAPE(kOp, bias, c);
  for (const Tensor* u : {&w, &bias}) {
    SL_CHECK(u->dtype() == x.dtype() && u->device() == x.device())
        << kOp << ": w and bias must match x " << x.str() << ", got " << u->str();
  }
  if (init_state.defined()) {
    SL_CHECK_SHAPE(kOp, init_state, b, c, width - 1);
    SL_CHECK_DTYPE(kOp, init_state, x.dtype());
    SL_CHECK_DEVICE(kOp, init_state, x.device());
  }
  if (seq_idx.defined()) {
    SL_CHECK_SHAPE(kOp, seq_idx, b, t);
    SL_CHECK_DTYPE(kOp, seq_idx, DType::I32);
    SL_CHECK_DEVICE(kOp, seq_idx, x.device());
  }
  Conv1dParams p;
  p.dtype = x.dtype();
  p.batch = b;
  p.seqlen = t;
  p.channels = c;
  p.width = width;
  return p;
}

}  // namespace

Tensor causal_conv1d_silu_forward(const Tensor& x_in, const Tensor& w_in, const Tensor& bias_in,
                                  const Tensor& init_in, const Tensor& seq_in) {
  Conv1dParams p = check_inputs(x_in, w_in, bias_in, init_in, seq_in);
  Tensor x = x_in.contiguous(), w = w_in.contiguous(), bias = bias_in.contiguous();
  Tensor init = init_in.defined() ? init_in.contiguous() : Tensor();
  Tensor seq = seq_in.defined() ? seq_in.contiguous() : Tensor();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (y.numel() == 0) return y;
  p.x = x.data_ptr();
  p.w = w.data_ptr();
  p.bias = bias.data_ptr();
  p.init_state = init.defined() ? init.data_ptr() : nullptr;
  p.seq_idx = seq.defined() ? seq.data<int32_t>() : nullptr;
  p.y = y.data_ptr();
  if (x.is_cuda()) {
    SL_CUDA_CALL(kOp, conv1d_forward_cuda(p, x.device().index));
  } else {
    conv1d_forward_cpu(p);
  }
  return y;
}

Conv1dGrads causal_conv1d_silu_backward(const Tensor& dy_in, const Tensor& x_in,
                                        const Tensor& w_in, const Tensor& bias_in,
                                        const Tensor& init_in, const Tensor& seq_in) {
  Conv1dParams p = check_inputs(x_in, w_in, bias_in, init_in, seq_in);
  SL_CHECK(dy_in.defined() && dy_in.shape() == x_in.shape() && dy_in.dtype() == x_in.dtype() &&
           dy_in.device() == x_in.device())
      << kOp << ": dy must match x " << x_in.str() << ", got "
      << (dy_in.defined() ? dy_in.str() : std::string("undefined"));
  Tensor x = x_in.contiguous(), w = w_in.contiguous(), bias = bias_in.contiguous();
  Tensor init = init_in.defined() ? init_in.contiguous() : Tensor();
  Tensor seq = seq_in.defined() ? seq_in.contiguous() : Tensor();
  Tensor dy = dy_in.contiguous();
  Conv1dGrads g;
  g.dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  g.dw = Tensor::empty(w.shape(), w.dtype(), w.device());
  g.dbias = Tensor::empty(bias.shape(), bias.dtype(), bias.device());
  if (init.defined()) g.d_init_state = Tensor::empty(init.shape(), init.dtype(), init.device());
  if (x.numel() == 0) {
    for (Tensor* u : {&g.dx, &g.dw, &g.dbias, &g.d_init_state})
      if (u->defined() && u->numel() > 0) u->zero_();
    return g;
  }
  p.x = x.data_ptr();
  p.w = w.data_ptr();
  p.bias = bias.data_ptr();
  p.init_state = init.defined() ? init.data_ptr() : nullptr;
  p.seq_idx = seq.defined() ? seq.data<int32_t>() : nullptr;
  p.dy = dy.data_ptr();
  p.dx = g.dx.data_ptr();
  p.dw = g.dw.data_ptr();
  p.dbias = g.dbias.data_ptr();
  p.d_init_state = init.defined() ? g.d_init_state.data_ptr() : nullptr;
  if (x.is_cuda()) {
    SL_CUDA_CALL(kOp, conv1d_backward_cuda(p, x.device().index));
  } else {
    conv1d_backward_cpu(p);
  }
  return g;
}

}  // namespace sl::kernels
