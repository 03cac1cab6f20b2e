// CUDA chunked SSD scan, backward: the math of chunk_backward in kernels/ssd_cpu.cpp, regrouped
// into matmul-shaped steps over the forward's 64x64 f32 tile routine (ssd_cuda_common.cuh):
//   0. forward steps 1-4 again: cs, seg, CB and S_in, the state entering every chunk
//   1. dstate_local:   U_c = sum_{t reached by S_in} exp(cs_t) dy_t (outer) Cm_t per (chunk, head)
//   2. dstate_passing: reverse over chunks: dS_out of every chunk (in place over U), d_init_state
//   3. dx:             per (chunk, head, row tile s), W_s = sum_t CB_ts L_ts dy_t + w_s dS_out Bm_s
//                      (L_ts = exp(cs_t - cs_s), masked to one document; w_s = exp(cs_end - cs_s)
//                      where S_out is reached), dx_s = D dy_s + dt_s W_s, and per position
//                      wx = x . W, rowdot = dy . (y - D x), dyx = dy . x; <S_out, dS_out>
//   4. dcb:            dCB_ts = sum over the group's heads of (dy_t . x_s) L_ts dt_s (masked)
//   5. dC:             dCm_t = sum_s dCB_ts Bm_s + sum_h exp(cs_t) S_in^T dy_t
//   6. dB:             dBm_s = sum_t dCB_ts Cm_t + sum_h w_s dt_s dS_out^T x_s
//   7. ddt:            per (b, h, chunk), positions in reverse, Note [SSD gradient through cs]
//   8. heads:          dA, dD summed over (sequence, chunk) in order
//
// Note [SSD gradient through cs]
// cs_t enters y through exp(cs_t - cs_s) (intra-chunk), exp(cs_t) (S_in reaching t), and S_out
// through exp(cs_end - cs_s) and exp(cs_end). Collecting every term where cs_t has a plus sign
// gives dy_t . (y_t - D x_t), plus <S_out, dS_out> at the chunk's last position; every term
// with a minus sign gives -dt_t wx_t, and wx_t is also ddt_t's direct part. So
//   dcs_t = dy_t . (y_t - D x_t) - dt_t wx_t + [t = end] <S_out, dS_out>,
// da_t = sum_{t' >= t in the chunk} dcs_t', ddt_t = wx_t + A da_t, dA = sum dt_t da_t.
//
// Deterministic: every sum (over heads of a group, tiles, chunks, sequences) runs in a fixed
// order; no atomics. Scratch (f32): the forward's (cs, seg, CB, S_in) plus dS_out and dCB of the
// same sizes (together 2 B nc (H P N + G Q^2) floats: 2.7 GB for B = 1, T = 64K, H = 64, P = 64,
// N = 128, G = 8, Q = 128), the final state, three [B, H, T] rows and three [B, H, nc] sums.
#include "kernels/ssd_cuda_common.cuh"

