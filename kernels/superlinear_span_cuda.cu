// Tensor-core forward of superlinear attention (spec §13) for bf16 and D in {64, 128}:
//
//   1. search: anchors and gate scores of every query (kernels/superlinear_cuda.cu, search only);
//   2. window: banded flash attention once per query (kernels/attention.h with sliding_window W,
//      doc_start = doc_starts), giving O_w and lse_w;
//   3. spans, bucketed (Note [span buckets]): every kept (query, span) pair gets a footprint key,
//      pairs are bucketed by it (a count, a prefix sum and a scatter: Note [forward tile
//      build]), runs of equal first block are cut into tiles of 64 pairs, and one block per tile
//      runs the flash forward's Q K^T / P V over the tile's key blocks with each pair's own bounds,
//      writing the pair's normalised output and lse;
//   4. merge: per query, the spec §8 LSE merge of window and each span, then the gate.
//
// Note [span buckets]
// A span [st, en] covers key blocks kb0 = st / 64 .. en / 64 (nb blocks). Pairs with the same
// (batch, KV head, kb0) read the same K/V blocks from kb0 on, so 64 of them form a dense tile
// over the largest nb among them, masked only where a pair's span starts or ends inside a block
// (a pair with one block fewer than the tile's sees that block fully masked). The key is
// ((b * Hkv + g) * kb_stride + kb0) << 8 | (nb - 1), so within a run the block counts ascend;
// empty slots get the all-ones key and sort last. Cutting runs by kb0 alone rather than by
// (kb0, nb) keeps tiles full where few pairs share a block (at 128K, GQA 1, balanced: ~96 pairs
// per (kb0, nb) run, i.e. ~25% of tile rows empty, estimated): a span's start offset in its block
// gives only 2 block counts per kb0 (a few where lengths vary with documents or f_f), so a pair
// spends at most about one masked block per tile.
// Query heads of a GQA group share K/V, so their pairs share tiles.
//
// Note [wide runs]
// At long lengths a chunk's pairs spread over many first blocks: at 1M, GQA 8, the forward's
// 0.8M-pair chunks leave about 50 pairs per (KV head, kb0), so a run of one first block fills
// one partial tile. A run therefore takes the pairs of 8 consecutive first blocks (kb0 >> 3
// equal; SL_SPAN_RUN_BLOCKS = 1, 2 or 4 narrows it): a tile starts at its first pair's block and
// ends at the last block any of its pairs reaches, and a pair that starts later sees the blocks
// before its own fully masked. Sorted by (kb0, nb), a tile mixes first blocks only where a
// block has fewer pairs than a tile, so dense runs lose nothing. The keys' group stride
// kb_stride is n_kb rounded up to a multiple of 8, so a run never mixes two groups. Measured
// (H200, balanced, D = 128, 16 heads; fwd / bwd ms at run widths 1, 2, 4, 8):
//   1M GQA 8: 289 / 590, 265 / 565, 254 / 551, 253 / 540;
//   1M GQA 1: 944 / 603, 934 / 567, 922 / 550, 923 / 540;
//   256K GQA 8: 41.3 / 75.7, 40.1 / 74.9, 39.8 / 73.3, 39.0 / 73.6;
//   64K GQA 8: 6.78 / 11.10, 6.66 / 11.05, 6.72 / 11.07, 6.64 / 10.97.
//
// Memory: pairs are processed in chunks of query rows (Note [span chunks] in
// kernels/superlinear_span_cuda.cuh), so the per-pair buffers (output rows in bf16, keys and
// records) are bounded independently of L (Note [span memory] in the README's superlinear
// section). The outputs are deterministic: a pair's output does not depend on where the
// bucketing puts it (Note [forward tile build]), each pair is computed by one block, the merge
// sums in slot order. No host read: the tile launch is sized by a bound on the chunk's tiles
// (Note [tile count]).
#include <cstdio>
#include <cstdlib>

#include "kernels/superlinear_span_cuda.cuh"

