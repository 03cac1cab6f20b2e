// CPU reference of superlinear attention, the O(L^1.5) algorithm (spec §4-9): per query, scores
// over the candidate anchors only, top-k, the window attended once, each kept span attended alone,
// LSE merge, softmax gate. Saves O(L k) metadata; the backward recomputes everything else.
//
// Non-obvious decision: every dtype computes in f64 internally (storage is read and written in
// its own dtype, statistics are saved in f32, or f64 for f64 tensors), so this reference is at
// least as accurate as the fp32-accumulating GPU kernels it checks. See Note [backward through
// the merge] for the derivation of the backward.
//
// Note [backward through the merge]
// Slot j's output is a softmax over window ∪ span_j: with z_u = <Qa, K_u>/sqrt(D) and
// Λ_j = logaddexp(lse_w, lse_j), P_ju = exp(z_u - Λ_j) and O_j = Σ_u P_ju V_u. With
// O = Σ_j g_j O_j, slot j sees dO_j = g_j dO, and y_j = <dO, O_j> =
// e^{lse_w-Λ_j} <dO, O_w> + e^{lse_j-Λ_j} <dO, O_s_j>. The usual softmax backward per slot gives
//   span key u:   dV_u += g_j P_ju dO,  dz_u = g_j P_ju (<dO, V_u> - y_j);
//   window key u: the same summed over slots; with P^w_u = exp(z_u - lse_w) and
//                 α_j = g_j e^{lse_w - Λ_j}: dV_u += P^w_u (Σα) dO,
//                 dz_u = P^w_u ((Σα) <dO, V_u> - Σ α_j y_j)   (one pass over the window);
// then dQa += dz_u K_u / sqrt(D), dK_u += dz_u Qa / sqrt(D). The gate gives
// dscore_j = g_j (y_j - Σ_m g_m y_m) for valid slots, and the score <Qs, K_{a_j}> gives
// dQs += dscore_j K_{a_j}, dK_{a_j} += dscore_j Qs. With no valid slot, g_j = 1/k and Λ_j = lse_w
// for all j, so the formulas reduce to plain window attention (Note [no valid slot]).
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/superlinear.h"