namespace sl::kernels {
namespace ssd_cuda {
namespace {

// The (b, c, h) or (b, c, g) of blockIdx.x and its chunk [t0, t0 + L).
struct ChunkIdx {
  int64_t b, c, k, t0, L;  // k: head or group
  __device__ ChunkIdx(const SsdDims& d, int64_t K) {
    k = blockIdx.x % K, c = (blockIdx.x / K) % d.nc, b = blockIdx.x / (K * d.nc);
    t0 = c * d.Q, L = min(d.Q, d.T - t0);
  }
  // Offsets of x-like [B, T, H, P] and Bm-like [B, T, G, N] elements at chunk position t.
  __device__ int64_t xo(const SsdDims& d, int64_t h, int64_t t, int64_t p) const {
    return ((b * d.T + t0 + t) * d.H + h) * d.P + p;
  }
  __device__ int64_t bo(const SsdDims& d, int64_t g, int64_t t, int64_t n) const {
    return ((b * d.T + t0 + t) * d.G + g) * d.N + n;
  }
};

// Writes this thread's 4x4 of the tile at (r0, c0) to out[offset(row, col)], rows < R, cols < C.
template <class T, class F>
__device__ void store_tile(const float (&acc)[4][4], int64_t r0, int64_t c0, int64_t R, int64_t C,
                           F offset, T* out) {
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) {
      const int64_t r = r0 + ty * 4 + i, col = c0 + tx * 4 + j;
      if (r < R && col < C) out[offset(r, col)] = ScalarTraits<T>::from_compute(acc[i][j]);
    }
}

// ---- 1. U_c [B, nc, H, P, N]; grid (B*nc*H, P tiles, N tiles) ----
template <class T>
__global__ void ssd_bwd_dstate_local_kernel(SsdDims d, const T* dy, const T* Cm, const float* cs,
                                            const int32_t* seg, float* dstates) {
  __shared__ float w[kMaxChunk];
  const ChunkIdx ci(d, d.H);
  const int64_t h = ci.k, g = h / d.hpg;
  for (int64_t s = threadIdx.x; s < ci.L; s += blockDim.x)
    w[s] = seg[ci.b * d.T + ci.t0 + s] < 0 ? expf(cs[(ci.b * d.H + h) * d.T + ci.t0 + s]) : 0.f;
  __syncthreads();
  const int64_t p0 = int64_t(blockIdx.y) * kTile, n0 = int64_t(blockIdx.z) * kTile;
  float acc[4][4] = {};
  tile_gemm(
      acc, ci.L,
      [&](int r, int64_t t) { return p0 + r < d.P ? ld(dy, ci.xo(d, h, t, p0 + r)) * w[t] : 0.f; },
      [&](int r, int64_t t) { return n0 + r < d.N ? ld(Cm, ci.bo(d, g, t, n0 + r)) : 0.f; });
  float* out = dstates + ((ci.b * d.nc + ci.c) * d.H + h) * d.P * d.N;
  store_tile(
      acc, p0, n0, d.P, d.N, [&](int64_t p, int64_t n) { return p * d.N + n; }, out);
}

// ---- 2. one thread per (b, h, p, n), reverse over chunks: dS_in = decay dS_out + U ----
__global__ void ssd_bwd_state_passing_kernel(SsdDims d, const float* cs, const int32_t* seg,
                                             const float* dfinal, float* dstates, float* dinit) {
  const int64_t PN = d.P * d.N, n = d.B * d.H * PN;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t e = i % PN, h = (i / PN) % d.H, b = i / (PN * d.H);
    float run = dfinal ? dfinal[i] : 0.f;
    for (int64_t c = d.nc - 1; c >= 0; --c) {
      const int64_t end = min((c + 1) * d.Q, d.T) - 1;
      const float decay = seg[b * d.T + end] < 0 ? expf(cs[(b * d.H + h) * d.T + end]) : 0.f;
      float* s = dstates + ((b * d.nc + c) * d.H + h) * PN + e;
      const float local = *s;
      *s = run;
      run = decay * run + local;
    }
    if (dinit) dinit[i] = run;
  }
}

// ---- 3. dx and the per-position sums; grid (B*nc*H, row tiles) ----
// Rows are chunk positions s (as columns of CB) for W and t (as rows of CB) for y - D x: the same
// positions, so one block owns both sums of its rows and loops over all of P.
template <class T>
__global__ void ssd_bwd_dx_kernel(SsdDims d, const T* x, const T* dt, const T* Bm, const T* Cm,
                                  const T* D, const T* dy, const float* cs, const int32_t* seg,
                                  const float* CB, const float* states, const float* final_state,
                                  const float* dstates, T* dx, float* wx, float* rowdot, float* dyx,
                                  float* sdot) {
  __shared__ float css[kMaxChunk], dts[kMaxChunk], red[kThreads];
  __shared__ int32_t segs[kMaxChunk];
  const ChunkIdx ci(d, d.H);
  const int64_t h = ci.k, g = h / d.hpg, L = ci.L, PN = d.P * d.N;
  for (int64_t s = threadIdx.x; s < L; s += blockDim.x) {
    css[s] = cs[(ci.b * d.H + h) * d.T + ci.t0 + s];
    dts[s] = ld(dt, (ci.b * d.T + ci.t0 + s) * d.H + h);
    segs[s] = seg[ci.b * d.T + ci.t0 + s];
  }
  __syncthreads();
  const int64_t sidx = (ci.b * d.nc + ci.c) * d.H + h;
  const float* Sin = states + sidx * PN;
  const float* dSout = dstates + sidx * PN;
  if (blockIdx.y == 0) {
    const float* Sout =
        ci.c + 1 < d.nc ? states + (sidx + d.H) * PN : final_state + (ci.b * d.H + h) * PN;
    float v = 0.f;
    for (int64_t e = threadIdx.x; e < PN; e += blockDim.x) v += Sout[e] * dSout[e];
    red[threadIdx.x] = v;
    __syncthreads();
    for (int off = kThreads / 2; off > 0; off /= 2) {
      if (threadIdx.x < off) red[threadIdx.x] += red[threadIdx.x + off];
      __syncthreads();
    }
    if (threadIdx.x == 0) sdot[(ci.b * d.H + h) * d.nc + ci.c] = red[0];
  }
  const int64_t r0 = int64_t(blockIdx.y) * kTile;
  if (r0 >= L) return;
  const float* cb = CB + ((ci.b * d.nc + ci.c) * d.G + g) * d.Q * d.Q;
  const float cs_end = css[L - 1];
  const int32_t seg_end = segs[L - 1];
  const float Dh = ld(D, h);
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
  float part_wx[4] = {}, part_row[4] = {}, part_dyx[4] = {};
  for (int64_t p0 = 0; p0 < d.P; p0 += kTile) {
    float W[4][4] = {};
    tile_gemm(
        W, d.N, [&](int r, int64_t n) { return r0 + r < L ? ld(Bm, ci.bo(d, g, r0 + r, n)) : 0.f; },
        [&](int r, int64_t n) { return p0 + r < d.P ? dSout[(p0 + r) * d.N + n] : 0.f; });
    for (int i = 0; i < 4; ++i) {
      const int64_t s = r0 + ty * 4 + i;
      const float f = s < L && s >= seg_end ? expf(cs_end - css[s]) : 0.f;
      for (int j = 0; j < 4; ++j) W[i][j] *= f;
    }
    tile_gemm(
        W, L - r0,
        [&](int r, int64_t k) {
          const int64_t s = r0 + r, t = r0 + k;
          if (s >= L || s > t || s < segs[t]) return 0.f;
          return cb[t * d.Q + s] * expf(css[t] - css[s]);
        },
        [&](int r, int64_t k) { return p0 + r < d.P ? ld(dy, ci.xo(d, h, r0 + k, p0 + r)) : 0.f; });
    float Y[4][4] = {};
    tile_gemm(
        Y, d.N, [&](int r, int64_t n) { return r0 + r < L ? ld(Cm, ci.bo(d, g, r0 + r, n)) : 0.f; },
        [&](int r, int64_t n) { return p0 + r < d.P ? Sin[(p0 + r) * d.N + n] : 0.f; });
    for (int i = 0; i < 4; ++i) {
      const int64_t t = r0 + ty * 4 + i;
      const float f = t < L && segs[t] < 0 ? expf(css[t]) : 0.f;
      for (int j = 0; j < 4; ++j) Y[i][j] *= f;
    }
    tile_gemm(
        Y, min(r0 + kTile, L),
        [&](int r, int64_t s) {
          const int64_t t = r0 + r;
          if (t >= L || s > t || s < segs[t]) return 0.f;
          return cb[t * d.Q + s] * expf(css[t] - css[s]) * dts[s];
        },
        [&](int r, int64_t s) { return p0 + r < d.P ? ld(x, ci.xo(d, h, s, p0 + r)) : 0.f; });
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j) {
        const int64_t t = r0 + ty * 4 + i, p = p0 + tx * 4 + j;
        if (t >= L || p >= d.P) continue;
        const int64_t o = ci.xo(d, h, t, p);
        const float gy = ld(dy, o), xv = ld(x, o);
        dx[o] = ScalarTraits<T>::from_compute(Dh * gy + dts[t] * W[i][j]);
        part_wx[i] += xv * W[i][j];
        part_row[i] += gy * Y[i][j];
        part_dyx[i] += gy * xv;
      }
  }
  for (int i = 0; i < 4; ++i) {
    const float vw = tile_row_sum(part_wx[i]), vr = tile_row_sum(part_row[i]);
    const float vd = tile_row_sum(part_dyx[i]);
    const int64_t t = r0 + ty * 4 + i;
    if (tx == 0 && t < L) {
      const int64_t o = (ci.b * d.H + h) * d.T + ci.t0 + t;
      wx[o] = vw, rowdot[o] = vr, dyx[o] = vd;
    }
  }
}

