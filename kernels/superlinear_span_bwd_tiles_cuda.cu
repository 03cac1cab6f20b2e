// The tile passes of the tensor-core superlinear backward (kernels/superlinear_span_bwd_cuda.cu
// has the math and the order of passes): the slot tables, the y and dQ passes (one block per
// tile: 64 pairs of one footprint against its key blocks) and the dK/dV pass (one block per
// (batch, KV head, 64-key block), walking the chunk's tiles that reach it in tile order).
#include <climits>
#include <cstdlib>

#include "kernels/superlinear_span_cuda.cuh"

namespace sl::kernels::slcuda {
namespace {

using namespace attn;

constexpr int kList = 512;  // live tiles listed at a time by the dK/dV kernel

template <int D>
constexpr int tile_smem_bytes() {
  return 6 * kTile * D * 2;  // Q, dO, K[2], V[2]
}
// kDkvGroups: key blocks (warpgroups) per dK/dV block (Note [dK/dV block pairs]); the wgmma
// kernels add 1024 bytes for their panels' alignment.
template <int D, int kDkvGroups, int kDkvThreads = kDkvGroups* kThreads>
constexpr int dkv_smem_bytes() {
  // K and V of each key block, Q[2], dO[2], the five slot terms [5][2][kTile], live tiles, warp
  // counts, the walk's segments
  return (2 * kDkvGroups + 4) * kTile * D * 2 + 5 * 2 * kTile * 4 + kList * 4 +
         kDkvThreads / 32 * 4 + 2 * kDkvGroups * 8;
}

// Pair r of the tile starting at sorted position s0 (-1 past the end of its run).
__device__ __forceinline__ int32_t tile_pair(const SpanArgs& a, int64_t s0, uint64_t key, int r) {
  const int64_t q = s0 + r;
  return q < a.n && same_run(a.keys[q], key, a.run_shift) ? a.idx[q] : -1;
}

// Note [slot tables]
// Per chunk and pass, slot_table_kernel resolves every tile row (slot t * 64 + r) once: the
// pair's query row, its local id, and the terms the tile kernels read (lse2 = lse_s log2(e), c1,
// c2 -- zero before the gate terms exist -- and the span bounds). The tile kernels then gather
// with one coalesced index load per thread and copy the terms with cp.async, instead of chasing
// sorted position -> pair -> bounds/lse/coef through dependent loads at every tile, which
// stalled the dK/dV pass between tiles (H200, 1M, GQA 8: that pass went from 684 to 578 ms).

// c1 = g_j wj_j and c2 = c1 y_j of pair v (slot j of a row; the math:
// kernels/superlinear_span_bwd_cuda.cu) from its gate weight g_j and y_j (the row terms, Note
// [row terms per set]) and the forward's lse; 0 for an empty slot. No lse_w: no window (-inf).
__device__ __forceinline__ float2 gate_coefs(const SuperlinearParams& p, int64_t v, float gj,
                                             float yj) {
  if (p.anchors[v] < 0) return make_float2(0.f, 0.f);
  const float lse_w = p.lse_w ? static_cast<const float*>(p.lse_w)[v / p.cfg.k] : -INFINITY;
  const float lj = static_cast<const float*>(p.lse_s)[v];
  const float c1 = gj * expf(lj - logaddexp(lse_w, lj));
  return make_float2(c1, c1 * yj);
}

// Note [inside blocks]
// Where a key block lies inside every span of a tile, the dK/dV pass needs no mask for that
// (tile, block): its P^T is exp2 of the scores alone, the same values the mask would select.
// The slot table keeps, per tile, the largest lo and the smallest hi of its pairs (padding
// rows, with lse2 = inf, give P = 0 anyway), and the pass tests the block against them once per
// tile and block instead of two compares per score. The y and dQ passes see a tile's 64 pairs
// against one key block per step and test their own rows (span_probs). The mma.sync kernel
// keeps the mask on every block (the second path spills 116 bytes there at D = 128). SASS of
// the wgmma kernel at D = 128: 766 instructions in the loop with both paths, ~560 on the inside
// path against 676 before; 250 registers, no spills. H200, against its reverse in one call
// (dK/dV stage ms): 64K GQA 1 4.909 -> 4.878, GQA 8 3.776 -> 3.550; 1M GQA 1 244.3 -> 243.7,
// GQA 8 342.2 -> 331.7. That GQA 1 gains little suggests its pass waits on something else (its
// Q and dO gathers, likely; not profiled).
// Blocks of 256 threads (four whole tiles; a warp holds half of one).
__global__ void __launch_bounds__(256)
    slot_table_kernel(SpanArgs a, const float* g, const float* y, int64_t y_v0, int64_t n_tiles,
                      SlotTable st) {
  __shared__ int2 half[8];
  const int64_t x = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const bool live = x < n_tiles * kTile;
  const int64_t t = live ? x / kTile : 0;
  const int32_t lp = live ? tile_pair(a, a.tile_start[t], a.tile_key[t], int(x % kTile)) : -1;
  const int2 bd = lp >= 0 ? a.bounds[lp] : make_int2(1, 0);
  const int warp = int(threadIdx.x) >> 5;
  const int lo_max = __reduce_max_sync(0xffffffffu, lp >= 0 ? bd.x : INT_MIN);
  const int hi_min = __reduce_min_sync(0xffffffffu, lp >= 0 ? bd.y : INT_MAX);
  if ((threadIdx.x & 31) == 0) half[warp] = make_int2(lo_max, hi_min);
  __syncthreads();
  if (!live) return;
  if (x % kTile == 0)
    st.inside[t] =
        make_int2(max(half[warp].x, half[warp + 1].x), min(half[warp].y, half[warp + 1].y));
  const int64_t gp = lp >= 0 ? pair_id(a, lp) : 0;
  const int k = a.p.cfg.k;
  const float2 cc =
      y && lp >= 0 ? gate_coefs(a.p, gp, g[gp - y_v0], y[gp - y_v0]) : make_float2(0.f, 0.f);
  const float lse2 = lp >= 0 ? static_cast<const float*>(a.p.lse_s)[gp] * kLog2e : INFINITY;
  st.row[x] = lp >= 0 ? int32_t(gp / k) : -1;
  st.lp[x] = lp;
  st.lse2[x] = lse2;
  st.c1[x] = cc.x;
  st.c2[x] = cc.y;
  st.lo[x] = bd.x;
  st.hi[x] = bd.y;
}

// Thread lt (0 .. 127 of a warpgroup) gathers row lt / 2 of a tile from each of the N arrays
// src (Q, dO; lanes 2m, 2m + 1 fetch the two halves of each 32-byte sector together) into the
// swizzled tile dst of the same index, the arrays' copies interleaved; padding rows (row < 0)
// are zero-filled. kPanels: into wgmma panel tiles (Note [wgmma panels]) instead.
template <int D, bool kPanels, int N>
__device__ __forceinline__ void gather_rows_of(int32_t row, const uint16_t* const (&src)[N],
                                               const uint32_t (&dst)[N], int lt) {
  const int r = lt >> 1, half = lt & 1;
  const int64_t off = row >= 0 ? int64_t(row) * D : 0;
#pragma unroll
  for (int j = 0; j < D / 16; ++j) {
    const int c = 2 * j + half;
    const uint32_t at = kPanels ? panel_offset<kTile>(r, c) : tile_offset<D>(r, c);
#pragma unroll
    for (int x = 0; x < N; ++x) cp_async16(dst[x] + at, src[x] + off + c * 8, row >= 0);
  }
}
// Both the Q and the dO row, by one warpgroup.
template <int D, bool kPanels = false>
__device__ __forceinline__ void gather_row(int32_t row, const uint16_t* qa, const uint16_t* dout,
                                           uint32_t sq, uint32_t sdo) {
  gather_rows_of<D, kPanels, 2>(row, {qa, dout}, {sq, sdo}, int(threadIdx.x));
}
// One of them, by warpgroup lt / 128's thread lt % 128 (Note [dK/dV block pairs]).
template <int D, bool kPanels>
__device__ __forceinline__ void gather_one(int32_t row, const uint16_t* src, uint32_t dst, int lt) {
  gather_rows_of<D, kPanels, 1>(row, {src}, {dst}, lt);
}

// The start of a y or dQ tile (blockIdx.x), for both tile kernels: returns its footprint, sets
// kbase and vbase to the K/V rows of its (batch, KV head), gathers its pairs' Q and dO rows into
// sq and sdo and its first K/V block into sk0 and sv0 (one cp.async group). kPanels: the wgmma
// layout.
template <int D, bool kPanels>
__device__ __forceinline__ Footprint start_bwd_tile(const SpanArgs& a, const SlotTable& st,
                                                    const uint16_t* dout, uint32_t sq, uint32_t sdo,
                                                    uint32_t sk0, uint32_t sv0,
                                                    const uint16_t*& kbase,
                                                    const uint16_t*& vbase) {
  const SuperlinearParams& p = a.p;
  const int64_t t = blockIdx.x;
  const Footprint fp = footprint(a.tile_key[t], a.kb_stride);
  gather_row<D, kPanels>(st.row[t * kTile + (threadIdx.x >> 1)], static_cast<const uint16_t*>(p.qa),
                         dout, sq, sdo);
  kbase = static_cast<const uint16_t*>(p.k) + fp.bg * p.Lkv * D;
  vbase = static_cast<const uint16_t*>(p.v) + fp.bg * p.Lkv * D;
  load_tile<kBN, D, kThreads, kPanels>(sk0, kbase + int64_t(fp.kb0) * kBN * D, D,
                                       int(p.Lkv) - fp.kb0 * kBN);
  load_tile<kBN, D, kThreads, kPanels>(sv0, vbase + int64_t(fp.kb0) * kBN * D, D,
                                       int(p.Lkv) - fp.kb0 * kBN);
  cp_async_commit();
  return fp;
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
    pr.lp[j] = st.lp[x];
    pr.lse2[j] = st.lse2[x];
    pr.c1[j] = st.c1[x];
    pr.c2[j] = st.c2[x];
    pr.lo[j] = st.lo[x];
    pr.hi[j] = st.hi[x];
  }
  return pr;
}

// P = exp(S / sqrt(D) - lse) inside each pair's span, 0 outside (in place), the mask the
// forward's (Note [range mask]). Before, every score of every block took two compares and their
// combination as selects (P2R / PLOP3 / LOP3: ~170 of the y pass's ~740 SASS instructions per
// key block). H200 (forward-stages, session 20, call 1): y pass 0-2% faster than without (3.495
// -> 3.488 ms at 64K GQA 1, 116.2 -> 114.2 at 1M GQA 1).
__device__ __forceinline__ void span_probs(float (&s)[kBN / 8][4], const PairRows& pr, int k0,
                                           float sl2) {
  const int lane = int(threadIdx.x) & 31;
#pragma unroll
  for (int n = 0; n < kBN / 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) s[n][e] = fast_exp2(fmaf(s[n][e], sl2, -pr.lse2[e >> 1]));
  mask_outside_spans(s, pr.lo, pr.hi, k0, lane, 0.f);  // Note [range mask]
}

// A y or dQ tile's results for this thread's two pairs: ys[lp] (kDq = false) or the f32 row
// dq_pair[lp] / sqrt(D).
template <int D, bool kDq>
__device__ __forceinline__ void write_tile_outputs(const float (&acc)[2],
                                                   const float (&dq)[kDq ? D / 8 : 1][4],
                                                   const PairRows& pr, float* ys, float* dq_pair) {
  const int lane = int(threadIdx.x) & 31;
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
  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;
  const int64_t t = blockIdx.x;
  const uint16_t *kbase, *vbase;
  const Footprint fp = start_bwd_tile<D, false>(a, st, dout, sq, sdo, sk(0), sv(0), kbase, vbase);
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
    mma_scores_dp<bf16, D, kBN>(s, dp, sq, sdo, sk(stage), sv(stage), warp * 16, lane);
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
      mma_acc_kn<bf16, D, kBN>(dq, s, sk(stage), lane);
    }
  }
  cp_async_wait<0>();

  write_tile_outputs<D, kDq>(acc, dq, pr, ys, dq_pair);
}

