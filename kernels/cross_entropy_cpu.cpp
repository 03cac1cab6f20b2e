// CPU reference for the fused cross-entropy: plain loops, statistics in f32 (f64 for f64 logits).
// Uses the same online max/sum as the CUDA kernel, one pass per row.
#include <cmath>

#include "kernels/cross_entropy.h"
#include "kernels/dispatch.h"

namespace sl::kernels {
namespace {

int64_t target_at(const CrossEntropyParams& p, int64_t r) {
  return p.target_dtype == DType::I32 ? int64_t(static_cast<const int32_t*>(p.targets)[r])
                                      : static_cast<const int64_t*>(p.targets)[r];
}

// Index of the target of row r, or -1 when the row is ignored; throws for an out-of-range target.
int64_t checked_target(const CrossEntropyParams& p, int64_t r) {
  int64_t t = target_at(p, r);
  if (t == p.ignore_index) return -1;
  SL_CHECK(t >= 0 && t < p.v) << "cross_entropy: target " << t << " at row " << r
                              << " is outside [0, " << p.v << ") and is not ignore_index "
                              << p.ignore_index;
  return t;
}

template <class T, class S>
void forward_typed(const CrossEntropyParams& p) {
  using C = typename ScalarTraits<T>::compute;
  const T* logits = static_cast<const T*>(p.logits);
  S* lse = static_cast<S*>(p.lse);
  int64_t n_valid = 0;
  C total = 0;
  for (int64_t r = 0; r < p.n; ++r) {
    const T* row = logits + r * p.v;
    C m = -INFINITY, s = 0;
    for (int64_t j = 0; j < p.v; ++j) {
      C x = ScalarTraits<T>::to_compute(row[j]);
      if (x > m) {
        s = s * std::exp(m - x) + C(1);
        m = x;
      } else {
        s += std::exp(x - m);
      }
    }
    C l = m + std::log(s);
    lse[r] = S(l);
    int64_t t = checked_target(p, r);
    if (t < 0) continue;
    ++n_valid;
    total += l - ScalarTraits<T>::to_compute(row[t]);
  }
  C denom = p.reduction == CeReduction::kMean ? C(std::max<int64_t>(n_valid, 1)) : C(1);
  *static_cast<S*>(p.loss) = S(total / denom);
  *static_cast<S*>(p.n_valid) = S(n_valid);
}

template <class T, class S>
void backward_typed(const CrossEntropyParams& p) {
  using C = typename ScalarTraits<T>::compute;
  const T* logits = static_cast<const T*>(p.logits);
  T* dlogits = static_cast<T*>(p.dlogits);
  const S* lse = static_cast<const S*>(p.lse_in);
  C n_valid = C(*static_cast<const S*>(p.n_valid_in));
  C g = C(*static_cast<const S*>(p.dloss));
  if (p.reduction == CeReduction::kMean) g /= std::max(n_valid, C(1));
  for (int64_t r = 0; r < p.n; ++r) {
    const T* row = logits + r * p.v;
    T* drow = dlogits + r * p.v;
    int64_t t = checked_target(p, r);
    C l = C(lse[r]);
    for (int64_t j = 0; j < p.v; ++j) {
      C d = t < 0 ? C(0)
                  : (std::exp(ScalarTraits<T>::to_compute(row[j]) - l) - C(j == t ? 1 : 0)) * g;
      drow[j] = ScalarTraits<T>::from_compute(d);
    }
  }
}

}  // namespace

void cross_entropy_forward_cpu(const CrossEntropyParams& p) {
  SL_DISPATCH_FLOAT(p.dtype, "cross_entropy", T, {
    if constexpr (std::is_same_v<T, double>) {
      forward_typed<T, double>(p);
    } else {
      forward_typed<T, float>(p);
    }
  });
}

void cross_entropy_backward_cpu(const CrossEntropyParams& p) {
  SL_DISPATCH_FLOAT(p.dtype, "cross_entropy", T, {
    if constexpr (std::is_same_v<T, double>) {
      backward_typed<T, double>(p);
    } else {
      backward_typed<T, float>(p);
    }
  });
}

}  // namespace sl::kernels
