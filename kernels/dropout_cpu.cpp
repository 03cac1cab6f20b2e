// CPU reference for dropout: one Philox draw per element, as in dropout.h.
#include "core/philox.h"
#include "kernels/dispatch.h"
#include "kernels/dropout.h"

namespace sl::kernels {
namespace {

template <class T>
void dropout_typed(const DropoutParams& p) {
  using C = typename ScalarTraits<T>::compute;
  const T* x = static_cast<const T*>(p.x);
  T* y = static_cast<T*>(p.y);
  const C scale = std::is_same_v<C, double> ? C(p.scale64) : C(p.scale);
#pragma omp parallel for if (p.n > (1 << 16))
  for (int64_t i = 0; i < p.n; ++i) {
    bool keep = philox_uniform_at(p.seed, p.offset, uint64_t(i)) >= p.p;
    y[i] = ScalarTraits<T>::from_compute(keep ? ScalarTraits<T>::to_compute(x[i]) * scale : C(0));
  }
}

}  // namespace

void dropout_cpu(const DropoutParams& p) {
  SL_DISPATCH_FLOAT(p.dtype, "dropout", T, dropout_typed<T>(p));
}

}  // namespace sl::kernels