// ---- 4. dCB [B, nc, G, Q, Q] f32; grid (B*nc*G, t tiles, s tiles), lower-triangle tiles ----
template <class T>
__global__ void ssd_bwd_dcb_kernel(SsdDims d, const T* x, const T* dt, const T* dy, const float* cs,
                                   const int32_t* seg, float* dCB) {
  if (blockIdx.z > blockIdx.y) return;
  const ChunkIdx ci(d, d.G);
  const int64_t g = ci.k, L = ci.L;
  const int64_t r0 = int64_t(blockIdx.y) * kTile, s0 = int64_t(blockIdx.z) * kTile;
  if (r0 >= L) return;
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
  float tot[4][4] = {};
  for (int64_t hk = 0; hk < d.hpg; ++hk) {
    const int64_t h = g * d.hpg + hk;
    float acc[4][4] = {};
    tile_gemm(
        acc, d.P,
        [&](int r, int64_t p) { return r0 + r < L ? ld(dy, ci.xo(d, h, r0 + r, p)) : 0.f; },
        [&](int r, int64_t p) { return s0 + r < L ? ld(x, ci.xo(d, h, s0 + r, p)) : 0.f; });
    const float* csh = cs + (ci.b * d.H + h) * d.T + ci.t0;
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j) {
        const int64_t t = r0 + ty * 4 + i, s = s0 + tx * 4 + j;
        if (t < L && s <= t && s >= seg[ci.b * d.T + ci.t0 + t])
          tot[i][j] +=
              acc[i][j] * expf(csh[t] - csh[s]) * ld(dt, (ci.b * d.T + ci.t0 + s) * d.H + h);
      }
  }
  float* out = dCB + ((ci.b * d.nc + ci.c) * d.G + g) * d.Q * d.Q;
  store_tile(
      tot, r0, s0, L, L, [&](int64_t t, int64_t s) { return t * d.Q + s; }, out);
}

