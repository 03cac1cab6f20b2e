#include "kernels/rmsnorm.h"

#include <algorithm>
#include <string>

#include "kernels/dispatch.h"

namespace sl::kernels {
namespace {

DType stat_dtype(DType t) { return t == DType::F64 ? DType::F64 : DType::F32; }

// Checks the arguments shared by both variants and returns the number of rows.
int64_t check_common(const char* op, const Tensor& x, const Tensor& w) {
  SL_CHECK_DEFINED(op, x);
  SL_CHECK_DEFINED(op, w);
  SL_CHECK(x.dim() >= 1) << op << ": x must have a channel dimension, got " << x.shape_str();
  SL_CHECK_DTYPE(op, x, DType::F32, DType::BF16, DType::F16, DType::F64);
  SL_CHECK_SHAPE(op, w, x.size(-1));
  SL_CHECK_DTYPE(op, w, x.dtype());
  SL_CHECK_DEVICE(op, w, x.device());
  return x.size(-1) == 0 ? 0 : x.numel() / x.size(-1);
}

void check_like(const char* op, const char* arg, const Tensor& t, const Tensor& x) {
  SL_CHECK(t.defined() && t.shape() == x.shape() && t.dtype() == x.dtype() &&
           t.device() == x.device())
      << op << ": " << arg << " must match x " << x.str() << ", got "
      << (t.defined() ? t.str() : std::string("undefined"));
}

Dims stat_shape(const Tensor& x, int64_t groups, bool gated) {
  Dims s;
  for (int i = 0; i + 1 < x.dim(); ++i) s.push_back(x.size(i));
  if (gated) s.push_back(groups);
  return s;
}

RmsNormResult forward(const char* op, const Tensor& x_in, const Tensor* z_in, const Tensor& w_in,
                      int64_t group_size, double eps) {
  int64_t rows = check_common(op, x_in, w_in);
  int64_t c = x_in.size(-1);
  SL_CHECK(group_size > 0 && c % group_size == 0)
      << op << ": group_size " << group_size << " must divide C = " << c << " of x "
      << x_in.shape_str();
  if (z_in) check_like(op, "z", *z_in, x_in);
  Tensor x = x_in.contiguous(), w = w_in.contiguous();
  Tensor z = z_in ? z_in->contiguous() : Tensor();
  RmsNormResult r;
  r.y = Tensor::empty(x.shape(), x.dtype(), x.device());
  r.rstd = Tensor::empty(stat_shape(x, c / group_size, z_in != nullptr), stat_dtype(x.dtype()),
                         x.device());
  RmsNormParams p;
  p.x = x.data_ptr();
  p.z = z_in ? z.data_ptr() : nullptr;
  p.w = w.data_ptr();
  p.dtype = x.dtype();
  p.rows = rows;
  p.c = c;
  p.group_size = group_size;
  p.eps = eps;
  p.y = r.y.data_ptr();
  p.rstd = r.rstd.data_ptr();
  if (rows == 0 || c == 0) return r;
  if (x.is_cuda()) {
    SL_CUDA_CALL(op, rmsnorm_forward_cuda(p, x.device().index));
  } else {
    rmsnorm_forward_cpu(p);
  }
  return r;
}

RmsNormGrads backward(const char* op, const Tensor& dy_in, const Tensor& x_in, const Tensor* z_in,
                      const Tensor& w_in, const Tensor& rstd_in, int64_t group_size) {
  int64_t rows = check_common(op, x_in, w_in);
  int64_t c = x_in.size(-1);
  SL_CHECK(group_size > 0 && c % group_size == 0)
      << op << ": group_size " << group_size << " must divide C = " << c;
  check_like(op, "dy", dy_in, x_in);
  if (z_in) check_like(op, "z", *z_in, x_in);
  SL_CHECK(rstd_in.defined() && rstd_in.numel() == rows * (c / group_size) &&
           rstd_in.dtype() == stat_dtype(x_in.dtype()) && rstd_in.device() == x_in.device())
      << op << ": rstd " << (rstd_in.defined() ? rstd_in.str() : std::string("undefined"))
      << " does not match x " << x_in.str();
  Tensor x = x_in.contiguous(), w = w_in.contiguous(), dy = dy_in.contiguous();
  Tensor rstd = rstd_in.contiguous();
  Tensor z = z_in ? z_in->contiguous() : Tensor();
  RmsNormGrads g;
  g.dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (z_in) g.dz = Tensor::empty(x.shape(), x.dtype(), x.device());
  g.dw = Tensor::empty(w.shape(), w.dtype(), w.device());
  RmsNormParams p;
  p.x = x.data_ptr();
  p.z = z_in ? z.data_ptr() : nullptr;
  p.w = w.data_ptr();
  p.dtype = x.dtype();
  p.rows = rows;
  p.c = c;
  p.group_size = group_size;
  p.dy = dy.data_ptr();
  p.rstd_in = rstd.data_ptr();
  p.dx = g.dx.data_ptr();
  p.dz = z_in ? g.dz.data_ptr() : nullptr;
  p.dw = g.dw.data_ptr();
  if (rows == 0 || c == 0) {
    g.dw.zero_();
    return g;
  }
  if (x.is_cuda()) {
    SL_CUDA_CALL(op, rmsnorm_backward_cuda(p, x.device().index));
  } else {
    rmsnorm_backward_cpu(p);
  }
  return g;
}

}  // namespace

RmsNormResult rmsnorm_forward(const Tensor& x, const Tensor& w, double eps) {
  SL_CHECK_DEFINED("rmsnorm", x);
  return forward("rmsnorm", x, nullptr, w, x.dim() >= 1 ? std::max<int64_t>(x.size(-1), 1) : 1,
                 eps);
}

RmsNormGrads rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& w,
                              const Tensor& rstd) {
  SL_CHECK_DEFINED("rmsnorm", x);
  return backward("rmsnorm", dy, x, nullptr, w, rstd,
                  x.dim() >= 1 ? std::max<int64_t>(x.size(-1), 1) : 1);
}

RmsNormResult gated_rmsnorm_forward(const Tensor& x, const Tensor& z, const Tensor& w,
                                    int64_t group_size, double eps) {
  return forward("gated_rmsnorm", x, &z, w, group_size, eps);
}

RmsNormGrads gated_rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& z,
                                    const Tensor& w, const Tensor& rstd, int64_t group_size) {
  return backward("gated_rmsnorm", dy, x, &z, w, rstd, group_size);
}

}  // namespace sl::kernels
