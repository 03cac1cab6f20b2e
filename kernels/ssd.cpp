// SSD scan op-level functions: argument checks, output allocation, dispatch (kernels/ssd.h).
#include "kernels/ssd.h"

#include <string>

#include "kernels/dispatch.h"

namespace sl::kernels {
namespace {

constexpr const char* kOp = "ssd_scan";

std::string desc(const Tensor& t) { return t.defined() ? t.str() : std::string("undefined"); }

// Checks every input and fills the shared part of the parameters.
SsdParams check_inputs(const Tensor& x, const Tensor& dt, const Tensor& A, const Tensor& Bm,
                       const Tensor& Cm, const Tensor& D, const Tensor& init_state,
                       const Tensor& seq_idx, const SsdOptions& opt) {
  SL_CHECK_DEFINED(kOp, x);
  SL_CHECK_DEFINED(kOp, dt);
  SL_CHECK_DEFINED(kOp, A);
  SL_CHECK_DEFINED(kOp, Bm);
  SL_CHECK_DEFINED(kOp, Cm);
  SL_CHECK_DEFINED(kOp, D);
  SL_CHECK(x.dim() == 4) << kOp << ": x must be [B, T, H, P], got " << x.shape_str();
  SL_CHECK_DTYPE(kOp, x, DType::F32, DType::BF16, DType::F16, DType::F64);
  const int64_t b = x.size(0), t = x.size(1), h = x.size(2), p = x.size(3);
  SL_CHECK(Bm.dim() == 4) << kOp << ": Bm must be [B, T, G, N], got " << Bm.shape_str();
  const int64_t g = Bm.size(2), n = Bm.size(3);
  SL_CHECK(p > 0 && n > 0) << kOp << ": head dim P of x " << x.shape_str()
                           << " and state size N of Bm " << Bm.shape_str() << " must be positive";
  SL_CHECK(g > 0 && h % g == 0) << kOp << ": groups G = " << g << " of Bm " << Bm.shape_str()
                                << " must divide heads H = " << h << " of x " << x.shape_str();
  SL_CHECK_SHAPE(kOp, dt, b, t, h);
  SL_CHECK_SHAPE(kOp, A, h);
  SL_CHECK_SHAPE(kOp, Bm, b, t, g, n);
  SL_CHECK_SHAPE(kOp, Cm, b, t, g, n);
  SL_CHECK_SHAPE(kOp, D, h);
  for (const Tensor* u : {&dt, &A, &Bm, &Cm, &D}) {
    SL_CHECK(u->dtype() == x.dtype() && u->device() == x.device())
        << kOp << ": dt, A, Bm, Cm, D must match x " << x.str() << ", got " << u->str();
  }
  const DType sdt = ssd_state_dtype(x.dtype());
  if (init_state.defined()) {
    SL_CHECK_SHAPE(kOp, init_state, b, h, p, n);
    SL_CHECK_DTYPE(kOp, init_state, sdt);
    SL_CHECK_DEVICE(kOp, init_state, x.device());
  }
  if (seq_idx.defined()) {
    SL_CHECK_SHAPE(kOp, seq_idx, b, t);
    SL_CHECK_DTYPE(kOp, seq_idx, DType::I32);
    SL_CHECK_DEVICE(kOp, seq_idx, x.device());
  }
  SL_CHECK(opt.chunk_size > 0) << kOp << ": chunk_size must be positive, got " << opt.chunk_size;
  SL_CHECK(!(opt.sequential && x.is_cuda()))
      << kOp << ": the sequential algorithm is a CPU reference; CUDA runs the chunked one";
  SsdParams prm;
  prm.dtype = x.dtype();
  prm.batch = b;
  prm.seqlen = t;
  prm.heads = h;
  prm.head_dim = p;
  prm.groups = g;
  prm.state = n;
  prm.chunk = opt.chunk_size;
  prm.sequential = opt.sequential;
  return prm;
}

}  // namespace

DType ssd_state_dtype(DType t) { return t == DType::F64 ? DType::F64 : DType::F32; }

SsdResult ssd_forward(const Tensor& x_in, const Tensor& dt_in, const Tensor& A_in,
                      const Tensor& Bm_in, const Tensor& Cm_in, const Tensor& D_in,
                      const Tensor& init_in, const Tensor& seq_in, const SsdOptions& opt) {
  SsdParams p = check_inputs(x_in, dt_in, A_in, Bm_in, Cm_in, D_in, init_in, seq_in, opt);
  Tensor x = x_in.contiguous(), dt = dt_in.contiguous(), A = A_in.contiguous();
  Tensor Bm = Bm_in.contiguous(), Cm = Cm_in.contiguous(), D = D_in.contiguous();
  Tensor init = init_in.defined() ? init_in.contiguous() : Tensor();
  Tensor seq = seq_in.defined() ? seq_in.contiguous() : Tensor();
  SsdResult r;
  r.y = Tensor::empty(x.shape(), x.dtype(), x.device());
  r.final_state = Tensor::empty({p.batch, p.heads, p.head_dim, p.state},
                                ssd_state_dtype(x.dtype()), x.device());
  p.x = x.data_ptr();
  p.dt = dt.data_ptr();
  p.A = A.data_ptr();
  p.Bm = Bm.data_ptr();
  p.Cm = Cm.data_ptr();
  p.D = D.data_ptr();
  p.init_state = init.defined() ? init.data_ptr() : nullptr;
  p.seq_idx = seq.defined() ? seq.data<int32_t>() : nullptr;
  p.y = r.y.data_ptr();
  p.final_state = r.final_state.data_ptr();
  if (r.y.numel() == 0) {
    if (init.defined()) r.final_state.copy_(init);
    else r.final_state.zero_();
    return r;
  }
  if (x.is_cuda()) {
    SL_CUDA_CALL(kOp, ssd_forward_cuda(p, x.device().index));
  } else {
    ssd_forward_cpu(p);
  }
  return r;
}

SsdGrads ssd_backward(const Tensor& dy_in, const Tensor& dfinal_in, const Tensor& x_in,
                      const Tensor& dt_in, const Tensor& A_in, const Tensor& Bm_in,
                      const Tensor& Cm_in, const Tensor& D_in, const Tensor& init_in,
                      const Tensor& seq_in, const SsdOptions& opt) {
  SsdParams p = check_inputs(x_in, dt_in, A_in, Bm_in, Cm_in, D_in, init_in, seq_in, opt);
  SL_CHECK(dy_in.defined() && dy_in.shape() == x_in.shape() && dy_in.dtype() == x_in.dtype() &&
           dy_in.device() == x_in.device())
      << kOp << ": dy must match x " << x_in.str() << ", got " << desc(dy_in);
  if (dfinal_in.defined()) {
    SL_CHECK_SHAPE(kOp, dfinal_in, p.batch, p.heads, p.head_dim, p.state);
    SL_CHECK_DTYPE(kOp, dfinal_in, ssd_state_dtype(x_in.dtype()));
    SL_CHECK_DEVICE(kOp, dfinal_in, x_in.device());
  }
  Tensor x = x_in.contiguous(), dt = dt_in.contiguous(), A = A_in.contiguous();
  Tensor Bm = Bm_in.contiguous(), Cm = Cm_in.contiguous(), D = D_in.contiguous();
  Tensor init = init_in.defined() ? init_in.contiguous() : Tensor();
  Tensor seq = seq_in.defined() ? seq_in.contiguous() : Tensor();
  Tensor dy = dy_in.contiguous();
  Tensor dfinal = dfinal_in.defined() ? dfinal_in.contiguous() : Tensor();
  SsdGrads g;
  g.dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  g.ddt = Tensor::empty(dt.shape(), dt.dtype(), dt.device());
  g.dA = Tensor::empty(A.shape(), A.dtype(), A.device());
  g.dBm = Tensor::empty(Bm.shape(), Bm.dtype(), Bm.device());
  g.dCm = Tensor::empty(Cm.shape(), Cm.dtype(), Cm.device());
  g.dD = Tensor::empty(D.shape(), D.dtype(), D.device());
  if (init.defined()) g.d_init_state = Tensor::empty(init.shape(), init.dtype(), init.device());
  p.x = x.data_ptr();
  p.dt = dt.data_ptr();
  p.A = A.data_ptr();
  p.Bm = Bm.data_ptr();
  p.Cm = Cm.data_ptr();
  p.D = D.data_ptr();
  p.init_state = init.defined() ? init.data_ptr() : nullptr;
  p.seq_idx = seq.defined() ? seq.data<int32_t>() : nullptr;
  p.dy = dy.data_ptr();
  p.d_final_state = dfinal.defined() ? dfinal.data_ptr() : nullptr;
  p.dx = g.dx.data_ptr();
  p.ddt = g.ddt.data_ptr();
  p.dA = g.dA.data_ptr();
  p.dBm = g.dBm.data_ptr();
  p.dCm = g.dCm.data_ptr();
  p.dD = g.dD.data_ptr();
  p.d_init_state = init.defined() ? g.d_init_state.data_ptr() : nullptr;
  if (x.numel() == 0) {
    for (Tensor* u : {&g.dx, &g.ddt, &g.dA, &g.dBm, &g.dCm, &g.dD})
      if (u->numel() > 0) u->zero_();
    if (init.defined() && init.numel() > 0) {
      if (dfinal.defined()) g.d_init_state.copy_(dfinal);
      else g.d_init_state.zero_();
    }
    return g;
  }
  if (x.is_cuda()) {
    SL_CUDA_CALL(kOp, ssd_backward_cuda(p, x.device().index));
  } else {
    ssd_backward_cpu(p);
  }
  return g;
}

}  // namespace sl::kernels
