// Tensor-core backward of superlinear attention (spec §9) for bf16 and D in {64, 128}, on the
// forward's tiles (kernels/superlinear_span_cuda.cu: pairs bucketed by key-block footprint).
//
// With P_u = exp(<Qa, K_u> / sqrt(D) - lse_j) the normalised softmax of span j alone (lse_s
// saved by the forward), ww_j = e^{lse_w - lam_j}, wj_j = e^{lse_j - lam_j}, lam_j =
// logaddexp(lse_w, lse_j), the forward is O = sum_j g_j (ww_j O_w + wj_j O_j) (spec §8). So:
//   y_j = <dO, ww_j O_w + wj_j O_j>, ys_j = <dO, O_j> = sum_u P_u <dO, V_u>;
//   dscore_j = g_j (y_j - sum_m g_m y_m); dQs = sum_j dscore_j K[a_j]; dK[a_j] += dscore_j Qs;
//   span j: dS_u = P_u (c1 <dO, V_u> - c2) with c1 = g_j wj_j, c2 = g_j wj_j y_j;
//           dQa += dS K / sqrt(D), dK_u += dS_u Qa / sqrt(D), dV_u += c1 P_u dO;
//   window: the same with P relative to lse_w, c1 = alpha = sum_j g_j ww_j and c2 = alpha_y =
//           sum_j g_j ww_j y_j, i.e. flash attention's backward with dO scaled by alpha and
//           delta = alpha_y (kernels/attention.h, delta_given).
//
// Passes (chunks of query rows, Note [span chunks]):
//   1. per chunk: tiles; y pass (S = Q K^T, dP = dO V^T, ys += rowsum(P dP)); rows: gate terms,
//      c1, c2, dscore, alpha, alpha_y, dQs.
//   2. window backward (W > 0) with the recomputed window output for y.
//   3. per chunk: dQ pass (one block per tile, dQ of each pair in registers, written per pair
//      and summed per row in slot order); dK/dV pass: one block per (batch, KV head, 64-key
//      block) walks every tile of the chunk whose footprint covers the block, in tile order,
//      keeping dK and dV in registers (S^T = K Q^T, dV += (c1 P)^T dO, dP^T = V dO^T, dK +=
//      dS^T Q), then adds them to f32 accumulators: each key is written by one block per chunk.
//   4. dK = acc + routing (pairs by anchor: a stable sort, summed in pair order) + window.
// No floating-point atomics anywhere: the result is bitwise reproducible run to run, so the fast
// mode (bp.deterministic = false) takes the same path on this kernel family.
#include "kernels/superlinear_span_cuda.cuh"