namespace sl::kernels::slcuda {
namespace {

using namespace attn;

// Q, K[2], V: three blocks of 4 warps per SM (Note [span tile occupancy]).
template <int D>
constexpr int span_smem_bytes() {
  return (kTile + 3 * kBN) * D * 2 + kTile * int(sizeof(int2)) + kTile * 4;
}

// Note [span tile occupancy]
// Nsight Compute found this kernel latency-bound at two 4-warp blocks per SM, held there by both
// registers (186) and shared memory (Q, K[2], V[2]: 80 KB at D = 128). Three blocks per SM: at
// most 168 registers (__launch_bounds__; ptxas: 167, no spills) and one V buffer (64 KB). K[kb+1]
// still loads during block kb's scores; V[kb+1] loads once every warp is done with V[kb], behind
// a second barrier, and the other blocks on the SM cover its wait. H200: the forward at 1M GQA 8
// went from 405 to 379 ms, at 64K GQA 8 from 8.56 to 7.91 ms.

// This block's tile (blockIdx.x) from the forward's build (Note [forward tile build]): its
// pairs' local ids (-1 for padding rows) and spans, and with kRows each pair's Q row into srow,
// in shared memory, and its footprint into fp; false past the chunk's tiles (Note [tile count]:
// those blocks return at once, and a bound below the count, which would drop tiles, stops the
// kernel with an error). The tile's entries are read with the count, before it is checked (the
// tile arrays hold the launch's bound, so the reads stay inside them): one round trip, then the
// records. Every thread calls it; it ends with a barrier when it returns true.
template <bool kRows>
__device__ __forceinline__ bool stage_tile_pairs(const SpanArgs& a, int32_t* slp, int2* sbound,
                                                 int64_t* srow, Footprint& fp) {
  const int32_t count = *a.tile_count;
  const int64_t s0 = a.tile_start[blockIdx.x];
  const uint64_t key = a.tile_key[blockIdx.x];
  const int rows = a.tile_nrows[blockIdx.x];
  if (count > int(gridDim.x)) __trap();
  if (int(blockIdx.x) >= count) return false;
  fp = footprint(key, a.kb_stride);
  const int64_t row0 = a.p0 / a.p.cfg.k;
  for (int r = int(threadIdx.x); r < kTile; r += kThreads) {
    const int4 rec = r < rows ? a.recs[s0 + r] : make_int4(-1, 1, 0, 0);
    slp[r] = rec.x;
    sbound[r] = make_int2(rec.y, rec.z);
    if constexpr (kRows) srow[r] = rec.x >= 0 ? row0 + rec.w : -1;
  }
  __syncthreads();
  return true;
}

// Note [lazy rescale]
// The online softmax keeps P = 2^(s - m) with m a running max, and rescales the sum and the
// output rows (64 multiplies per thread at D = 128) whenever m moves. With m moved only when a
// block's max exceeds it by more than kLazyMax = 8 (log2 units), P stays below 2^8: bf16 holds
// it with the same relative precision and the f32 sum and output cannot overflow, and the lse
// (m + log2 l) and the normalised output are the same quantities. After a span's first blocks
// the max rarely moves that far, so a warp (whose 32 rows must all agree) skips the rescale
// of most blocks; before, any move of any row's max made the warp rescale, which on random
// scores is nearly every block of a span. (FlashAttention-4's rescale threshold, the same idea.)
constexpr float kLazyMax = 8.f;

// One key block of a tile's online softmax (the flash forward's, per pair): scores s (this
// thread's two rows, k0 .. k0 + 63) outside each pair's span [lo, hi] are masked, the running
// max m and sum l advance, o is rescaled where a max moved (Note [lazy rescale]), and s becomes
// P (unnormalised).
template <int D>
__device__ __forceinline__ void span_softmax_block(float (&s)[kBN / 8][4], float (&o)[D / 8][4],
                                                   float (&m)[2], float (&l)[2], const int (&lo)[2],
                                                   const int (&hi)[2], int k0, float sl2,
                                                   int lane) {
  mask_outside_spans(s, lo, hi, k0, lane, -INFINITY);  // Note [range mask]
  float alpha[2];
#pragma unroll
  for (int j = 0; j < 2; ++j) {
    float mx = -INFINITY;
#pragma unroll
    for (int n = 0; n < kBN / 8; ++n) mx = fmaxf(mx, fmaxf(s[n][2 * j], s[n][2 * j + 1]));
    mx = quad_max(mx) * sl2;
    // Note [lazy rescale]: the running max moves only when the block's exceeds it by more than
    // kLazyMax (or from -inf, where o and l are still zero: no rescale either).
    const bool move = mx > m[j] + kLazyMax;
    alpha[j] = move && m[j] != -INFINITY ? fast_exp2(m[j] - mx) : 1.f;
    if (move) m[j] = mx;
    const float base = m[j] == -INFINITY ? 0.f : m[j];
    float sum = 0.f;
#pragma unroll
    for (int n = 0; n < kBN / 8; ++n) {
      s[n][2 * j] = fast_exp2(fmaf(s[n][2 * j], sl2, -base));
      s[n][2 * j + 1] = fast_exp2(fmaf(s[n][2 * j + 1], sl2, -base));
      sum += s[n][2 * j] + s[n][2 * j + 1];
    }
    l[j] = l[j] * alpha[j] + sum;
  }
  if (!__all_sync(0xffffffffu, alpha[0] == 1.f && alpha[1] == 1.f)) {
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      o[n][0] *= alpha[0];
      o[n][1] *= alpha[0];
      o[n][2] *= alpha[1];
      o[n][3] *= alpha[1];
    }
  }
}

// Note [staged outputs]
// A tile's results: each real pair's normalised output row (bf16, os[lp]) and its lse. Stored
// from the accumulator layout directly, each row went out as 4-byte pieces: 32 stores per
// thread, each warp store touching 16 bytes of 8 rows. Instead a warp packs its 16 rows into a
// scratch of D * 32 bytes in shared memory first (chunk c of row r at chunk c ^ (r % 8): the
// 4-byte writes of a store instruction fall in 32 distinct banks) and then writes whole rows, 16
// bytes per lane (two 256-byte rows per store instruction at D = 128). The scratch is the
// tile's Q tile, free once every warp's last product is done (a block barrier: the wgmma
// kernel's warpgroup reads every row of Q); each warp takes its own quarter and reads only that,
// so a warp barrier orders its writes and reads. H200, one call
// (experiments/results/2026-11-29-h200-forward-stages.md, session 19, call 3): tiles at 64K 1.957
// -> 1.742 ms (GQA 1) and 1.781 -> 1.557 (GQA 8), at 1M 90.2 -> 90.0 and 99.0 -> 95.7; the forward
// at 64K 4.95 -> 4.73 ms (GQA 1) and 3.535 -> 3.32 (GQA 8). Both tile kernels use it.
template <int D>
__device__ __forceinline__ void write_span_outputs(const float (&o)[D / 8][4], const float (&m)[2],
                                                   const float (&l)[2], const int32_t* slp,
                                                   const SpanArgs& a, uint16_t* os, uint32_t sq,
                                                   int lane) {
  constexpr int kRowBytes = D * 2, kChunks = D / 8;
  const int warp = int(threadIdx.x) >> 5;
  const uint32_t scratch = sq + uint32_t(warp * 16 * kRowBytes);  // this warp's quarter of Q
  __syncthreads();  // every warp's last products are done with Q (the block's wgmma read all rows)
#pragma unroll
  for (int j = 0; j < 2; ++j) {
    const float lj = quad_sum(l[j]);
    const int r = (lane >> 2) + 8 * j;
    const float inv = lj > 0.f ? 1.f / lj : 0.f;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      const uint32_t at = scratch + uint32_t(r * kRowBytes + ((n ^ (r & 7)) << 4) + 4 * (lane & 3));
      const uint32_t v = Mma<bf16>::pack(o[n][2 * j] * inv, o[n][2 * j + 1] * inv);
      asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(at), "r"(v));
    }
    const int32_t lp = slp[warp * 16 + r];
    if ((lane & 3) == 0 && lp >= 0)
      static_cast<float*>(a.p.lse_s)[a.p0 + lp] =
          lj > 0.f ? (m[j] + __log2f(lj)) * 0.6931471805599453f : -INFINITY;
  }
  __syncwarp();
  constexpr int kRowsPerStore = 32 / kChunks;
#pragma unroll
  for (int i = 0; i < 16 / kRowsPerStore; ++i) {
    const int r = i * kRowsPerStore + lane / kChunks, c = lane % kChunks;
    const int32_t lp = slp[warp * 16 + r];
    uint4 v;
    asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "r"(scratch + uint32_t(r * kRowBytes + ((c ^ (r & 7)) << 4))));
    if (lp >= 0) *reinterpret_cast<uint4*>(os + int64_t(lp) * D + c * 8) = v;
  }
}

