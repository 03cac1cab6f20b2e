// Op-level elementwise functions: argument checks, broadcasting, dtype promotion, dispatch.
#include "kernels/elementwise.h"

#include "kernels/dispatch.h"
#include "kernels/reduce.h"

namespace sl::kernels {

const char* unary_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::Neg:
      return "neg";
    case UnaryOp::Exp:
      return "exp";
    case UnaryOp::Log:
      return "log";
    case UnaryOp::Silu:
      return "silu";
    case UnaryOp::Gelu:
      return "gelu";
    case UnaryOp::Relu:
      return "relu";
    case UnaryOp::Relu2:
      return "relu2";
    case UnaryOp::Sigmoid:
      return "sigmoid";
    case UnaryOp::Softplus:
      return "softplus";
    case UnaryOp::Scale:
      return "scale";
    case UnaryOp::AddScalar:
      return "add_scalar";
  }
  return "unary";
}

const char* binary_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::Add:
      return "add";
    case BinaryOp::Sub:
      return "sub";
    case BinaryOp::Mul:
      return "mul";
    case BinaryOp::Div:
      return "div";
  }
  return "binary";
}

namespace {

void run(const ElementwiseParams& p, Device dev, [[maybe_unused]] const char* op) {
  if (p.n == 0) return;
  if (dev.is_cuda()) {
    SL_CUDA_CALL(op, elementwise_cuda(p, dev.index));
  } else {
    elementwise_cpu(p);
  }
}

int dtype_rank(DType t) {
  switch (t) {
    case DType::BF16:
      return 0;
    case DType::F16:
      return 1;
    case DType::F32:
      return 2;
    case DType::F64:
      return 3;
    default:
      return -1;
  }
}

// The strides that read `t` as a tensor of the (larger, broadcast) shape `out`.
Dims broadcast_strides(const Tensor& t, const Dims& out) {
  Dims st;
  st.n = out.n;
  int lead = out.n - t.dim();
  for (int i = 0; i < out.n; ++i) {
    int j = i - lead;
    st.v[i] = (j < 0 || t.shape()[j] == 1) ? 0 : t.strides()[j];
  }
  return st;
}

}  // namespace

Tensor unary(UnaryOp op, const Tensor& x, double alpha) {
  const char* name = unary_name(op);
  SL_CHECK_DEFINED(name, x);
  SL_CHECK_DTYPE(name, x, DType::F32, DType::BF16, DType::F16, DType::F64);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  ElementwiseParams p{EwKind::UnaryFwd, uint8_t(op),  float(alpha), x.dtype(),
                      y.data_ptr(),     x.data_ptr(), nullptr,      x.numel(),
                      x.shape(),        x.strides(),  Dims()};
  run(p, x.device(), name);
  return y;
}

Tensor unary_backward(UnaryOp op, const Tensor& x, const Tensor& dy, double alpha) {
  const char* name = unary_name(op);
  SL_CHECK_DEFINED(name, x);
  SL_CHECK_DEFINED(name, dy);
  SL_CHECK_DTYPE(name, x, DType::F32, DType::BF16, DType::F16, DType::F64);
  SL_CHECK(dy.shape() == x.shape()) << name << " backward: dy " << dy.shape_str()
                                    << " must have the shape of x " << x.shape_str();
  SL_CHECK_DEVICE(name, dy, x.device());
  Tensor g = dy.to(x.dtype());
  Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  ElementwiseParams p{EwKind::UnaryBwd, uint8_t(op),  float(alpha), x.dtype(),
                      dx.data_ptr(),    x.data_ptr(), g.data_ptr(), x.numel(),
                      x.shape(),        x.strides(),  g.strides()};
  run(p, x.device(), name);
  return dx;
}

