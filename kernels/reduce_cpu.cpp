// CPU reference for reductions: plain loops over [outer, r, inner], f32 (f64) accumulation.
#include <cmath>

#include "kernels/dispatch.h"
#include "kernels/reduce.h"

namespace sl::kernels {
namespace {

template <class T>
void reduce_typed(const ReduceParams& p) {
  using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
  using Tr = ScalarTraits<T>;
  const T* x = static_cast<const T*>(p.x);
  T* out = static_cast<T*>(p.out);
#pragma omp parallel for collapse(2) if (p.outer * p.inner * p.r > (1 << 16))
  for (int64_t o = 0; o < p.outer; ++o) {
    for (int64_t i = 0; i < p.inner; ++i) {
      const T* col = x + o * p.r * p.inner + i;
      C acc = 0;
      int64_t arg = 0;
      if (p.op == ReduceOp::Max) {
        acc = C(Tr::to_compute(col[0]));
        for (int64_t k = 1; k < p.r; ++k) {
          C v = C(Tr::to_compute(col[k * p.inner]));
          // NaN wins; among equal values the first index stays.
          if (!std::isnan(acc) && (v > acc || std::isnan(v))) acc = v, arg = k;
        }
        p.index[o * p.inner + i] = arg;
      } else {
        for (int64_t k = 0; k < p.r; ++k) acc += C(Tr::to_compute(col[k * p.inner]));
        if (p.op == ReduceOp::Mean) acc /= C(p.r);
      }
      out[o * p.inner + i] = Tr::from_compute(typename Tr::compute(acc));
    }
  }
}

template <class T>
void max_backward_typed(const MaxBackwardParams& p) {
  const T* dy = static_cast<const T*>(p.dy);
  T* dx = static_cast<T*>(p.dx);
  const T zero = ScalarTraits<T>::from_compute(0);
  for (int64_t o = 0; o < p.outer; ++o)
    for (int64_t k = 0; k < p.r; ++k)
      for (int64_t i = 0; i < p.inner; ++i) {
        int64_t j = o * p.inner + i;
        dx[(o * p.r + k) * p.inner + i] = p.index[j] == k ? dy[j] : zero;
      }
}

}  // namespace

void reduce_cpu(const ReduceParams& p) {
  SL_DISPATCH_FLOAT(p.dtype, "reduce", T, reduce_typed<T>(p));
}

void max_backward_cpu(const MaxBackwardParams& p) {
  SL_DISPATCH_FLOAT(p.dtype, "max", T, max_backward_typed<T>(p));
}

}  // namespace sl::kernels