// One tile: up to 64 pairs with one footprint; warp w owns pairs 16 w .. 16 w + 15.
template <int D>
__global__ void __launch_bounds__(kThreads, 3) span_tile_kernel(SpanArgs a, uint16_t* os) {
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t sq = smem_addr(smem);
  auto sk = [&](int st) { return sq + uint32_t((kTile + st * kBN) * D * 2); };
  const uint32_t sv = sq + uint32_t((kTile + 2 * kBN) * D * 2);
  int2* sbound = reinterpret_cast<int2*>(smem + (kTile + 3 * kBN) * D * 2);
  int32_t* slp = reinterpret_cast<int32_t*>(sbound + kTile);

  const SuperlinearParams& p = a.p;
  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;
  Footprint fp;
  if (!stage_tile_pairs<false>(a, slp, sbound, nullptr, fp)) return;
  const int kb0 = fp.kb0, nb = fp.nb;
  const int64_t bg = fp.bg;

  // Gathered Q rows: pair lp reads qa[row of (p0 + lp)].
  const uint16_t* qa = static_cast<const uint16_t*>(p.qa);
  for (int c = int(threadIdx.x); c < kTile * (D / 8); c += kThreads) {
    const int r = c / (D / 8), chunk = c % (D / 8);
    const int32_t lp = slp[r];
    const uint16_t* src = qa + (lp >= 0 ? ((a.p0 + lp) / p.cfg.k) * D + chunk * 8 : 0);
    cp_async16(sq + tile_offset<D>(r, chunk), src, lp >= 0);
  }
  const uint16_t* kbase = static_cast<const uint16_t*>(p.k) + bg * p.Lkv * D;
  const uint16_t* vbase = static_cast<const uint16_t*>(p.v) + bg * p.Lkv * D;
  load_tile<kBN, D, kThreads>(sk(0), kbase + int64_t(kb0) * kBN * D, D, int(p.Lkv) - kb0 * kBN);
  load_tile<kBN, D, kThreads>(sv, vbase + int64_t(kb0) * kBN * D, D, int(p.Lkv) - kb0 * kBN);
  cp_async_commit();

  int lo[2], hi[2];
#pragma unroll
  for (int j = 0; j < 2; ++j) {
    const int2 bd = sbound[warp * 16 + (lane >> 2) + 8 * j];
    lo[j] = bd.x;
    hi[j] = bd.y;
  }
  float o[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  const float sl2 = rsqrtf(float(D)) * kLog2e;

  for (int kb = kb0; kb < kb0 + nb; ++kb) {
    const int stage = (kb - kb0) & 1;
    cp_async_wait<0>();
    __syncthreads();
    const bool next = kb + 1 < kb0 + nb;
    const int nk = (kb + 1) * kBN;
    if (next) {
      load_tile<kBN, D, kThreads>(sk(stage ^ 1), kbase + int64_t(nk) * D, D, int(p.Lkv) - nk);
      cp_async_commit();
    }

    float s[kBN / 8][4];
    mma_a_nk<bf16, D, kBN>(s, sq, warp * 16, sk(stage), lane);
    span_softmax_block<D>(s, o, m, l, lo, hi, kb * kBN, sl2, lane);
    mma_acc_kn<bf16, D, kBN>(o, s, sv, lane);
    if (next) {
      __syncthreads();  // every warp is done with V[kb]
      load_tile<kBN, D, kThreads>(sv, vbase + int64_t(nk) * D, D, int(p.Lkv) - nk);
      cp_async_commit();
    }
  }
  cp_async_wait<0>();

  write_span_outputs<D>(o, m, l, slp, a, os, sq, lane);
}

// Note [wgmma span tiles]
// The same tile as span_tile_kernel on Hopper's warpgroup MMA (kernels/wgmma_cuda.cuh): the block's
// four warps are one warpgroup; S = Q K^T is eight m64n64k16 products with both operands read
// from shared memory, and O += P V four m64nDk16 products with P from registers (the m64
// accumulator layout is the m16n8k16 one per warp, so the masking, the online softmax and the
// bf16 packing are the mma.sync kernel's, line for line). Tiles are stored as 128-byte-swizzled
// column panels (Note [wgmma panels]), 1024-byte aligned, in the same 64 KB as Note [span tile
// occupancy] (three blocks per SM).
//
// Note [wgmma span pipeline]
// The K and V blocks rotate through three 16 KB slots (at D = 128): during key block kb, slot ks
// holds K[kb], vs holds V[kb] and the third is free. K[kb + 1] goes into the free slot while S =
// Q K[kb]^T is in flight, and V[kb + 1] into K[kb]'s slot while P V[kb] is (every warp's S is
// done by the barrier that also publishes V[kb] before P V; Note [loads under the products]).
// So K[kb + 1] and V[kb + 1] each have about an iteration to land, and each wait (cp.async
// groups, oldest first) names only the block it needs. The single-V-buffer order of the mma.sync
// kernel issued V[kb + 1] after P V[kb] and waited for it at the next iteration's top, which
// exposed its latency once per key block.
// Measured and dropped (H200, 64K GQA 8, forward 4.18-4.20 ms with tiles 2.08;
// experiments/results/2026-11-28-h200-90f81ea-span-tile-variants.md):
// - FA3's intra-warpgroup overlap (S of kb, then P V of kb - 1, the softmax under it). ptxas
//   serialises the wgmmas (C7520) while any warp-uniform branch (the mask's __all_sync, the
//   rescale's skip, a guarded load) runs under one in flight: it cannot see that a warp-uniform
//   branch is warpgroup-uniform. Without such branches (selects for the mask, an unconditional
//   rescale): 4.211 ms at three blocks per SM, 4.544 at two; at 1M, 228.9 and 236.3 against
//   223.9. Sampled by SASS line (Nsight Compute), the wait for P V that it hides holds 6% of
//   the tiles' stalls, and the wait for S, which it cannot hide, 5%; likely, three blocks per
//   SM already overlap one block's waits with the others' work.
// - Persistent blocks whose tile's last key block loads the next tile's records, Q, K and V
//   (9105167): tiles 2.00 ms, but building the records cost the sort stage 0.07 ms; at 1M no
//   gain in the tiles and 1.7 ms more sorting.
// - The proxy fence costs 2% (tiles 2.04 ms without it, which is not correct code).
// - The softmax's row max and sum as trees of depth 4: tiles unchanged (2.065 ms).
// Selected at run time on compute capability 9.x when the build has sm_90a code
// (span_wgmma_enabled()); SL_SPAN_WGMMA=0 selects the mma.sync kernel (a testing knob).
//
// Note [loads under the products]
// The tile's next K and V blocks are loaded while a product is in flight (between its commit and
// its wait), so that issuing them leaves the chain S, softmax, P V of each key block. ptxas
// serialises the wgmmas (C7520) if a branch runs under one in flight, so this load has none:
// every copy is predicated in the instruction (`issue`: false on the tile's last key block) and
// rows at or past `valid` are zero-filled. Before, each load was issued after its barrier and
// ahead of its product. H200, one call (experiments/results/2026-11-29-h200-forward-stages.md,
// session 19): tiles at 64K 1.988 -> 1.956 ms (GQA 1) and 1.795 -> 1.781 (GQA 8), at 1M 95.5 ->
// 94.4 and 104.2 -> 101.8; 158 registers (147 before), still three blocks per SM.
template <int D>
__device__ __forceinline__ void load_panel_flight(uint32_t smem, const uint16_t* base, bool issue,
                                                  int valid) {
  constexpr int kChunks = D / 8, kStep = kThreads / kChunks;
  const int row0 = int(threadIdx.x) / kChunks, chunk = int(threadIdx.x) % kChunks;
  const uint32_t dst = smem + panel_offset<kBN>(row0, chunk);
  const uint16_t* src = base + row0 * D + chunk * 8;
#pragma unroll
  for (int j = 0; j < kBN / kStep; ++j) {
    const bool ok = row0 + j * kStep < valid;
    cp_async16_if(dst + uint32_t(j * kStep * 128), ok ? src + j * kStep * D : base, ok ? 16 : 0,
                  issue);
  }
}

template <int D>
constexpr int span_wgmma_smem_bytes() {
  return 1024 + (kTile + 3 * kBN) * D * 2 + kTile * (int(sizeof(int2)) + 4 + 8);
}

template <int D>
__global__ void __launch_bounds__(kThreads, 3) span_tile_wgmma_kernel(SpanArgs a, uint16_t* os) {
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  unsigned char* smem = smem_raw + ((1024 - smem_addr(smem_raw) % 1024) % 1024);
  constexpr uint32_t kTileBytes = kTile * D * 2;  // kTile == kBN
  const uint32_t sq = smem_addr(smem);
  auto slot = [&](int i) { return sq + uint32_t((1 + i) * kTileBytes); };
  // Descriptors (Note [wgmma panels]): Q K-major; a slot K-major (K) or MN-major (V).
  const wg::Desc dq = wg::desc(sq, 16, 1024);
  auto dslot = [&](int i, uint32_t leading) {
    wg::Desc d = wg::desc(sq, leading, 1024);
    d.lo += (1 + i) * (kTileBytes >> 4);
    return d;
  };
  int2* sbound = reinterpret_cast<int2*>(smem + 4 * kTileBytes);
  int32_t* slp = reinterpret_cast<int32_t*>(sbound + kTile);
  int64_t* srow = reinterpret_cast<int64_t*>(slp + kTile);  // pair's Q row, once per pair

  const SuperlinearParams& p = a.p;
  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;
  Footprint fp;
  if (!stage_tile_pairs<true>(a, slp, sbound, srow, fp)) return;
  const int kb0 = fp.kb0, nb = fp.nb;
  const int64_t bg = fp.bg;

  // Gathered Q rows (pair lp reads qa[row of (p0 + lp)]): rows r0 + j * step, chunk c.
  {
    constexpr int kChunks = D / 8, kStep = kThreads / kChunks;
    const int r0 = int(threadIdx.x) / kChunks, c = int(threadIdx.x) % kChunks;
    const uint16_t* qa = static_cast<const uint16_t*>(p.qa);
#pragma unroll
    for (int j = 0; j < kTile / kStep; ++j) {
      const int64_t row = srow[r0 + j * kStep];
      const uint16_t* src = qa + (row >= 0 ? row * D + c * 8 : 0);
      cp_async16(sq + panel_offset<kTile>(r0, c) + uint32_t(j * kStep * 128), src, row >= 0);
    }
  }
  const uint16_t* kbase = static_cast<const uint16_t*>(p.k) + bg * p.Lkv * D;
  const uint16_t* vbase = static_cast<const uint16_t*>(p.v) + bg * p.Lkv * D;
  // Note [wgmma span pipeline]: K[kb] in slot ks, V[kb] in slot vs, the third slot free.
  int ks = 0, vs = 1, fs = 2;
  load_tile<kBN, D, kThreads, true>(slot(ks), kbase + int64_t(kb0) * kBN * D, D,
                                    int(p.Lkv) - kb0 * kBN);
  cp_async_commit();
  load_tile<kBN, D, kThreads, true>(slot(vs), vbase + int64_t(kb0) * kBN * D, D,
                                    int(p.Lkv) - kb0 * kBN);
  cp_async_commit();

  int lo[2], hi[2];
#pragma unroll
  for (int j = 0; j < 2; ++j) {
    const int2 bd = sbound[warp * 16 + (lane >> 2) + 8 * j];
    lo[j] = bd.x;
    hi[j] = bd.y;
  }
  float o[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  const float sl2 = rsqrtf(float(D)) * kLog2e;

  for (int kb = kb0; kb < kb0 + nb; ++kb) {
    cp_async_wait<1>();  // Q and K[kb]; V[kb] may still be in flight
    wg::fence_proxy_async();
    __syncthreads();  // K[kb] visible; every warp is done with the free slot (V[kb - 1])
    const bool next = kb + 1 < kb0 + nb;
    const int nk = (kb + 1) * kBN;

    float s[kBN / 8][4];
    wg::fence();
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk)
      wg::mma_ss_n64(s, wg::step_k<kTile>(dq, kk), wg::step_k<kBN>(dslot(ks, 16), kk), kk > 0);
    wg::commit();
    // Note [loads under the products]: K[kb + 1] into the free slot while S is in flight.
    load_panel_flight<D>(slot(fs), kbase + int64_t(nk) * D, next, int(p.Lkv) - nk);
    cp_async_commit();
    wg::wait<0>();
    wg::fence_regs(s);

    span_softmax_block<D>(s, o, m, l, lo, hi, kb * kBN, sl2, lane);
    uint32_t pa[kBN / 16][4];
#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk) {
      pa[kk][0] = Mma<bf16>::pack(s[2 * kk][0], s[2 * kk][1]);
      pa[kk][1] = Mma<bf16>::pack(s[2 * kk][2], s[2 * kk][3]);
      pa[kk][2] = Mma<bf16>::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      pa[kk][3] = Mma<bf16>::pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
    }
    cp_async_wait<1>();  // V[kb]; K[kb + 1] may still be in flight
    wg::fence_proxy_async();
    __syncthreads();  // V[kb] visible; every warp is done with K[kb]
    wg::fence();
#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk)
      wg::mma_rs<D>(o, pa[kk], wg::step_mn(dslot(vs, kBN * 128), kk));
    wg::commit();
    // V[kb + 1] into K[kb]'s slot while P V is in flight.
    load_panel_flight<D>(slot(ks), vbase + int64_t(nk) * D, next, int(p.Lkv) - nk);
    cp_async_commit();
    wg::wait<0>();
    wg::fence_regs(o);
    const int freed = vs;
    vs = ks, ks = fs, fs = freed;
  }
  cp_async_wait<0>();

  write_span_outputs<D>(o, m, l, slp, a, os, sq, lane);
}

