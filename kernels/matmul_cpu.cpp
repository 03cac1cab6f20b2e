// CPU reference for matmul: Eigen GEMM on row-major maps of the stored operands.
//
// f32 and f64 operands are mapped in place (Eigen::Map with the row stride as outer stride); bf16
// and f16 operands are first widened into f32 buffers. The product is formed in the compute type
// (f32, or f64 for f64), the bias added there, and the result rounded once to the output dtype.
// Eigen's GEMM uses OpenMP threads when the library is built with OpenMP.
#include <Eigen/Core>
#include <type_traits>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/matmul.h"

namespace sl::kernels {
namespace {

template <class C>
using RowMat = Eigen::Matrix<C, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class C>
using ConstMap = Eigen::Map<const RowMat<C>, 0, Eigen::OuterStride<>>;

// The stored [rows, cols] matrix at p (row stride ld) as a compute-type map; widens into buf when
// the storage type is not the compute type.
template <class C, class T>
ConstMap<C> load(const T* p, int64_t rows, int64_t cols, int64_t ld, std::vector<C>& buf) {
  if constexpr (std::is_same_v<T, C>) {
    return ConstMap<C>(p, rows, cols, Eigen::OuterStride<>(ld));
  } else {
    buf.resize(size_t(rows * cols));
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j)
        buf[size_t(i * cols + j)] = C(ScalarTraits<T>::to_compute(p[i * ld + j]));
    return ConstMap<C>(buf.data(), rows, cols, Eigen::OuterStride<>(cols));
  }
}

template <class C>
void product(const ConstMap<C>& a, const ConstMap<C>& b, bool ta, bool tb, RowMat<C>& out) {
  if (!ta && !tb) {
    out.noalias() = a * b;
  } else if (!ta && tb) {
    out.noalias() = a * b.transpose();
  } else if (ta && !tb) {
    out.noalias() = a.transpose() * b;
  } else {
    out.noalias() = a.transpose() * b.transpose();
  }
}

template <class O, class C>
void store(const MatmulParams& p, const RowMat<C>& out, O* c) {
  using OC = typename ScalarTraits<O>::compute;
  const O* bias = static_cast<const O*>(p.bias);
  for (int64_t i = 0; i < p.m; ++i) {
    for (int64_t j = 0; j < p.n; ++j) {
      C v = out(i, j);
      if (bias) v += C(ScalarTraits<O>::to_compute(bias[j]));
      c[i * p.ldc + j] = ScalarTraits<O>::from_compute(OC(v));
    }
  }
}

template <class T>
void matmul_typed(const MatmulParams& p) {
  using C = typename ScalarTraits<T>::compute;
  std::vector<C> abuf, bbuf;
  RowMat<C> out(p.m, p.n);
  for (int64_t i = 0; i < p.batch; ++i) {
    const T* a = static_cast<const T*>(p.a) + i * p.stride_a;
    const T* b = static_cast<const T*>(p.b) + i * p.stride_b;
    ConstMap<C> am = load<C>(a, p.trans_a ? p.k : p.m, p.trans_a ? p.m : p.k, p.lda, abuf);
    ConstMap<C> bm = load<C>(b, p.trans_b ? p.n : p.k, p.trans_b ? p.k : p.n, p.ldb, bbuf);
    product(am, bm, p.trans_a, p.trans_b, out);
    SL_DISPATCH_FLOAT(p.c_dtype, "matmul", O,
                      store<O>(p, out, static_cast<O*>(p.c) + i * p.stride_c));
  }
}

}  // namespace

void matmul_cpu(const MatmulParams& p) {
  SL_DISPATCH_FLOAT(p.ab_dtype, "matmul", T, matmul_typed<T>(p));
}

}  // namespace sl::kernels
