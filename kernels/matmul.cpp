// matmul, linear and their backward: argument checks, operand layout, dispatch.
//
// The one non-obvious decision: an operand is described by (pointer, row stride, batch stride,
// transpose flag), so a transposed view is passed as the other storage order by flipping its flag
// rather than copied, and a batched A times a shared B is folded into one [batch*M, K] x [K, N]
// matmul whenever A's rows are evenly spaced across the batch.
#include "kernels/matmul.h"

#include <algorithm>

#include "kernels/dispatch.h"

namespace sl::kernels {
namespace {

constexpr const char* kOp = "matmul";

// An operand as the kernels see it: the tensor holding the data, its (possibly flipped) transpose
// flag, the row stride of its stored matrices and the stride between them (0 for 2-D).
struct Operand {
  Tensor t;
  bool trans;
  int64_t ld;
  int64_t batch_stride;
};

// True when a [rows, cols] matrix with strides (s0, s1) is row-major with a usable row stride.
bool row_major(int64_t rows, int64_t cols, int64_t s0, int64_t s1, int64_t* ld) {
  if (s1 != 1 && cols != 1) return false;
  int64_t min_ld = std::max<int64_t>(cols, 1);
  if (rows == 1) {
    *ld = min_ld;
    return true;
  }
  if (s0 < min_ld) return false;
  *ld = s0;
  return true;
}

Operand as_operand(const Tensor& x, bool trans) {
  int64_t r = x.size(-2), c = x.size(-1), ld = 0;
  int64_t bs = x.dim() == 3 && x.size(0) > 1 ? x.stride(0) : 0;
  if (row_major(r, c, x.stride(-2), x.stride(-1), &ld)) return {x, trans, ld, bs};
  if (row_major(c, r, x.stride(-1), x.stride(-2), &ld)) return {x, !trans, ld, bs};
  Tensor xc = x.contiguous();
  return {xc, trans, std::max<int64_t>(c, 1), x.dim() == 3 ? r * c : 0};
}

DType accumulation_dtype(DType t) {
  return t == DType::F64 ? DType::F64 : DType::F32;
}

}  // namespace

MatmulOptions& matmul_options() {
  static MatmulOptions opts;
  return opts;
}

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, const Tensor& bias,
              std::optional<DType> out_dtype) {
  SL_CHECK_DEFINED(kOp, a);
  SL_CHECK_DEFINED(kOp, b);
  SL_CHECK(a.dim() == 2 || a.dim() == 3) << "matmul: a must be 2-D or 3-D, got " << a.shape_str();
  SL_CHECK(b.dim() == 2 || b.dim() == 3) << "matmul: b must be 2-D or 3-D, got " << b.shape_str();
  SL_CHECK(dtype_is_float(a.dtype())) << "matmul: a must be a float tensor, got " << a.str();
  SL_CHECK_DTYPE(kOp, b, a.dtype());
  SL_CHECK_DEVICE(kOp, b, a.device());
  int64_t m = trans_a ? a.size(-1) : a.size(-2), k = trans_a ? a.size(-2) : a.size(-1);
  int64_t kb = trans_b ? b.size(-1) : b.size(-2), n = trans_b ? b.size(-2) : b.size(-1);
  SL_CHECK(k == kb) << "matmul: inner dimensions differ: a " << a.shape_str()
                    << (trans_a ? " (transposed)" : "") << " has K = " << k << ", b "
                    << b.shape_str() << (trans_b ? " (transposed)" : "") << " has K = " << kb;
  bool batched = a.dim() == 3 || b.dim() == 3;
  int64_t batch = a.dim() == 3 ? a.size(0) : (b.dim() == 3 ? b.size(0) : 1);
  if (a.dim() == 3 && b.dim() == 3) {
    SL_CHECK(a.size(0) == b.size(0))
        << "matmul: batch sizes differ: a " << a.shape_str() << " vs b " << b.shape_str();
  }
  DType od = out_dtype.value_or(a.dtype());
  SL_CHECK(dtype_is_float(od)) << "matmul: output dtype must be a float, got " << dtype_name(od);
  if (a.is_cuda()) {
    SL_CHECK(a.dtype() == DType::F32 || a.dtype() == DType::BF16)
        << "matmul: CUDA inputs must be f32 or bf16, got " << dtype_name(a.dtype());
    SL_CHECK(od == DType::BF16 ? a.dtype() == DType::BF16 : od == DType::F32)
        << "matmul: CUDA supports f32 x f32 -> f32 and bf16 x bf16 -> bf16 or f32, got "
        << dtype_name(a.dtype()) << " -> " << dtype_name(od);
  }
  Tensor bias_c;
  if (bias.defined()) {
    SL_CHECK_SHAPE(kOp, bias, n);
    SL_CHECK_DEVICE(kOp, bias, a.device());
    SL_CHECK(dtype_is_float(bias.dtype())) << "matmul: bias must be a float tensor";
    bias_c = bias.to(od).contiguous();
  }

  Dims out_shape = batched ? Dims{batch, m, n} : Dims{m, n};
  Tensor c = Tensor::empty(out_shape, od, a.device());
  if (c.numel() == 0) return c;
  if (k == 0) {
    if (bias_c.defined()) {
      c.copy_(bias_c.expand(out_shape));
    } else {
      c.zero_();
    }
    return c;
  }

  Operand oa = as_operand(a, trans_a), ob = as_operand(b, trans_b);
  MatmulParams p;
  p.a = oa.t.data_ptr();
  p.b = ob.t.data_ptr();
  p.bias = bias_c.defined() ? bias_c.data_ptr() : nullptr;
  p.c = c.data_ptr();
  p.ab_dtype = a.dtype();
  p.c_dtype = od;
  p.batch = batch;
  p.m = m;
  p.n = n;
  p.k = k;
  p.trans_a = oa.trans;
  p.trans_b = ob.trans;
  p.lda = oa.ld;
  p.ldb = ob.ld;
  p.ldc = n;
  p.stride_a = oa.batch_stride;
  p.stride_b = ob.batch_stride;
  p.stride_c = batch > 1 ? m * n : 0;
  if (batch > 1 && p.stride_b == 0 && !p.trans_a && p.stride_a == m * p.lda) {
    p.m = batch * m;
    p.batch = 1;
    p.stride_a = p.stride_c = 0;
  }
  p.allow_tf32 = matmul_options().allow_tf32;
  p.force_gemm_ex = matmul_options().force_gemm_ex;
  if (a.is_cuda()) {
    SL_CUDA_CALL(kOp, matmul_cuda(p, a.device().index));
  } else {
    matmul_cpu(p);
  }
  return c;
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias) {
  SL_CHECK_DEFINED("linear", x);
  SL_CHECK_DEFINED("linear", w);
  SL_CHECK(x.dim() >= 1) << "linear: x must have at least one dim, got " << x.shape_str();
  SL_CHECK(w.dim() == 2) << "linear: w must be [out, in], got " << w.shape_str();
  int64_t in = x.size(-1), out = w.size(0);
  SL_CHECK(w.size(1) == in) << "linear: x " << x.shape_str() << " has " << in
                            << " input features but w " << w.shape_str() << " expects "
                            << w.size(1);
  int64_t rows = 1;
  for (int i = 0; i + 1 < x.dim(); ++i) rows *= x.size(i);
  Tensor y = matmul(x.reshape({rows, in}), w, false, true, bias);
  Dims shape = x.shape();
  shape[shape.n - 1] = out;
  return y.view(shape);
}

