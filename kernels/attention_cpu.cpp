// CPU reference of flash attention (kernels/attention.h): plain loops over (b, h, query), the
// softmax over the query's key range [lo, hi] in the compute type (f32, f64 for f64), and the
// backward from the same formulas. Parallel over (b, KV head), so every accumulation into dK and
// dV happens in one thread, in a fixed order. The backward recomputes each row's log-sum-exp
// instead of reading the f32 one the forward stored, so the f64 reference stays f64.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/attention.h"
#include "kernels/dispatch.h"

namespace sl::kernels {
namespace {

// Key range of query row i (Note [key ranges]).
struct Range {
  int64_t lo, hi;
};
Range key_range(const AttentionParams& p, int64_t b, int64_t i) {
  const int64_t t = p.q_offset + i;
  int64_t hi = p.causal ? t : p.Lk - 1;
  int64_t lo = 0;
  if (p.window > 0) lo = std::max<int64_t>(lo, t - p.window + 1);
  if (p.doc_start) lo = std::max<int64_t>(lo, p.doc_start[b * p.Lk + std::min(t, p.Lk - 1)]);
  return {lo, hi};
}

template <class T>
void forward(const AttentionParams& p) {
  using C = typename ScalarTraits<T>::compute;
  const T* q = static_cast<const T*>(p.q);
  const T* k = static_cast<const T*>(p.k);
  const T* v = static_cast<const T*>(p.v);
  T* out = static_cast<T*>(p.out);
  const int64_t r = p.Hq / p.Hkv, D = p.D;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t h = 0; h < p.Hq; ++h) {
      std::vector<C> s, o(static_cast<size_t>(D));
      for (int64_t i = 0; i < p.Lq; ++i) {
        const Range rg = key_range(p, b, i);
        const T* qi = q + b * p.q_sb + i * p.q_st + h * p.q_sh;
        s.assign(size_t(rg.hi - rg.lo + 1), C(0));
        C m = -INFINITY;
        for (int64_t u = rg.lo; u <= rg.hi; ++u) {
          const T* ku = k + b * p.k_sb + u * p.k_st + (h / r) * p.k_sh;
          C acc = 0;
          for (int64_t d = 0; d < D; ++d)
            acc += C(ScalarTraits<T>::to_compute(qi[d])) * C(ScalarTraits<T>::to_compute(ku[d]));
          s[size_t(u - rg.lo)] = acc * C(p.scale);
          m = std::max(m, s[size_t(u - rg.lo)]);
        }
        C sum = 0;
        for (C& x : s) sum += (x = std::exp(x - m));
        std::fill(o.begin(), o.end(), C(0));
        for (int64_t u = rg.lo; u <= rg.hi; ++u) {
          const T* vu = v + b * p.k_sb + u * p.k_st + (h / r) * p.k_sh;
          const C w = s[size_t(u - rg.lo)] / sum;
          for (int64_t d = 0; d < D; ++d) o[size_t(d)] += w * C(ScalarTraits<T>::to_compute(vu[d]));
        }
        T* oi = out + ((b * p.Lq + i) * p.Hq + h) * D;
        for (int64_t d = 0; d < D; ++d) oi[d] = ScalarTraits<T>::from_compute(o[size_t(d)]);
        p.lse[(b * p.Hq + h) * p.Lq + i] = float(m + std::log(sum));
      }
    }
}

template <class T>
void backward(const AttentionParams& p) {
  using C = typename ScalarTraits<T>::compute;
  const T* q = static_cast<const T*>(p.q);
  const T* k = static_cast<const T*>(p.k);
  const T* v = static_cast<const T*>(p.v);
  const T* out = static_cast<const T*>(p.out);
  const T* dout = static_cast<const T*>(p.dout);
  const int64_t r = p.Hq / p.Hkv, D = p.D;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t g = 0; g < p.Hkv; ++g) {
      std::vector<C> dk(size_t(p.Lk * D), C(0)), dv(size_t(p.Lk * D), C(0)),
          dq(static_cast<size_t>(D));
      for (int64_t h = g * r; h < (g + 1) * r; ++h)
        for (int64_t i = 0; i < p.Lq; ++i) {
          const Range rg = key_range(p, b, i);
          const T* qi = q + b * p.q_sb + i * p.q_st + h * p.q_sh;
          const T* oi = out + ((b * p.Lq + i) * p.Hq + h) * D;
          const T* doi = dout + ((b * p.Lq + i) * p.Hq + h) * D;
          // The row's log-sum-exp is recomputed in C (the stored one is f32, too coarse for an
          // f64 reference).
          C m = -INFINITY, sum = 0;
          for (int64_t u = rg.lo; u <= rg.hi; ++u) {
            const T* ku = k + b * p.k_sb + u * p.k_st + g * p.k_sh;
            C s = 0;
            for (int64_t d = 0; d < D; ++d)
              s += C(ScalarTraits<T>::to_compute(qi[d])) * C(ScalarTraits<T>::to_compute(ku[d]));
            const C x = s * C(p.scale);
            if (x > m) {
              sum = sum * std::exp(m - x) + C(1);
              m = x;
            } else {
              sum += std::exp(x - m);
            }
          }
          const C lse = m + std::log(sum);
          C delta = 0;
          for (int64_t d = 0; d < D; ++d)
            delta += C(ScalarTraits<T>::to_compute(doi[d])) * C(ScalarTraits<T>::to_compute(oi[d]));
          std::fill(dq.begin(), dq.end(), C(0));
          for (int64_t u = rg.lo; u <= rg.hi; ++u) {
            const T* ku = k + b * p.k_sb + u * p.k_st + g * p.k_sh;
            const T* vu = v + b * p.k_sb + u * p.k_st + g * p.k_sh;
            C s = 0, dp = 0;
            for (int64_t d = 0; d < D; ++d) {
              s += C(ScalarTraits<T>::to_compute(qi[d])) * C(ScalarTraits<T>::to_compute(ku[d]));
              dp += C(ScalarTraits<T>::to_compute(doi[d])) * C(ScalarTraits<T>::to_compute(vu[d]));
            }
            const C pr = std::exp(s * C(p.scale) - lse);
            const C ds = pr * (dp - delta) * C(p.scale);
            for (int64_t d = 0; d < D; ++d) {
              dv[size_t(u * D + d)] += pr * C(ScalarTraits<T>::to_compute(doi[d]));
              dk[size_t(u * D + d)] += ds * C(ScalarTraits<T>::to_compute(qi[d]));
              dq[size_t(d)] += ds * C(ScalarTraits<T>::to_compute(ku[d]));
            }
          }
          T* dqi = static_cast<T*>(p.dq) + ((b * p.Lq + i) * p.Hq + h) * D;
          for (int64_t d = 0; d < D; ++d) dqi[d] = ScalarTraits<T>::from_compute(dq[size_t(d)]);
        }
      for (int64_t u = 0; u < p.Lk; ++u) {
        T* dku = static_cast<T*>(p.dk) + ((b * p.Lk + u) * p.Hkv + g) * D;
        T* dvu = static_cast<T*>(p.dv) + ((b * p.Lk + u) * p.Hkv + g) * D;
        for (int64_t d = 0; d < D; ++d) {
          dku[d] = ScalarTraits<T>::from_compute(dk[size_t(u * D + d)]);
          dvu[d] = ScalarTraits<T>::from_compute(dv[size_t(u * D + d)]);
        }
      }
    }
}

}  // namespace

void attention_forward_cpu(const AttentionParams& p) {
  SL_DISPATCH_FLOAT(p.dtype, "attention", T, forward<T>(p));
}

void attention_backward_cpu(const AttentionParams& p) {
  SL_DISPATCH_FLOAT(p.dtype, "attention", T, backward<T>(p));
}

}  // namespace sl::kernels