Dims broadcast_shapes(const Dims& a, const Dims& b, const char* op) {
  Dims out;
  out.n = std::max(a.n, b.n);
  for (int i = 0; i < out.n; ++i) {
    int ia = a.n - out.n + i, ib = b.n - out.n + i;
    int64_t sa = ia >= 0 ? a[ia] : 1, sb = ib >= 0 ? b[ib] : 1;
    SL_CHECK(sa == sb || sa == 1 || sb == 1)
        << op << ": shapes " << a.str() << " and " << b.str() << " do not broadcast (dim " << i
        << ": " << sa << " vs " << sb << ")";
    out.v[i] = sa == 1 ? sb : sa;
  }
  return out;
}

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = binary_name(op);
  SL_CHECK_DEFINED(name, a);
  SL_CHECK_DEFINED(name, b);
  SL_CHECK_DTYPE(name, a, DType::F32, DType::BF16, DType::F16, DType::F64);
  SL_CHECK_DTYPE(name, b, DType::F32, DType::BF16, DType::F16, DType::F64);
  SL_CHECK_DEVICE(name, b, a.device());
  Dims shape = broadcast_shapes(a.shape(), b.shape(), name);
  DType dt = dtype_rank(a.dtype()) >= dtype_rank(b.dtype()) ? a.dtype() : b.dtype();
  Tensor ac = a.to(dt), bc = b.to(dt);
  Tensor out = Tensor::empty(shape, dt, a.device());
  ElementwiseParams p{EwKind::Binary,
                      uint8_t(op),
                      0.f,
                      dt,
                      out.data_ptr(),
                      ac.data_ptr(),
                      bc.data_ptr(),
                      shape.numel(),
                      shape,
                      broadcast_strides(ac, shape),
                      broadcast_strides(bc, shape)};
  run(p, a.device(), name);
  return out;
}

std::pair<Tensor, Tensor> binary_backward(BinaryOp op, const Tensor& a, const Tensor& b,
                                          const Tensor& dout, bool need_a, bool need_b) {
  const char* name = binary_name(op);
  Dims shape = broadcast_shapes(a.shape(), b.shape(), name);
  SL_CHECK(dout.shape() == shape) << name << " backward: dout " << dout.shape_str()
                                  << " must have the broadcast shape " << shape.str();
  Tensor da, db;
  switch (op) {
    case BinaryOp::Add:
      if (need_a) da = sum_to(dout, a.shape());
      if (need_b) db = sum_to(dout, b.shape());
      break;
    case BinaryOp::Sub:
      if (need_a) da = sum_to(dout, a.shape());
      if (need_b) db = sum_to(unary(UnaryOp::Neg, dout), b.shape());
      break;
    case BinaryOp::Mul:
      if (need_a) da = sum_to(mul(dout, b), a.shape());
      if (need_b) db = sum_to(mul(dout, a), b.shape());
      break;
    case BinaryOp::Div:
      // d(a/b)/da = 1/b; d(a/b)/db = -a/b^2 = -(a/b)/b.
      if (need_a) da = sum_to(div(dout, b), a.shape());
      if (need_b) db = sum_to(unary(UnaryOp::Neg, div(mul(dout, a), mul(b, b))), b.shape());
      break;
  }
  if (da.defined()) da = da.to(a.dtype());
  if (db.defined()) db = db.to(b.dtype());
  return {da, db};
}

Tensor sum_to(const Tensor& g, const Dims& shape) {
  SL_CHECK_DEFINED("sum_to", g);
  if (g.shape() == shape) return g;
  Dims full = broadcast_shapes(shape, g.shape(), "sum_to");
  SL_CHECK(full == g.shape()) << "sum_to: shape " << shape.str() << " does not broadcast to "
                              << g.shape_str();
  // Group consecutive dims of g into runs that are all reduced or all kept, so the common cases
  // ([B, T, C] -> [C], [B, T, C] -> [B, 1, C]) need one reduction over one merged dim.
  int lead = g.dim() - shape.n;
  Dims grouped;
  std::vector<bool> reduced;
  for (int i = 0; i < g.dim(); ++i) {
    bool r = i < lead || (shape[i - lead] == 1 && g.shape()[i] != 1);
    if (g.shape()[i] == 1) continue;
    if (!reduced.empty() && reduced.back() == r) {
      grouped.v[grouped.n - 1] *= g.shape()[i];
    } else {
      grouped.push_back(g.shape()[i]);
      reduced.push_back(r);
    }
  }
  Tensor t = g.reshape(grouped);
  for (int d = grouped.n - 1; d >= 0; --d)
    if (reduced[size_t(d)]) t = sum(t, d, /*keepdim=*/true);
  return t.reshape(shape);
}

}  // namespace sl::kernels
