// Differentiable neural-network ops (autograd/ops_nn.h): forward through the kernels, backward
// through the same kernels' backward functions.
#include "autograd/ops_nn.h"

#include "kernels/dropout.h"
#include "kernels/embedding.h"
#include "kernels/rmsnorm.h"

namespace sl::ag {

Var cross_entropy(const Var& logits, const Tensor& targets, int64_t ignore_index,
                  kernels::CeReduction reduction) {
  SL_CHECK(logits.defined()) << "cross_entropy: undefined logits";
  kernels::CrossEntropyResult r =
      kernels::cross_entropy_forward(logits.value(), targets, ignore_index, reduction);
  return make_result(
      "cross_entropy", r.loss, {logits},
      [x = logits.value(), targets, lse = r.lse, nv = r.n_valid, ignore_index, reduction](
          const Tensor& g, const std::vector<bool>&) {
        return std::vector<Tensor>{
            kernels::cross_entropy_backward(x, targets, lse, nv, g, ignore_index, reduction)};
      });
}

Var embedding(const Var& weight, const Tensor& ids) {
  SL_CHECK(weight.defined()) << "embedding: undefined weight";
  Tensor out = kernels::embedding_forward(weight.value(), ids);
  return make_result("embedding", out, {weight},
                     [ids, v = weight.size(0)](const Tensor& g, const std::vector<bool>&) {
                       return std::vector<Tensor>{kernels::embedding_backward(g, ids, v)};
                     });
}

Var rmsnorm(const Var& x, const Var& w, double eps) {
  SL_CHECK(x.defined() && w.defined()) << "rmsnorm: undefined input";
  kernels::RmsNormResult r = kernels::rmsnorm_forward(x.value(), w.value(), eps);
  return make_result("rmsnorm", r.y, {x, w},
                     [xv = x.value(), wv = w.value(), rstd = r.rstd](
                         const Tensor& g, const std::vector<bool>&) {
                       kernels::RmsNormGrads d = kernels::rmsnorm_backward(g, xv, wv, rstd);
                       return std::vector<Tensor>{d.dx, d.dw};
                     });
}

Var gated_rmsnorm(const Var& x, const Var& z, const Var& w, int64_t group_size, double eps) {
  SL_CHECK(x.defined() && z.defined() && w.defined()) << "gated_rmsnorm: undefined input";
  kernels::RmsNormResult r =
      kernels::gated_rmsnorm_forward(x.value(), z.value(), w.value(), group_size, eps);
  return make_result("gated_rmsnorm", r.y, {x, z, w},
                     [xv = x.value(), zv = z.value(), wv = w.value(), rstd = r.rstd, group_size](
                         const Tensor& g, const std::vector<bool>&) {
                       kernels::RmsNormGrads d =
                           kernels::gated_rmsnorm_backward(g, xv, zv, wv, rstd, group_size);
                       return std::vector<Tensor>{d.dx, d.dz, d.dw};
                     });
}

Var rope(const Var& x, const kernels::RopeOptions& opt) {
  SL_CHECK(x.defined()) << "rope: undefined input";
  return make_result("rope", kernels::rope_forward(x.value(), opt), {x},
                     [opt](const Tensor& g, const std::vector<bool>&) {
                       return std::vector<Tensor>{kernels::rope_backward(g, opt)};
                     });
}

Var dropout(const Var& x, double p, Generator& gen) {
  SL_CHECK(x.defined()) << "dropout: undefined input";
  if (p == 0) return x;
  const uint64_t seed = gen.seed, offset = gen.next_offset();
  return make_result("dropout", kernels::dropout_forward(x.value(), p, seed, offset), {x},
                     [p, seed, offset](const Tensor& g, const std::vector<bool>&) {
                       return std::vector<Tensor>{kernels::dropout_backward(g, p, seed, offset)};
                     });
}

}  // namespace sl::ag
