// Differentiable matmul and linear (autograd/ops_matmul.h). The backward captures only the two
// operands (and shapes), never the output.
#include "autograd/ops_matmul.h"

#include "kernels/matmul.h"

namespace sl::ag {

Var matmul(const Var& a, const Var& b, bool trans_a, bool trans_b) {
  SL_CHECK(a.defined() && b.defined()) << "matmul: undefined input";
  Tensor out = kernels::matmul(a.value(), b.value(), trans_a, trans_b);
  return make_result("matmul", out, {a, b},
                     [av = a.value(), bv = b.value(), trans_a, trans_b](
                         const Tensor& g, const std::vector<bool>& needs) {
                       return kernels::matmul_backward(av, bv, g, trans_a, trans_b, needs[0],
                                                       needs[1]);
                     });
}

Var linear(const Var& x, const Var& w, const Var& bias) {
  SL_CHECK(x.defined() && w.defined()) << "linear: undefined input";
  Tensor out = kernels::linear(x.value(), w.value(), bias.defined() ? bias.value() : Tensor());
  DType bias_dtype = bias.defined() ? bias.dtype() : out.dtype();
  return make_result("linear", out, {x, w, bias},
                     [xv = x.value(), wv = w.value(), bias_dtype](const Tensor& g,
                                                                  const std::vector<bool>& needs) {
                       int64_t in = xv.size(-1), out_features = wv.size(0);
                       int64_t rows = 1;
                       for (int i = 0; i + 1 < xv.dim(); ++i) rows *= xv.size(i);
                       std::vector<Tensor> d = kernels::matmul_backward(
                           xv.reshape({rows, in}), wv, g.reshape({rows, out_features}), false, true,
                           needs[0], needs[1]);
                       if (d[0].defined()) d[0] = d[0].view(xv.shape());
                       d.push_back(needs[2] ? kernels::bias_backward(g, bias_dtype) : Tensor());
                       return d;
                     });
}

}  // namespace sl::ag