// Merge (spec §8) in two kernels.
//
// Note [merge weights]
// The merge moves about 16 GB at 1M tokens and 16 heads (k span rows of the chunk's buffer in,
// one output row out, per query row). With one warp per row, all 32 lanes also repeated the
// row's scalar work (row geometry by 64-bit division, gate softmax, LSE terms, their exps), and
// the merge ran at about 1 TB/s (17 ms at 1M GQA 8). Now merge_weights_kernel computes each
// slot's three weights once per row (one thread per row, into a per-chunk buffer), and
// merge_kernel streams: D / 8 threads per row, 16 bytes of each span row per thread, the same
// arithmetic per element as before: out += g (ww O_w + wj O_j).
// Measured and dropped: one kernel whose blocks' first threads compute the block's rows' weights
// into shared memory (no buffer, one launch less). Every block's streaming threads then wait for
// that scalar work: the merge went from 0.47 to 0.55 ms at 64K GQA 8 and from 7.5 to 9.0 ms at
// 1M (H200).
// Nor did loading every slot's weights and span row before the arithmetic (all of a row's loads
// in flight at once) help: 0.475 against 0.47-0.48 ms at 64K GQA 8 (8219aeb, reverted).
// Two more (experiments/attic/merge-in-tiles.patch; H200, 64K GQA 8, forward 4.21 ms with the
// two kernels):
// - every thread of a row computing the row's weights itself (one kernel, 80 registers): 4.38;
// - the merge in the tiles: the block that finishes a row's last pair (an atomic count per row)
//   merges it while the other pairs' rows are in L2. The outputs were right and the same bits,
//   but the fence, the atomic and the dependent reads at the end of every tile doubled the
//   tiles (2.05 -> 4.35 ms at GQA 1): 5.83 ms.