// ---- 5. dCm; grid (B*nc*G, t tiles, N tiles) ----
template <class T>
__global__ void ssd_bwd_dC_kernel(SsdDims d, const T* dy, const T* Bm, const float* cs,
                                  const int32_t* seg, const float* dCB, const float* states,
                                  T* dCm) {
  const ChunkIdx ci(d, d.G);
  const int64_t g = ci.k, L = ci.L;
  const int64_t r0 = int64_t(blockIdx.y) * kTile, n0 = int64_t(blockIdx.z) * kTile;
  if (r0 >= L) return;
  const float* dcb = dCB + ((ci.b * d.nc + ci.c) * d.G + g) * d.Q * d.Q;
  float acc[4][4] = {};
  tile_gemm(
      acc, min(r0 + kTile, L),
      [&](int r, int64_t s) {
        const int64_t t = r0 + r;
        return t < L && s <= t ? dcb[t * d.Q + s] : 0.f;
      },
      [&](int r, int64_t s) { return n0 + r < d.N ? ld(Bm, ci.bo(d, g, s, n0 + r)) : 0.f; });
  const int ty = threadIdx.x / 16;
  const int32_t* segc = seg + ci.b * d.T + ci.t0;
  if (segc[r0] < 0) {  // seg grows along the chunk: otherwise S_in reaches no row of the tile
    for (int64_t hk = 0; hk < d.hpg; ++hk) {
      const int64_t h = g * d.hpg + hk;
      const float* Sin = states + ((ci.b * d.nc + ci.c) * d.H + h) * d.P * d.N;
      float st[4][4] = {};
      tile_gemm(
          st, d.P,
          [&](int r, int64_t p) { return r0 + r < L ? ld(dy, ci.xo(d, h, r0 + r, p)) : 0.f; },
          [&](int r, int64_t p) { return n0 + r < d.N ? Sin[p * d.N + n0 + r] : 0.f; });
      for (int i = 0; i < 4; ++i) {
        const int64_t t = r0 + ty * 4 + i;
        const float f = t < L && segc[t] < 0 ? expf(cs[(ci.b * d.H + h) * d.T + ci.t0 + t]) : 0.f;
        for (int j = 0; j < 4; ++j) acc[i][j] += f * st[i][j];
      }
    }
  }
  store_tile(
      acc, r0, n0, L, d.N, [&](int64_t t, int64_t n) { return ci.bo(d, g, t, n); }, dCm);
}