// K/V stages of the wgmma y and dQ passes (Note [wgmma backward tiles]).
constexpr int bwd_tile_stages(bool dq) {
  return dq ? 2 : 1;
}

// Note [wgmma backward tiles]
// The y and dQ passes on Hopper's warpgroup MMA, as the forward's Note [wgmma span tiles]: S =
// Q K^T and dP = dO V^T are sixteen m64n64k16 products from shared memory (Q, dO, K and V all
// K-major panels), committed as one group; the dQ pass then adds dS K with dS from registers (K
// read MN-major from the same panel). The masking, the terms and the outputs are the mma.sync
// kernel's. The dQ pass keeps its pipeline too (K and V double-buffered, the next pair loaded
// behind the barrier at the top of each key block; 96 KB at D = 128, two blocks per SM). The y
// pass, at 112 registers, runs three blocks per SM instead: one K/V buffer (64 KB), the next
// pair loaded once every warp's products are done, while the block forms P and its row sums.
template <int D, bool kDq>
__global__ void __launch_bounds__(kThreads, kDq ? 2 : 3)
    span_tile_bwd_wgmma_kernel(SpanArgs a, SlotTable st, const uint16_t* dout, float* ys,
                               float* dq_pair) {
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  constexpr uint32_t kTileBytes = kTile * D * 2;  // kTile == kBN
  const uint32_t sq = smem_addr(smem_raw) + (1024 - smem_addr(smem_raw) % 1024) % 1024;
  constexpr int kStages = bwd_tile_stages(kDq);
  const uint32_t sdo = sq + kTileBytes;
  auto sk = [&](int stage) { return sq + uint32_t((2 + stage) * kTileBytes); };
  auto sv = [&](int stage) { return sq + uint32_t((2 + kStages + stage) * kTileBytes); };
  // Descriptors of tile i (0 Q, 1 dO, 2 + stage K, 2 + kStages + stage V), K- or MN-major.
  auto dtile = [&](int i, uint32_t leading) {
    wg::Desc d = wg::desc(sq, leading, 1024);
    d.lo += uint32_t(i) * (kTileBytes >> 4);
    return d;
  };
  const SuperlinearParams& p = a.p;
  const int64_t t = blockIdx.x;
  const uint16_t *kbase, *vbase;
  const Footprint fp = start_bwd_tile<D, true>(a, st, dout, sq, sdo, sk(0), sv(0), kbase, vbase);
  const PairRows pr = pair_rows(st, t);
  const float sl2 = rsqrtf(float(D)) * kLog2e;

  float acc[2] = {0.f, 0.f};
  float dq[kDq ? D / 8 : 1][4];
#pragma unroll
  for (int n = 0; n < (kDq ? D / 8 : 1); ++n) dq[n][0] = dq[n][1] = dq[n][2] = dq[n][3] = 0.f;

  for (int kb = fp.kb0; kb < fp.kb0 + fp.nb; ++kb) {
    const int stage = kStages == 2 ? (kb - fp.kb0) & 1 : 0;
    const bool next = kb + 1 < fp.kb0 + fp.nb;
    const int nk = (kb + 1) * kBN;
    auto load_next = [&]() {
      load_tile<kBN, D, kThreads, true>(sk(stage ^ (kStages - 1)), kbase + int64_t(nk) * D, D,
                                        int(p.Lkv) - nk);
      load_tile<kBN, D, kThreads, true>(sv(stage ^ (kStages - 1)), vbase + int64_t(nk) * D, D,
                                        int(p.Lkv) - nk);
      cp_async_commit();
    };
    cp_async_wait<0>();
    wg::fence_proxy_async();
    __syncthreads();  // K[kb], V[kb] visible; every warp is done with the other stage
    if (kStages == 2 && next) load_next();
    float s[kBN / 8][4], dp[kBN / 8][4];
    // S = Q K^T and dP = dO V^T.
    wg::mma_scores_pair<D>(s, dtile(0, 16), dtile(2 + stage, 16), dp, dtile(1, 16),
                           dtile(2 + kStages + stage, 16));
    if (kStages == 1 && next) {
      __syncthreads();  // every warp's products are done with K[kb], V[kb]
      load_next();
    }
    span_probs(s, pr, kb * kBN, sl2);
    if constexpr (!kDq) {
#pragma unroll
      for (int n = 0; n < kBN / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[e >> 1] = fmaf(s[n][e], dp[n][e], acc[e >> 1]);
    } else {
      uint32_t pa[kBN / 16][4];
#pragma unroll
      for (int kk = 0; kk < kBN / 16; ++kk) {
        float ds[2][4];
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            ds[h][e] = s[2 * kk + h][e] * fmaf(pr.c1[e >> 1], dp[2 * kk + h][e], -pr.c2[e >> 1]);
        pa[kk][0] = Mma<bf16>::pack(ds[0][0], ds[0][1]);
        pa[kk][1] = Mma<bf16>::pack(ds[0][2], ds[0][3]);
        pa[kk][2] = Mma<bf16>::pack(ds[1][0], ds[1][1]);
        pa[kk][3] = Mma<bf16>::pack(ds[1][2], ds[1][3]);
      }
      const wg::Desc dkn = dtile(2 + stage, kBN * 128);
      wg::fence();
#pragma unroll
      for (int kk = 0; kk < kBN / 16; ++kk) wg::mma_rs<D>(dq, pa[kk], wg::step_mn(dkn, kk));
      wg::commit();
      wg::wait<0>();
      wg::fence_regs(dq);
    }
  }
  cp_async_wait<0>();

  write_tile_outputs<D, kDq>(acc, dq, pr, ys, dq_pair);
}

// The first i in [0, n) with x[i] >= v (n if none) for ascending x: one thread's binary search.
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

// The first i in [0, n) with x[i] >= v (n if none) for ascending x, found by the whole block:
// each round probes kThreads evenly spaced positions at once and keeps the gap between the last
// probe below v and the next. Every thread calls it and gets the answer.
// Note [block search]: a one-thread binary search over the chunk's tile keys made ~16 dependent
// L2 reads (~10 us) at the start of every dK/dV block; at 64K GQA 1 there are 16K such blocks,
// 62 waves of them. Three or four rounds of 128 probes take one read and one barrier each. The
// mma.sync kernel keeps the binary search: with this one ptxas spills 56 bytes there (8 before).
__device__ __forceinline__ int64_t block_lower_bound(const uint64_t* x, int64_t n, uint64_t v) {
  int64_t lo = 0, hi = n;  // the answer is in [lo, hi]
  while (lo < hi) {
    const int64_t step = (hi - lo + kThreads - 1) / kThreads;
    const int64_t at = lo + int64_t(threadIdx.x) * step;
    const int below = __syncthreads_count(at < hi && x[at] < v);  // probes 0 .. below - 1
    if (below == 0) return lo;  // x[lo] >= v (every thread saw the same count)
    const int64_t last = lo + int64_t(below - 1) * step;
    lo = last + 1;
    hi = min(hi, last + step);
  }
  return lo;
}

// Note [dK/dV registers]
// At D = 128 the dK/dV kernel holds 128 accumulator floats per thread plus the 64 of S^T and
// dP^T, at the 255-register limit. The tile's terms were first staged as one float4 (lse2, c1,
// c2, lo) per pair plus hi, read per element with a short-circuit span test: the compiler
// hoisted the float4 loads (32 registers at once), branched around each masked exp2 and spilled
// the results (ptxas: 224 bytes of spill stores, most of them in the tile loop). The terms are
// now five arrays, each thread reads its pairs' two consecutive values as float2 / int2 where it
// uses them, and the mask is a select: no spills, and on the H200 at 1M the pass went from 628
// to 432 ms (GQA 1) and from 573 to 378 ms (GQA 8). The y and dQ passes' mask is a select too
// (it branched around each exp2): 327 -> 279 ms for the dQ pass at 1M GQA 1. Since the tile
// loads were unrolled (Note [unrolled tile loads]) ptxas spilled 8 bytes in the mma.sync kernel
// at D = 128, nothing after the staged epilogue (Note [staged dK/dV]), and 60 bytes since the
// walk is shared with the block pairs (Note [dK/dV block pairs]); the wgmma kernels (Note [wgmma
// dK/dV]), which Hopper runs, need 252 registers (245 for pairs) and spill nothing.

// dK/dV of kDkvGroups consecutive 64-key blocks y = y0 + kDkvGroups blockIdx.x + w (bg = bg0 +
// y / n_kb, block y % n_kb; w < n_y - kDkvGroups blockIdx.x), one per warpgroup w, from the
// chunk's tiles that cover them; adds dK / sqrt(D) and dV to the f32 accumulator rows
// (y - y0) * 64 .. + 63 of the launch's key range (Note [dK/dV by key range] in
// kernels/superlinear_span_bwd_cuda.cu). kWg: the products on wgmma (Note [wgmma dK/dV]), the
// tiles in panels.
//
// Note [wgmma dK/dV]
// A block's keys are the warpgroup's 64 rows: S^T = K Q^T and dP^T = V dO^T are m64n64k16
// products from shared memory (K, V, Q, dO all K-major panels) in one group; dV += (c1 P)^T dO
// and dK += dS^T Q take P^T and dS^T from registers and read dO and Q MN-major from the same
// panels, dV's group running while dS^T is formed. Everything else (tile lists, staging, terms,
// masks, the accumulators' write-back) is the mma.sync kernel's.
//
// Note [dK/dV block pairs]
// Each key block gathers the Q and dO rows of every tile that reaches it (32 KB per tile and
// block at D = 128). A block of two warpgroups instead takes two consecutive key blocks, walks
// the tiles that reach either (in tile order: the two key ranges, the second from where the
// first ends), stages each such tile once (warpgroup 0 gathers Q, warpgroup 1 dO), and each
// warpgroup computes only the tiles that reach its own key block: the same products in the
// same order per key block, so the same bits (the GPU tests compare them), with the gathers of
// tiles reaching both shared. Two warpgroups at 245 registers and 137 KB of shared memory per
// SM, against two blocks of one warpgroup (252 registers, 99 KB each).
// H200, D = 128, 16 heads, balanced; dK/dV stage ms, one key block -> pairs, two runs each in
// one call (results/2026-11-29-h200-forward-stages.md, session 21):
//   64K   GQA 1 4.07/3.98 -> 4.53/4.51, GQA 8 3.53/3.54 -> 3.80/3.77, GQA 16 3.55/3.43 -> 3.82/3.81
//   256K  GQA 1 29.1/29.8 -> 31.8/31.4, GQA 8 31.2/30.2 -> 32.0/30.5, GQA 16 30.4/29.9 -> 32.0/31.2
//   512K  GQA 1 82.1/81.7 -> 87.1/85.7, GQA 8 81.3/79.3 -> 86.0/85.0, GQA 16 78.5/77.7 -> 82.7/85.0
//   1M    GQA 1 240.3/240.3 -> 235.8/233.7, GQA 8 321.8/322.7 -> 261.1/259.3,
//         GQA 16 460.6/459.7 -> 340.7/340.8 (backward 806 -> 675 ms).
// Up to 256K the two warpgroups' coupling (one waits at each tile's barrier while the other
// computes a tile that misses its block, and the SM runs one walk instead of two independent
// ones) costs more than the shared gathers save. At 1M GQA 8 and 16 the pass takes key ranges
// (Note [dK/dV by key range]) and is 4x its 512K time where GQA 1's (whole sets) is 2.9x; the
// pairs recover much of that, likely by halving the gathers that the ranges' tiles repeat. So
// pairs from kDkvPairsMinKeys keys on (512K measured slower, 1M faster at every ratio);
// SL_DKV_PAIRS=0 or 1 forces either (a testing knob). The mma.sync kernel keeps one key block
// per block (the walk's state would spill more at its 255 registers; it spills 60 bytes at
// D = 128 through the shared walk code).
constexpr int64_t kDkvPairsMinKeys = int64_t(1) << 20;
template <int D, bool kWg, int kDkvGroups, int kDkvThreads = kDkvGroups* kThreads>
__global__ void __launch_bounds__(kDkvThreads)
    span_dkv_kernel(SpanArgs a, SlotTable st, const uint16_t* dout, int64_t n_tiles, int max_nb,
                    int64_t bg0, int64_t y0, int64_t n_y, float* dk_acc, float* dv_acc,
                    bool store) {
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  unsigned char* smem = kWg ? smem_raw + (1024 - smem_addr(smem_raw) % 1024) % 1024 : smem_raw;
  constexpr uint32_t kTileBytes = kTile * D * 2;
  const int grp = int(threadIdx.x) / kThreads, lt = int(threadIdx.x) % kThreads;
  const int warp = int(threadIdx.x) >> 5, wwarp = lt >> 5, lane = int(threadIdx.x) & 31;
  // K and V of key block g, then Q[2] and dO[2].
  const uint32_t s_base = smem_addr(smem);
  auto s_kg = [&](int g) { return s_base + uint32_t(2 * g) * kTileBytes; };
  auto s_vg = [&](int g) { return s_base + uint32_t(2 * g + 1) * kTileBytes; };
  const uint32_t s_k = s_kg(grp), s_v = s_vg(grp);
  auto s_q = [&](int buf) { return s_base + uint32_t(2 * kDkvGroups + buf) * kTileBytes; };
  auto s_do = [&](int buf) { return s_base + uint32_t(2 * kDkvGroups + 2 + buf) * kTileBytes; };
  // The slot terms lse2, c1, c2, lo, hi of the two staged tiles: term i of buffer b at
  // s_terms + (2 i + b) * kTile.
  float* s_terms = reinterpret_cast<float*>(smem + (2 * kDkvGroups + 4) * kTileBytes);
  int32_t* s_list = reinterpret_cast<int32_t*>(s_terms + 5 * 2 * kTile);
  int32_t* s_count = s_list + kList;
  int64_t* s_seg = reinterpret_cast<int64_t*>(s_count + kDkvThreads / 32);
  const uint64_t* tile_key = a.tile_key;
  const SuperlinearParams& p = a.p;

  // Key block g of this block: group bg, block kb; absent (false) past the launch's n_y
  // blocks. Computed where used, so that nothing of it stays in registers through the loop.
  struct KeyBlock {
    int64_t bg;
    int kb;
    bool has;
  };
  auto key_block = [&](int g) {
    const int64_t yl = int64_t(kDkvGroups) * blockIdx.x + g, y = y0 + yl;
    return KeyBlock{bg0 + y / a.n_kb, int(y % a.n_kb), yl < n_y};
  };
  const KeyBlock own = key_block(grp);
  const int kb = own.kb, k0 = kb * kBN;
  auto find = [&](uint64_t v) {
    return kWg ? block_lower_bound(tile_key, n_tiles, v) : lower_bound_key(tile_key, n_tiles, v);
  };
  // The tiles reaching key block g lie in [lo_g, hi_g) of the tile order; the walk takes
  // [lo_0, hi_0), then [max(lo_1, hi_0), hi_1) (the ranges are in tile order: a later block of
  // the same group, or a later group). Kept in shared memory (s_seg: lo, hi per key block),
  // read once per list, so that they hold no registers through the loop.
  int64_t total = 0;
  {
    int64_t prev_hi = 0;
#pragma unroll
    for (int g = 0; g < kDkvGroups; ++g) {
      const KeyBlock kg = key_block(g);
      const uint64_t first = uint64_t(kg.bg * a.kb_stride + max(0, kg.kb - max_nb + 1)) << 8;
      const uint64_t last = (uint64_t(kg.bg * a.kb_stride + kg.kb) << 8) | 255u;
      int64_t lo = kg.has ? find(first) : 0, hi = kg.has ? find(last + 1) : 0;
      if (g > 0) lo = max(lo, prev_hi), hi = max(hi, lo);
      if (threadIdx.x == 0) s_seg[2 * g] = lo, s_seg[2 * g + 1] = hi;
      total += hi - lo;
      prev_hi = hi;
    }
  }
  __syncthreads();  // s_seg
  if (total == 0) {
    // Note [first writer stores]: with `store` the present key blocks' rows are written anyway.
    if (store)
      for (int g = 0; g < kDkvGroups; ++g) {
        const KeyBlock kg = key_block(g);
        if (!kg.has) continue;
        const int rows_g = min(kBN, int(p.Lkv - int64_t(kg.kb) * kBN));
        const int64_t base = (int64_t(kDkvGroups) * blockIdx.x + g) * kBN * D;
        for (int i = int(threadIdx.x); i < rows_g * D / 4; i += kDkvThreads) {
          *reinterpret_cast<float4*>(dk_acc + base + 4 * i) = make_float4(0.f, 0.f, 0.f, 0.f);
          *reinterpret_cast<float4*>(dv_acc + base + 4 * i) = make_float4(0.f, 0.f, 0.f, 0.f);
        }
      }
    return;
  }
  auto tile_at = [&](int64_t pos) {  // position pos of the walk, as a tile index
#pragma unroll
    for (int g = 0; g < kDkvGroups; ++g) {
      const int64_t len = s_seg[2 * g + 1] - s_seg[2 * g];
      if (pos < len) return s_seg[2 * g] + pos;
      pos -= len;
    }
    return int64_t(-1);
  };

  // The next tiles of the walk that reach a key block of this block, in order, into s_list as
  // the tile index with bit 30 + g set where it reaches key block g: one candidate per thread
  // per step, compacted with ballots.
  int64_t scan = 0;
  auto fill_list = [&]() {
    int n_list = 0;
    while (scan < total && n_list + kDkvThreads <= kList) {
      const int64_t pos = scan + threadIdx.x;
      uint32_t reach = 0u;
      int64_t t = -1;
      if (pos < total) {
        t = tile_at(pos);
        const Footprint f = footprint(tile_key[t], a.kb_stride);
#pragma unroll
        for (int g = 0; g < kDkvGroups; ++g) {
          const KeyBlock kg = key_block(g);
          if (kg.has && f.bg == kg.bg && f.kb0 <= kg.kb && f.kb0 + f.nb - 1 >= kg.kb)
            reach |= 1u << (30 + g);
        }
      }
      const bool live = reach != 0u;
      const unsigned ballot = __ballot_sync(0xffffffffu, live);
      if (lane == 0) s_count[warp] = __popc(ballot);
      __syncthreads();
      int before = n_list, sum = n_list;
      for (int w = 0; w < kDkvThreads / 32; ++w) {
        before += w < warp ? s_count[w] : 0;
        sum += s_count[w];
      }
      if (live)
        s_list[before + __popc(ballot & ((1u << lane) - 1u))] = int32_t(uint32_t(t) | reach);
      n_list = sum;
      scan += kDkvThreads;
      __syncthreads();
    }
    return n_list;
  };
  constexpr uint32_t kTileBits = (1u << 30) - 1u;
  auto tile_of = [&](int32_t e) { return int64_t(uint32_t(e) & kTileBits); };

  // Both key blocks' K and V, by every thread.
#pragma unroll
  for (int g = 0; g < kDkvGroups; ++g) {
    const KeyBlock kg = key_block(g);
    if (!kg.has) continue;
    const int kg0 = kg.kb * kBN;
    const uint16_t* kb_ptr = static_cast<const uint16_t*>(p.k) + (kg.bg * p.Lkv + kg0) * D;
    const uint16_t* vb_ptr = static_cast<const uint16_t*>(p.v) + (kg.bg * p.Lkv + kg0) * D;
    load_tile<kBN, D, kDkvThreads, kWg>(s_kg(g), kb_ptr, D, int(p.Lkv) - kg0);
    load_tile<kBN, D, kDkvThreads, kWg>(s_vg(g), vb_ptr, D, int(p.Lkv) - kg0);
  }

  // Stages tile `tile` into buffer buf with cp.async only (Note [slot tables]): warpgroup 0
  // gathers the Q rows, warpgroup 1 the dO rows; `row` is this thread's gather row of that tile,
  // loaded one tile ahead.
  const uint16_t* qa = static_cast<const uint16_t*>(p.qa);
  static_assert(kDkvGroups <= 2, "one warpgroup gathers Q and dO, or each one of them");
  auto stage = [&](int64_t tile, int buf, int32_t row) {
    if constexpr (kDkvGroups == 1)
      gather_row<D, kWg>(row, qa, dout, s_q(buf), s_do(buf));
    else
      gather_one<D, kWg>(row, grp == 0 ? qa : dout, grp == 0 ? s_q(buf) : s_do(buf), lt);
    const int c = int(threadIdx.x), term = c / (kTile / 4), q = 4 * (c % (kTile / 4));
    if (term < 5) {
      const void* src = term == 0   ? static_cast<const void*>(st.lse2)
                        : term == 1 ? static_cast<const void*>(st.c1)
                        : term == 2 ? static_cast<const void*>(st.c2)
                        : term == 3 ? static_cast<const void*>(st.lo)
                                    : static_cast<const void*>(st.hi);
      cp_async16(smem_addr(s_terms + (2 * term + buf) * kTile + q),
                 static_cast<const float*>(src) + tile * kTile + q, true);
    }
  };
  auto row_of = [&](int32_t e) { return st.row[tile_of(e) * kTile + (lt >> 1)]; };

  float dk[D / 8][4], dv[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[n][e] = dv[n][e] = 0.f;
  const float sl2 = rsqrtf(float(D)) * kLog2e;
  const int krow = wwarp * 16 + (lane >> 2);  // this thread's keys: k0 + krow, k0 + krow + 8
  const uint32_t mine = 1u << (30 + grp);

  bool any = false;  // some tile reached this warpgroup's key block
  while (scan < total) {
    const int n_list = fill_list();
    if (n_list == 0) continue;
    stage(tile_of(s_list[0]), 0, row_of(s_list[0]));
    cp_async_commit();
    int32_t row_next = n_list > 1 ? row_of(s_list[1]) : -1;
    int2 in_next = st.inside[tile_of(s_list[0])];
    for (int it = 0; it < n_list; ++it) {
      const int buf = it & 1;
      const bool reach = (uint32_t(s_list[it]) & mine) != 0u;  // warpgroup-uniform
      // Note [inside blocks]: warpgroup-uniform, so the branch below does not diverge.
      const bool inside = k0 >= in_next.x && k0 + kBN - 1 <= in_next.y;
      cp_async_wait<0>();
      if constexpr (kWg) wg::fence_proxy_async();
      __syncthreads();
      if (it + 1 < n_list) stage(tile_of(s_list[it + 1]), buf ^ 1, row_next);
      cp_async_commit();
      if (it + 2 < n_list) row_next = row_of(s_list[it + 2]);
      if (it + 1 < n_list) in_next = st.inside[tile_of(s_list[it + 1])];
      if (!reach) continue;
      any = true;
      const float* lse2 = s_terms + buf * kTile;
      const float* c1 = s_terms + (2 + buf) * kTile;
      const float* c2 = s_terms + (4 + buf) * kTile;
      const int32_t* lo = reinterpret_cast<const int32_t*>(s_terms + (6 + buf) * kTile);
      const int32_t* hi = reinterpret_cast<const int32_t*>(s_terms + (8 + buf) * kTile);
      // Note [dK/dV registers]: this thread's pairs are columns n * 8 + 2 (lane % 4) + {0, 1};
      // their terms are read as float2 / int2 where used, and the span mask is branch-free.
      auto col = [&](int n) { return n * 8 + 2 * (lane & 3); };
      // S^T = K Q^T: 16 keys x 64 pairs per warp; P^T in place.
      float s[kTile / 8][4], dpt[kTile / 8][4];
      if constexpr (kWg) {
        // S^T = K Q^T and dP^T = V dO^T in one group (Note [wgmma dK/dV]).
        wg::mma_scores_pair<D>(s, wg::desc(s_k, 16, 1024), wg::desc(s_q(buf), 16, 1024), dpt,
                               wg::desc(s_v, 16, 1024), wg::desc(s_do(buf), 16, 1024));
      } else {
        mma_a_nk<bf16, D, kTile>(s, s_k, wwarp * 16, s_q(buf), lane);
      }
      if (kWg && inside) {  // Note [inside blocks]
#pragma unroll
        for (int n = 0; n < kTile / 8; ++n) {
          const float2 l2 = *reinterpret_cast<const float2*>(lse2 + col(n));
#pragma unroll
          for (int e = 0; e < 4; ++e)
            s[n][e] = fast_exp2(fmaf(s[n][e], sl2, -((e & 1) ? l2.y : l2.x)));
        }
      } else {
#pragma unroll
        for (int n = 0; n < kTile / 8; ++n) {
          const float2 l2 = *reinterpret_cast<const float2*>(lse2 + col(n));
          const int2 l = *reinterpret_cast<const int2*>(lo + col(n));
          const int2 h = *reinterpret_cast<const int2*>(hi + col(n));
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int u = k0 + krow + 8 * (e >> 1);
            const bool ok = (e & 1) ? (u >= l.y) & (u <= h.y) : (u >= l.x) & (u <= h.x);
            const float x = fast_exp2(fmaf(s[n][e], sl2, -((e & 1) ? l2.y : l2.x)));
            s[n][e] = ok ? x : 0.f;
          }
        }
      }
      if constexpr (kWg) {
        // (c1 P^T) and dS^T = P^T (c1 dP^T - c2) as A operands, dS^T formed in dP^T's registers.
        uint32_t pa[kTile / 16][4], pb[kTile / 16][4];
#pragma unroll
        for (int n = 0; n < kTile / 8; ++n) {
          const float2 a = *reinterpret_cast<const float2*>(c1 + col(n));
          const float2 b = *reinterpret_cast<const float2*>(c2 + col(n));
          pa[n / 2][2 * (n & 1)] = Mma<bf16>::pack(s[n][0] * a.x, s[n][1] * a.y);
          pa[n / 2][2 * (n & 1) + 1] = Mma<bf16>::pack(s[n][2] * a.x, s[n][3] * a.y);
#pragma unroll
          for (int e = 0; e < 4; ++e)
            dpt[n][e] =
                s[n][e] * ((e & 1) ? fmaf(a.y, dpt[n][e], -b.y) : fmaf(a.x, dpt[n][e], -b.x));
          pb[n / 2][2 * (n & 1)] = Mma<bf16>::pack(dpt[n][0], dpt[n][1]);
          pb[n / 2][2 * (n & 1) + 1] = Mma<bf16>::pack(dpt[n][2], dpt[n][3]);
        }
        // dV += (c1 P)^T dO and dK += dS^T Q, dO and Q read MN-major.
        const wg::Desc ddo_mn = wg::desc(s_do(buf), kTile * 128, 1024);
        const wg::Desc dq_mn = wg::desc(s_q(buf), kTile * 128, 1024);
        wg::fence();
#pragma unroll
        for (int kk = 0; kk < kTile / 16; ++kk) wg::mma_rs<D>(dv, pa[kk], wg::step_mn(ddo_mn, kk));
#pragma unroll
        for (int kk = 0; kk < kTile / 16; ++kk) wg::mma_rs<D>(dk, pb[kk], wg::step_mn(dq_mn, kk));
        wg::commit();
        wg::wait<0>();
        wg::fence_regs(dk);
        wg::fence_regs(dv);
      } else {
        // dV += (c1 P)^T dO.
#pragma unroll
        for (int kk = 0; kk < kTile / 16; ++kk) {
          const float2 a01 = *reinterpret_cast<const float2*>(c1 + col(2 * kk));
          const float2 a89 = *reinterpret_cast<const float2*>(c1 + col(2 * kk + 1));
          uint32_t pa[4];
          pa[0] = Mma<bf16>::pack(s[2 * kk][0] * a01.x, s[2 * kk][1] * a01.y);
          pa[1] = Mma<bf16>::pack(s[2 * kk][2] * a01.x, s[2 * kk][3] * a01.y);
          pa[2] = Mma<bf16>::pack(s[2 * kk + 1][0] * a89.x, s[2 * kk + 1][1] * a89.y);
          pa[3] = Mma<bf16>::pack(s[2 * kk + 1][2] * a89.x, s[2 * kk + 1][3] * a89.y);
#pragma unroll
          for (int dp = 0; dp < D / 16; ++dp) {
            uint32_t bf[4];
            load_b_kn<D>(bf, s_do(buf), kk * 16, dp * 16, lane);
            Mma<bf16>::run(dv[2 * dp], pa, bf[0], bf[1]);
            Mma<bf16>::run(dv[2 * dp + 1], pa, bf[2], bf[3]);
          }
        }
        // dP^T = V dO^T, then dS^T = P^T (c1 dP^T - c2) in place.
        mma_a_nk<bf16, D, kTile>(dpt, s_v, wwarp * 16, s_do(buf), lane);
#pragma unroll
        for (int n = 0; n < kTile / 8; ++n) {
          const float2 a = *reinterpret_cast<const float2*>(c1 + col(n));
          const float2 b = *reinterpret_cast<const float2*>(c2 + col(n));
#pragma unroll
          for (int e = 0; e < 4; ++e)
            s[n][e] *= (e & 1) ? fmaf(a.y, dpt[n][e], -b.y) : fmaf(a.x, dpt[n][e], -b.x);
        }
        // dK += dS^T Q.
        mma_acc_kn<bf16, D, kTile>(dk, s, s_q(buf), lane);
      }
    }
    cp_async_wait<0>();
    __syncthreads();  // every warp is done with both buffers before the next list is staged
  }
  cp_async_wait<0>();  // the K/V copies, where no list had a tile
  // Note [staged dK/dV]
  // A key block's dK and dV rows are added to the f32 accumulators through shared memory (free
  // once the last list's barrier has passed): each warp writes its fragments there, then every
  // thread of the warpgroup moves whole 16-byte pieces, all of its loads in flight before its
  // adds and stores; dK for both key blocks first, then dV (both at once would not fit). From
  // the fragments directly, each thread read and wrote 64 float2 pieces with the 128
  // accumulator registers still live, so its loads went out a few at a time (Nsight Compute at
  // 64K GQA 1: ~16% of the pass's stall samples on those adds). Rows are D + 8 floats apart, so
  // that a warp's float2 writes of eight rows fall in distinct banks. Same arithmetic (dK by
  // fmaf with 1/sqrt(D), dV added), same bits. H200, against the fragments' read-modify-writes
  // in one call (one key block per block; dK/dV stage ms; forward-stages, session 20, call 6):
  // 64K GQA 1 4.829 -> 4.197, GQA 8 3.727 -> 3.610; 1M GQA 1 248.0 -> 237.6, GQA 8 333.1 ->
  // 328.0. The mma.sync kernel no longer spills at D = 128.
  constexpr int kStride = D + 8, kVec = kBN * D / 4 / kThreads;
  static_assert(kDkvGroups * kBN * kStride * 4 <= (2 * kDkvGroups + 4) * int(kTileBytes),
                "the staging fits the tiles' space");
  float* srows = reinterpret_cast<float*>(smem) + grp * kBN * kStride;
  const float scale = rsqrtf(float(D));
  const int rows = min(kBN, int(p.Lkv - k0));
  const int64_t acc_row0 = (int64_t(kDkvGroups) * blockIdx.x + grp) * kBN;
#pragma unroll
  for (int pass = 0; pass < 2; ++pass) {
    __syncthreads();  // the space is free: the loop's buffers, or the previous pass's rows
    if (any) {
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int r = krow + 8 * j;
#pragma unroll
        for (int n = 0; n < D / 8; ++n) {
          const int c = n * 8 + 2 * (lane & 3);
          *reinterpret_cast<float2*>(srows + r * kStride + c) =
              pass == 0 ? make_float2(dk[n][2 * j], dk[n][2 * j + 1])
                        : make_float2(dv[n][2 * j], dv[n][2 * j + 1]);
        }
      }
    }
    __syncthreads();
    // Note [first writer stores]: with `store` a key block no tile reached gets 0.
    if (!own.has || (!any && !store)) continue;
    float* acc = (pass == 0 ? dk_acc : dv_acc) + acc_row0 * D;
    float4 x[kVec];
#pragma unroll
    for (int m = 0; m < kVec; ++m) {
      const int i = lt + m * kThreads, r = i / (D / 4), c = (i % (D / 4)) * 4;
      // Note [first writer stores]: 0 + x, the bits a cleared accumulator gave.
      x[m] = make_float4(0.f, 0.f, 0.f, 0.f);
      if (r < rows && !store) x[m] = *reinterpret_cast<const float4*>(acc + r * D + c);
    }
#pragma unroll
    for (int m = 0; m < kVec; ++m) {
      const int i = lt + m * kThreads, r = i / (D / 4), c = (i % (D / 4)) * 4;
      if (r >= rows) continue;
      if (any) {
        const float4 v = *reinterpret_cast<const float4*>(srows + r * kStride + c);
        if (pass == 0) {
          x[m].x = fmaf(v.x, scale, x[m].x), x[m].y = fmaf(v.y, scale, x[m].y);
          x[m].z = fmaf(v.z, scale, x[m].z), x[m].w = fmaf(v.w, scale, x[m].w);
        } else {
          x[m].x += v.x, x[m].y += v.y, x[m].z += v.z, x[m].w += v.w;
        }
      }
      *reinterpret_cast<float4*>(acc + r * D + c) = x[m];
    }
  }
}

}  // namespace