// Per slot j of each row x of the chunk: (g_j, ww_j, wj_j) at w[(3 j + c) rows + x], c = 0, 1, 2
// (one array per term and slot, so that each store of a warp is contiguous), zeros where the
// slot has nothing to add (lam = -inf); wj_j = 0 also where the slot is empty, so its row is not
// read. Empty slots get lse_s = -inf.
// Measured: with the three terms of a slot side by side (w[3 (x k + j) + c]), each of a warp's
// nine stores touched 36 sectors, and the kernel took 94 us of a 2M-pair chunk at 64K GQA 8
// (H200, Nsight Compute: memory 81% busy, DRAM 8%); with this layout the merge stage at 64K GQA
// 8 went from 0.50 to 0.39 ms.
__global__ void merge_weights_kernel(SpanArgs a, int64_t row0, int64_t rows, float* w) {
  const int64_t x = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (x >= rows) return;
  const SuperlinearParams& p = a.p;
  const int64_t row = row0 + x;
  const int k = p.cfg.k;
  const float lse_w = static_cast<const float*>(p.lse_w)[row];
  float g[kMaxK];
  int32_t an[kMaxK];
  row_gate(p, row, an, g);
  float* lse_s = static_cast<float*>(p.lse_s) + row * k;
#pragma unroll
  for (int j = 0; j < kMaxK; ++j) {
    if (j >= k) continue;
    float lj = -INFINITY;
    if (an[j] >= 0)
      lj = lse_s[j];
    else
      lse_s[j] = -INFINITY;
    const float lam = logaddexp(lse_w, lj);
    float* wj = w + 3 * j * rows + x;
    const bool none = lam == -INFINITY;
    wj[0] = none ? 0.f : g[j];
    wj[rows] = none || lse_w == -INFINITY ? 0.f : expf(lse_w - lam);
    wj[2 * rows] = none || an[j] < 0 ? 0.f : expf(lj - lam);
  }
}

// out[row] = sum_j g_j (ww_j O_w + wj_j O_j) for the chunk's rows: D / 8 threads per row, eight
// elements (16 bytes) each.
template <int D>
__global__ void merge_kernel(SpanArgs a, const float* w, const uint16_t* os, const uint16_t* ow,
                             int64_t row0, int64_t rows) {
  constexpr int T = D / 8;
  const int64_t x = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (x >= rows * T) return;
  const SuperlinearParams& p = a.p;
  const int64_t lr = x / T, row = row0 + lr;
  const int d0 = int(x % T) * 8, k = p.cfg.k;
  float owv[8], out[8];
#pragma unroll
  for (int e = 0; e < 8; ++e) owv[e] = out[e] = 0.f;
  if (ow) {
    const Row r = locate_row(p, row);
    load_vec<bf16, 8>(
        reinterpret_cast<const bf16*>(ow) + ((r.b * p.Lq + r.i) * p.Hq + r.h) * D + d0, owv);
  }
  for (int j = 0; j < k; ++j) {
    const float* c = w + 3 * j * rows + lr;
    const float g = c[0], ww = c[rows], wj = c[2 * rows];
    float osv[8];
    if (wj != 0.f) {
      load_vec<bf16, 8>(reinterpret_cast<const bf16*>(os) + (row * k + j - a.p0) * D + d0, osv);
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) osv[e] = 0.f;
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) out[e] += g * (ww * owv[e] + wj * osv[e]);
  }
  uint4 v;
  v.x = Mma<bf16>::pack(out[0], out[1]);
  v.y = Mma<bf16>::pack(out[2], out[3]);
  v.z = Mma<bf16>::pack(out[4], out[5]);
  v.w = Mma<bf16>::pack(out[6], out[7]);
  *reinterpret_cast<uint4*>(static_cast<uint16_t*>(p.out) + row * D + d0) = v;
}

__global__ void fill_kernel(float* x, int64_t n, float v) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] = v;
}

