// Differentiable superlinear attention. The backward captures the four inputs and the forward's
// O(L k) metadata that its path reads (anchors, span log-sum-exps, and gate scores and the
// window's log-sum-exp where it needs them: Note [saved for backward] in kernels/superlinear.h),
// and with keep_partials the window and span outputs; everything else, and nothing of size L x
// candidates, is recomputed (kernels/superlinear_cpu.cpp, kernels/superlinear_span_bwd_cuda.cu).
#include "autograd/ops_superlinear.h"

namespace sl::ag {

Var superlinear_attention(const Var& qa, const Var& qs, const Var& k, const Var& v,
                          const kernels::SuperlinearConfig& cfg, const Tensor& doc_starts,
                          int64_t q_start, bool keep_partials) {
  for (const Var* x : {&qa, &qs, &k, &v})
    SL_CHECK(x->defined()) << "superlinear_attention: undefined input";
  kernels::SuperlinearForward f =
      kernels::superlinear_forward(qa.value(), qs.value(), k.value(), v.value(), cfg, doc_starts,
                                   q_start, nullptr, keep_partials);
  Tensor out = f.out;
  kernels::drop_unsaved(f, qa.value(), k.value(), cfg);
  return make_result(
      "superlinear_attention", out, {qa, qs, k, v},
      [qav = qa.value(), qsv = qs.value(), kv = k.value(), vv = v.value(), f, cfg, doc_starts,
       q_start](const Tensor& g, const std::vector<bool>& needs) {
        kernels::SuperlinearGrads d =
            kernels::superlinear_backward(g, qav, qsv, kv, vv, f, cfg, doc_starts, q_start);
        return std::vector<Tensor>{needs[0] ? d.dqa : Tensor(), needs[1] ? d.dqs : Tensor(),
                                   needs[2] ? d.dk : Tensor(), needs[3] ? d.dv : Tensor()};
      });
}

}  // namespace sl::ag