void bwd_slot_table(const SpanArgs& a, int64_t n_tiles, const float* g, const float* y,
                    int64_t y_v0, const SlotTable& st, cudaStream_t s) {
  static_assert(256 % kTile == 0 && kTile == 64, "slot_table_kernel: whole tiles per block");
  slot_table_kernel<<<blocks_for(n_tiles * kTile), 256, 0, s>>>(a, g, y, y_v0, n_tiles, st);
  SL_CUDA_LAUNCH_CHECK();
}

namespace {
template <int D, bool kDq>
void launch_tiles(const SpanArgs& a, const SlotTable& st, const uint16_t* dout, int64_t n_tiles,
                  float* ys, float* dq_pair, cudaStream_t s) {
  int device = 0;
  SL_CUDA_CHECK(cudaGetDevice(&device));
  if (span_wgmma_enabled(device)) {
    constexpr int smem = 1024 + (2 + 2 * bwd_tile_stages(kDq)) * kTile * D * 2;
    SL_CUDA_CHECK(cudaFuncSetAttribute(span_tile_bwd_wgmma_kernel<D, kDq>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    span_tile_bwd_wgmma_kernel<D, kDq>
        <<<unsigned(n_tiles), kThreads, smem, s>>>(a, st, dout, ys, dq_pair);
    SL_CUDA_LAUNCH_CHECK();
    return;
  }
  constexpr int smem = tile_smem_bytes<D>();
  SL_CUDA_CHECK(cudaFuncSetAttribute(span_tile_bwd_kernel<D, kDq>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  span_tile_bwd_kernel<D, kDq><<<unsigned(n_tiles), kThreads, smem, s>>>(a, st, dout, ys, dq_pair);
  SL_CUDA_LAUNCH_CHECK();
}
template <int D>
void launch_dkv(const SpanArgs& a, const SlotTable& st, const uint16_t* dout, int64_t n_tiles,
                int max_nb, int64_t bg0, int64_t y0, int64_t n_y, float* dk_acc, float* dv_acc,
                bool store, cudaStream_t s) {
  int device = 0;
  SL_CUDA_CHECK(cudaGetDevice(&device));
  const bool wgmma = span_wgmma_enabled(device);
  SL_CHECK(n_tiles < (int64_t(1) << 30))
      << "dK/dV pass: " << n_tiles << " tiles in a chunk; its tile lists hold 30 bits";
  // Note [dK/dV block pairs]: two key blocks per block on wgmma from kDkvPairsMinKeys keys on.
  const char* env = std::getenv("SL_DKV_PAIRS");
  const bool pairs =
      wgmma && (env != nullptr && (env[0] == '0' || env[0] == '1') ? env[0] == '1'
                                                                   : a.p.Lkv >= kDkvPairsMinKeys);
  const int groups = pairs ? 2 : 1;
  auto kernel = pairs   ? span_dkv_kernel<D, true, 2>
                : wgmma ? span_dkv_kernel<D, true, 1>
                        : span_dkv_kernel<D, false, 1>;
  const int smem = (pairs ? dkv_smem_bytes<D, 2>() : dkv_smem_bytes<D, 1>()) + (wgmma ? 1024 : 0);
  SL_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  const int64_t blocks = (n_y + groups - 1) / groups;
  kernel<<<unsigned(blocks), unsigned(groups * kThreads), smem, s>>>(
      a, st, dout, n_tiles, max_nb, bg0, y0, n_y, dk_acc, dv_acc, store);
  SL_CUDA_LAUNCH_CHECK();
}
}  // namespace

void bwd_y_tiles(const SpanArgs& a, const SlotTable& st, const uint16_t* dout, int64_t n_tiles,
                 float* ys, cudaStream_t s) {
  if (a.p.D == 64) return launch_tiles<64, false>(a, st, dout, n_tiles, ys, nullptr, s);
  launch_tiles<128, false>(a, st, dout, n_tiles, ys, nullptr, s);
}
void bwd_dq_tiles(const SpanArgs& a, const SlotTable& st, const uint16_t* dout, int64_t n_tiles,
                  float* dq_pair, cudaStream_t s) {
  if (a.p.D == 64) return launch_tiles<64, true>(a, st, dout, n_tiles, nullptr, dq_pair, s);
  launch_tiles<128, true>(a, st, dout, n_tiles, nullptr, dq_pair, s);
}
void bwd_dkv(const SpanArgs& a, const SlotTable& st, const uint16_t* dout, int64_t n_tiles,
             int max_nb, int64_t bg0, int64_t y0, int64_t n_y, float* dk_acc, float* dv_acc,
             bool store, cudaStream_t s) {
  if (a.p.D == 64)
    return launch_dkv<64>(a, st, dout, n_tiles, max_nb, bg0, y0, n_y, dk_acc, dv_acc, store, s);
  launch_dkv<128>(a, st, dout, n_tiles, max_nb, bg0, y0, n_y, dk_acc, dv_acc, store, s);
}

}  // namespace sl::kernels::slcuda
