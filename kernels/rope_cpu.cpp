// CPU reference for RoPE (formulas in rope.h): loops over (b, t), then heads and pairs.
#include <cmath>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/rope.h"

namespace sl::kernels {
namespace {

int64_t position(const RopeParams& p, int64_t bi, int64_t ti) {
  if (!p.positions) return p.start + ti;
  int64_t k = bi * p.t + ti;
  return p.pos_dtype == DType::I32 ? int64_t(static_cast<const int32_t*>(p.positions)[k])
                                   : static_cast<const int64_t*>(p.positions)[k];
}

template <class T>
void rope_typed(const RopeParams& p) {
  using C = typename ScalarTraits<T>::compute;
  const T* x = static_cast<const T*>(p.x);
  T* y = static_cast<T*>(p.y);
  const int64_t half = p.rot / 2;
  std::vector<C> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
  for (int64_t bi = 0; bi < p.b; ++bi) {
    for (int64_t ti = 0; ti < p.t; ++ti) {
      const int64_t pos = position(p, bi, ti);
      for (int64_t i = 0; i < half; ++i) {
        double angle;
        if constexpr (std::is_same_v<C, double>) {
          angle = double(pos) * p.inv_freq[i];
        } else {
          angle = double(float(pos) * float(p.inv_freq[i]));
        }
        cs[size_t(i)] = C(std::cos(angle));
        sn[size_t(i)] = C(p.inverse ? -std::sin(angle) : std::sin(angle));
      }
      for (int64_t hi = 0; hi < p.h; ++hi) {
        const int64_t base = ((bi * p.t + ti) * p.h + hi) * p.d;
        for (int64_t i = 0; i < half; ++i) {
          C a = ScalarTraits<T>::to_compute(x[base + i]);
          C b = ScalarTraits<T>::to_compute(x[base + i + half]);
          y[base + i] = ScalarTraits<T>::from_compute(a * cs[size_t(i)] - b * sn[size_t(i)]);
          y[base + i + half] = ScalarTraits<T>::from_compute(b * cs[size_t(i)] + a * sn[size_t(i)]);
        }
        for (int64_t i = p.rot; i < p.d; ++i) y[base + i] = x[base + i];
      }
    }
  }
}

}  // namespace

void rope_cpu(const RopeParams& p) { SL_DISPATCH_FLOAT(p.dtype, "rope", T, rope_typed<T>(p)); }

}  // namespace sl::kernels
