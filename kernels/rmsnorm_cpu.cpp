// CPU reference for RMSNorm and gated RMSNorm (formulas in rmsnorm.h): plain loops over rows and
// groups, compute in f32 (f64 for f64). Plain RMSNorm is the ungated case with one group.
#include <cmath>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/rmsnorm.h"

namespace sl::kernels {
namespace {

template <class T>
using Compute = typename ScalarTraits<T>::compute;

template <class C>
C sigmoid(C z) {
  return C(1) / (C(1) + std::exp(-z));
}

template <class T>
void forward_typed(const RmsNormParams& p) {
  using C = Compute<T>;
  const T* x = static_cast<const T*>(p.x);
  const T* z = static_cast<const T*>(p.z);
  const T* w = static_cast<const T*>(p.w);
  T* y = static_cast<T*>(p.y);
  C* rstd = static_cast<C*>(p.rstd);
  const int64_t gs = p.group_size, groups = p.c / gs;
  std::vector<C> h(static_cast<size_t>(gs));
  for (int64_t r = 0; r < p.rows; ++r) {
    for (int64_t k = 0; k < groups; ++k) {
      const int64_t base = r * p.c + k * gs;
      C ss = 0;
      for (int64_t j = 0; j < gs; ++j) {
        C v = ScalarTraits<T>::to_compute(x[base + j]);
        if (z) {
          C zv = ScalarTraits<T>::to_compute(z[base + j]);
          v *= zv * sigmoid(zv);
        }
        h[size_t(j)] = v;
        ss += v * v;
      }
      C rs = C(1) / std::sqrt(ss / C(gs) + C(p.eps));
      rstd[r * groups + k] = rs;
      for (int64_t j = 0; j < gs; ++j)
        y[base + j] = ScalarTraits<T>::from_compute(
            h[size_t(j)] * rs * ScalarTraits<T>::to_compute(w[k * gs + j]));
    }
  }
}

template <class T>
void backward_typed(const RmsNormParams& p) {
  using C = Compute<T>;
  const T* x = static_cast<const T*>(p.x);
  const T* z = static_cast<const T*>(p.z);
  const T* w = static_cast<const T*>(p.w);
  const T* dy = static_cast<const T*>(p.dy);
  const C* rstd = static_cast<const C*>(p.rstd_in);
  T* dx = static_cast<T*>(p.dx);
  T* dz = static_cast<T*>(p.dz);
  const int64_t gs = p.group_size, groups = p.c / gs;
  std::vector<C> dw(static_cast<size_t>(p.c), C(0)), hh(static_cast<size_t>(gs)),
      g(static_cast<size_t>(gs));
  for (int64_t r = 0; r < p.rows; ++r) {
    for (int64_t k = 0; k < groups; ++k) {
      const int64_t base = r * p.c + k * gs;
      const C rs = rstd[r * groups + k];
      C dot = 0;
      for (int64_t j = 0; j < gs; ++j) {
        C v = ScalarTraits<T>::to_compute(x[base + j]);
        if (z) {
          C zv = ScalarTraits<T>::to_compute(z[base + j]);
          v *= zv * sigmoid(zv);
        }
        C d = ScalarTraits<T>::to_compute(dy[base + j]);
        hh[size_t(j)] = v * rs;
        g[size_t(j)] = d * ScalarTraits<T>::to_compute(w[k * gs + j]);
        dot += g[size_t(j)] * hh[size_t(j)];
        dw[size_t(k * gs + j)] += d * hh[size_t(j)];
      }
      dot /= C(gs);
      for (int64_t j = 0; j < gs; ++j) {
        C dh = rs * (g[size_t(j)] - hh[size_t(j)] * dot);
        if (!z) {
          dx[base + j] = ScalarTraits<T>::from_compute(dh);
          continue;
        }
        C xv = ScalarTraits<T>::to_compute(x[base + j]);
        C zv = ScalarTraits<T>::to_compute(z[base + j]);
        C s = sigmoid(zv);
        dx[base + j] = ScalarTraits<T>::from_compute(dh * zv * s);
        dz[base + j] = ScalarTraits<T>::from_compute(dh * xv * s * (C(1) + zv * (C(1) - s)));
      }
    }
  }
  T* dwo = static_cast<T*>(p.dw);
  for (int64_t j = 0; j < p.c; ++j) dwo[j] = ScalarTraits<T>::from_compute(dw[size_t(j)]);
}

}  // namespace

void rmsnorm_forward_cpu(const RmsNormParams& p) {
  SL_DISPATCH_FLOAT(p.dtype, "rmsnorm", T, forward_typed<T>(p));
}

void rmsnorm_backward_cpu(const RmsNormParams& p) {
  SL_DISPATCH_FLOAT(p.dtype, "rmsnorm", T, backward_typed<T>(p));
}

}  // namespace sl::kernels