// ---- 6. dBm; grid (B*nc*G, s tiles, N tiles) ----
template <class T>
__global__ void ssd_bwd_dB_kernel(SsdDims d, const T* x, const T* dt, const T* Cm, const float* cs,
                                  const int32_t* seg, const float* dCB, const float* dstates,
                                  T* dBm) {
  const ChunkIdx ci(d, d.G);
  const int64_t g = ci.k, L = ci.L;
  const int64_t r0 = int64_t(blockIdx.y) * kTile, n0 = int64_t(blockIdx.z) * kTile;
  if (r0 >= L) return;
  const float* dcb = dCB + ((ci.b * d.nc + ci.c) * d.G + g) * d.Q * d.Q;
  float acc[4][4] = {};
  tile_gemm(
      acc, L - r0,
      [&](int r, int64_t k) {
        const int64_t s = r0 + r, t = r0 + k;
        return s < L && s <= t ? dcb[t * d.Q + s] : 0.f;
      },
      [&](int r, int64_t k) { return n0 + r < d.N ? ld(Cm, ci.bo(d, g, r0 + k, n0 + r)) : 0.f; });
  const int ty = threadIdx.x / 16;
  const int32_t seg_end = seg[ci.b * d.T + ci.t0 + L - 1];
  if (min(r0 + kTile, L) - 1 >= seg_end) {  // some row of the tile reaches S_out
    for (int64_t hk = 0; hk < d.hpg; ++hk) {
      const int64_t h = g * d.hpg + hk;
      const float* dSout = dstates + ((ci.b * d.nc + ci.c) * d.H + h) * d.P * d.N;
      float st[4][4] = {};
      tile_gemm(
          st, d.P,
          [&](int r, int64_t p) { return r0 + r < L ? ld(x, ci.xo(d, h, r0 + r, p)) : 0.f; },
          [&](int r, int64_t p) { return n0 + r < d.N ? dSout[p * d.N + n0 + r] : 0.f; });
      const float* csh = cs + (ci.b * d.H + h) * d.T + ci.t0;
      for (int i = 0; i < 4; ++i) {
        const int64_t s = r0 + ty * 4 + i;
        const float f = s < L && s >= seg_end
                            ? expf(csh[L - 1] - csh[s]) * ld(dt, (ci.b * d.T + ci.t0 + s) * d.H + h)
                            : 0.f;
        for (int j = 0; j < 4; ++j) acc[i][j] += f * st[i][j];
      }
    }
  }
  store_tile(
      acc, r0, n0, L, d.N, [&](int64_t s, int64_t n) { return ci.bo(d, g, s, n); }, dBm);
}

// ---- 7. ddt and per-chunk dA, dD: one thread per (b, h, chunk), Note [SSD gradient through cs]
template <class T>
__global__ void ssd_bwd_ddt_kernel(SsdDims d, const T* dt, const T* A, const float* wx,
                                   const float* rowdot, const float* dyx, const float* sdot, T* ddt,
                                   float* dA_part, float* dD_part) {
  const int64_t n = d.B * d.H * d.nc;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = i % d.nc, h = (i / d.nc) % d.H, b = i / (d.nc * d.H);
    const int64_t t0 = c * d.Q, L = min(d.Q, d.T - t0), row = (b * d.H + h) * d.T + t0;
    const float a = ld(A, h);
    float da = sdot[i], dA = 0.f, dD = 0.f;
    for (int64_t r = L - 1; r >= 0; --r) {
      const int64_t o = (b * d.T + t0 + r) * d.H + h;
      const float dtr = ld(dt, o);
      da += rowdot[row + r] - dtr * wx[row + r];
      ddt[o] = ScalarTraits<T>::from_compute(wx[row + r] + a * da);
      dA += dtr * da;
      dD += dyx[row + r];
    }
    dA_part[i] = dA;
    dD_part[i] = dD;
  }
}

// ---- 8. dA, dD: one thread per head, summing (b, chunk) in order ----
template <class T>
__global__ void ssd_bwd_heads_kernel(SsdDims d, const float* dA_part, const float* dD_part, T* dA,
                                     T* dD) {
  for (int64_t h = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; h < d.H;
       h += int64_t(gridDim.x) * blockDim.x) {
    float sa = 0.f, sd = 0.f;
    for (int64_t b = 0; b < d.B; ++b)
      for (int64_t c = 0; c < d.nc; ++c) {
        sa += dA_part[(b * d.H + h) * d.nc + c];
        sd += dD_part[(b * d.H + h) * d.nc + c];
      }
    dA[h] = ScalarTraits<T>::from_compute(sa);
    dD[h] = ScalarTraits<T>::from_compute(sd);
  }
}

}  // namespace
}  // namespace ssd_cuda

