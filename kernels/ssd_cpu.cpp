// CPU references for the SSD scan (formulas in kernels/ssd.h): the sequential recurrence (the
// oracle) and the chunked algorithm the CUDA kernels follow, forward and backward, in f32 (f64 for
// f64). One (sequence, head) pair is one independent task; gradients shared across heads (dBm,
// dCm per group, dA, dD) are written per head first and summed afterwards in a fixed order, so the
// result does not depend on the thread schedule.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/ssd.h"

namespace sl::kernels {
namespace {

template <class T, class C>
std::vector<C> load(const void* src, int64_t n) {
  std::vector<C> v(static_cast<size_t>(n));
  if (!src) return v;
  const T* s = static_cast<const T*>(src);
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = C(ScalarTraits<T>::to_compute(s[i]));
  return v;
}

template <class T, class C>
void store(void* dst, const std::vector<C>& v) {
  T* d = static_cast<T*>(dst);
  for (size_t i = 0; i < v.size(); ++i) d[i] = ScalarTraits<T>::from_compute(v[i]);
}

// The inputs in compute precision and the index math of kernels/ssd.h.
template <class C>
struct Inputs {
  int64_t Bn, T, H, P, G, N, hpg;
  std::vector<C> x, dt, A, Bm, Cm, D, init;
  const int32_t* seq;