// Note [forward tile build]
// The forward buckets a chunk's pairs by counting, not by a radix sort: a pair's bucket is its
// footprint key's (first block, block count), which the sort ordered anyway (or, in a chunk of
// few pairs, its first block alone: Note [sparse buckets]), and within a bucket the order does
// not matter. A pair's output and lse do not depend on the tile it lands
// in, nor on its row there: every row of a tile product is computed on its own, and a key block
// that is all masked for a pair (the tile's blocks before its span or after it) leaves its
// running max, sum and output as they were (or as the first block of its span sets them). The
// wide-runs and chunk tests compare such placements bit for bit. A bucket's pairs are all
// alike, so the tiles (where each starts, how many pairs, its footprint) do not depend on
// where within a bucket a pair lands either. Steps, per chunk:
//   1. pair_records_kernel: each pair's bucket (from its footprint key), its record (local id,
//      span, row), and a count per bucket (one atomic per bucket and warp: neighbouring
//      queries' spans share buckets) whose return is the pair's slot in its bucket;
//   2. an exclusive sum of the counts: each bucket's first position (the empty slots' bucket
//      last);
//   3. pair_scatter_kernel: each pair's record to its bucket's first position plus the slot
//      the count's atomic gave it in step 1;
//   4. per run of buckets (Note [wide runs]) its tiles, a sum over runs, the tile table (first
//      position and pairs per tile) and the tile keys from the sorted records.
// Measured (Nsight Compute, H200, 64K GQA 8, one chunk of 3.1M pairs): with the scatter taking
// its slots by a second round of atomics (which also brought the counts back to zero) and
// writing the sorted keys for the tile keys, the pair kernel took 95 us and the scatter 159.
// Then the pair kernel kept the slot its count returned (4 bytes per pair), the scatter moved
// one 16-byte record per pair, and the counts were cleared before each chunk: pair kernel 101
// us, scatter 87, tile keys (from the records, 8 bytes more per pair read) 23 against 16; the
// build stage 0.30 -> 0.27 ms. Since, the pair kernel keeps its pair's 4-byte bucket instead of
// the 8-byte key the scatter computed the bucket from again (build stage 0.24 ms as before). The
// order of a bucket's pairs changed (the slots now follow the pair kernel's atomics, not the
// scatter's): the tiles' time did not (an A/B on one card, forward at 64K and 1M GQA 8, within
// 0.5%). The tile kernels read a tile's records in one step (Note [tile records]). Against CUB's
// radix sort, scans and marks (13 kernels; SpanTiles, which the backward keeps: its dK/dV sums need
// a stable order), H200, one call each, 64K GQA 8: the build 0.36 -> 0.33 ms and the tiles 2.06
// -> 1.95 ms, forward 4.06 -> 3.98 ms; 1M GQA 8: forward 221.5 -> 219.9 ms. The build is less than
// its kernels' sum would say because most of it is launches: in a forward of several chunks the
// host queues a chunk's build while the previous chunk's tiles run.
//
// Note [tile records]
// A record carries what a tile needs of its pair, in sorted order: with a sorted index into
// unsorted bounds, a tile's start waited for the tile table, then the index, then the bounds,
// three dependent reads before its Q rows could load.

// Adds one per active lane to counts[bucket], one atomic per distinct bucket of the warp (a
// 32-bit match: the bucket indices fit, checked by ForwardTiles); returns the count before the
// lane's addition (the lanes of a bucket in lane order after the count the atomic returned).
__device__ __forceinline__ int32_t warp_count(int32_t* counts, int32_t bucket, bool active) {
  const unsigned act = __ballot_sync(0xffffffffu, active);
  if (!active) return 0;
  const int lane = lane_id();
  const unsigned peers = __match_any_sync(act, bucket);
  const int leader = __ffs(peers) - 1, n = __popc(peers);
  const int rank = __popc(peers & ((1u << lane) - 1));
  int32_t old = 0;
  if (lane == leader) old = atomicAdd(counts + bucket, n);
  return __shfl_sync(peers, old, leader) + rank;
}

// A key's bucket: bk * slots + nb - 1 (slots = max_nb: first block and block count), or bk alone
// (slots = 1: Note [sparse buckets]), bk = bg * kb_stride + kb0; empty slots (kEmptyKey) in the
// last, `empty`.
__device__ __forceinline__ int64_t key_bucket(uint64_t key, int slots, int64_t empty) {
  if (key == kEmptyKey) return empty;
  return int64_t(key >> 8) * slots + (slots > 1 ? int64_t(key & 255u) : 0);
}

// Each pair's record, bucket and place among its bucket's pairs (slot), and the buckets' counts.
__global__ void pair_records_kernel(SpanArgs a, int slots, int64_t empty, int4* recs,
                                    int32_t* bucket, int32_t* slot, int32_t* counts) {
  const int64_t lp = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const bool in = lp < a.n;
  uint64_t key = kEmptyKey;
  if (in) {
    const SuperlinearParams& p = a.p;
    const int64_t k = p.cfg.k, gp = a.p0 + lp, row = gp / k;
    const int32_t anchor = p.anchors[gp];
    int4 rec = make_int4(int(lp), 1, 0, int(row - a.p0 / k));
    if (anchor >= 0) {
      const Row r = locate_row(p, row);
      const int64_t st = span_start(p.cfg, anchor, r.t, r.sb);
      const int64_t en = span_end(p.cfg, anchor, r.t, r.sb);
      rec.y = int(st), rec.z = int(en);
      const int64_t kb0 = st / kBN, nb = en / kBN - kb0 + 1, g = r.h / (p.Hq / p.Hkv);
      key = (uint64_t((r.b * p.Hkv + g) * a.kb_stride + kb0) << 8) | uint64_t(nb - 1);
    }
    recs[lp] = rec;
  }
  const int32_t b = int32_t(key_bucket(key, slots, empty));
  const int32_t at = warp_count(counts, b, in);
  if (in) bucket[lp] = b, slot[lp] = at;
}

// Each pair's record to its bucket's first position plus its slot: a permutation, no atomics.
__global__ void pair_scatter_kernel(int64_t n, const int4* recs, const int32_t* bucket,
                                    const int32_t* slot, const int32_t* first, int4* recs_sorted) {
  const int64_t lp = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (lp >= n) return;
  recs_sorted[first[bucket[lp]] + slot[lp]] = recs[lp];
}

// One warp per tile: its key (Note [forward tile build]) from its records, sorted by bucket
// within a run: its pairs' group, the first block of the smallest start and the last block of
// the largest end. (The backward's tile_key_kernel reads sorted keys, which the forward does
// not write.)
__global__ void tile_key_recs_kernel(SpanArgs a, const int32_t* tile_start,
                                     const int32_t* tile_nrows, const int32_t* count,
                                     uint64_t* tile_key) {
  const int64_t t = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = int(threadIdx.x) & 31;
  if (t >= *count) return;  // warp-uniform
  const int64_t s0 = tile_start[t];
  const int rows = tile_nrows[t];
  int lo = INT_MAX, hi = 0;
  for (int r = lane; r < rows; r += 32) {
    const int4 rec = a.recs[s0 + r];
    lo = min(lo, rec.y), hi = max(hi, rec.z);
  }
#pragma unroll
  for (int x = 16; x > 0; x /= 2) {
    lo = min(lo, __shfl_xor_sync(0xffffffffu, lo, x));
    hi = max(hi, __shfl_xor_sync(0xffffffffu, hi, x));
  }
  if (lane != 0) return;
  const SuperlinearParams& p = a.p;
  const Row r = locate_row(p, a.p0 / p.cfg.k + a.recs[s0].w);
  const int64_t bg = r.b * p.Hkv + r.h / (p.Hq / p.Hkv), kb0 = lo / kBN;
  tile_key[t] = (uint64_t(bg * a.kb_stride + kb0) << 8) | uint64_t(hi / kBN - kb0);
}

// Run r holds buckets [r << shift, (r + 1) << shift) x slots; tiles[r] = its tiles (64 pairs
// each, the last partial); tiles[n_runs] = 0, so that the exclusive sum ends with the total.
__global__ void run_tiles_kernel(const int32_t* first, int64_t n_runs, int shift, int slots,
                                 int32_t* tiles) {
  const int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r > n_runs) return;
  if (r == n_runs) {
    tiles[r] = 0;
    return;
  }
  const int32_t c = first[((r + 1) << shift) * slots] - first[(r << shift) * slots];
  tiles[r] = (c + kTile - 1) / kTile;
}