std::vector<Tensor> matmul_backward(const Tensor& a, const Tensor& b, const Tensor& dc,
                                    bool trans_a, bool trans_b, bool need_da, bool need_db) {
  const char* op = "matmul_backward";
  SL_CHECK_DEFINED(op, a);
  SL_CHECK_DEFINED(op, b);
  SL_CHECK_DEFINED(op, dc);
  int64_t m = trans_a ? a.size(-1) : a.size(-2), n = trans_b ? b.size(-2) : b.size(-1);
  bool batched = a.dim() == 3 || b.dim() == 3;
  int64_t batch = a.dim() == 3 ? a.size(0) : (b.dim() == 3 ? b.size(0) : 1);
  Dims expected = batched ? Dims{batch, m, n} : Dims{m, n};
  SL_CHECK(dc.shape() == expected)
      << "matmul_backward: dc " << dc.shape_str() << " for a " << a.shape_str() << ", b "
      << b.shape_str() << ", expected " << expected.str();
  // dc arrives in the forward's output dtype, which may differ from the inputs' (bf16 x bf16 ->
  // f32): the gradient matmuls run in the inputs' dtype.
  Tensor g = dc.to(a.dtype());

  if (a.dim() == 3 && b.dim() == 2 && !trans_a) {
    int64_t k = a.size(2);
    std::vector<Tensor> r = matmul_backward(a.reshape({batch * m, k}), b, g.reshape({batch * m, n}),
                                            false, trans_b, need_da, need_db);
    if (r[0].defined()) r[0] = r[0].view({batch, m, k});
    return r;
  }

  Tensor da, db;
  if (need_da) {
    bool sum = a.dim() == 2 && batched;
    DType dt = sum ? accumulation_dtype(a.dtype()) : a.dtype();
    if (!trans_a) {
      da = matmul(g, b, false, !trans_b, Tensor(), dt);  // dC op(B)ᵀ
    } else {
      da = trans_b ? matmul(b, g, true, true, Tensor(), dt)    // Bᵀ dCᵀ
                   : matmul(b, g, false, true, Tensor(), dt);  // B dCᵀ
    }
    if (sum) da = sum_leading(da, a.dtype());
  }
  if (need_db) {
    bool sum = b.dim() == 2 && batched;
    DType dt = sum ? accumulation_dtype(b.dtype()) : b.dtype();
    if (!trans_b) {
      db = matmul(a, g, !trans_a, false, Tensor(), dt);  // op(A)ᵀ dC
    } else {
      db = matmul(g, a, true, trans_a, Tensor(), dt);  // dCᵀ op(A)
    }
    if (sum) db = sum_leading(db, b.dtype());
  }
  return {da, db};
}

Tensor sum_leading(const Tensor& x, DType dtype) {
  SL_CHECK_DEFINED("sum_leading", x);
  SL_CHECK(x.dim() >= 1) << "sum_leading: x must have at least one dim";
  int64_t lead = x.size(0), rest = x.numel() / std::max<int64_t>(lead, 1);
  Dims shape;
  for (int i = 1; i < x.dim(); ++i) shape.push_back(x.size(i));
  if (lead == 0) rest = shape.numel();
  Tensor ones = Tensor::full({1, lead}, 1.0, x.dtype(), x.device());
  bool wide = x.dtype() == DType::F32 || x.dtype() == DType::F64;
  Tensor s =
      matmul(ones, x.reshape({lead, rest}), false, false, Tensor(), wide ? x.dtype() : dtype);
  return s.to(dtype).view(shape);
}

Tensor bias_backward(const Tensor& dc, DType dtype) {
  SL_CHECK_DEFINED("bias_backward", dc);
  SL_CHECK(dc.dim() >= 1) << "bias_backward: dc must have at least one dim";
  int64_t n = dc.size(-1), rows = 1;
  for (int i = 0; i + 1 < dc.dim(); ++i) rows *= dc.size(i);
  return sum_leading(dc.reshape({rows, n}), dtype);
}

}  // namespace sl::kernels