  template <class T_>
  static Inputs make(const SsdParams& p) {
    Inputs in;
    in.Bn = p.batch, in.T = p.seqlen, in.H = p.heads, in.P = p.head_dim, in.G = p.groups;
    in.N = p.state, in.hpg = p.heads / p.groups;
    const int64_t bt = p.batch * p.seqlen;
    in.x = load<T_, C>(p.x, bt * p.heads * p.head_dim);
    in.dt = load<T_, C>(p.dt, bt * p.heads);
    in.A = load<T_, C>(p.A, p.heads);
    in.Bm = load<T_, C>(p.Bm, bt * p.groups * p.state);
    in.Cm = load<T_, C>(p.Cm, bt * p.groups * p.state);
    in.D = load<T_, C>(p.D, p.heads);
    in.init = load<C, C>(p.init_state, p.batch * p.heads * p.head_dim * p.state);
    in.seq = p.seq_idx;
    return in;
  }
  const C* xp(int64_t b, int64_t t, int64_t h) const { return &x[size_t(((b * T + t) * H + h) * P)]; }
  C dtv(int64_t b, int64_t t, int64_t h) const { return dt[size_t((b * T + t) * H + h)]; }
  const C* Bp(int64_t b, int64_t t, int64_t h) const {
    return &Bm[size_t(((b * T + t) * G + h / hpg) * N)];
  }
  const C* Cp(int64_t b, int64_t t, int64_t h) const {
    return &Cm[size_t(((b * T + t) * G + h / hpg) * N)];
  }
  // Note [document resets] in kernels/ssd.h.
  bool reset(int64_t b, int64_t t) const {
    return seq && t > 0 && seq[b * T + t] != seq[b * T + t - 1];
  }
  C decay(int64_t b, int64_t t, int64_t h) const {
    return reset(b, t) ? C(0) : std::exp(dtv(b, t, h) * A[size_t(h)]);
  }
  int64_t state_off(int64_t b, int64_t h) const { return (b * H + h) * P * N; }
};

// Per-head gradient buffers, reduced over heads / batch at the end in a fixed order.
template <class C>
struct Grads {
  std::vector<C> dx, ddt, dBh, dCh, dA_bh, dD_bh, dinit;
  explicit Grads(const Inputs<C>& in)
      : dx(in.x.size()),
        ddt(in.dt.size()),
        dBh(size_t(in.Bn * in.T * in.H * in.N)),
        dCh(size_t(in.Bn * in.T * in.H * in.N)),
        dA_bh(size_t(in.Bn * in.H)),
        dD_bh(size_t(in.Bn * in.H)),
        dinit(size_t(in.Bn * in.H * in.P * in.N)) {}
  C* dBp(const Inputs<C>& in, int64_t b, int64_t t, int64_t h) {
    return &dBh[size_t(((b * in.T + t) * in.H + h) * in.N)];
  }
  C* dCp(const Inputs<C>& in, int64_t b, int64_t t, int64_t h) {
    return &dCh[size_t(((b * in.T + t) * in.H + h) * in.N)];
  }
};

template <class T, class C>
void write_grads(const SsdParams& p, const Inputs<C>& in, const Grads<C>& g) {
  store<T, C>(p.dx, g.dx);
  store<T, C>(p.ddt, g.ddt);
  std::vector<C> dA(size_t(in.H), C(0)), dD(size_t(in.H), C(0));
  for (int64_t b = 0; b < in.Bn; ++b)
    for (int64_t h = 0; h < in.H; ++h) {
      dA[size_t(h)] += g.dA_bh[size_t(b * in.H + h)];
      dD[size_t(h)] += g.dD_bh[size_t(b * in.H + h)];
    }
  store<T, C>(p.dA, dA);
  store<T, C>(p.dD, dD);
  std::vector<C> dB(in.Bm.size(), C(0)), dC(in.Cm.size(), C(0));
  for (int64_t bt = 0; bt < in.Bn * in.T; ++bt)
    for (int64_t h = 0; h < in.H; ++h)
      for (int64_t n = 0; n < in.N; ++n) {
        size_t src = size_t((bt * in.H + h) * in.N + n);
        size_t dst = size_t((bt * in.G + h / in.hpg) * in.N + n);
        dB[dst] += g.dBh[src];
        dC[dst] += g.dCh[src];
      }
  store<T, C>(p.dBm, dB);
  store<T, C>(p.dCm, dC);
  if (p.d_init_state) store<C, C>(p.d_init_state, g.dinit);
}

// ---- sequential recurrence ----

template <class T>
void sequential_forward(const SsdParams& p) {
  using C = typename ScalarTraits<T>::compute;
  const Inputs<C> in = Inputs<C>::template make<T>(p);
  const int64_t P = in.P, N = in.N;
  std::vector<C> y(in.x.size()), fin(in.init.size());
#pragma omp parallel for collapse(2) if (in.x.size() > (1u << 14))
  for (int64_t b = 0; b < in.Bn; ++b)
    for (int64_t h = 0; h < in.H; ++h) {
      std::vector<C> S(in.init.begin() + in.state_off(b, h),
                       in.init.begin() + in.state_off(b, h) + P * N);
      for (int64_t t = 0; t < in.T; ++t) {
        const C a = in.decay(b, t, h), dt = in.dtv(b, t, h);
        const C *x = in.xp(b, t, h), *Bv = in.Bp(b, t, h), *Cv = in.Cp(b, t, h);
        C* yo = &y[size_t(x - in.x.data())];
        for (int64_t i = 0; i < P; ++i) {
          C acc = in.D[size_t(h)] * x[i];
          for (int64_t n = 0; n < N; ++n) {
            C& s = S[size_t(i * N + n)];
            s = a * s + dt * x[i] * Bv[n];
            acc += s * Cv[n];
          }
          yo[i] = acc;
        }
      }
      std::copy(S.begin(), S.end(), fin.begin() + in.state_off(b, h));
    }
  store<T, C>(p.y, y);
  store<C, C>(p.final_state, fin);
}

template <class T>
void sequential_backward(const SsdParams& p) {
  using C = typename ScalarTraits<T>::compute;
  const Inputs<C> in = Inputs<C>::template make<T>(p);
  const std::vector<C> dy = load<T, C>(p.dy, int64_t(in.x.size()));
  const std::vector<C> dfin = load<C, C>(p.d_final_state, int64_t(in.init.size()));
  Grads<C> g(in);
  const int64_t P = in.P, N = in.N, PN = P * N;
#pragma omp parallel for collapse(2) if (in.x.size() > (1u << 14))
  for (int64_t b = 0; b < in.Bn; ++b)
    for (int64_t h = 0; h < in.H; ++h) {
      // states[t + 1] = S_t, states[0] = the initial state.
      std::vector<C> states(size_t((in.T + 1) * PN));
      std::copy(in.init.begin() + in.state_off(b, h), in.init.begin() + in.state_off(b, h) + PN,
                states.begin());
      for (int64_t t = 0; t < in.T; ++t) {
        const C a = in.decay(b, t, h), dt = in.dtv(b, t, h);
        const C *x = in.xp(b, t, h), *Bv = in.Bp(b, t, h);
        for (int64_t i = 0; i < P; ++i)
          for (int64_t n = 0; n < N; ++n)
            states[size_t((t + 1) * PN + i * N + n)] =
                a * states[size_t(t * PN + i * N + n)] + dt * x[i] * Bv[n];
      }
      std::vector<C> G(dfin.begin() + in.state_off(b, h), dfin.begin() + in.state_off(b, h) + PN);
      C dA = 0, dD = 0;
      for (int64_t t = in.T - 1; t >= 0; --t) {
        const C a = in.decay(b, t, h), dt = in.dtv(b, t, h), Ah = in.A[size_t(h)];
        const C *x = in.xp(b, t, h), *Bv = in.Bp(b, t, h), *Cv = in.Cp(b, t, h);
        const size_t xo = size_t(x - in.x.data());
        const C* g_y = &dy[xo];
        const C* S = &states[size_t((t + 1) * PN)];
        const C* Sprev = &states[size_t(t * PN)];
        C* dB = g.dBp(in, b, t, h);
        C* dC = g.dCp(in, b, t, h);
        C ddt = 0, gs = 0;
        for (int64_t i = 0; i < P; ++i) {
          C gb = 0;
          for (int64_t n = 0; n < N; ++n) {
            C& Gv = G[size_t(i * N + n)];
            Gv += g_y[i] * Cv[n];
            dC[n] += S[i * N + n] * g_y[i];
            dB[n] += dt * Gv * x[i];
            gb += Gv * Bv[n];
            gs += Gv * Sprev[i * N + n];
          }
          g.dx[xo + size_t(i)] = in.D[size_t(h)] * g_y[i] + dt * gb;
          ddt += x[i] * gb;
          dD += g_y[i] * x[i];
        }
        g.ddt[size_t((b * in.T + t) * in.H + h)] = ddt + Ah * a * gs;
        dA += dt * a * gs;
        for (C& Gv : G) Gv *= a;
      }
      g.dA_bh[size_t(b * in.H + h)] = dA;
      g.dD_bh[size_t(b * in.H + h)] = dD;
      std::copy(G.begin(), G.end(), g.dinit.begin() + in.state_off(b, h));
    }
  write_grads<T, C>(p, in, g);
}

// ---- chunked algorithm (Note [chunked SSD] in kernels/ssd.h) ----

// One chunk [t0, t0 + L) of one (b, h): cumulative sums of dt * A and the last reset <= i
// (relative to t0; -1 when there is none in the chunk).
template <class C>
struct Chunk {
  int64_t t0, L;
  std::vector<C> cs;
  std::vector<int64_t> seg;
  Chunk(const Inputs<C>& in, int64_t b, int64_t h, int64_t t0_, int64_t L_)
      : t0(t0_), L(L_), cs(size_t(L_)), seg(size_t(L_)) {
    C run = 0;
    int64_t last = -1;
    for (int64_t i = 0; i < L; ++i) {
      run += in.dtv(b, t0 + i, h) * in.A[size_t(h)];
      cs[size_t(i)] = run;
      if (in.reset(b, t0 + i)) last = i;
      seg[size_t(i)] = last;
    }
  }
  int64_t first(int64_t i) const { return std::max<int64_t>(seg[size_t(i)], 0); }
  bool carries(int64_t i) const { return seg[size_t(i)] < 0; }  // S_in reaches position i
};

template <class C>
C dot(const C* a, const C* b, int64_t n) {
  C s = 0;
  for (int64_t k = 0; k < n; ++k) s += a[k] * b[k];
  return s;
}

// Advances S (S_in of the chunk on entry, S_out on exit) and optionally writes y.
template <class C>
void chunk_forward(const Inputs<C>& in, int64_t b, int64_t h, const Chunk<C>& ck,
                   std::vector<C>& S, C* y) {
  const int64_t P = in.P, N = in.N, L = ck.L, e = L - 1;
  if (y) {
    for (int64_t i = 0; i < L; ++i) {
      const C* Cv = in.Cp(b, ck.t0 + i, h);
      C* yo = y + (((b * in.T + ck.t0 + i) * in.H + h) * P);
      const C* xi = in.xp(b, ck.t0 + i, h);
      for (int64_t q = 0; q < P; ++q) yo[q] = in.D[size_t(h)] * xi[q];
      if (ck.carries(i)) {
        const C ei = std::exp(ck.cs[size_t(i)]);
        for (int64_t q = 0; q < P; ++q) yo[q] += ei * dot(&S[size_t(q * N)], Cv, N);
      }
      for (int64_t j = ck.first(i); j <= i; ++j) {
        const C w = dot(Cv, in.Bp(b, ck.t0 + j, h), N) *
                    std::exp(ck.cs[size_t(i)] - ck.cs[size_t(j)]) * in.dtv(b, ck.t0 + j, h);
        const C* xj = in.xp(b, ck.t0 + j, h);
        for (int64_t q = 0; q < P; ++q) yo[q] += w * xj[q];
      }
    }
  }
  const C carry = ck.carries(e) ? std::exp(ck.cs[size_t(e)]) : C(0);
  for (C& s : S) s *= carry;
  for (int64_t j = ck.first(e); j <= e; ++j) {
    const C w = std::exp(ck.cs[size_t(e)] - ck.cs[size_t(j)]) * in.dtv(b, ck.t0 + j, h);
    const C *xj = in.xp(b, ck.t0 + j, h), *Bv = in.Bp(b, ck.t0 + j, h);
    for (int64_t q = 0; q < P; ++q)
      for (int64_t n = 0; n < N; ++n) S[size_t(q * N + n)] += w * xj[q] * Bv[n];
  }
}

template <class T>
void chunked_forward(const SsdParams& p) {
  using C = typename ScalarTraits<T>::compute;
  const Inputs<C> in = Inputs<C>::template make<T>(p);
  const int64_t PN = in.P * in.N;
  std::vector<C> y(in.x.size()), fin(in.init.size());
#pragma omp parallel for collapse(2) if (in.x.size() > (1u << 14))
  for (int64_t b = 0; b < in.Bn; ++b)
    for (int64_t h = 0; h < in.H; ++h) {
      std::vector<C> S(in.init.begin() + in.state_off(b, h),
                       in.init.begin() + in.state_off(b, h) + PN);
      for (int64_t t0 = 0; t0 < in.T; t0 += p.chunk) {
        Chunk<C> ck(in, b, h, t0, std::min(p.chunk, in.T - t0));
        chunk_forward(in, b, h, ck, S, y.data());
      }
      std::copy(S.begin(), S.end(), fin.begin() + in.state_off(b, h));
    }
  store<T, C>(p.y, y);
  store<C, C>(p.final_state, fin);
}

// Gradients of one chunk given its entering state Sin and dS, the gradient reaching S_out; on
// exit dS holds the gradient reaching S_in.
template <class C>
void chunk_backward(const Inputs<C>& in, const std::vector<C>& dy, int64_t b, int64_t h,
                    const Chunk<C>& ck, const C* Sin, std::vector<C>& dS, Grads<C>& g, C& dA,
                    C& dD) {
  const int64_t P = in.P, N = in.N, L = ck.L, e = L - 1;
  const C Ah = in.A[size_t(h)], Dh = in.D[size_t(h)];
  std::vector<C> dcs(size_t(L), C(0));
  auto dyp = [&](int64_t i) { return &dy[size_t(((b * in.T + ck.t0 + i) * in.H + h) * P)]; };
  auto dxp = [&](int64_t i) { return &g.dx[size_t(((b * in.T + ck.t0 + i) * in.H + h) * P)]; };
  auto ddtr = [&](int64_t i) -> C& { return g.ddt[size_t((b * in.T + ck.t0 + i) * in.H + h)]; };
  for (int64_t i = 0; i < L; ++i) {
    const C *xi = in.xp(b, ck.t0 + i, h), *gi = dyp(i);
    C* dxi = dxp(i);
    for (int64_t q = 0; q < P; ++q) dxi[q] = Dh * gi[q];
    dD += dot(gi, xi, P);
    ddtr(i) = 0;
  }
  for (int64_t i = 0; i < L; ++i) {
    const C *Ci = in.Cp(b, ck.t0 + i, h), *gi = dyp(i);
    C* dCi = g.dCp(in, b, ck.t0 + i, h);
    for (int64_t j = ck.first(i); j <= i; ++j) {
      const C *Bj = in.Bp(b, ck.t0 + j, h), *xj = in.xp(b, ck.t0 + j, h);
      const C dtj = in.dtv(b, ck.t0 + j, h);
      const C Lij = std::exp(ck.cs[size_t(i)] - ck.cs[size_t(j)]);
      const C cb = dot(Ci, Bj, N), gx = dot(gi, xj, P);
      C* dxj = dxp(j);
      for (int64_t q = 0; q < P; ++q) dxj[q] += cb * Lij * dtj * gi[q];
      C* dBj = g.dBp(in, b, ck.t0 + j, h);
      for (int64_t n = 0; n < N; ++n) {
        dBj[n] += gx * Lij * dtj * Ci[n];
        dCi[n] += gx * Lij * dtj * Bj[n];
      }
      ddtr(j) += cb * Lij * gx;
      const C G = cb * Lij * dtj * gx;
      dcs[size_t(i)] += G;
      dcs[size_t(j)] -= G;
    }
    if (ck.carries(i)) {
      const C ei = std::exp(ck.cs[size_t(i)]);
      C val = 0;
      for (int64_t n = 0; n < N; ++n) {
        C sg = 0;
        for (int64_t q = 0; q < P; ++q) sg += gi[q] * Sin[q * N + n];
        dCi[n] += ei * sg;
        val += ei * sg * Ci[n];
      }
      dcs[size_t(i)] += val;
    }
  }
  for (int64_t j = ck.first(e); j <= e; ++j) {
    const C *Bj = in.Bp(b, ck.t0 + j, h), *xj = in.xp(b, ck.t0 + j, h);
    const C dtj = in.dtv(b, ck.t0 + j, h), w = std::exp(ck.cs[size_t(e)] - ck.cs[size_t(j)]);
    C* dxj = dxp(j);
    C* dBj = g.dBp(in, b, ck.t0 + j, h);
    C xv = 0;
    for (int64_t q = 0; q < P; ++q) {
      const C v = dot(&dS[size_t(q * N)], Bj, N);
      dxj[q] += w * dtj * v;
      xv += xj[q] * v;
    }
    for (int64_t n = 0; n < N; ++n) {
      C u = 0;
      for (int64_t q = 0; q < P; ++q) u += dS[size_t(q * N + n)] * xj[q];
      dBj[n] += w * dtj * u;
    }
    ddtr(j) += w * xv;
    dcs[size_t(e)] += w * dtj * xv;
    dcs[size_t(j)] -= w * dtj * xv;
  }
  if (ck.carries(e)) {
    const C ee = std::exp(ck.cs[size_t(e)]);
    dcs[size_t(e)] += ee * dot(Sin, dS.data(), P * N);
    for (C& v : dS) v *= ee;
  } else {
    std::fill(dS.begin(), dS.end(), C(0));
  }
  for (int64_t i = 0; i < L; ++i) {
    if (!ck.carries(i)) continue;
    const C ei = std::exp(ck.cs[size_t(i)]);
    const C *Ci = in.Cp(b, ck.t0 + i, h), *gi = dyp(i);
    for (int64_t q = 0; q < P; ++q)
      for (int64_t n = 0; n < N; ++n) dS[size_t(q * N + n)] += ei * gi[q] * Ci[n];
  }
  C da = 0;
  for (int64_t r = L - 1; r >= 0; --r) {
    da += dcs[size_t(r)];
    ddtr(r) += Ah * da;
    dA += in.dtv(b, ck.t0 + r, h) * da;
  }
}

template <class T>
void chunked_backward(const SsdParams& p) {
  using C = typename ScalarTraits<T>::compute;
  const Inputs<C> in = Inputs<C>::template make<T>(p);
  const std::vector<C> dy = load<T, C>(p.dy, int64_t(in.x.size()));
  const std::vector<C> dfin = load<C, C>(p.d_final_state, int64_t(in.init.size()));
  Grads<C> g(in);
  const int64_t PN = in.P * in.N, nc = (in.T + p.chunk - 1) / p.chunk;
#pragma omp parallel for collapse(2) if (in.x.size() > (1u << 14))
  for (int64_t b = 0; b < in.Bn; ++b)
    for (int64_t h = 0; h < in.H; ++h) {
      std::vector<C> states(size_t(nc * PN));  // S_in of every chunk
      std::vector<C> S(in.init.begin() + in.state_off(b, h),
                       in.init.begin() + in.state_off(b, h) + PN);
      for (int64_t c = 0; c < nc; ++c) {
        std::copy(S.begin(), S.end(), states.begin() + c * PN);
        Chunk<C> ck(in, b, h, c * p.chunk, std::min(p.chunk, in.T - c * p.chunk));
        chunk_forward<C>(in, b, h, ck, S, nullptr);
      }
      std::vector<C> dS(dfin.begin() + in.state_off(b, h), dfin.begin() + in.state_off(b, h) + PN);
      C dA = 0, dD = 0;
      for (int64_t c = nc - 1; c >= 0; --c) {
        Chunk<C> ck(in, b, h, c * p.chunk, std::min(p.chunk, in.T - c * p.chunk));
        chunk_backward(in, dy, b, h, ck, &states[size_t(c * PN)], dS, g, dA, dD);
      }
      g.dA_bh[size_t(b * in.H + h)] = dA;
      g.dD_bh[size_t(b * in.H + h)] = dD;
      std::copy(dS.begin(), dS.end(), g.dinit.begin() + in.state_off(b, h));
    }
  write_grads<T, C>(p, in, g);
}

}  // namespace

void ssd_forward_cpu(const SsdParams& p) {
  SL_DISPATCH_FLOAT(p.dtype, "ssd_scan", T, {
    if (p.sequential) sequential_forward<T>(p);
    else chunked_forward<T>(p);
  });
}

void ssd_backward_cpu(const SsdParams& p) {
  SL_DISPATCH_FLOAT(p.dtype, "ssd_scan", T, {
    if (p.sequential) sequential_backward<T>(p);
    else chunked_backward<T>(p);
  });
}

}  // namespace sl::kernels