// One warp per run: the first position and the pairs of each of its tiles; the tile count.
__global__ void tile_table_kernel(const int32_t* first, const int32_t* tile0, int64_t n_runs,
                                  int shift, int slots, int32_t* tile_start, int32_t* tile_nrows,
                                  int32_t* count) {
  const int64_t r = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = lane_id();
  if (r >= n_runs) return;
  const int32_t f = first[(r << shift) * slots];
  const int32_t c = first[((r + 1) << shift) * slots] - f;
  for (int32_t j = lane; j < tile0[r + 1] - tile0[r]; j += 32) {
    tile_start[tile0[r] + j] = f + j * kTile;
    tile_nrows[tile0[r] + j] = min(kTile, c - j * kTile);
  }
  if (r == 0 && lane == 0) *count = tile0[n_runs];
}

// The forward's tile builder (Note [forward tile build]); owns the scratch of one chunk: 48
// bytes per pair, 16 per tile (of up to 64 pairs), and 8 per bucket (B Hkv kb_stride slots
// buckets; slots = max_nb, the most blocks a tile can reach, 17 at 64K and 41 at 1M in the
// balanced preset, or 1: Note [sparse buckets]).
//
// Note [sparse buckets]
// The buckets cover every first block of every KV group, whatever the chunk, so a chunk of few
// pairs (a decode step: B Hq k pairs against the whole cache) would pay a count and a prefix sum
// over far more buckets than pairs: at 1M keys, B = 1, 2 KV heads, 1.3M buckets for 48 pairs.
// When the buckets outnumber eight times the chunk's pairs, a bucket is a first block alone;
// then a tile's pairs are not ordered by block count, which only matters (for the masked
// blocks a tile computes) where a first block holds several tiles' worth of pairs, not in
// chunks that sparse. The tiles are still right (a tile's footprint is the largest over its
// pairs), and a pair's output the same bits (Note [forward tile build]; the decode tests
// compare decode, in sparse buckets, with prefill rows, in full ones).
class ForwardTiles {
 public:
  ForwardTiles(const SuperlinearParams& p, int64_t cap, Device dev)
      : cap_(std::max<int64_t>(cap, 1)),
        n_kb_((p.Lkv + kBN - 1) / kBN),
        kb_stride_(span_kb_stride(p)),
        shift_(span_run_shift()) {
    const int64_t first_blocks = p.B * p.Hkv * kb_stride_;
    const int max_nb = span_max_nb(p);
    slots_ = first_blocks * max_nb > 8 * cap_ ? 1 : max_nb;  // Note [sparse buckets]
    n_runs_ = first_blocks >> shift_;
    empty_ = first_blocks * slots_;
    SL_CHECK(empty_ + 2 <= INT32_MAX)
        << kOp << ": " << empty_ << " tile buckets; the counts take 32-bit bucket indices";
    max_tiles_ = cap_ / kTile + n_runs_ + 1;
    bucket_ = scratch(cap_ * 4, dev), slot_ = scratch(cap_ * 4, dev);
    recs_ = scratch(cap_ * 16, dev), recs_sorted_ = scratch(cap_ * 16, dev);
    counts_ = scratch((empty_ + 2) * 4, dev), first_ = scratch((empty_ + 2) * 4, dev);
    run_tiles_ = scratch((n_runs_ + 1) * 4, dev), tile0_ = scratch((n_runs_ + 1) * 4, dev);
    tile_start_ = scratch(max_tiles_ * 4, dev), tile_nrows_ = scratch(max_tiles_ * 4, dev);
    tile_key_ = scratch(max_tiles_ * 8, dev), count_ = scratch(4, dev);
    size_t a = 0, b = 0;
    SL_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, a, (int32_t*)nullptr, (int32_t*)nullptr,
                                                empty_ + 2));
    SL_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, b, (int32_t*)nullptr, (int32_t*)nullptr,
                                                n_runs_ + 1));
    temp_ = scratch(int64_t(std::max(a, b)), dev);
  }

  // Scratch bytes, for the chunk budget (Note [span chunks]): per pair (40, and 16 more that
  // cover the tile arrays and the scans' storage), and for the buckets whatever the chunk (their
  // most: slots = max_nb).
  static int64_t pair_bytes() { return 40 + 16; }
  static int64_t fixed_bytes(const SuperlinearParams& p) {
    return 8 * (p.B * p.Hkv * span_kb_stride(p) * span_max_nb(p) + 2);
  }

  // Pairs p0 .. p0 + n - 1 (whole query rows): fills a and returns the bound on its tiles that
  // the launch takes (Note [tile count]).
  int64_t build(const SuperlinearParams& p, int64_t p0, int64_t n, SpanArgs& a, cudaStream_t s) {
    SL_CHECK(n <= cap_) << kOp << ": chunk of " << n << " pairs exceeds the tile builder's "
                        << cap_;
    a.p = p;
    a.p0 = p0;
    a.pairs = nullptr;
    a.n = n;
    a.n_kb = n_kb_;
    a.kb_stride = kb_stride_;
    a.run_shift = shift_;
    int32_t* bucket = bucket_.data<int32_t>();
    int4* recs = reinterpret_cast<int4*>(recs_.data_ptr());
    int4* rs = reinterpret_cast<int4*>(recs_sorted_.data_ptr());
    int32_t* slot = slot_.data<int32_t>();
    int32_t* counts = counts_.data<int32_t>();
    int32_t* first = first_.data<int32_t>();
    SL_CUDA_CHECK(cudaMemsetAsync(counts, 0, size_t(empty_ + 2) * 4, s));
    pair_records_kernel<<<blocks_for(n), 256, 0, s>>>(a, slots_, empty_, recs, bucket, slot,
                                                      counts);
    SL_CUDA_LAUNCH_CHECK();
    size_t tb = temp_bytes();
    SL_CUDA_CHECK(
        cub::DeviceScan::ExclusiveSum(temp_.data_ptr(), tb, counts, first, empty_ + 2, s));
    pair_scatter_kernel<<<blocks_for(n), 256, 0, s>>>(n, recs, bucket, slot, first, rs);
    SL_CUDA_LAUNCH_CHECK();
    int32_t* run_tiles = run_tiles_.data<int32_t>();
    int32_t* tile0 = tile0_.data<int32_t>();
    run_tiles_kernel<<<blocks_for(n_runs_ + 1), 256, 0, s>>>(first, n_runs_, shift_, slots_,
                                                             run_tiles);
    SL_CUDA_LAUNCH_CHECK();
    tb = temp_bytes();
    SL_CUDA_CHECK(
        cub::DeviceScan::ExclusiveSum(temp_.data_ptr(), tb, run_tiles, tile0, n_runs_ + 1, s));
    int32_t* count = count_.data<int32_t>();
    tile_table_kernel<<<blocks_for(n_runs_ * 32), 256, 0, s>>>(first, tile0, n_runs_, shift_,
                                                               slots_, tile_start_.data<int32_t>(),
                                                               tile_nrows_.data<int32_t>(), count);
    SL_CUDA_LAUNCH_CHECK();
    const int64_t bound = span_tile_bound(p, kb_stride_, p0, n, shift_);
    SL_CHECK(bound <= max_tiles_) << kOp << ": tile bound " << bound << " exceeds " << max_tiles_;
    uint64_t* tk = reinterpret_cast<uint64_t*>(tile_key_.data_ptr());
    a.keys = nullptr;
    a.idx = nullptr;
    a.bounds = nullptr;
    a.recs = rs;
    tile_key_recs_kernel<<<blocks_for(bound * 32), 256, 0, s>>>(
        a, tile_start_.data<int32_t>(), tile_nrows_.data<int32_t>(), count, tk);
    SL_CUDA_LAUNCH_CHECK();
    a.tile_start = tile_start_.data<int32_t>();
    a.tile_nrows = tile_nrows_.data<int32_t>();
    a.tile_key = tk;
    a.tile_count = count;
    return bound;
  }

 private:
  size_t temp_bytes() const { return size_t(temp_.numel()) * 4; }

  int64_t cap_, n_kb_, kb_stride_;
  int shift_, slots_ = 1;
  int64_t n_runs_ = 0, empty_ = 0, max_tiles_ = 0;
  Tensor bucket_, slot_, recs_, recs_sorted_, counts_, first_, run_tiles_, tile0_, tile_start_,
      tile_nrows_, tile_key_, count_, temp_;
};

