// CPU reference for softmax / log-softmax and their backward: three plain passes per row.
#include <cmath>

#include "kernels/dispatch.h"
#include "kernels/softmax.h"

namespace sl::kernels {
namespace {

template <class T>
void softmax_typed(const SoftmaxParams& p) {
  using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
  using Tr = ScalarTraits<T>;
  const T* in0 = static_cast<const T*>(p.in0);
  const T* in1 = static_cast<const T*>(p.in1);
  T* out = static_cast<T*>(p.out);
  auto get = [](const T* row, int64_t j) { return C(Tr::to_compute(row[j])); };
  auto put = [](T* row, int64_t j, C v) { row[j] = Tr::from_compute(typename Tr::compute(v)); };
#pragma omp parallel for if (p.rows * p.cols > (1 << 16))
  for (int64_t r = 0; r < p.rows; ++r) {
    const T* a = in0 + r * p.cols;
    T* o = out + r * p.cols;
    if (!p.backward) {
      C m = -INFINITY;
      for (int64_t j = 0; j < p.cols; ++j) m = std::max(m, get(a, j));
      C s = 0;
      for (int64_t j = 0; j < p.cols; ++j) s += std::exp(get(a, j) - m);
      C log_s = std::log(s);
      for (int64_t j = 0; j < p.cols; ++j)
        put(o, j, p.log ? get(a, j) - m - log_s : std::exp(get(a, j) - m) / s);
    } else {
      const T* dy = in1 + r * p.cols;
      C s = 0;  // sum(dy * y) for softmax, sum(dy) for log-softmax
      for (int64_t j = 0; j < p.cols; ++j) s += p.log ? get(dy, j) : get(dy, j) * get(a, j);
      for (int64_t j = 0; j < p.cols; ++j)
        put(o, j, p.log ? get(dy, j) - std::exp(get(a, j)) * s : get(a, j) * (get(dy, j) - s));
    }
  }
}

}  // namespace

void softmax_cpu(const SoftmaxParams& p) {
  SL_DISPATCH_FLOAT(p.dtype, "softmax", T, softmax_typed<T>(p));
}

}  // namespace sl::kernels
