// Op-level reductions: argument checks, the [outer, r, inner] view, dispatch, and the backward
// functions (which are broadcasts and scatters built from views and elementwise ops).
#include "kernels/reduce.h"

#include "kernels/dispatch.h"
#include "kernels/elementwise.h"

namespace sl::kernels {
namespace {

const char* op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum:
      return "sum";
    case ReduceOp::Mean:
      return "mean";
    case ReduceOp::Max:
      return "max";
  }
  return "reduce";
}

Dims out_shape(const Dims& in, int d, bool keepdim) {
  Dims out;
  for (int i = 0; i < in.n; ++i) {
    if (i != d) {
      out.push_back(in[i]);
    } else if (keepdim) {
      out.push_back(1);
    }
  }
  return out;
}

int wrap(int dim, const Dims& shape, const char* op) {
  int d = dim < 0 ? dim + shape.n : dim;
  SL_CHECK(d >= 0 && d < shape.n) << op << ": dim " << dim << " out of range for shape "
                                  << shape.str();
  return d;
}

// Reduces x over dim d into new tensors (values, and indices for Max).
std::pair<Tensor, Tensor> reduce_dim(ReduceOp op, const Tensor& x, int dim, bool keepdim) {
  const char* name = op_name(op);
  SL_CHECK_DEFINED(name, x);
  SL_CHECK_DTYPE(name, x, DType::F32, DType::BF16, DType::F16, DType::F64);
  SL_CHECK(x.dim() >= 1) << name << ": x must have at least one dim, got " << x.shape_str();
  int d = wrap(dim, x.shape(), name);
  ReduceParams p{op, x.dtype(), nullptr, nullptr, nullptr, 1, x.shape()[d], 1};
  SL_CHECK(p.r > 0 || op != ReduceOp::Max)
      << name << ": cannot take the max over an empty dim of " << x.shape_str();
  for (int i = 0; i < d; ++i) p.outer *= x.shape()[i];
  for (int i = d + 1; i < x.dim(); ++i) p.inner *= x.shape()[i];
  Tensor xc = x.contiguous();
  Dims os = out_shape(x.shape(), d, keepdim);
  Tensor out = Tensor::empty(os, x.dtype(), x.device());
  Tensor idx;
  if (op == ReduceOp::Max) idx = Tensor::empty(os, DType::I64, x.device());
  p.x = xc.data_ptr();
  p.out = out.data_ptr();
  p.index = idx.defined() ? idx.data<int64_t>() : nullptr;
  if (p.outer * p.inner == 0) return {out, idx};
  if (x.is_cuda()) {
    SL_CUDA_CALL(name, reduce_cuda(p, x.device().index));
  } else {
    reduce_cpu(p);
  }
  return {out, idx};
}

// dy of the reduced shape, viewed with the reduced dim present (size 1).
Tensor with_dim(const Tensor& dy, const Dims& x_shape, int d, bool keepdim, const char* op) {
  Dims kept = out_shape(x_shape, d, true);
  Dims expect = out_shape(x_shape, d, keepdim);
  SL_CHECK(dy.shape() == expect) << op << " backward: dy " << dy.shape_str() << " for x "
                                 << x_shape.str() << " reduced over dim " << d << " must be "
                                 << expect.str();
  return dy.reshape(kept);
}

}  // namespace

Tensor sum(const Tensor& x, int dim, bool keepdim) {
  return reduce_dim(ReduceOp::Sum, x, dim, keepdim).first;
}
Tensor mean(const Tensor& x, int dim, bool keepdim) {
  return reduce_dim(ReduceOp::Mean, x, dim, keepdim).first;
}
std::pair<Tensor, Tensor> max(const Tensor& x, int dim, bool keepdim) {
  return reduce_dim(ReduceOp::Max, x, dim, keepdim);
}

Tensor sum_all(const Tensor& x) {
  SL_CHECK_DEFINED("sum_all", x);
  return sum(x.reshape({x.numel()}), 0, false);
}
Tensor mean_all(const Tensor& x) {
  SL_CHECK_DEFINED("mean_all", x);
  return mean(x.reshape({x.numel()}), 0, false);
}

Tensor sum_backward(const Tensor& dy, const Dims& x_shape, int dim, bool keepdim) {
  int d = wrap(dim, x_shape, "sum");
  return with_dim(dy, x_shape, d, keepdim, "sum").expand(x_shape).contiguous();
}

Tensor mean_backward(const Tensor& dy, const Dims& x_shape, int dim, bool keepdim) {
  int d = wrap(dim, x_shape, "mean");
  Tensor g = with_dim(dy, x_shape, d, keepdim, "mean").expand(x_shape);
  return scale(g, 1.0 / double(x_shape[d]));
}

Tensor max_backward(const Tensor& dy, const Tensor& indices, const Dims& x_shape, int dim,
                    bool keepdim) {
  int d = wrap(dim, x_shape, "max");
  SL_CHECK_DTYPE("max", indices, DType::I64);
  SL_CHECK(indices.shape() == dy.shape())
      << "max backward: indices " << indices.shape_str() << " vs dy " << dy.shape_str();
  SL_CHECK_DEVICE("max", indices, dy.device());
  SL_CHECK_DTYPE("max", dy, DType::F32, DType::BF16, DType::F16, DType::F64);
  Tensor g = with_dim(dy, x_shape, d, keepdim, "max").contiguous();
  Tensor idx = indices.contiguous();
  MaxBackwardParams p{dy.dtype(), g.data_ptr(), idx.data<int64_t>(), nullptr, 1, x_shape[d], 1};
  for (int i = 0; i < d; ++i) p.outer *= x_shape[i];
  for (int i = d + 1; i < x_shape.n; ++i) p.inner *= x_shape[i];
  Tensor dx = Tensor::empty(x_shape, dy.dtype(), dy.device());
  p.dx = dx.data_ptr();
  if (dx.numel() == 0) return dx;
  if (dy.is_cuda()) {
    SL_CUDA_CALL("max", max_backward_cuda(p, dy.device().index));
  } else {
    max_backward_cpu(p);
  }
  return dx;
}

Tensor sum_all_backward(const Tensor& dy, const Dims& x_shape) {
  SL_CHECK(dy.numel() == 1) << "sum_all backward: dy must have one element, got " << dy.shape_str();
  return dy.reshape({}).expand(x_shape).contiguous();
}

Tensor mean_all_backward(const Tensor& dy, const Dims& x_shape) {
  SL_CHECK(dy.numel() == 1) << "mean_all backward: dy must have one element, got "
                            << dy.shape_str();
  return scale(dy.reshape({}).expand(x_shape), 1.0 / double(std::max<int64_t>(1, x_shape.numel())));
}

}  // namespace sl::kernels