template <int D>
void run_spans(const SuperlinearParams& p, int device, cudaStream_t s, StageTimer& timer) {
  const Device dev = Device::cuda(device);
  const int64_t rows = p.B * p.Hq * p.Lq, k = p.cfg.k;

  // Window first: O_w [B, Lq, Hq, D] (kept in p.window_out when given) and lse_w.
  const int64_t W = window_len(p.cfg);
  Tensor ow_scratch;
  void* ow = p.window_out;
  if (W > 0) {
    if (!ow) {
      ow_scratch = Tensor::empty({p.B, p.Lq, p.Hq, D}, DType::BF16, dev);
      ow = ow_scratch.data_ptr();
    }
    AttentionParams ap = window_params(p);
    ap.out = ow;
    ap.lse = static_cast<float*>(p.lse_w);
    attention_forward_cuda(ap, device);
  } else {
    fill_kernel<<<blocks_for(rows), 256, 0, s>>>(static_cast<float*>(p.lse_w), rows, -INFINITY);
    SL_CUDA_LAUNCH_CHECK();
  }
  timer.mark(2);

  // Per pair: the bf16 output row (unless kept in p.span_out, Note [kept partials]), the tile
  // builder's buckets, slots and records, and 12 bytes of merge weights. The budget: Note
  // [span chunks], with the metadata (anchors, scores, lse_s per pair; lse_w per row).
  const int64_t kv_bytes = 2 * p.B * p.Hkv * p.Lkv * D * 2;
  const int64_t pair_bytes = (p.span_out ? 0 : D * 2) + ForwardTiles::pair_bytes() + 12;
  const int64_t meta_bytes = rows * (12 * k + 4);
  const int64_t budget =
      std::max(kv_bytes / 4, kForwardFloor - 2 * meta_bytes) - ForwardTiles::fixed_bytes(p);
  const int64_t rows_per_chunk =
      std::max<int64_t>(1, chunk_pairs(budget, pair_bytes, kForwardMostPairs) / k);
  const int64_t cap = std::min(rows, rows_per_chunk) * k;
  ForwardTiles tiles(p, cap, dev);
  Tensor os;
  if (!p.span_out) os = scratch(cap * D * 2, dev);
  Tensor merge_w = scratch(cap * 12, dev);
  float* mw = reinterpret_cast<float*>(merge_w.data_ptr());
  const bool wgmma = span_wgmma_enabled(device);
  const int smem = wgmma ? span_wgmma_smem_bytes<D>() : span_smem_bytes<D>();
  SL_CUDA_CHECK(cudaFuncSetAttribute(wgmma ? span_tile_wgmma_kernel<D> : span_tile_kernel<D>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  for (int64_t row0 = 0; row0 < rows; row0 += rows_per_chunk) {
    const int64_t nrows = std::min(rows_per_chunk, rows - row0);
    // The chunk's output rows, indexed by local pair: the scratch, or its place in span_out.
    uint16_t* os_ptr = p.span_out ? static_cast<uint16_t*>(p.span_out) + row0 * k * D
                                  : reinterpret_cast<uint16_t*>(os.data_ptr());
    SpanArgs a;
    // Note [tile count]: a bound on the tiles; blocks past the chunk's count return at once.
    const int64_t blocks = tiles.build(p, row0 * k, nrows * k, a, s);
    timer.mark(3);
    if (wgmma)
      span_tile_wgmma_kernel<D><<<unsigned(blocks), kThreads, smem, s>>>(a, os_ptr);
    else
      span_tile_kernel<D><<<unsigned(blocks), kThreads, smem, s>>>(a, os_ptr);
    SL_CUDA_LAUNCH_CHECK();
    timer.mark(4);
    merge_weights_kernel<<<blocks_for(nrows), 256, 0, s>>>(a, row0, nrows, mw);
    SL_CUDA_LAUNCH_CHECK();
    merge_kernel<D><<<blocks_for(nrows * (D / 8)), 256, 0, s>>>(
        a, mw, os_ptr, W > 0 ? static_cast<const uint16_t*>(ow) : nullptr, row0, nrows);
    SL_CUDA_LAUNCH_CHECK();
    timer.mark(5);
  }
}

}  // namespace

bool spans_supported(const SuperlinearParams& p) {
  return p.dtype == DType::BF16 && (p.D == 64 || p.D == 128) && p.Lkv <= 65535 * 64 &&
         p.Lkv < (int64_t(1) << 31);
}

void forward_spans(const SuperlinearParams& p, int device) {
  cudaStream_t s = cuda::stream(device);
  StageTimer timer(s, "forward", {"search", "window", "sort", "tiles", "merge"});
  launch_search(p, device, s);
  timer.mark(1);
  if (p.D == 64) return run_spans<64>(p, device, s, timer);
  run_spans<128>(p, device, s, timer);
}

}  // namespace sl::kernels::slcuda