namespace sl::kernels {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

double read_stat(const void* p, DType dt, int64_t i) {
  return dt == DType::F64 ? static_cast<const double*>(p)[i]
                          : double(static_cast<const float*>(p)[i]);
}
void write_stat(void* p, DType dt, int64_t i, double v) {
  if (dt == DType::F64)
    static_cast<double*>(p)[i] = v;
  else
    static_cast<float*>(p)[i] = float(v);
}

template <class T>
void load_row(const T* src, int64_t D, double* dst) {
  for (int64_t d = 0; d < D; ++d) dst[d] = double(ScalarTraits<T>::to_compute(src[d]));
}
template <class T>
double dot_row(const double* a, const T* b, int64_t D) {
  double s = 0;
  for (int64_t d = 0; d < D; ++d) s += a[d] * double(ScalarTraits<T>::to_compute(b[d]));
  return s;
}

// Softmax attention of q over keys [lo, hi] (empty when lo > hi): writes the normalised output
// to o and returns the log-sum-exp of the scaled logits (-inf, o = 0 when empty).
template <class T>
double attend(const double* q, const T* K, const T* V, int64_t lo, int64_t hi, int64_t D,
              double scale, double* o, std::vector<double>& z) {
  for (int64_t d = 0; d < D; ++d) o[d] = 0;
  if (lo > hi) return kNegInf;
  z.resize(size_t(hi - lo + 1));
  double m = kNegInf;
  for (int64_t u = lo; u <= hi; ++u) {
    z[size_t(u - lo)] = dot_row(q, K + u * D, D) * scale;
    m = std::max(m, z[size_t(u - lo)]);
  }
  double sum = 0;
  for (int64_t u = lo; u <= hi; ++u) {
    double e = std::exp(z[size_t(u - lo)] - m);
    sum += e;
    const T* vr = V + u * D;
    for (int64_t d = 0; d < D; ++d) o[d] += e * double(ScalarTraits<T>::to_compute(vr[d]));
  }
  for (int64_t d = 0; d < D; ++d) o[d] /= sum;
  return m + std::log(sum);
}

// Top-k insertion: larger score first; among equal scores the farther (smaller) anchor first.
// Empty slots hold anchor -1 and score -inf and lose to any candidate.
void topk_insert(int k, double sc, int64_t a, double* best_s, int64_t* best_a) {
  int m = 0;
  while (m < k && best_a[m] >= 0 && (best_s[m] > sc || (best_s[m] == sc && best_a[m] < a))) ++m;
  if (m == k) return;
  for (int r = k - 1; r > m; --r) {
    best_s[r] = best_s[r - 1];
    best_a[r] = best_a[r - 1];
  }
  best_s[m] = sc;
  best_a[m] = a;
}

// Gate weights from the saved (descending) scores: softmax over valid slots, uniform if none.
void gate_weights(int k, const double* sc, const int64_t* an, double* g) {
  int nv = 0;
  double mx = kNegInf, sum = 0;
  for (int j = 0; j < k; ++j)
    if (an[j] >= 0) {
      ++nv;
      mx = std::max(mx, sc[j]);
    }
  for (int j = 0; j < k; ++j) {
    g[j] = nv == 0 ? 1.0 / k : (an[j] >= 0 ? std::exp(sc[j] - mx) : 0.0);
    sum += g[j];
  }
  for (int j = 0; j < k; ++j) g[j] /= sum;
}

double logaddexp(double a, double b) {
  double m = std::max(a, b);
  if (m == kNegInf) return kNegInf;
  return m + std::log(std::exp(a - m) + std::exp(b - m));
}

struct Row {
  int64_t b, h, i, t, sb, kv_off, q_off;
};
Row locate(const SuperlinearParams& p, int64_t b, int64_t h, int64_t i) {
  Row r;
  r.b = b;
  r.h = h;
  r.i = i;
  r.t = p.q_start + i;
  r.sb = p.doc_starts ? p.doc_starts[b * p.Lkv + r.t] : 0;
  r.kv_off = (b * p.Hkv + h / (p.Hq / p.Hkv)) * p.Lkv * p.D;
  r.q_off = ((b * p.Hq + h) * p.Lq + i) * p.D;
  return r;
}

template <class T>
void forward_typed(const SuperlinearParams& p) {
  const SuperlinearConfig& c = p.cfg;
  const int k = c.k;
  const int64_t D = p.D, rows = p.B * p.Hq * p.Lq;
  const size_t Dn = size_t(D), kn = size_t(k);
  const double scale = 1.0 / std::sqrt(double(D));
#pragma omp parallel for schedule(dynamic, 8) if (rows >= 512)
  for (int64_t row = 0; row < rows; ++row) {
    Row r = locate(p, row / (p.Hq * p.Lq), (row / p.Lq) % p.Hq, row % p.Lq);
    const T* K = static_cast<const T*>(p.k) + r.kv_off;
    const T* V = static_cast<const T*>(p.v) + r.kv_off;
    std::vector<double> qa(Dn), qs(Dn), ow(Dn), os(Dn), out(Dn, 0.0), z;
    std::vector<double> best_s(kn, kNegInf), lse_s(kn, kNegInf), g(kn);
    std::vector<int64_t> best_a(kn, -1);
    load_row(static_cast<const T*>(p.qa) + r.q_off, D, qa.data());
    load_row(static_cast<const T*>(p.qs) + r.q_off, D, qs.data());

    const int64_t n = num_candidates(c, r.t + 1 - r.sb);
    for (int64_t j = 0; j < n; ++j) {
      int64_t a = candidate_anchor(c, r.t, j);
      topk_insert(k, dot_row(qs.data(), K + a * D, D), a, best_s.data(), best_a.data());
    }
    const int64_t sw = sw_start(c, r.t, r.sb);
    const double lse_w = attend(qa.data(), K, V, sw, r.t, D, scale, ow.data(), z);
    int64_t keys = r.t - sw + 1;
    gate_weights(k, best_s.data(), best_a.data(), g.data());
    for (int j = 0; j < k; ++j) {
      int64_t a = best_a[size_t(j)];
      double lj = kNegInf;
      if (a >= 0) {
        int64_t lo = span_start(c, a, r.t, r.sb), hi = span_end(c, a, r.t, r.sb);
        lj = attend(qa.data(), K, V, lo, hi, D, scale, os.data(), z);
        keys += hi - lo + 1;
      }
      lse_s[size_t(j)] = lj;
      const double lam = logaddexp(lse_w, lj);
      if (lam == kNegInf) continue;  // window and span both empty: O_j = 0
      const double ww = std::exp(lse_w - lam), wj = std::exp(lj - lam);
      for (int64_t d = 0; d < D; ++d)
        out[size_t(d)] += g[size_t(j)] * (ww * ow[size_t(d)] + (a >= 0 ? wj * os[size_t(d)] : 0));
    }

    T* o = static_cast<T*>(p.out) + r.q_off;
    for (int64_t d = 0; d < D; ++d)
      o[d] = ScalarTraits<T>::from_compute(typename ScalarTraits<T>::compute(out[size_t(d)]));
    const int64_t mrow = row * k;
    for (int j = 0; j < k; ++j) {
      p.anchors[mrow + j] = int32_t(best_a[size_t(j)]);
      write_stat(p.scores, p.stat_dtype, mrow + j, best_s[size_t(j)]);
      write_stat(p.lse_s, p.stat_dtype, mrow + j, lse_s[size_t(j)]);
    }
    write_stat(p.lse_w, p.stat_dtype, row, lse_w);
    if (p.work_search) p.work_search[row] = n;
    if (p.work_keys) p.work_keys[row] = keys;
  }
}

template <class T>
void store_row(const double* src, int64_t D, T* dst) {
  for (int64_t d = 0; d < D; ++d)
    dst[d] = ScalarTraits<T>::from_compute(typename ScalarTraits<T>::compute(src[d]));
}

// One KV group (b, kv head) per task: its query heads are the only writers of its dK/dV rows, so
// the sums run in a fixed order without atomics (deterministic).
template <class T>
void backward_typed(const SuperlinearBackwardParams& bp) {
  const SuperlinearParams& p = bp.fwd;
  const SuperlinearConfig& c = p.cfg;
  const int k = c.k;
  const int64_t D = p.D, r_heads = p.Hq / p.Hkv;
  const double scale = 1.0 / std::sqrt(double(D));
  const DType sdt = p.stat_dtype;
  const size_t Dn = size_t(D), kn = size_t(k);
#pragma omp parallel for schedule(dynamic, 1) if (p.B * p.Hkv > 1 && p.Hq * p.Lq >= 512)
  for (int64_t grp = 0; grp < p.B * p.Hkv; ++grp) {
    const int64_t b = grp / p.Hkv, kvh = grp % p.Hkv;
    std::vector<double> dk(size_t(p.Lkv * D), 0.0), dv(size_t(p.Lkv * D), 0.0);
    std::vector<double> qa(Dn), qs(Dn), dO(Dn), dqa(Dn), dqs(Dn);
    std::vector<double> sc(kn), ls(kn), g(kn), lam(kn), y(kn), ys(kn);
    std::vector<int64_t> an(kn), lo(kn), hi(kn);
    for (int64_t h = kvh * r_heads; h < (kvh + 1) * r_heads; ++h) {
      for (int64_t i = 0; i < p.Lq; ++i) {
        Row r = locate(p, b, h, i);
        const T* K = static_cast<const T*>(p.k) + r.kv_off;
        const T* V = static_cast<const T*>(p.v) + r.kv_off;
        load_row(static_cast<const T*>(p.qa) + r.q_off, D, qa.data());
        load_row(static_cast<const T*>(p.qs) + r.q_off, D, qs.data());
        load_row(static_cast<const T*>(bp.dout) + r.q_off, D, dO.data());
        const int64_t row = (b * p.Hq + h) * p.Lq + i;
        const double lse_w = read_stat(p.lse_w, sdt, row);
        for (int j = 0; j < k; ++j) {
          an[size_t(j)] = p.anchors[row * k + j];
          sc[size_t(j)] = read_stat(p.scores, sdt, row * k + j);
          ls[size_t(j)] = an[size_t(j)] >= 0 ? read_stat(p.lse_s, sdt, row * k + j) : kNegInf;
          lam[size_t(j)] = logaddexp(lse_w, ls[size_t(j)]);
          if (an[size_t(j)] >= 0) {
            lo[size_t(j)] = span_start(c, an[size_t(j)], r.t, r.sb);
            hi[size_t(j)] = span_end(c, an[size_t(j)], r.t, r.sb);
          }
        }
        gate_weights(k, sc.data(), an.data(), g.data());
        const int64_t sw = sw_start(c, r.t, r.sb);

        // Pass 1: <dO, O_w>, <dO, O_s_j>, hence y_j = <dO, O_j>.
        double yw = 0;
        if (lse_w != kNegInf)
          for (int64_t u = sw; u <= r.t; ++u)
            yw += std::exp(dot_row(qa.data(), K + u * D, D) * scale - lse_w) *
                  dot_row(dO.data(), V + u * D, D);
        double ybar = 0, alpha = 0, alpha_y = 0;
        for (int j = 0; j < k; ++j) {
          ys[size_t(j)] = 0;
          if (an[size_t(j)] >= 0)
            for (int64_t u = lo[size_t(j)]; u <= hi[size_t(j)]; ++u)
              ys[size_t(j)] += std::exp(dot_row(qa.data(), K + u * D, D) * scale - ls[size_t(j)]) *
                               dot_row(dO.data(), V + u * D, D);
          const double l = lam[size_t(j)];
          y[size_t(j)] =
              l == kNegInf
                  ? 0.0
                  : (lse_w == kNegInf ? 0.0 : std::exp(lse_w - l) * yw) +
                        (an[size_t(j)] >= 0 ? std::exp(ls[size_t(j)] - l) * ys[size_t(j)] : 0.0);
          ybar += g[size_t(j)] * y[size_t(j)];
          if (l != kNegInf && lse_w != kNegInf) {
            const double aj = g[size_t(j)] * std::exp(lse_w - l);
            alpha += aj;
            alpha_y += aj * y[size_t(j)];
          }
        }

        // Pass 2: attention gradients (Note [backward through the merge]).
        std::fill(dqa.begin(), dqa.end(), 0.0);
        std::fill(dqs.begin(), dqs.end(), 0.0);
        auto key_grad = [&](int64_t u, double P, double dz, double dv_coef) {
          const T* kr = K + u * D;
          double* dkr = dk.data() + u * D;
          double* dvr = dv.data() + u * D;
          for (int64_t d = 0; d < D; ++d) {
            dqa[size_t(d)] += dz * scale * double(ScalarTraits<T>::to_compute(kr[d]));
            dkr[d] += dz * scale * qa[size_t(d)];
            dvr[d] += P * dv_coef * dO[size_t(d)];
          }
        };
        if (lse_w != kNegInf)
          for (int64_t u = sw; u <= r.t; ++u) {
            double P = std::exp(dot_row(qa.data(), K + u * D, D) * scale - lse_w);
            double dpu = dot_row(dO.data(), V + u * D, D);
            key_grad(u, P, P * (alpha * dpu - alpha_y), alpha);
          }
        for (int j = 0; j < k; ++j) {
          if (an[size_t(j)] < 0 || g[size_t(j)] == 0) continue;
          for (int64_t u = lo[size_t(j)]; u <= hi[size_t(j)]; ++u) {
            double P = std::exp(dot_row(qa.data(), K + u * D, D) * scale - lam[size_t(j)]);
            double dpu = dot_row(dO.data(), V + u * D, D);
            key_grad(u, P, g[size_t(j)] * P * (dpu - y[size_t(j)]), g[size_t(j)]);
          }
        }

        // Gate and score: routing gradient into Qs and the anchor keys.
        for (int j = 0; j < k; ++j) {
          if (an[size_t(j)] < 0) continue;
          const double ds = g[size_t(j)] * (y[size_t(j)] - ybar);
          const T* kr = K + an[size_t(j)] * D;
          double* dkr = dk.data() + an[size_t(j)] * D;
          for (int64_t d = 0; d < D; ++d) {
            dqs[size_t(d)] += ds * double(ScalarTraits<T>::to_compute(kr[d]));
            dkr[d] += ds * qs[size_t(d)];
          }
        }
        store_row(dqa.data(), D, static_cast<T*>(bp.dqa) + r.q_off);
        store_row(dqs.data(), D, static_cast<T*>(bp.dqs) + r.q_off);
      }
    }
    const int64_t kv_off = (b * p.Hkv + kvh) * p.Lkv * D;
    store_row(dk.data(), p.Lkv * D, static_cast<T*>(bp.dk) + kv_off);
    store_row(dv.data(), p.Lkv * D, static_cast<T*>(bp.dv) + kv_off);
  }
}

}  // namespace

void superlinear_forward_cpu(const SuperlinearParams& p) {
  SL_DISPATCH_FLOAT(p.dtype, "superlinear_attention", T, forward_typed<T>(p));
}

void superlinear_backward_cpu(const SuperlinearBackwardParams& p) {
  SL_DISPATCH_FLOAT(p.fwd.dtype, "superlinear_attention", T, backward_typed<T>(p));
}

}  // namespace sl::kernels