namespace sl::kernels::slcuda {
namespace {

using namespace attn;

constexpr int kList = 512;  // live tiles listed at a time by the dK/dV kernel

template <int D>
constexpr int tile_smem_bytes() {
  return 6 * kTile * D * 2;  // Q, dO, K[2], V[2]
}
template <int D>
constexpr int dkv_smem_bytes() {
  // K, V, Q[2], dO[2], slot info[2] (float4) and hi[2], live tiles, warp counts
  return 6 * kTile * D * 2 + 2 * kTile * 20 + kList * 4 + kWarps * 4;
}

// Pair r of the tile starting at sorted position s0 (-1 past the end of its run).
__device__ __forceinline__ int32_t tile_pair(const SpanArgs& a, int64_t s0, uint64_t key, int r) {
  const int64_t q = s0 + r;
  return q < a.n && same_run(a.keys[q], key) ? a.idx[q] : -1;
}

// Note [slot tables]
// Per chunk and pass, slot_table_kernel resolves every tile row (slot t * 64 + r) once: the
// pair's query row, its local id, and the terms the tile kernels read (lse2 = lse_s log2(e), c1,
// c2 -- zero before the gate terms exist -- and the span bounds). The tile kernels then gather
// with one coalesced index load per thread and copy the terms with cp.async, instead of chasing
// sorted position -> pair -> bounds/lse/coef through dependent loads at every tile (which
// stalled the dK/dV pass between tiles).
struct SlotTable {
  int32_t* row;  // [tiles * 64] query row of the pair, -1 for padding
  int32_t* lp;   // [tiles * 64] local pair id, -1 for padding
  float4* info;  // [tiles * 64] (lse2, c1, c2, lo as int bits); padding: (inf, 0, 0, 1)
  int32_t* hi;   // [tiles * 64] span end; padding: 0
};

__global__ void slot_table_kernel(SpanArgs a, const float2* coef, int64_t n_tiles, SlotTable st) {
  const int64_t x = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (x >= n_tiles * kTile) return;
  const int64_t t = x / kTile;
  const int32_t lp = tile_pair(a, a.tile_start[t], a.tile_key[t], int(x % kTile));
  const int2 bd = lp >= 0 ? a.bounds[lp] : make_int2(1, 0);
  const float2 cc = coef && lp >= 0 ? coef[a.p0 + lp] : make_float2(0.f, 0.f);
  const float lse2 = lp >= 0 ? static_cast<const float*>(a.p.lse_s)[a.p0 + lp] * kLog2e : INFINITY;
  st.row[x] = lp >= 0 ? int32_t((a.p0 + lp) / a.p.cfg.k) : -1;
  st.lp[x] = lp;
  st.info[x] = make_float4(lse2, cc.x, cc.y, __int_as_float(bd.x));
  st.hi[x] = bd.y;
}

// Thread i gathers the Q and dO row of tile row i / 2 (one index per thread; lanes 2m, 2m + 1
// fetch the two halves of each 32-byte sector together) into swizzled tiles; padding rows
// (row < 0) are zero-filled.
template <int D>
__device__ __forceinline__ void gather_row(int32_t row, const uint16_t* qa, const uint16_t* dout,
                                           uint32_t sq, uint32_t sdo) {
  const int r = int(threadIdx.x) >> 1, half = int(threadIdx.x) & 1;
  const int64_t off = row >= 0 ? int64_t(row) * D : 0;
#pragma unroll
  for (int j = 0; j < D / 16; ++j) {
    const int c = 2 * j + half;
    cp_async16(sq + tile_offset<D>(r, c), qa + off + c * 8, row >= 0);
    cp_async16(sdo + tile_offset<D>(r, c), dout + off + c * 8, row >= 0);
  }
}

// This thread's two pair rows of a tile (rows warp * 16 + lane / 4 + 8 j).
struct PairRows {
  int32_t lp[2];
  int lo[2], hi[2];
  float lse2[2], c1[2], c2[2];
};
__device__ __forceinline__ PairRows pair_rows(const SlotTable& st, int64_t t) {
  PairRows pr;
  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;
#pragma unroll
  for (int j = 0; j < 2; ++j) {
    const int64_t x = t * kTile + warp * 16 + (lane >> 2) + 8 * j;
    const float4 in = st.info[x];
    pr.lp[j] = st.lp[x];
    pr.lse2[j] = in.x;
    pr.c1[j] = in.y;
    pr.c2[j] = in.z;
    pr.lo[j] = __float_as_int(in.w);
    pr.hi[j] = st.hi[x];
  }
  return pr;
}

// S = Q K^T and dP = dO V^T for the warp's 16 pair rows against one 64-key block.
template <int D>
__device__ __forceinline__ void scores_and_dp(uint32_t sq, uint32_t sdo, uint32_t sk, uint32_t sv,
                                              float (&s)[kBN / 8][4], float (&dp)[kBN / 8][4]) {
  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;
#pragma unroll
  for (int n = 0; n < kBN / 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) s[n][e] = dp[n][e] = 0.f;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    uint32_t aq[4], ado[4];
    load_a<D>(aq, sq, warp * 16, kk, lane);
    load_a<D>(ado, sdo, warp * 16, kk, lane);
#pragma unroll
    for (int np = 0; np < kBN / 16; ++np) {
      uint32_t bk[4], bv[4];
      load_b_nk<D>(bk, sk, np * 16, kk, lane);
      load_b_nk<D>(bv, sv, np * 16, kk, lane);
      Mma<bf16>::run(s[2 * np], aq, bk[0], bk[1]);
      Mma<bf16>::run(s[2 * np + 1], aq, bk[2], bk[3]);
      Mma<bf16>::run(dp[2 * np], ado, bv[0], bv[1]);
      Mma<bf16>::run(dp[2 * np + 1], ado, bv[2], bv[3]);
    }
  }
}

// P = exp(S / sqrt(D) - lse) inside each pair's span, 0 outside (in place).
__device__ __forceinline__ void span_probs(float (&s)[kBN / 8][4], const PairRows& pr, int k0,
                                           float sl2) {
  const int lane = int(threadIdx.x) & 31;
  const bool inside =
      k0 >= pr.lo[0] && k0 + kBN - 1 <= pr.hi[0] && k0 >= pr.lo[1] && k0 + kBN - 1 <= pr.hi[1];
  const bool all_inside = __all_sync(0xffffffffu, inside);
#pragma unroll
  for (int n = 0; n < kBN / 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int j = e >> 1, u = k0 + n * 8 + 2 * (lane & 3) + (e & 1);
      const bool ok = all_inside || (u >= pr.lo[j] && u <= pr.hi[j]);
      s[n][e] = ok ? fast_exp2(fmaf(s[n][e], sl2, -pr.lse2[j])) : 0.f;
    }
}

// Tile kernels: one block per tile of the chunk. kDq = false: ys[lp] = sum_u P_u dP_u (the y
// pass); kDq = true: dq[lp] = sum_u P_u (c1 dP_u - c2) K_u / sqrt(D) in f32.
template <int D, bool kDq>
__global__ void __launch_bounds__(kThreads, 2)
    span_tile_bwd_kernel(SpanArgs a, SlotTable st, const uint16_t* dout, float* ys,
                         float* dq_pair) {
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t sq = smem_addr(smem), sdo = sq + kTile * D * 2;
  auto sk = [&](int st) { return sdo + uint32_t((1 + st) * kBN * D * 2); };
  auto sv = [&](int st) { return sdo + uint32_t((3 + st) * kBN * D * 2); };
  const SuperlinearParams& p = a.p;
  const int lane = int(threadIdx.x) & 31;
  const int64_t t = blockIdx.x;
  const Footprint fp = footprint(a.tile_key[t], a.n_kb);
  gather_row<D>(st.row[t * kTile + (threadIdx.x >> 1)], static_cast<const uint16_t*>(p.qa), dout,
                sq, sdo);
  const uint16_t* kbase = static_cast<const uint16_t*>(p.k) + fp.bg * p.Lkv * D;
  const uint16_t* vbase = static_cast<const uint16_t*>(p.v) + fp.bg * p.Lkv * D;
  load_tile<kBN, D, kThreads>(sk(0), kbase + int64_t(fp.kb0) * kBN * D, D,
                              int(p.Lkv) - fp.kb0 * kBN);
  load_tile<kBN, D, kThreads>(sv(0), vbase + int64_t(fp.kb0) * kBN * D, D,
                              int(p.Lkv) - fp.kb0 * kBN);
  cp_async_commit();
  const PairRows pr = pair_rows(st, t);
  const float sl2 = rsqrtf(float(D)) * kLog2e;

  float acc[2] = {0.f, 0.f};
  float dq[kDq ? D / 8 : 1][4];
#pragma unroll
  for (int n = 0; n < (kDq ? D / 8 : 1); ++n) dq[n][0] = dq[n][1] = dq[n][2] = dq[n][3] = 0.f;

  for (int kb = fp.kb0; kb < fp.kb0 + fp.nb; ++kb) {
    const int stage = (kb - fp.kb0) & 1;
    cp_async_wait<0>();
    __syncthreads();
    if (kb + 1 < fp.kb0 + fp.nb) {
      const int nk = (kb + 1) * kBN;
      load_tile<kBN, D, kThreads>(sk(stage ^ 1), kbase + int64_t(nk) * D, D, int(p.Lkv) - nk);
      load_tile<kBN, D, kThreads>(sv(stage ^ 1), vbase + int64_t(nk) * D, D, int(p.Lkv) - nk);
    }
    cp_async_commit();
    float s[kBN / 8][4], dp[kBN / 8][4];
    scores_and_dp<D>(sq, sdo, sk(stage), sv(stage), s, dp);
    span_probs(s, pr, kb * kBN, sl2);
    if constexpr (!kDq) {
#pragma unroll
      for (int n = 0; n < kBN / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[e >> 1] = fmaf(s[n][e], dp[n][e], acc[e >> 1]);
    } else {
#pragma unroll
      for (int n = 0; n < kBN / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[n][e] *= fmaf(pr.c1[e >> 1], dp[n][e], -pr.c2[e >> 1]);
#pragma unroll
      for (int kk = 0; kk < kBN / 16; ++kk) {
        uint32_t pa[4];
        pa[0] = Mma<bf16>::pack(s[2 * kk][0], s[2 * kk][1]);
        pa[1] = Mma<bf16>::pack(s[2 * kk][2], s[2 * kk][3]);
        pa[2] = Mma<bf16>::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
        pa[3] = Mma<bf16>::pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
        for (int dd = 0; dd < D / 16; ++dd) {
          uint32_t bf[4];
          load_b_kn<D>(bf, sk(stage), kk * 16, dd * 16, lane);
          Mma<bf16>::run(dq[2 * dd], pa, bf[0], bf[1]);
          Mma<bf16>::run(dq[2 * dd + 1], pa, bf[2], bf[3]);
        }
      }
    }
  }
  cp_async_wait<0>();

#pragma unroll
  for (int j = 0; j < 2; ++j) {
    const int32_t lp = pr.lp[j];
    if constexpr (!kDq) {
      const float y = quad_sum(acc[j]);
      if (lp >= 0 && (lane & 3) == 0) ys[lp] = y;
    } else {
      if (lp < 0) continue;
      const float scale = rsqrtf(float(D));
      float* row = dq_pair + int64_t(lp) * D;
#pragma unroll
      for (int n = 0; n < D / 8; ++n)
        *reinterpret_cast<float2*>(row + n * 8 + 2 * (lane & 3)) =
            make_float2(dq[n][2 * j] * scale, dq[n][2 * j + 1] * scale);
    }
  }
}

__device__ __forceinline__ float bf16_at(const uint16_t* x, int64_t i) {
  return __uint_as_float(uint32_t(x[i]) << 16);
}
__device__ __forceinline__ uint16_t to_bf16(float v) {
  const __nv_bfloat16 b = __float2bfloat16_rn(v);
  return *reinterpret_cast<const uint16_t*>(&b);
}

struct RowTerms {
  float2* coef;            // [rows * k] (c1, c2) per pair
  float* dscore;           // [rows * k]
  float *alpha, *alpha_y;  // [rows]
};

// Gate terms of each query row of the chunk (one warp per row; lane per E = D / 32 elements):
// y_j from ys (this chunk) and the window output, dscore, c1, c2, alpha, alpha_y and dQs.
template <int D>
__global__ void rows_kernel(SpanArgs a, const uint16_t* dout, const uint16_t* ow, const float* ys,
                            RowTerms rt, uint16_t* dqs, int64_t row0, int64_t rows) {
  constexpr int E = D / 32;
  const int64_t w = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (w >= rows) return;
  const SuperlinearParams& p = a.p;
  const int lane = int(threadIdx.x) & 31, k = p.cfg.k;
  const int64_t row = row0 + w;
  const Row r = locate_row(p, row);
  const float lse_w = static_cast<const float*>(p.lse_w)[row];
  const uint16_t* dorow = dout + row * D;
  float yw = 0.f;
  if (ow) {
    const uint16_t* owrow = ow + ((r.b * p.Lq + r.i) * p.Hq + r.h) * D;
#pragma unroll
    for (int e = 0; e < E; ++e) yw += bf16_at(dorow, lane * E + e) * bf16_at(owrow, lane * E + e);
    yw = warp_sum(yw);
  }
  float sc[kMaxK], g[kMaxK], y[kMaxK], wj[kMaxK];
  int32_t an[kMaxK];
#pragma unroll
  for (int j = 0; j < kMaxK; ++j) {
    an[j] = j < k ? p.anchors[row * k + j] : kNoAnchor;
    sc[j] = j < k ? static_cast<const float*>(p.scores)[row * k + j] : -INFINITY;
  }
  gate_weights(k, sc, an, g);
  float ybar = 0.f, alpha = 0.f, alpha_y = 0.f;
#pragma unroll
  for (int j = 0; j < kMaxK; ++j) {
    y[j] = wj[j] = 0.f;
    if (j >= k) continue;
    const float lj = an[j] >= 0 ? static_cast<const float*>(p.lse_s)[row * k + j] : -INFINITY;
    const float lam = logaddexp(lse_w, lj);
    if (lam == -INFINITY) continue;
    const float ww = lse_w == -INFINITY ? 0.f : expf(lse_w - lam);
    wj[j] = an[j] >= 0 ? expf(lj - lam) : 0.f;
    y[j] = ww * yw + (an[j] >= 0 ? wj[j] * ys[row * k + j - a.p0] : 0.f);
    ybar += g[j] * y[j];
    alpha += g[j] * ww;
    alpha_y += g[j] * ww * y[j];
  }
  float dq[E];
#pragma unroll
  for (int e = 0; e < E; ++e) dq[e] = 0.f;
  const uint16_t* kb =
      static_cast<const uint16_t*>(p.k) + (r.b * p.Hkv + r.h / (p.Hq / p.Hkv)) * p.Lkv * D;
#pragma unroll
  for (int j = 0; j < kMaxK; ++j) {
    if (j >= k) continue;
    const float ds = an[j] >= 0 ? g[j] * (y[j] - ybar) : 0.f;
    if (lane == 0) {
      rt.dscore[row * k + j] = ds;
      rt.coef[row * k + j] = make_float2(g[j] * wj[j], g[j] * wj[j] * y[j]);
    }
    if (an[j] < 0) continue;
#pragma unroll
    for (int e = 0; e < E; ++e)
      dq[e] = fmaf(ds, bf16_at(kb, int64_t(an[j]) * D + lane * E + e), dq[e]);
  }
  if (lane == 0) rt.alpha[row] = alpha, rt.alpha_y[row] = alpha_y;
#pragma unroll
  for (int e = 0; e < E; ++e) dqs[row * D + lane * E + e] = to_bf16(dq[e]);
}

// dQa of each row of the chunk: its pairs' dQ in slot order, plus the window's (one warp per row).
template <int D>
__global__ void dq_rows_kernel(SpanArgs a, const float* dq_pair, const uint16_t* dq_w,
                               uint16_t* dqa, int64_t row0, int64_t rows) {
  constexpr int E = D / 32;
  const int64_t w = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (w >= rows) return;
  const SuperlinearParams& p = a.p;
  const int lane = int(threadIdx.x) & 31, k = p.cfg.k;
  const int64_t row = row0 + w;
  float acc[E];
#pragma unroll
  for (int e = 0; e < E; ++e) acc[e] = 0.f;
  if (dq_w) {
    const Row r = locate_row(p, row);
    const uint16_t* src = dq_w + ((r.b * p.Lq + r.i) * p.Hq + r.h) * D;
#pragma unroll
    for (int e = 0; e < E; ++e) acc[e] = bf16_at(src, lane * E + e);
  }
  for (int j = 0; j < k; ++j) {
    if (p.anchors[row * k + j] < 0) continue;
    const float* src = dq_pair + (row * k + j - a.p0) * D + lane * E;
#pragma unroll
    for (int e = 0; e < E; ++e) acc[e] += src[e];
  }
#pragma unroll
  for (int e = 0; e < E; ++e) dqa[row * D + lane * E + e] = to_bf16(acc[e]);
}

__device__ __forceinline__ int64_t lower_bound_key(const uint64_t* x, int64_t n, uint64_t v) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (x[mid] < v)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

// dK/dV of one 64-key block of one (batch, KV head) from the chunk's tiles that cover it; adds
// dK / sqrt(D) and dV to the f32 accumulators ([B, Hkv, Lkv, D]).
template <int D>
__global__ void __launch_bounds__(kThreads)
    span_dkv_kernel(SpanArgs a, SlotTable st, const uint16_t* dout, int64_t n_tiles, int max_nb,
                    float* dk_acc, float* dv_acc) {
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t s_k = smem_addr(smem), s_v = s_k + kBN * D * 2;
  auto s_q = [&](int buf) { return s_v + uint32_t((1 + buf) * kTile * D * 2); };
  auto s_do = [&](int buf) { return s_v + uint32_t((3 + buf) * kTile * D * 2); };
  float4* s_info = reinterpret_cast<float4*>(smem + 6 * kTile * D * 2);  // [2][kTile]
  int32_t* s_hi = reinterpret_cast<int32_t*>(s_info + 2 * kTile);        // [2][kTile]
  int32_t* s_list = s_hi + 2 * kTile;
  int32_t* s_count = s_list + kList;
  const uint64_t* tile_key = a.tile_key;

  const SuperlinearParams& p = a.p;
  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;
  const int64_t bg = blockIdx.x / a.n_kb;
  const int kb = int(blockIdx.x % a.n_kb), k0 = kb * kBN;
  const uint64_t first = uint64_t(bg * a.n_kb + max(0, kb - max_nb + 1)) << 8;
  const uint64_t last = (uint64_t(bg * a.n_kb + kb) << 8) | 255u;
  int64_t scan = lower_bound_key(tile_key, n_tiles, first);
  const int64_t t_end = lower_bound_key(tile_key, n_tiles, last + 1);
  if (scan >= t_end) return;

  // The next live tiles (footprint reaching this block) of [scan, t_end), in tile order, into
  // s_list: one candidate per thread per step, compacted with ballots.
  auto fill_list = [&]() {
    int n_list = 0;
    while (scan < t_end && n_list + kThreads <= kList) {
      const int64_t t = scan + threadIdx.x;
      bool live = false;
      if (t < t_end) {
        const Footprint f = footprint(tile_key[t], a.n_kb);
        live = f.kb0 + f.nb - 1 >= kb;
      }
      const unsigned ballot = __ballot_sync(0xffffffffu, live);
      if (lane == 0) s_count[warp] = __popc(ballot);
      __syncthreads();
      int before = n_list, total = n_list;
      for (int w = 0; w < kWarps; ++w) {
        before += w < warp ? s_count[w] : 0;
        total += s_count[w];
      }
      if (live) s_list[before + __popc(ballot & ((1u << lane) - 1u))] = int32_t(t);
      n_list = total;
      scan += kThreads;
      __syncthreads();
    }
    return n_list;
  };

  const uint16_t* kbase = static_cast<const uint16_t*>(p.k) + bg * p.Lkv * D;
  const uint16_t* vbase = static_cast<const uint16_t*>(p.v) + bg * p.Lkv * D;
  load_tile<kBN, D, kThreads>(s_k, kbase + int64_t(k0) * D, D, int(p.Lkv) - k0);
  load_tile<kBN, D, kThreads>(s_v, vbase + int64_t(k0) * D, D, int(p.Lkv) - k0);

  // Stages tile `tile` into buffer buf with cp.async only (Note [slot tables]); `row` is this
  // thread's gather row of that tile, loaded one tile ahead.
  const uint16_t* qa = static_cast<const uint16_t*>(p.qa);
  auto stage = [&](int64_t tile, int buf, int32_t row) {
    gather_row<D>(row, qa, dout, s_q(buf), s_do(buf));
    const int c = int(threadIdx.x);
    if (c < kTile)
      cp_async16(smem_addr(s_info + buf * kTile + c), st.info + tile * kTile + c, true);
    else if (c < kTile + kTile / 4)
      cp_async16(smem_addr(s_hi + buf * kTile + 4 * (c - kTile)),
                 st.hi + tile * kTile + 4 * (c - kTile), true);
  };
  auto row_of = [&](int64_t tile) { return st.row[tile * kTile + (threadIdx.x >> 1)]; };

  float dk[D / 8][4], dv[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[n][e] = dv[n][e] = 0.f;
  const float sl2 = rsqrtf(float(D)) * kLog2e;
  const int krow = warp * 16 + (lane >> 2);  // this thread's keys: k0 + krow, k0 + krow + 8

  bool any = false;
  while (scan < t_end) {
    const int n_list = fill_list();
    if (n_list == 0) continue;
    any = true;
    stage(s_list[0], 0, row_of(s_list[0]));
    cp_async_commit();
    int32_t row_next = n_list > 1 ? row_of(s_list[1]) : -1;
    for (int it = 0; it < n_list; ++it) {
      const int buf = it & 1;
      cp_async_wait<0>();
      __syncthreads();
      if (it + 1 < n_list) stage(s_list[it + 1], buf ^ 1, row_next);
      cp_async_commit();
      if (it + 2 < n_list) row_next = row_of(s_list[it + 2]);
      const float4* info = s_info + buf * kTile;
      const int32_t* qhi = s_hi + buf * kTile;

      // S^T = K Q^T: 16 keys x 64 pairs per warp; P^T in place.
      float s[kTile / 8][4];
#pragma unroll
      for (int n = 0; n < kTile / 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        uint32_t af[4];
        load_a<D>(af, s_k, warp * 16, kk, lane);
#pragma unroll
        for (int np = 0; np < kTile / 16; ++np) {
          uint32_t bf[4];
          load_b_nk<D>(bf, s_q(buf), np * 16, kk, lane);
          Mma<bf16>::run(s[2 * np], af, bf[0], bf[1]);
          Mma<bf16>::run(s[2 * np + 1], af, bf[2], bf[3]);
        }
      }
#pragma unroll
      for (int n = 0; n < kTile / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int c = n * 8 + 2 * (lane & 3) + (e & 1);
          const int u = k0 + krow + 8 * (e >> 1);
          const float4 in = info[c];
          const bool ok = u >= __float_as_int(in.w) && u <= qhi[c];
          s[n][e] = ok ? fast_exp2(fmaf(s[n][e], sl2, -in.x)) : 0.f;
        }
        // dV += (c1 P)^T dO.
#pragma unroll
      for (int kk = 0; kk < kTile / 16; ++kk) {
        const int c0 = kk * 16 + 2 * (lane & 3);
        const float a0 = info[c0].y, a1 = info[c0 + 1].y;
        const float a8 = info[c0 + 8].y, a9 = info[c0 + 9].y;
        uint32_t pa[4];
        pa[0] = Mma<bf16>::pack(s[2 * kk][0] * a0, s[2 * kk][1] * a1);
        pa[1] = Mma<bf16>::pack(s[2 * kk][2] * a0, s[2 * kk][3] * a1);
        pa[2] = Mma<bf16>::pack(s[2 * kk + 1][0] * a8, s[2 * kk + 1][1] * a9);
        pa[3] = Mma<bf16>::pack(s[2 * kk + 1][2] * a8, s[2 * kk + 1][3] * a9);
#pragma unroll
        for (int dp = 0; dp < D / 16; ++dp) {
          uint32_t bf[4];
          load_b_kn<D>(bf, s_do(buf), kk * 16, dp * 16, lane);
          Mma<bf16>::run(dv[2 * dp], pa, bf[0], bf[1]);
          Mma<bf16>::run(dv[2 * dp + 1], pa, bf[2], bf[3]);
        }
      }
      // dP^T = V dO^T, then dS^T = P^T (c1 dP^T - c2) in place.
      float dpt[kTile / 8][4];
#pragma unroll
      for (int n = 0; n < kTile / 8; ++n) dpt[n][0] = dpt[n][1] = dpt[n][2] = dpt[n][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        uint32_t af[4];
        load_a<D>(af, s_v, warp * 16, kk, lane);
#pragma unroll
        for (int np = 0; np < kTile / 16; ++np) {
          uint32_t bf[4];
          load_b_nk<D>(bf, s_do(buf), np * 16, kk, lane);
          Mma<bf16>::run(dpt[2 * np], af, bf[0], bf[1]);
          Mma<bf16>::run(dpt[2 * np + 1], af, bf[2], bf[3]);
        }
      }
#pragma unroll
      for (int n = 0; n < kTile / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int c = n * 8 + 2 * (lane & 3) + (e & 1);
          s[n][e] *= fmaf(info[c].y, dpt[n][e], -info[c].z);
        }
        // dK += dS^T Q.
#pragma unroll
      for (int kk = 0; kk < kTile / 16; ++kk) {
        uint32_t pa[4];
        pa[0] = Mma<bf16>::pack(s[2 * kk][0], s[2 * kk][1]);
        pa[1] = Mma<bf16>::pack(s[2 * kk][2], s[2 * kk][3]);
        pa[2] = Mma<bf16>::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
        pa[3] = Mma<bf16>::pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
        for (int dp = 0; dp < D / 16; ++dp) {
          uint32_t bf[4];
          load_b_kn<D>(bf, s_q(buf), kk * 16, dp * 16, lane);
          Mma<bf16>::run(dk[2 * dp], pa, bf[0], bf[1]);
          Mma<bf16>::run(dk[2 * dp + 1], pa, bf[2], bf[3]);
        }
      }
    }
    cp_async_wait<0>();
    __syncthreads();  // every warp is done with both buffers before the next list is staged
  }
  if (!any) return;

  const float scale = rsqrtf(float(D));
#pragma unroll
  for (int j = 0; j < 2; ++j) {
    const int u = k0 + krow + 8 * j;
    if (u >= p.Lkv) continue;
    float* dkr = dk_acc + (bg * p.Lkv + u) * D;
    float* dvr = dv_acc + (bg * p.Lkv + u) * D;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      const int c = n * 8 + 2 * (lane & 3);
      float2 x = *reinterpret_cast<float2*>(dkr + c), y = *reinterpret_cast<float2*>(dvr + c);
      x.x += dk[n][2 * j] * scale, x.y += dk[n][2 * j + 1] * scale;
      y.x += dv[n][2 * j], y.y += dv[n][2 * j + 1];
      *reinterpret_cast<float2*>(dkr + c) = x;
      *reinterpret_cast<float2*>(dvr + c) = y;
    }
  }
}

// ---- routing (dK[a] += dscore Qs) over pairs sorted by anchor, and the final dK, dV ----

__global__ void anchor_keys_kernel(SuperlinearParams p, uint32_t* keys, int32_t* vals) {
  const int64_t n = p.B * p.Hq * p.Lq * p.cfg.k, r = p.Hq / p.Hkv;
  const int64_t v = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (v >= n) return;
  const int64_t row = v / p.cfg.k, h = (row / p.Lq) % p.Hq, b = row / (p.Lq * p.Hq);
  const int32_t a = p.anchors[v];
  keys[v] = uint32_t(a >= 0 ? (b * p.Hkv + h / r) * p.Lkv + a : p.B * p.Hkv * p.Lkv);
  vals[v] = int32_t(v);
}

// offsets[x] = first sorted position whose key is >= x, for x in [0, n_keys].
__global__ void anchor_offsets_kernel(const uint32_t* keys, int64_t n, int64_t n_keys,
                                      int32_t* offsets) {
  const int64_t x = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (x > n_keys) return;
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (int64_t(keys[mid]) < x)
      lo = mid + 1;
    else
      hi = mid;
  }
  offsets[x] = int32_t(lo);
}

// One warp per key (bg, u): dK = acc + sum over the pairs anchored at u of dscore Qs + window;
// dV = acc + window.
template <int D>
__global__ void finish_kernel(SuperlinearParams p, const float* dk_acc, const float* dv_acc,
                              const int32_t* pairs, const int32_t* offsets, const float* dscore,
                              const uint16_t* dk_w, const uint16_t* dv_w, uint16_t* dk,
                              uint16_t* dv) {
  constexpr int E = D / 32;
  const int64_t w = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (w >= p.B * p.Hkv * p.Lkv) return;
  const int lane = int(threadIdx.x) & 31, k = p.cfg.k;
  const int64_t u = w % p.Lkv, bg = w / p.Lkv, b = bg / p.Hkv, g = bg % p.Hkv;
  float x[E], y[E];
#pragma unroll
  for (int e = 0; e < E; ++e) {
    x[e] = dk_acc[w * D + lane * E + e];
    y[e] = dv_acc[w * D + lane * E + e];
  }
  const uint16_t* qs = static_cast<const uint16_t*>(p.qs);
  for (int32_t i = offsets[w]; i < offsets[w + 1]; ++i) {
    const int64_t v = pairs[i];
    const float ds = dscore[v];
    const uint16_t* q = qs + (v / k) * D + lane * E;
#pragma unroll
    for (int e = 0; e < E; ++e) x[e] = fmaf(ds, bf16_at(q, e), x[e]);
  }
  if (dk_w) {
    const int64_t off = ((b * p.Lkv + u) * p.Hkv + g) * D + lane * E;
#pragma unroll
    for (int e = 0; e < E; ++e) x[e] += bf16_at(dk_w, off + e), y[e] += bf16_at(dv_w, off + e);
  }
#pragma unroll
  for (int e = 0; e < E; ++e) {
    dk[w * D + lane * E + e] = to_bf16(x[e]);
    dv[w * D + lane * E + e] = to_bf16(y[e]);
  }
}

// alpha * dO in the window attention's [B, Lq, Hq, D] layout.
template <int D>
__global__ void window_dout_kernel(SuperlinearParams p, const uint16_t* dout, const float* alpha,
                                   uint16_t* dst) {
  const int64_t x = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (x >= p.B * p.Hq * p.Lq * D) return;
  const int64_t row = x / D, d = x % D;
  const Row r = locate_row(p, row);
  dst[((r.b * p.Lq + r.i) * p.Hq + r.h) * D + d] = to_bf16(alpha[row] * bf16_at(dout, x));
}

template <int D>
void run_backward(const SuperlinearBackwardParams& bp, int device, cudaStream_t s) {
  const SuperlinearParams& p = bp.fwd;
  const Device dev = Device::cuda(device);
  StageTimer timer(s, "backward", {"window fwd", "y pass", "window bwd", "dq", "dkv", "finish"});
  const int64_t rows = p.B * p.Hq * p.Lq, k = p.cfg.k, n = rows * k;
  const int64_t n_keys = p.B * p.Hkv * p.Lkv;
  const uint16_t* dout = static_cast<const uint16_t*>(bp.dout);
  const int64_t W = window_len(p.cfg);

  // The window's output again (for y), with its own lse copy: the saved one stays untouched.
  Tensor ow, lse_tmp;
  if (W > 0) {
    ow = Tensor::empty({p.B, p.Lq, p.Hq, D}, DType::BF16, dev);
    lse_tmp = Tensor::empty({rows}, DType::F32, dev);
    AttentionParams ap = window_params(p);
    ap.out = ow.data_ptr();
    ap.lse = lse_tmp.data<float>();
    attention_forward_cuda(ap, device);
  }
  timer.mark(1);

  Tensor terms = Tensor::empty({4 * n + 2 * rows}, DType::F32, dev);
  RowTerms rt;
  rt.coef = reinterpret_cast<float2*>(terms.data<float>());
  rt.dscore = terms.data<float>() + 2 * n;
  rt.alpha = rt.dscore + n;
  rt.alpha_y = rt.alpha + rows;

  const int64_t rows_per_chunk = std::max<int64_t>(1, chunk_pairs() / k);
  const int64_t cap = std::min(rows, rows_per_chunk) * k;
  const bool one_chunk = rows <= rows_per_chunk;
  SpanTiles tiles(p, cap, dev);
  Tensor ys = Tensor::empty({cap}, DType::F32, dev),
         dq_pair = Tensor::empty({cap * D}, DType::F32, dev);
  constexpr int tsmem = tile_smem_bytes<D>(), ksmem = dkv_smem_bytes<D>();
  SL_CUDA_CHECK(cudaFuncSetAttribute(span_tile_bwd_kernel<D, false>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, tsmem));
  SL_CUDA_CHECK(cudaFuncSetAttribute(span_tile_bwd_kernel<D, true>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, tsmem));
  SL_CUDA_CHECK(
      cudaFuncSetAttribute(span_dkv_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, ksmem));
  uint16_t* dqs = static_cast<uint16_t*>(bp.dqs);
  const uint16_t* ow_ptr = W > 0 ? static_cast<const uint16_t*>(ow.data_ptr()) : nullptr;

  // Note [slot tables]: 28 bytes per tile row, sized per chunk from its tile count.
  Tensor slot_mem;
  auto slot_table = [&](const SpanArgs& a, int64_t n_tiles, const float2* coef) {
    const int64_t slots = n_tiles * kTile;
    if (slot_mem.numel() < slots * 7) slot_mem = Tensor::empty({slots * 7}, DType::I32, dev);
    int32_t* base = slot_mem.data<int32_t>();
    SlotTable st{base, base + slots, reinterpret_cast<float4*>(base + 2 * slots), base + 6 * slots};
    slot_table_kernel<<<blocks_for(slots), 256, 0, s>>>(a, coef, n_tiles, st);
    SL_CUDA_LAUNCH_CHECK();
    return st;
  };

  SpanArgs a;
  int64_t n_tiles = 0;
  for (int64_t row0 = 0; row0 < rows; row0 += rows_per_chunk) {
    const int64_t nrows = std::min(rows_per_chunk, rows - row0);
    n_tiles = tiles.build(p, row0 * k, nrows * k, a, s);
    if (n_tiles > 0) {
      const SlotTable st = slot_table(a, n_tiles, nullptr);
      span_tile_bwd_kernel<D, false>
          <<<unsigned(n_tiles), kThreads, tsmem, s>>>(a, st, dout, ys.data<float>(), nullptr);
      SL_CUDA_LAUNCH_CHECK();
    }
    rows_kernel<D><<<blocks_for(nrows, 8), 256, 0, s>>>(a, dout, ow_ptr, ys.data<float>(), rt, dqs,
                                                        row0, nrows);
    SL_CUDA_LAUNCH_CHECK();
  }
  timer.mark(2);

  // Window: flash attention's backward with dO scaled by alpha and delta = alpha_y.
  Tensor win;
  const uint16_t *dq_w = nullptr, *dk_w = nullptr, *dv_w = nullptr;
  if (W > 0) {
    const int64_t nq = rows * D, nkv = n_keys * D;
    win = Tensor::empty({2 * nq + 2 * nkv}, DType::BF16, dev);
    uint16_t* base = reinterpret_cast<uint16_t*>(win.data_ptr());
    window_dout_kernel<D><<<blocks_for(nq), 256, 0, s>>>(p, dout, rt.alpha, base);
    SL_CUDA_LAUNCH_CHECK();
    AttentionParams ap = window_params(p);
    ap.lse = static_cast<float*>(p.lse_w);
    ap.dout = base;
    ap.delta = rt.alpha_y;
    ap.delta_given = true;
    ap.dq = base + nq;
    ap.dk = base + 2 * nq;
    ap.dv = base + 2 * nq + nkv;
    attention_backward_cuda(ap, device);
    dq_w = base + nq, dk_w = base + 2 * nq, dv_w = base + 2 * nq + nkv;
  }
  timer.mark(3);

  Tensor acc = Tensor::empty({2 * n_keys * D}, DType::F32, dev);
  SL_CUDA_CHECK(cudaMemsetAsync(acc.data_ptr(), 0, size_t(acc.numel()) * 4, s));
  float* dk_acc = acc.data<float>();
  float* dv_acc = dk_acc + n_keys * D;
  for (int64_t row0 = 0; row0 < rows; row0 += rows_per_chunk) {
    const int64_t nrows = std::min(rows_per_chunk, rows - row0);
    if (!one_chunk) n_tiles = tiles.build(p, row0 * k, nrows * k, a, s);
    SlotTable st{};
    if (n_tiles > 0) {
      st = slot_table(a, n_tiles, rt.coef);
      span_tile_bwd_kernel<D, true>
          <<<unsigned(n_tiles), kThreads, tsmem, s>>>(a, st, dout, nullptr, dq_pair.data<float>());
      SL_CUDA_LAUNCH_CHECK();
    }
    dq_rows_kernel<D><<<blocks_for(nrows, 8), 256, 0, s>>>(
        a, dq_pair.data<float>(), dq_w, static_cast<uint16_t*>(bp.dqa), row0, nrows);
    SL_CUDA_LAUNCH_CHECK();
    timer.mark(4);
    if (n_tiles > 0) {
      span_dkv_kernel<D><<<unsigned(n_keys / p.Lkv * tiles.n_kb()), kThreads, ksmem, s>>>(
          a, st, dout, n_tiles, tiles.max_nb(), dk_acc, dv_acc);
      SL_CUDA_LAUNCH_CHECK();
    }
    timer.mark(5);
  }

  // Routing: pairs by anchor (stable radix sort), offsets by binary search, then the final sums.
  Tensor sort = Tensor::empty({4, n}, DType::I32, dev);
  auto* keys_in = reinterpret_cast<uint32_t*>(sort.data<int32_t>());
  auto* keys_out = keys_in + n;
  int32_t* vals_in = sort.data<int32_t>() + 2 * n;
  int32_t* vals_out = vals_in + n;
  anchor_keys_kernel<<<blocks_for(n), 256, 0, s>>>(p, keys_in, vals_in);
  SL_CUDA_LAUNCH_CHECK();
  int end_bit = 1;
  while (end_bit < 32 && (uint64_t(n_keys) >> end_bit) != 0) ++end_bit;
  size_t temp_bytes = 0;
  SL_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys_in, keys_out, vals_in,
                                                vals_out, n, 0, end_bit, s));
  Tensor temp = scratch(int64_t(temp_bytes), dev);
  SL_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.data_ptr(), temp_bytes, keys_in, keys_out,
                                                vals_in, vals_out, n, 0, end_bit, s));
  Tensor offsets = Tensor::empty({n_keys + 1}, DType::I32, dev);
  anchor_offsets_kernel<<<blocks_for(n_keys + 1), 256, 0, s>>>(keys_out, n, n_keys,
                                                               offsets.data<int32_t>());
  SL_CUDA_LAUNCH_CHECK();
  finish_kernel<D><<<blocks_for(n_keys, 8), 256, 0, s>>>(
      p, dk_acc, dv_acc, vals_out, offsets.data<int32_t>(), rt.dscore, dk_w, dv_w,
      static_cast<uint16_t*>(bp.dk), static_cast<uint16_t*>(bp.dv));
  SL_CUDA_LAUNCH_CHECK();
  timer.mark(6);
}

}  // namespace

void backward_spans(const SuperlinearBackwardParams& bp, int device) {
  cudaStream_t s = cuda::stream(device);
  if (bp.fwd.D == 64) return run_backward<64>(bp, device, s);
  run_backward<128>(bp, device, s);
}

}  // namespace sl::kernels::slcuda
