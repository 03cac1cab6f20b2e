// Differentiable shape ops (autograd/ops_shape.h): thin wrappers over kernels/shape_ops.h whose
// backward rules reuse the same kernels.
#include "autograd/ops_shape.h"

#include "autograd/ops_elementwise.h"
#include "kernels/shape_ops.h"

namespace sl::ag {

Var concat(const std::vector<Var>& xs, int dim) {
  SL_CHECK(!xs.empty()) << "concat: no inputs";
  std::vector<Tensor> values;
  std::vector<int64_t> sizes;
  for (const Var& x : xs) {
    SL_CHECK(x.defined()) << "concat: an input is undefined";
    values.push_back(x.value());
  }
  Tensor out = kernels::concat(values, dim);
  int d = out.wrap_dim(dim);
  for (const Tensor& v : values) sizes.push_back(v.size(d));
  return make_result("concat", out, xs,
                     [sizes, d](const Tensor& g, const std::vector<bool>& needs) {
                       std::vector<Tensor> grads(sizes.size());
                       int64_t off = 0;
                       for (size_t i = 0; i < sizes.size(); ++i) {
                         if (needs[i]) grads[i] = g.slice(d, off, off + sizes[i]);
                         off += sizes[i];
                       }
                       return grads;
                     });
}

std::vector<Var> split(const Var& x, const std::vector<int64_t>& sizes, int dim) {
  SL_CHECK(x.defined()) << "split: undefined input";
  int d = x.value().wrap_dim(dim);
  kernels::split(x.value(), sizes, d);  // checks the sizes
  std::vector<Var> out;
  int64_t off = 0;
  for (int64_t s : sizes) {
    out.push_back(slice(x, d, off, off + s));
    off += s;
  }
  return out;
}

Var gather(const Var& x, int dim, const Tensor& index) {
  SL_CHECK(x.defined()) << "gather: undefined input";
  Tensor out = kernels::gather(x.value(), dim, index);
  int d = x.value().wrap_dim(dim);
  Dims shape = x.shape();
  return make_result("gather", out, {x},
                     [shape, d, index](const Tensor& g, const std::vector<bool>&) {
                       Tensor dx = Tensor::zeros(shape, g.dtype(), g.device());
                       kernels::scatter_add_(dx, d, index, g);
                       return std::vector<Tensor>{dx};
                     });
}

Var scatter_add(const Var& dst, int dim, const Tensor& index, const Var& src) {
  SL_CHECK(dst.defined() && src.defined()) << "scatter_add: undefined input";
  Tensor out = kernels::scatter_add(dst.value(), dim, index, src.value());
  int d = dst.value().wrap_dim(dim);
  Dims src_shape = src.shape();
  return make_result(
      "scatter_add", out, {dst, src},
      [src_shape, d, index](const Tensor& g, const std::vector<bool>& needs) {
        std::vector<Tensor> grads(2);
        if (needs[0]) grads[0] = g;
        if (needs[1]) {
          Tensor picked = kernels::gather(g, d, index);
          if (picked.shape() == src_shape) {
            grads[1] = picked;
          } else {
            grads[1] = Tensor::zeros(src_shape, g.dtype(), g.device());
            Tensor region = grads[1];
            for (int k = 0; k < picked.dim(); ++k) region = region.slice(k, 0, picked.size(k));
            region.copy_(picked);
          }
        }
        return grads;
      });
}

}  // namespace sl::ag