void ssd_backward_cuda(const SsdParams& p, int device) {
  using namespace ssd_cuda;
  cuda::set_device(device);
  const SsdDims d = dims_of(p);
  Tensor fin = scratch({d.B, d.H, d.P, d.N}, DType::F32, device);
  const ChunkStates st = ssd_chunk_states_cuda(p, device, fin.data<float>());
  cudaStream_t s = cuda::stream(device);
  Tensor dstates = scratch({d.B, d.nc, d.H, d.P, d.N}, DType::F32, device);
  Tensor dCB = scratch({d.B, d.nc, d.G, d.Q, d.Q}, DType::F32, device);
  Tensor rows = scratch({3, d.B, d.H, d.T}, DType::F32, device);
  Tensor sums = scratch({3, d.B, d.H, d.nc}, DType::F32, device);
  float* wx = rows.data<float>();
  float* rowdot = wx + d.B * d.H * d.T;
  float* dyx = rowdot + d.B * d.H * d.T;
  float* sdot = sums.data<float>();
  float* dA_part = sdot + d.B * d.H * d.nc;
  float* dD_part = dA_part + d.B * d.H * d.nc;
  const float* cs = st.cs.data<float>();
  const int32_t* seg = st.seg.data<int32_t>();
  const unsigned heads_blocks = unsigned(d.B * d.nc * d.H),
                 group_blocks = unsigned(d.B * d.nc * d.G);
  const unsigned qt = unsigned(tiles(d.Q)), pt = unsigned(tiles(d.P)), nt = unsigned(tiles(d.N));
  SL_DISPATCH_CUDA_FLOAT(p.dtype, "ssd_scan", T, {
    const T* x = static_cast<const T*>(p.x);
    const T* dt = static_cast<const T*>(p.dt);
    const T* Bm = static_cast<const T*>(p.Bm);
    const T* Cm = static_cast<const T*>(p.Cm);
    const T* dy = static_cast<const T*>(p.dy);
    ssd_bwd_dstate_local_kernel<T>
        <<<dim3(heads_blocks, pt, nt), kThreads, 0, s>>>(d, dy, Cm, cs, seg, dstates.data<float>());
    SL_CUDA_LAUNCH_CHECK();
    ssd_bwd_state_passing_kernel<<<grid_for(d.B * d.H * d.P * d.N), kThreads, 0, s>>>(
        d, cs, seg, static_cast<const float*>(p.d_final_state), dstates.data<float>(),
        static_cast<float*>(p.d_init_state));
    SL_CUDA_LAUNCH_CHECK();
    ssd_bwd_dx_kernel<T><<<dim3(heads_blocks, qt), kThreads, 0, s>>>(
        d, x, dt, Bm, Cm, static_cast<const T*>(p.D), dy, cs, seg, st.CB.data<float>(),
        st.states.data<float>(), fin.data<float>(), dstates.data<float>(), static_cast<T*>(p.dx),
        wx, rowdot, dyx, sdot);
    SL_CUDA_LAUNCH_CHECK();
    ssd_bwd_dcb_kernel<T>
        <<<dim3(group_blocks, qt, qt), kThreads, 0, s>>>(d, x, dt, dy, cs, seg, dCB.data<float>());
    SL_CUDA_LAUNCH_CHECK();
    ssd_bwd_dC_kernel<T><<<dim3(group_blocks, qt, nt), kThreads, 0, s>>>(
        d, dy, Bm, cs, seg, dCB.data<float>(), st.states.data<float>(), static_cast<T*>(p.dCm));
    SL_CUDA_LAUNCH_CHECK();
    ssd_bwd_dB_kernel<T><<<dim3(group_blocks, qt, nt), kThreads, 0, s>>>(
        d, x, dt, Cm, cs, seg, dCB.data<float>(), dstates.data<float>(), static_cast<T*>(p.dBm));
    SL_CUDA_LAUNCH_CHECK();
    ssd_bwd_ddt_kernel<T><<<grid_for(d.B * d.H * d.nc), kThreads, 0, s>>>(
        d, dt, static_cast<const T*>(p.A), wx, rowdot, dyx, sdot, static_cast<T*>(p.ddt), dA_part,
        dD_part);
    SL_CUDA_LAUNCH_CHECK();
    ssd_bwd_heads_kernel<T><<<grid_for(d.H), kThreads, 0, s>>>(
        d, dA_part, dD_part, static_cast<T*>(p.dA), static_cast<T*>(p.dD));
    SL_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace sl::kernels
