// CPU reference for the causal depthwise conv1d + SiLU (formulas in kernels/conv1d.h): for each
// output, walk its taps from the newest to the oldest and stop at the first document start.
#include <cmath>
#include <vector>

#include "kernels/conv1d.h"
#include "kernels/dispatch.h"

namespace sl::kernels {
namespace {

template <class T>
using Compute = typename ScalarTraits<T>::compute;

// Calls f(k, u) for every tap k (reading time u = t - (W-1) + k) that reaches output t.
template <class F>
void for_each_tap(const Conv1dParams& p, int64_t b, int64_t t, F&& f) {
  const int32_t* seq = p.seq_idx ? p.seq_idx + b * p.seqlen : nullptr;
  for (int64_t k = p.width - 1; k >= 0; --k) {
    const int64_t u = t - (p.width - 1) + k;
    if (u < 0 && !p.init_state) return;
    f(k, u);
    if (seq && u >= 1 && seq[u] != seq[u - 1]) return;
  }
}

template <class T>
struct Reader {
  const Conv1dParams& p;
  const T* x = static_cast<const T*>(p.x);
  const T* s = static_cast<const T*>(p.init_state);
  // x at time u (negative: the incoming state) of channel c.
  Compute<T> at(int64_t b, int64_t u, int64_t c) const {
    if (u >= 0) return ScalarTraits<T>::to_compute(x[(b * p.seqlen + u) * p.channels + c]);
    return ScalarTraits<T>::to_compute(s[(b * p.channels + c) * (p.width - 1) + (p.width - 1 + u)]);
  }
  Compute<T> w(int64_t c, int64_t k) const {
    return ScalarTraits<T>::to_compute(static_cast<const T*>(p.w)[c * p.width + k]);
  }
  Compute<T> z(int64_t b, int64_t t, int64_t c) const {
    Compute<T> acc = ScalarTraits<T>::to_compute(static_cast<const T*>(p.bias)[c]);
    for_each_tap(p, b, t, [&](int64_t k, int64_t u) { acc += w(c, k) * at(b, u, c); });
    return acc;
  }
};

template <class T>
void forward_typed(const Conv1dParams& p) {
  using C = Compute<T>;
  Reader<T> rd{p};
  T* y = static_cast<T*>(p.y);
#pragma omp parallel for collapse(2) if (p.batch * p.seqlen * p.channels > (1 << 14))
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t t = 0; t < p.seqlen; ++t)
      for (int64_t c = 0; c < p.channels; ++c) {
        const C z = rd.z(b, t, c);
        y[(b * p.seqlen + t) * p.channels + c] =
            ScalarTraits<T>::from_compute(z / (C(1) + std::exp(-z)));
      }
}

template <class T>
void backward_typed(const Conv1dParams& p) {
  using C = Compute<T>;
  Reader<T> rd{p};
  const T* dy = static_cast<const T*>(p.dy);
  const int64_t Cc = p.channels, W = p.width, S = W - 1;
  std::vector<C> dx(size_t(p.batch * p.seqlen * Cc), C(0)), dw(size_t(Cc * W), C(0));
  std::vector<C> db(size_t(Cc), C(0)), ds(size_t(p.batch * Cc * S), C(0));
#pragma omp parallel for if (p.batch * p.seqlen * p.channels > (1 << 14))
  for (int64_t c = 0; c < Cc; ++c)
    for (int64_t b = 0; b < p.batch; ++b)
      for (int64_t t = 0; t < p.seqlen; ++t) {
        const C z = rd.z(b, t, c), sg = C(1) / (C(1) + std::exp(-z));
        const C dz = ScalarTraits<T>::to_compute(dy[(b * p.seqlen + t) * Cc + c]) * sg *
                     (C(1) + z * (C(1) - sg));
        db[size_t(c)] += dz;
        for_each_tap(p, b, t, [&](int64_t k, int64_t u) {
          dw[size_t(c * W + k)] += dz * rd.at(b, u, c);
          if (u >= 0) dx[size_t((b * p.seqlen + u) * Cc + c)] += dz * rd.w(c, k);
          else ds[size_t((b * Cc + c) * S + (S + u))] += dz * rd.w(c, k);
        });
      }
  auto store = [](void* dst, const std::vector<C>& v) {
    T* d = static_cast<T*>(dst);
    for (size_t i = 0; i < v.size(); ++i) d[i] = ScalarTraits<T>::from_compute(v[i]);
  };
  store(p.dx, dx);
  store(p.dw, dw);
  store(p.dbias, db);
  if (p.d_init_state) store(p.d_init_state, ds);
}

}  // namespace

void conv1d_forward_cpu(const Conv1dParams& p) {
  SL_DISPATCH_FLOAT(p.dtype, "causal_conv1d_silu", T, forward_typed<T>(p));
}

void conv1d_backward_cpu(const Conv1dParams& p) {
  SL_DISPATCH_FLOAT(p.dtype, "causal_conv1d_silu", T, backward_typed<T>(p));
}

}  // namespace sl::kernels
