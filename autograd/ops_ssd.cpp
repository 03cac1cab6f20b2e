// Differentiable Mamba-2 ops (autograd/ops_ssd.h). ssd_scan records its two outputs as two nodes
// over the same inputs: the backward is linear in (dy, d_final_state), so running it once per
// output that receives a gradient and summing (the engine's accumulation) is exact; training uses
// only y, so it pays for one backward.
#include "autograd/ops_ssd.h"

namespace sl::ag {

SsdScanResult ssd_scan(const Var& x, const Var& dt, const Var& A, const Var& Bm, const Var& Cm,
                       const Var& D, const Var& init_state, const Tensor& seq_idx,
                       const kernels::SsdOptions& opt) {
  SL_CHECK(x.defined() && dt.defined() && A.defined() && Bm.defined() && Cm.defined() &&
           D.defined())
      << "ssd_scan: undefined input";
  const Tensor init = init_state.defined() ? init_state.value() : Tensor();
  kernels::SsdResult r = kernels::ssd_forward(x.value(), dt.value(), A.value(), Bm.value(),
                                              Cm.value(), D.value(), init, seq_idx, opt);
  const std::vector<Var> inputs{x, dt, A, Bm, Cm, D, init_state};
  auto backward_for = [xv = x.value(), dtv = dt.value(), Av = A.value(), Bv = Bm.value(),
                       Cv = Cm.value(), Dv = D.value(), init, seq_idx, opt](bool of_state) {
    return [=](const Tensor& g, const std::vector<bool>&) {
      Tensor dy = of_state ? Tensor::zeros(xv.shape(), xv.dtype(), xv.device()) : g;
      Tensor dfinal = of_state ? g : Tensor();
      kernels::SsdGrads d =
          kernels::ssd_backward(dy, dfinal, xv, dtv, Av, Bv, Cv, Dv, init, seq_idx, opt);
      return std::vector<Tensor>{d.dx, d.ddt, d.dA, d.dBm, d.dCm, d.dD, d.d_init_state};
    };
  };
  SsdScanResult out;
  out.y = make_result("ssd_scan", r.y, inputs, backward_for(false));
  out.final_state = make_result("ssd_scan_state", r.final_state, inputs, backward_for(true));
  return out;
}

Var causal_conv1d_silu(const Var& x, const Var& w, const Var& bias, const Var& init_state,
                       const Tensor& seq_idx) {
  SL_CHECK(x.defined() && w.defined() && bias.defined()) << "causal_conv1d_silu: undefined input";
  const Tensor init = init_state.defined() ? init_state.value() : Tensor();
  Tensor y = kernels::causal_conv1d_silu_forward(x.value(), w.value(), bias.value(), init,
                                                 seq_idx);
  return make_result(
      "causal_conv1d_silu", y, {x, w, bias, init_state},
      [xv = x.value(), wv = w.value(), bv = bias.value(), init, seq_idx](
          const Tensor& g, const std::vector<bool>&) {
        kernels::Conv1dGrads d = kernels::causal_conv1d_silu_backward(g, xv, wv, bv, init, seq_idx);
        return std::vector<Tensor>{d.dx, d.dw, d.dbias, d.d_init_state};
      });
}

}  // namespace sl::ag
