// Tensor-core search of superlinear attention (spec §4-6) for bf16 and D in {64, 128}: anchors and
// gate scores of every query row, the same outputs as the lane-per-candidate search of
// kernels/superlinear_cuda.cu (which launch_search keeps for everything else, and for
// SL_SEARCH_KERNEL=lanes).
//
// One warp per (query t, KV group, up to 8 query heads of the group). The candidates of t are
// shared by the group's heads, so a tile of 16 candidates is one mma.m16n8k16 product per 16 of D:
// A = the 16 gathered K rows (cp.async into a swizzled shared tile, kStages deep, then ldmatrix),
// B = the Qs rows of the 8 heads (loaded once into registers), C = 16 candidates x 8 heads in f32.
// Heads past the group (r < 8, e.g. r = 1) are zero columns: the search is limited by moving K
// rows and issuing instructions, not by tensor-core throughput, so the idle columns cost nothing
// that matters, and one K row read serves all r heads.
//
// Note [per-lane top-k]
// The accumulator gives lane l candidates l / 4 and l / 4 + 8 for heads 2 (l % 4) + {0, 1}. Lanes
// l and l ^ 4 swap one head's pair with a shuffle, so lane l owns head 2 (l % 4) + (l / 4) % 2 for
// four candidates (rows l / 4, (l / 4) ^ 1, and both + 8), and the four lanes of equal l % 8 see
// the 16 rows of a tile between them. Each lane keeps a sorted top-k of what it saw (one compare
// against its k-th entry rejects most candidates); the lists are merged by an xor butterfly over
// lanes 8 and 16. ranks_before is a total order (distinct anchors), so the merged list is the
// top-k of all candidates whatever the split: the lane search's anchors wherever the scores agree
// (exact inputs, or away from near-ties: the mma sums D in another order than dot_row).
//
// Note [shared threshold]
// Nsight Compute found this kernel issue-bound at GQA 8 with about 16 of 32 threads active per
// instruction (experiments/results/2026-11-28-h200-c603590-ncu-search.md): a lane inserts
// into its list while the others wait. So before each tile's offers, the four lanes of a head
// share the best of their k-th entries and reject against that. The head's final k-th entry
// ranks at least as high as any lane's (the merged list holds every lane's list), so whatever
// this rejects could not have been in the merged top-k: the result is the same, with fewer
// insertions.
//
// Note [search bytes]
// The search is bounded by moving K rows: candidate i of query t is key t + 1 - i^2 (p = 1/2),
// so for one stripe a block of consecutive queries needs one distinct row per query, and
// stripes i and i + 1 share rows only while 2 i + 1 is below the block's length: for a warp's
// block, the first few dozen of ~1,000 stripes at 1M; for 512 queries, every stripe at 64K and
// a quarter at 1M (the stream search, Note [stream search], uses that). What this kernel shares
// is a row across the heads of a KV group (one gather serves up to 8 heads), and rows of
// neighbouring queries in L2 (warps of consecutive queries run in step). Against the credited
// attention work, 4 D (attended keys) ~ 4 D k f_b sqrt(T) per query head, the search moves
// sqrt(T) rows of 2 D bytes per KV group: 2 k f_b = 12 FLOP per byte at GQA 1 for the balanced
// preset (96 at GQA 8), so at GQA 1 the forward's TFLOP/s is at most 12 x the bandwidth the
// gather gets (measured 2.7-3.8 TB/s on an H200, 64K-1M).
//
// Measured and dropped: passes over bands of candidates for L2 reuse. Key u is read again for
// stripe i + 1 by query u + 2i. With every candidate in one pass, the rows read in between
// (~512 MB at 1M) far exceed L2, so the rows come from HBM. Passes over candidate bands
// [c_lo, c_hi) each started from the top-k the previous passes stored; widths kept 2 c w x row
// bytes within a budget. The outputs were the same bits, but the search got slower, and slower
// the narrower the bands. H200, balanced, D = 128, 16 heads, forward ms at 1M GQA 8: one pass
// 243; budgets 64 MB 288, 24 MB 348, 8 MB 438. At 1M GQA 1: 899, 1112, 1841, 2567. Every pass
// reads each query's Qs rows and its list again, and restarts the pipeline of every warp; the
// L2 reuse gained did not pay for that.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "kernels/attention_cuda_common.cuh"
#include "kernels/superlinear_cuda_common.cuh"

namespace sl::kernels::slcuda {
namespace {

constexpr int kWarps = 4, kRows = 16, kHeads = 8, kStages = 3;
constexpr unsigned kFull = 0xffffffffu;

template <int D>
constexpr int tile_bytes() {
  return kRows * D * 2;
}
template <int D>
constexpr int search_smem_bytes() {
  return kWarps * kStages * (tile_bytes<D>() + kRows * int(sizeof(int32_t)));
}

// Note [line copies]
// The search is bound by L2 (Nsight Compute, 64K GQA 8: 93.8% busy for 190M sectors in 1.30 ms,
// about 4.7 TB/s). Each copy instruction used to take one 32-byte sector of each of 16 rows: 16
// requests of one sector. Now it takes four whole 128-byte lines (eight lanes per line), four
// sectors per request, the same bytes into the same shared-memory tile. If L2 was bound by
// requests rather than bytes, this moves the same rows in fewer of them.
// Measured, H200, same call against the previous layout (two runs each): 64K GQA 8 forward
// 3.72 / 3.70 -> 3.53 / 3.57 ms (search stage 1.29 -> 1.13 ms), 64K GQA 1 12.0 -> 10.2 / 10.3
// ms, 1M GQA 8 207 -> 180 / 181 ms, 1M GQA 1 873 -> 650 / 652 ms: L2 was bound by requests.

// Note [fixed k]
// The search at GQA 8 was issue-bound (Note [shared threshold]); its duration and issue rate
// under Nsight Compute came to about 700 instructions per warp per tile of 16 candidates, and
// the loop's SASS is mostly compares and selects of the top-k insertion: with k a runtime
// value, every insertion ran all kMaxK = 8 slots of topk_insert, each guarded by j < k, and an
// insertion somewhere in the warp makes the whole warp run it. So the kernel is compiled for
// each k (1..kMaxK, chosen at launch by launch_k) and a lane's list is a TopK<K>: inserting is a
// fixed network of K compares and K selects, with no branch and no loop over unused slots. H200,
// 64K GQA 8: search 2.60 -> 1.29 ms; at 1M, 116 -> 98 ms, where L2 (96% busy) now bounds it.
// Measured and dropped after that (64K GQA 8): (score, anchor) as one 64-bit key, so that a
// compare is two instructions, 1.27 ms; the per-warp prologue in 32-bit arithmetic with sqrt
// for the p = 1/2 stripe estimate, 1.28 ms.

// A sorted top-K under ranks_before (slot 0 ranks first), kept in registers.
template <int K>
struct TopK {
  float s[K];
  int32_t a[K];

  __device__ __forceinline__ void clear() {
#pragma unroll
    for (int j = 0; j < K; ++j) s[j] = -INFINITY, a[j] = kNoAnchor;
  }
  // Inserts (sc, an), dropping the K-th entry. ranks_before is a total order, so "ranks before
  // slot j - 1" implies "ranks before slot j": slot j takes slot j - 1's entry, the new one, or
  // keeps its own. Walking down, slot j - 1 is still the old entry when slot j reads it.
  __device__ __forceinline__ void insert(float sc, int32_t an) {
    bool before[K];
#pragma unroll
    for (int j = 0; j < K; ++j) before[j] = ranks_before(sc, an, s[j], a[j]);
#pragma unroll
    for (int j = K - 1; j > 0; --j) {
      if (before[j - 1]) {
        s[j] = s[j - 1], a[j] = a[j - 1];
      } else if (before[j]) {
        s[j] = sc, a[j] = an;
      }
    }
    if (before[0]) s[0] = sc, a[0] = an;
  }
};

// Offers (sc, an) to a lane's top-k. Candidates that do not rank before the threshold (ts, ta)
// -- at least the lane's k-th entry -- are rejected by the first compare (Note [shared
// threshold]); the threshold follows the lane's k-th entry as it rises.
template <int K>
__device__ __forceinline__ void offer(float sc, int32_t an, TopK<K>& top, float& ts, int32_t& ta) {
  if (an < 0 || !ranks_before(sc, an, ts, ta)) return;
  top.insert(sc, an);
  if (ranks_before(top.s[K - 1], top.a[K - 1], ts, ta)) ts = top.s[K - 1], ta = top.a[K - 1];
}

// Merges in the top-k of lane ^ x: both lanes end with the top-k of the union.
template <int K>
__device__ __forceinline__ void merge_xor(int x, TopK<K>& top) {
  float ps[K];
  int32_t pa[K];
#pragma unroll
  for (int j = 0; j < K; ++j) {
    ps[j] = __shfl_xor_sync(kFull, top.s[j], x);
    pa[j] = __shfl_xor_sync(kFull, top.a[j], x);
  }
  float ts = top.s[K - 1];
  int32_t ta = top.a[K - 1];
#pragma unroll
  for (int j = 0; j < K; ++j) offer(ps[j], pa[j], top, ts, ta);
}

// Note [shared threshold]: (ts, ta) = the best of the k-th entries of the four lanes of this
// lane's head (lanes l, l ^ 8, l ^ 16, l ^ 24).
template <int K>
__device__ __forceinline__ void head_threshold(const TopK<K>& top, float& ts, int32_t& ta) {
  ts = top.s[K - 1];
  ta = top.a[K - 1];
#pragma unroll
  for (int x = 8; x <= 16; x *= 2) {
    const float os = __shfl_xor_sync(kFull, ts, x);
    const int32_t oa = __shfl_xor_sync(kFull, ta, x);
    if (ranks_before(os, oa, ts, ta)) ts = os, ta = oa;
  }
}

// One warp's work (the layout at the top): query row i of KV group g, heads h0 .. h0 + nh - 1.
struct WarpJob {
  int64_t b, g, i, t, h0, n;
  int nh, ntiles;
};

SL_HD int64_t warp_count(const SuperlinearParams& p) {
  const int64_t r = p.Hq / p.Hkv;
  return p.B * p.Hkv * p.Lq * ((r + kHeads - 1) / kHeads);
}

__device__ __forceinline__ WarpJob warp_job(const SuperlinearParams& p, int64_t w) {
  const int64_t r = p.Hq / p.Hkv, chunks = (r + kHeads - 1) / kHeads;
  const int64_t hc = w % chunks;
  WarpJob j;
  j.i = (w / chunks) % p.Lq;
  j.g = (w / (chunks * p.Lq)) % p.Hkv;
  j.b = w / (chunks * p.Lq * p.Hkv);
  j.h0 = j.g * r + hc * kHeads;
  j.nh = int(min(int64_t(kHeads), r - hc * kHeads));
  j.t = p.q_start + j.i;
  const int64_t sb = p.doc_starts ? p.doc_starts[j.b * p.Lkv + j.t] : 0;
  j.n = num_candidates(p.cfg, j.t + 1 - sb);
  j.ntiles = int((j.n + kRows - 1) / kRows);
  return j;
}

// The anchors and scores of head h0 + hh of the warp's query row.
template <int K>
__device__ __forceinline__ void write_top(const SuperlinearParams& p, const WarpJob& w, int hh,
                                          const TopK<K>& top) {
  const int64_t row = ((w.b * p.Hq + w.h0 + hh) * p.Lq + w.i) * K;
#pragma unroll
  for (int j = 0; j < K; ++j)
    p.anchors[row + j] = top.a[j], static_cast<float*>(p.scores)[row + j] = top.s[j];
}

// B fragments of the bf16 product: lane l holds head l / 4, d = 16 kk + 2 (l % 4) + {0, 1} and
// + 8; zero for heads past the group.
template <int D>
__device__ __forceinline__ void load_qf(const SuperlinearParams& p, const WarpJob& j, int lane,
                                        uint32_t (&qf)[D / 16][2]) {
  const int head = lane >> 2;
  const uint16_t* q = static_cast<const uint16_t*>(p.qs) +
                      ((j.b * p.Hq + j.h0 + min(head, j.nh - 1)) * p.Lq + j.i) * D + 2 * (lane & 3);
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    qf[kk][0] = head < j.nh ? *reinterpret_cast<const uint32_t*>(q + 16 * kk) : 0u;
    qf[kk][1] = head < j.nh ? *reinterpret_cast<const uint32_t*>(q + 16 * kk + 8) : 0u;
  }
}

// Tile j's anchors: lane m < 16 gets candidate 16 j + m's (lanes 16..31 the same as lane m - 16).
// Computed once per 32 candidates (lane per candidate) at even tiles; `next` carries the odd one.
struct AnchorFeed {
  int32_t next = kNoAnchor;
  __device__ __forceinline__ int32_t tile(const SuperlinearConfig& cfg, const WarpJob& w, int j,
                                          int lane) {
    if ((j & 1) == 0) {
      const int64_t cj = int64_t(j) * kRows + lane;
      const int32_t a32 = cj < w.n ? int32_t(candidate_anchor(cfg, w.t, cj)) : kNoAnchor;
      next = __shfl_sync(kFull, a32, (lane & 15) + 16);
      return __shfl_sync(kFull, a32, lane & 15);
    }
    return next;
  }
};

// The 16 bf16 K rows whose anchors lanes 0..15 hold (a < 0: a zero row) into a swizzled tile: copy
// `it` moves rows l / 8 + 4 (it % 4), 16-byte chunk l % 8 + 8 (it / 4), so each copy instruction
// asks L2 for four whole 128-byte lines (Note [line copies]).
template <int D>
__device__ __forceinline__ void gather_rows(uint32_t tile, const uint16_t* keys, int32_t a,
                                            int lane) {
  int32_t ar[4];
#pragma unroll
  for (int q = 0; q < 4; ++q) ar[q] = __shfl_sync(kFull, a, (lane >> 3) + 4 * q);
#pragma unroll
  for (int it = 0; it < D / 16; ++it) {
    const int q = it % 4, r = (lane >> 3) + 4 * q, cc = (lane & 7) + 8 * (it / 4);
    const uint16_t* src = keys + (ar[q] >= 0 ? int64_t(ar[q]) * D + cc * 8 : 0);
    attn::cp_async16(tile + attn::tile_offset<D>(r, cc), src, ar[q] >= 0);
  }
}

template <int D>
constexpr int exact_region_bytes() {
  return kStages * (tile_bytes<D>() + kRows * int(sizeof(int32_t)));
}

// The bf16 search of one warp (Note [per-lane top-k]) in its shared-memory region of
// exact_region_bytes<D>(): writes the anchors and scores of the group's heads.
template <int D, int K>
__device__ void exact_search(const SuperlinearParams& p, const WarpJob& w,
                             const uint32_t (&qf)[D / 16][2], unsigned char* region, int lane) {
  const uint16_t* keys = static_cast<const uint16_t*>(p.k) + (w.b * p.Hkv + w.g) * p.Lkv * D;
  const uint32_t tiles = attn::smem_addr(region);
  int32_t* anch = reinterpret_cast<int32_t*>(region + kStages * tile_bytes<D>());
  AnchorFeed feed;
  auto load = [&](int j) {
    const int32_t a = feed.tile(p.cfg, w, j, lane);
    const int st = j % kStages;
    if (lane < kRows) anch[st * kRows + lane] = a;
    gather_rows<D>(tiles + st * tile_bytes<D>(), keys, a, lane);
  };

  const int hh = 2 * (lane & 3) + ((lane >> 2) & 1), r0 = lane >> 2, r1 = r0 ^ 1;
  const bool even = (r0 & 1) == 0, head_ok = hh < w.nh;
  TopK<K> top;
  top.clear();

  for (int j = 1 - kStages; j < w.ntiles; ++j) {
    if (j >= 0) {
      attn::cp_async_wait<kStages - 2>();
      __syncwarp();
    }
    if (j + kStages - 1 < w.ntiles) load(j + kStages - 1);
    attn::cp_async_commit();
    if (j < 0) continue;
    const int st = j % kStages;
    const uint32_t tile = tiles + st * tile_bytes<D>();
    float acc[2][4] = {};
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t af[4];
      attn::load_a<D>(af, tile, 0, kk, lane);
      attn::Mma<bf16>::run(acc[kk & 1], af, qf[kk][0], qf[kk][1]);
    }
    float c[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) c[e] = acc[0][e] + acc[1][e];
    const float give0 = __shfl_xor_sync(kFull, even ? c[1] : c[0], 4);
    const float give2 = __shfl_xor_sync(kFull, even ? c[3] : c[2], 4);
    float ts;
    int32_t ta;
    head_threshold(top, ts, ta);
    if (!head_ok) continue;
    const int32_t* an = anch + st * kRows;
    offer(even ? c[0] : c[1], an[r0], top, ts, ta);
    offer(even ? c[2] : c[3], an[r0 + 8], top, ts, ta);
    offer(give0, an[r1], top, ts, ta);
    offer(give2, an[r1 + 8], top, ts, ta);
  }
  attn::cp_async_wait<0>();

  merge_xor(8, top);
  merge_xor(16, top);
  if (lane < kHeads && head_ok) write_top(p, w, hh, top);
}

template <int D, int K>
__global__ void __launch_bounds__(kWarps * 32) search_mma_kernel(SuperlinearParams p) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int lane = lane_id(), wib = int(threadIdx.x) >> 5;
  const int64_t w = int64_t(blockIdx.x) * kWarps + wib;
  if (w >= warp_count(p)) return;
  const WarpJob job = warp_job(p, w);
  uint32_t qf[D / 16][2];
  load_qf<D>(p, job, lane, qf);
  exact_search<D, K>(p, job, qf, smem + wib * exact_region_bytes<D>(), lane);
}

// Note [int8 search]
// The search moves one K row per candidate (Note [search bytes]); an int8 copy of K halves the
// bytes, and bounds on its error keep the result exact. One scale per (batch, KV head):
// s_k = max |k| / 127 over the head's rows, so that a candidate's row is one 128-byte line (D =
// 128) with nothing else to fetch; the quantiser also takes, over the head's rows, the largest
// residual norm R = max |k - s_k k8| and the largest |s_k k8| = N. With one scale the residual is
// about the same for every row (rounding steps of s_k), so the largest is nearly every row's.
// The warp quantises each Qs row with its own scale (s_q, |q|, e_q = |q - s_q q8|). For
// candidate u the integer product (m16n8k32 mma) gives s~ = s_k s_q <k8, q8>, and by
// Cauchy-Schwarz
//   |<q, k> - s~| <= |q| R + e_q N + slack = e,       the same e for all of a head's candidates,
// slack = 2^-14 |q| (N + R) covering f32 rounding here and in the bf16 mma's own sums (at most
// ~D 2^-23 of sum |q_d k_d| <= |q| |k|). Each lane keeps the top-k of s~ (the lists and
// thresholds of the bf16 search, Note [shared threshold]), so its k-th s~ less e is a lower
// bound on the head's k-th bf16 score at any moment, and a candidate can be in the final top-k
// only if s~ + 2 e reaches the k-th s~: those go to the head's buffer in shared memory (kCap
// entries; compacted against the rising bound when near full). At the end the merged lists give
// the final bound; every candidate of the true top-k is in the buffer. The buffer's survivors are
// scored again by the bf16 mma, the same instructions as exact_search (a row's result depends on
// that row and the head only), and the top-k of those scores under ranks_before is the bf16
// search's top-k, bit for bit.
// A buffer that overflows (heavy ties: equal keys, or q = 0, where every candidate passes) sends
// the warp through exact_search instead; so does a non-finite Qs row or K head (R = inf).
// What it costs: the quantiser reads K once and writes D bytes per row (scratch, freed after
// the search). Outlier rows (one row far larger than the rest) widen every row's bound; the
// fallback keeps the result exact, and SL_SPAN_PROFILE=1 prints how many warps fell back and how
// many candidates were rescored.
// Measured (H200, balanced, B = 1, 16 query heads, D = 128; forward ms, bf16 search -> int8,
// same call): 1M GQA 1 714 -> 562 (search 578 -> 448; 12.7 rescored per warp, 0.04% of warps
// fell back); but 64K GQA 1 10.5 -> 13.2, 64K GQA 8 3.55 -> 4.37, 1M GQA 8 190 -> 194 (74-100
// rescored per warp of 8 heads). Where the int8 loop saves requests, each warp's tail does not
// hide: the Qs fragments and the survivors' rows are fetched after the loop, one round trip
// each, with 16 warps per SM to cover them. So search_int8_preferred picks it only for one query
// head per KV head from 1M keys up, and only where the stream search (Note [stream search],
// faster everywhere at GQA 1: 1M 301 ms against 544) does not run, i.e. off Hopper;
// SL_SEARCH_KERNEL=int8 asks for it.
// Before this, per-row scales with a 16-byte meta per row were slower still: the meta was a
// second L2 request per candidate (experiments/attic/int8-search-row-scales.patch). The stream
// search keeps the meta in the row's own record, copied with it.
constexpr int kCap = 64;                 // buffered candidates per head
constexpr float kSlack = 1.f / 16384.f;  // 2^-14

template <int D>
constexpr int q8_stage_bytes() {
  return kRows * D + kRows * int(sizeof(int32_t));  // rows, anchors
}
template <int D>
constexpr int q8_region_bytes() {
  constexpr int own = kStages * q8_stage_bytes<D>() + kHeads * 4 + kHeads * kCap * 8;
  return own > exact_region_bytes<D>() ? own : exact_region_bytes<D>();
}
static_assert(kStages * q8_stage_bytes<64>() >= tile_bytes<64>(), "rescoring tile fits");
static_assert(kStages * q8_stage_bytes<128>() >= tile_bytes<128>(), "rescoring tile fits");

// Byte offset of 16-byte chunk `chunk` of row `row` in an int8 tile of D-byte rows, swizzled so
// that ldmatrix's eight rows of one chunk hit distinct banks.
template <int D>
__device__ __forceinline__ uint32_t q8_offset(int row, int chunk) {
  const int swz = D == 128 ? (row & 7) : ((row >> 1) & 3);
  return uint32_t(row * D + ((chunk ^ swz) << 4));
}

__device__ __forceinline__ void mma_s8(int (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                       uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_s8(const int (&v)[4]) {
  return uint32_t(v[0] & 0xff) | uint32_t(v[1] & 0xff) << 8 | uint32_t(v[2] & 0xff) << 16 |
         uint32_t(v[3] & 0xff) << 24;
}

// Block-wide max of v (>= 0, or NaN / inf bits) into *dst as float bits (non-negative floats
// order as unsigned integers; NaN and inf bits sort above every finite value).
__device__ __forceinline__ void block_max_into(unsigned v, unsigned* dst) {
  __shared__ unsigned red[32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(kFull, v, o));
  const int lane = lane_id(), wid = int(threadIdx.x) >> 5, nw = int(blockDim.x) >> 5;
  if (lane == 0) red[wid] = v;
  __syncthreads();
  if (wid == 0) {
    v = lane < nw ? red[lane] : 0u;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(kFull, v, o));
    if (lane == 0) atomicMax(dst, v);
  }
  __syncthreads();
}

__device__ __forceinline__ unsigned abs_bits(float x) {
  return __float_as_uint(x) & 0x7fffffffu;
}

// Pass 1 of the quantiser: hstat[3 h] = max |k| over head h's rows (blockIdx.y = head).
template <int D>
__global__ void head_absmax_kernel(const uint16_t* k, int64_t rows_per_head, unsigned* hstat) {
  const uint16_t* base = k + int64_t(blockIdx.y) * rows_per_head * D;
  const int64_t n = rows_per_head * D / 8;  // 16-byte chunks
  unsigned m = 0;
  for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < n;
       c += int64_t(gridDim.x) * blockDim.x) {
    float x[8];
    load_vec<bf16, 8>(reinterpret_cast<const bf16*>(base + c * 8), x);
#pragma unroll
    for (int e = 0; e < 8; ++e) m = max(m, abs_bits(x[e]));
  }
  block_max_into(m, hstat + 3 * blockIdx.y);
}

// Pass 2: eight threads per K row (E = D / 8 elements each) write the int8 row with the head's
// scale, and hstat[3 h + 1], [3 h + 2] take the largest residual and quantised-row norms.
template <int D>
__global__ void quantize_k_kernel(const uint16_t* k, int64_t rows_per_head, unsigned* hstat,
                                  int8_t* k8) {
  constexpr int E = D / 8;
  const int64_t h = blockIdx.y;
  const int64_t row = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 3;
  const int sub = int(threadIdx.x & 7);
  const bool ok = row < rows_per_head;
  const int64_t at = (h * rows_per_head + (ok ? row : 0)) * D + sub * E;
  float x[E];
  load_vec<bf16, E>(reinterpret_cast<const bf16*>(k + at), x);
  const float m = __uint_as_float(hstat[3 * h]);
  const bool finite = m <= 3.402823466e38f;  // false for inf and NaN
  const float sk = finite ? m / 127.f : 0.f, inv = finite && m > 0.f ? 127.f / m : 0.f;
  float err = 0.f, kn = 0.f;
  uint32_t packed[E / 4];
#pragma unroll
  for (int c = 0; c < E / 4; ++c) {
    int v[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float xv = x[4 * c + e];
      v[e] = max(-127, min(127, __float2int_rn(xv * inv)));
      const float kt = sk * float(v[e]);
      err = fmaf(xv - kt, xv - kt, err);
      kn = fmaf(kt, kt, kn);
    }
    packed[c] = pack_s8(v);
  }
#pragma unroll
  for (int o = 1; o < 8; o <<= 1) {
    err += __shfl_xor_sync(kFull, err, o);
    kn += __shfl_xor_sync(kFull, kn, o);
  }
  if (ok) {
    int8_t* dst = k8 + at;
    if constexpr (E == 16)
      *reinterpret_cast<uint4*>(dst) = make_uint4(packed[0], packed[1], packed[2], packed[3]);
    else
      *reinterpret_cast<uint2*>(dst) = make_uint2(packed[0], packed[1]);
  }
  block_max_into(ok ? (finite ? abs_bits(sqrtf(err)) : 0x7f800000u) : 0u, hstat + 3 * h + 1);
  block_max_into(ok && finite ? abs_bits(sqrtf(kn)) : 0u, hstat + 3 * h + 2);
}

// Drops the buffered candidates whose s~ is below the threshold, for the heads whose bits are set
// in `heads`, the whole warp on one head at a time (ballots, in place); head h's threshold is thr
// in the lane that owns it (lanes 0..7 own heads 2 (l % 4) + (l / 4) % 2). An overflowed buffer
// (count past kCap) stays overflowed. Called by all lanes.
__device__ __forceinline__ void compact(int32_t* cnt, int2* buf, unsigned heads, float thr,
                                        int lane) {
  while (heads != 0) {
    const int h = __ffs(heads) - 1;
    heads &= heads - 1;
    const float t = __shfl_sync(kFull, thr, (h >> 1) + 4 * (h & 1));
    const int n = cnt[h];
    if (n > kCap) continue;
    int2* b = buf + h * kCap;
    int m = 0;
    for (int x0 = 0; x0 < n; x0 += 32) {
      const int x = x0 + lane;
      const int2 e = x < n ? b[x] : make_int2(0, 0);
      const bool keep = x < n && __int_as_float(e.y) >= t;
      const unsigned bal = __ballot_sync(kFull, keep);
      __syncwarp();
      if (keep) b[m + __popc(bal & ((1u << lane) - 1u))] = e;
      m += __popc(bal);
    }
    __syncwarp();
    if (lane == 0) cnt[h] = m;
    __syncwarp();
  }
}

template <int D, int K>
__global__ void __launch_bounds__(kWarps * 32)
    search_q8_kernel(SuperlinearParams p, const int8_t* k8, const unsigned* hstat,
                     unsigned long long* stats) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int lane = lane_id(), wib = int(threadIdx.x) >> 5;
  const int64_t w = int64_t(blockIdx.x) * kWarps + wib;
  if (w >= warp_count(p)) return;
  const WarpJob job = warp_job(p, w);
  unsigned char* region = smem + wib * q8_region_bytes<D>();
  // The bf16 fragments (for the rescoring or the fallback) are loaded when needed, not held
  // through the int8 loop.
  uint32_t qf[D / 16][2];

  // Int8 B fragments (m16n8k32): lane l holds head l / 4, d = 32 kk + 4 (l % 4) + {0..3} and
  // + 16; the head's scale, norm and quantisation error over its four lanes.
  uint32_t q8f[D / 32][2];
  float sq, nq, eq;
  bool bad;
  {
    const int head = lane >> 2;
    const uint16_t* q = static_cast<const uint16_t*>(p.qs) +
                        ((job.b * p.Hq + job.h0 + min(head, job.nh - 1)) * p.Lq + job.i) * D +
                        4 * (lane & 3);
    float v[D / 32][8];
#pragma unroll
    for (int kk = 0; kk < D / 32; ++kk)
#pragma unroll
      for (int h = 0; h < 2; ++h)
        load_vec<bf16, 4>(reinterpret_cast<const bf16*>(q + 32 * kk + 16 * h), &v[kk][4 * h]);
    float m = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 32; ++kk)
#pragma unroll
      for (int e = 0; e < 8; ++e) m = fmaxf(m, fabsf(v[kk][e]));
    m = fmaxf(m, __shfl_xor_sync(kFull, m, 1));
    m = fmaxf(m, __shfl_xor_sync(kFull, m, 2));
    bad = head < job.nh && !(m <= 3.402823466e38f);
    sq = m / 127.f;
    const float inv = m > 0.f && !bad ? 127.f / m : 0.f;
    float n2 = 0.f, e2 = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 32; ++kk)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        int iv[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float xv = v[kk][4 * h + e];
          iv[e] = max(-127, min(127, __float2int_rn(xv * inv)));
          const float d = xv - sq * float(iv[e]);
          n2 = fmaf(xv, xv, n2);
          e2 = fmaf(d, d, e2);
        }
        q8f[kk][h] = head < job.nh ? pack_s8(iv) : 0u;
      }
    n2 += __shfl_xor_sync(kFull, n2, 1);
    n2 += __shfl_xor_sync(kFull, n2, 2);
    e2 += __shfl_xor_sync(kFull, e2, 1);
    e2 += __shfl_xor_sync(kFull, e2, 2);
    nq = sqrtf(n2);
    eq = sqrtf(e2);
  }
  // The head's scale and bounds (Note [int8 search]); a non-finite K head falls back.
  const unsigned* hs = hstat + 3 * (job.b * p.Hkv + job.g);
  const float sk = __uint_as_float(hs[0]) / 127.f, big_r = __uint_as_float(hs[1]),
              big_n = __uint_as_float(hs[2]);
  bad = bad || !(__uint_as_float(hs[0]) <= 3.402823466e38f && big_r <= 3.402823466e38f &&
                 big_n <= 3.402823466e38f);
  if (__any_sync(kFull, bad)) {
    if (stats != nullptr && lane == 0) atomicAdd(stats, 1ull);
    load_qf<D>(p, job, lane, qf);
    return exact_search<D, K>(p, job, qf, region, lane);
  }

  const int hh = 2 * (lane & 3) + ((lane >> 2) & 1), r0 = lane >> 2, r1 = r0 ^ 1;
  const bool even = (r0 & 1) == 0, head_ok = hh < job.nh;
  // This lane's head's constants (lane 4 hh holds head hh's).
  sq = __shfl_sync(kFull, sq, 4 * hh);
  nq = __shfl_sync(kFull, nq, 4 * hh);
  eq = __shfl_sync(kFull, eq, 4 * hh);
  // s~ = acc * scale; e = |q| R + e_q N + slack; a candidate is kept while s~ + 2 e reaches
  // the lane's threshold (its k-th s~ or better).
  const float scale = sk * sq;
  const float e = fmaf(nq, fmaf(big_r, 1.f + kSlack, big_n * kSlack), eq * big_n);
  const float e2 = 2.f * e;

  const int8_t* rows = k8 + (job.b * p.Hkv + job.g) * p.Lkv * D;
  int32_t* cnt = reinterpret_cast<int32_t*>(region + kStages * q8_stage_bytes<D>());
  int2* buf = reinterpret_cast<int2*>(cnt + kHeads);
  if (lane < kHeads) cnt[lane] = 0;
  __syncwarp();

  AnchorFeed feed;
  constexpr int kChunks = D / 16, kRowsPer = 32 / kChunks;
  auto load = [&](int j) {
    const int32_t a = feed.tile(p.cfg, job, j, lane);
    unsigned char* stg = region + (j % kStages) * q8_stage_bytes<D>();
    const uint32_t tile = attn::smem_addr(stg);
    if (lane < kRows) reinterpret_cast<int32_t*>(stg + kRows * D)[lane] = a;
#pragma unroll
    for (int it = 0; it < kRows / kRowsPer; ++it) {
      const int r = lane / kChunks + kRowsPer * it, cc = lane % kChunks;
      const int32_t ar = __shfl_sync(kFull, a, r);
      attn::cp_async16(tile + q8_offset<D>(r, cc), rows + (ar >= 0 ? int64_t(ar) * D + 16 * cc : 0),
                       ar >= 0);
    }
  };

  TopK<K> top;
  top.clear();
  for (int j = 1 - kStages; j < job.ntiles; ++j) {
    if (j >= 0) {
      attn::cp_async_wait<kStages - 2>();
      __syncwarp();
    }
    if (j + kStages - 1 < job.ntiles) load(j + kStages - 1);
    attn::cp_async_commit();
    if (j < 0) continue;
    const unsigned char* stg = region + (j % kStages) * q8_stage_bytes<D>();
    const uint32_t tile = attn::smem_addr(stg);
    int acc[4] = {0, 0, 0, 0};
#pragma unroll
    for (int kk = 0; kk < D / 32; ++kk) {
      uint32_t af[4];
      attn::ldmatrix_x4(af, tile + q8_offset<D>(lane & 15, 2 * kk + (lane >> 4)));
      mma_s8(acc, af, q8f[kk][0], q8f[kk][1]);
    }
    const int give0 = __shfl_xor_sync(kFull, even ? acc[1] : acc[0], 4);
    const int give2 = __shfl_xor_sync(kFull, even ? acc[3] : acc[2], 4);
    float ts;
    int32_t ta;
    head_threshold(top, ts, ta);
    if (head_ok) {
      const int32_t* an = reinterpret_cast<const int32_t*>(stg + kRows * D);
      const int vals[4] = {even ? acc[0] : acc[1], even ? acc[2] : acc[3], give0, give2};
      const int rws[4] = {r0, r0 + 8, r1, r1 + 8};
#pragma unroll
      for (int o = 0; o < 4; ++o) {
        const int32_t a = an[rws[o]];
        const float sc = float(vals[o]) * scale;
        offer(sc, a, top, ts, ta);
        if (a >= 0 && sc + e2 >= ts) {
          const int pos = atomicAdd(cnt + hh, 1);
          if (pos < kCap) buf[hh * kCap + pos] = make_int2(a, __float_as_int(sc));
        }
      }
    }
    __syncwarp();
    // At most 16 entries per head and tile: compact a buffer before it can overflow.
    const bool near = lane < kHeads && cnt[hh] > kCap - 16;
    const unsigned heads = __reduce_or_sync(kFull, near ? 1u << hh : 0u);
    if (heads != 0) {
      compact(cnt, buf, heads, ts - e2, lane);
      if (__any_sync(kFull, lane < kHeads && cnt[hh] > kCap)) break;
    }
  }
  attn::cp_async_wait<0>();
  merge_xor(8, top);
  merge_xor(16, top);
  __syncwarp();
  load_qf<D>(p, job, lane, qf);
  if (__any_sync(kFull, lane < kHeads && cnt[hh] > kCap)) {
    if (stats != nullptr && lane == 0) atomicAdd(stats, 1ull);
    return exact_search<D, K>(p, job, qf, region, lane);
  }
  compact(cnt, buf, __reduce_or_sync(kFull, lane < kHeads && cnt[hh] > 0 ? 1u << hh : 0u),
          top.s[K - 1] - e2, lane);

  // The survivors, flattened head by head, scored again 16 at a time by the bf16 mma.
  int off[kHeads + 1];
  off[0] = 0;
#pragma unroll
  for (int h = 0; h < kHeads; ++h) off[h + 1] = off[h] + cnt[h];
  const int total = off[kHeads];
  if (stats != nullptr && lane == 0) atomicAdd(stats + 1, (unsigned long long)total);
  const uint16_t* keys = static_cast<const uint16_t*>(p.k) + (job.b * p.Hkv + job.g) * p.Lkv * D;
  const uint32_t rt = attn::smem_addr(region);
  for (int base = 0; base < total; base += kRows) {
    const int idx = base + (lane & 15);
    int eh = -1, slot = 0;
    int32_t a = kNoAnchor;
    if (idx < total) {
      eh = 0;
      int first = 0;
#pragma unroll
      for (int h = 1; h < kHeads; ++h)
        if (idx >= off[h]) eh = h, first = off[h];
      slot = eh * kCap + idx - first;
      a = buf[slot].x;
    }
    gather_rows<D>(rt, keys, a, lane);
    attn::cp_async_commit();
    attn::cp_async_wait<0>();
    __syncwarp();
    float acc[2][4] = {};
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t af[4];
      attn::load_a<D>(af, rt, 0, kk, lane);
      attn::Mma<bf16>::run(acc[kk & 1], af, qf[kk][0], qf[kk][1]);
    }
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int row = r0 + 8 * half;
      const int rh = __shfl_sync(kFull, eh, row), rs = __shfl_sync(kFull, slot, row);
      const int col = rh - 2 * (lane & 3);
      // The bf16 search's sum for this row and head: acc[0] + acc[1], as in exact_search.
      const float c0 = acc[0][2 * half] + acc[1][2 * half];
      const float c1 = acc[0][2 * half + 1] + acc[1][2 * half + 1];
      if (col == 0 || col == 1) buf[rs].y = __float_as_int(col == 0 ? c0 : c1);
    }
    __syncwarp();
  }

  if (lane >= kHeads || !head_ok) return;
  TopK<K> fin;
  fin.clear();
  const int2* b = buf + hh * kCap;
  for (int x = 0; x < cnt[hh]; ++x) {
    const float sc = __int_as_float(b[x].y);
    if (ranks_before(sc, b[x].x, fin.s[K - 1], fin.a[K - 1])) fin.insert(sc, b[x].x);
  }
  write_top(p, job, hh, fin);
}

// The int8 copy of K (Note [int8 search]) and, when profiling, the counters: warps that fell back
// to the bf16 search, candidates scored again.
struct Q8Keys {
  int8_t* rows;
  unsigned* hstat;  // per (batch, KV head): max |k|, R, N as f32 bits
  unsigned long long* stats;
};

template <int D, int K>
void launch(const SuperlinearParams& p, const Q8Keys* q8, cudaStream_t s) {
  const unsigned blocks = unsigned((warp_count(p) + kWarps - 1) / kWarps);
  if (q8 == nullptr) {
    constexpr int smem = kWarps * exact_region_bytes<D>();
    SL_CUDA_CHECK(cudaFuncSetAttribute(search_mma_kernel<D, K>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    search_mma_kernel<D, K><<<blocks, kWarps * 32, smem, s>>>(p);
  } else {
    constexpr int smem = kWarps * q8_region_bytes<D>();
    SL_CUDA_CHECK(cudaFuncSetAttribute(search_q8_kernel<D, K>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    search_q8_kernel<D, K><<<blocks, kWarps * 32, smem, s>>>(p, q8->rows, q8->hstat, q8->stats);
  }
  SL_CUDA_LAUNCH_CHECK();
}

// Note [fixed k]: one kernel per k, k = K, K + 1, ..., kMaxK tried in turn.
template <int D, int K = 1>
void launch_k(const SuperlinearParams& p, const Q8Keys* q8, cudaStream_t s) {
  if constexpr (K <= kMaxK) {
    if (p.cfg.k == K) return launch<D, K>(p, q8, s);
    launch_k<D, K + 1>(p, q8, s);
  } else {
    SL_FAIL() << kOp << ": the tensor-core search keeps 1.." << kMaxK
              << " spans, config has k = " << p.cfg.k;
  }
}

// Note [stream search]
// At one query head per KV head the searches above move a K row from L2 for every (query,
// candidate) (Note [search bytes]); the int8 search halves the row but not the requests, and each
// warp's tail (one query) does not hide. But candidate i of queries t0 .. t0 + n - 1 is the run
// of keys t0 + 1 - o(i) .. t0 + n - o(i), and the next stripe's run starts o(i + 1) - o(i) (2 i +
// 1 for p = 1/2) rows earlier, so while that gap is below n the two runs share rows. So a block
// takes n = kStreamQueries / r consecutive queries of each of the r heads of a KV group, one
// thread per (query, head) with its int8 Qs row in registers, and streams the K rows of stripe
// after stripe through a ring in shared memory: only the rows the previous stripe did not have
// are copied (one bulk copy, cp.async.bulk, per stripe and wrap), kAhead stripes ahead, each
// completing on its stage's mbarrier. Stripe j's rows sit at ring positions V_j .. V_j + n - 1
// (mod the ring), V_{j+1} = V_j - min(gap, n), so thread q reads position V_j + q; with kAhead + 1
// stripes of n rows the ring never overwrites a row that a stripe in flight or being read still
// needs (one barrier per stripe keeps the stripe before the current one out of the way). At 64K a
// block reads its prefix about once, not once per candidate.
// Rows: K is quantised per row (scale s_u = max |k| / 127), each row a record of D int8 values and
// 16 bytes of s_u, r_u = |k - s_u k8| and n_u = |s_u k8|, so a candidate's bound is its own:
// |<q, k> - s~| <= |q| r_u + e_q n_u + slack = e (Note [int8 search]'s argument, per row). The
// record's 144-byte stride (D = 128; 80 for D = 64) already puts a quarter-warp's 16-byte loads of
// eight consecutive rows in distinct banks.
// Selection: each thread scores its candidate with dp4a (exact int32 in four chains), keeps the k
// largest lower bounds s~ - e (its k-th, thr, is at most the k-th bf16 score) and the kKeep
// largest upper bounds s~ + e among candidates whose upper bound reaches thr, and the largest
// upper bound it had to drop. Values alone order both lists (one compare per slot; a tie only
// keeps more). Survivors: the list's entries with s~ + e >= the final thr; every candidate of the
// bf16 top-k is one of them unless the list was full and a dropped bound reached thr.
// rescore_kernel scores the survivors again with the bf16 search's mma, 16 K rows by 8 query
// rows per product (each row's result depends on its own K row and Qs row only), and writes the
// top-k under ranks_before: the bf16 search's anchors and scores, bit for bit. A full list is
// settled there too: a dropped candidate's bf16 score is at most its bound, the list's k-th bf16
// score at most the true k-th, so a dropped bound strictly below it cannot rank. Rows still
// open (ties, non-finite inputs) go through exact_search.
// Memory: the records ((D + 16) bytes per K row) and 40 bytes per query row, freed after.
// Measured (H200, balanced, B = 1, 16 heads, D = 128, GQA 1; forward ms, bf16 search -> stream,
// same call): 4K 0.39 -> 0.29, 16K 1.84 -> 1.06, 64K 10.5 -> 5.40, 1M 670 -> 301 (the int8
// search: 544). At 64K the stream kernel takes 2.1 ms (~9.7 GB of records from L2), the rescoring
// 0.58 (5.6 survivors per row; 11% of rows fill the list, 0.7% go back to exact_search). Nsight
// Compute (before the value-only lists and the four chains) found it bound by issue and latency,
// not L2 (34%): one block of 16 warps per SM (127 registers, 221 KB of ring). At GQA 8 the bf16
// search stays faster (64K: 1.16 against 2.9 ms; one K row read already serves eight heads).
// Steps and measurements: experiments/results/2026-11-29-h200-forward-stages.md, session 16.
constexpr int kStreamQueries = 512, kAhead = 2, kKeep = 8;
constexpr int kOverflow = 1 << 30;  // status bit: the list was full (Note [stream search])

// Stripe offsets o(s + 1 + j), j = 0 .. n_table - 1, clamped to int32.
__device__ __forceinline__ int32_t table_offset(const SuperlinearConfig& cfg, int64_t j) {
  const int64_t o = stripe_offset(cfg, cfg.s + 1 + j);
  return int32_t(min(o, int64_t(0x7fffffff)));
}

__device__ __forceinline__ void mbar_init(uint32_t bar, unsigned count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_init_fence() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
__device__ __forceinline__ void mbar_expect(uint32_t bar, unsigned bytes) {
  asm volatile("mbarrier.arrive.expect_tx.release.cta.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar),
               "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, unsigned parity) {
  uint32_t done;
  do {
    asm volatile(
        "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        " selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (!done);
}
// `bytes` (a multiple of 16) from global to shared memory, completing on the mbarrier `bar`.
__device__ __forceinline__ void bulk_copy(uint32_t dst, const void* src, unsigned bytes,
                                          uint32_t bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::
          "r"(dst),
      "l"(src), "r"(bytes), "r"(bar)
      : "memory");
#else
  __trap();
#endif
}

// The N largest values offered (sorted, slot 0 largest) with an int payload each: ties keep the
// earlier entry. The stream search's bounds need values only (Note [stream search]), so a slot
// costs one compare instead of ranks_before's four.
template <int N>
struct ValueTop {
  float s[N];
  int32_t a[N];
  __device__ __forceinline__ void clear() {
#pragma unroll
    for (int j = 0; j < N; ++j) s[j] = -INFINITY, a[j] = kNoAnchor;
  }
  __device__ __forceinline__ void insert(float v, int32_t an) {
    bool gt[N];
#pragma unroll
    for (int j = 0; j < N; ++j) gt[j] = v > s[j];
#pragma unroll
    for (int j = N - 1; j > 0; --j) {
      if (gt[j - 1]) {
        s[j] = s[j - 1], a[j] = a[j - 1];
      } else if (gt[j]) {
        s[j] = v, a[j] = an;
      }
    }
    if (gt[0]) s[0] = v, a[0] = an;
  }
};
// The same without payloads.
template <int N>
struct ValueTopNoPayload {
  float s[N];
  __device__ __forceinline__ void clear() {
#pragma unroll
    for (int j = 0; j < N; ++j) s[j] = -INFINITY;
  }
  __device__ __forceinline__ void insert(float v) {
    bool gt[N];
#pragma unroll
    for (int j = 0; j < N; ++j) gt[j] = v > s[j];
#pragma unroll
    for (int j = N - 1; j > 0; --j) s[j] = gt[j - 1] ? s[j - 1] : (gt[j] ? v : s[j]);
    if (gt[0]) s[0] = v;
  }
};

struct StreamArgs {
  const unsigned char* recs;  // [B Hkv Lkv] records (record_bytes)
  const unsigned* hstat;
  int32_t* keep;              // [rows, kKeep]: the survivors' anchors
  int32_t* status;            // [rows]: survivors (| kOverflow), or -1: left to the bf16 search
  float* dropped;             // [rows]: the largest upper bound not kept (kOverflow rows)
  unsigned long long* stats;  // profiling (or null): survivors, rows overflowed, rows redone
  const int32_t* table;       // o(s + 1 + j), j = 0 .. n_table - 1 (stripe_table_kernel)
  int bq, cap, n_table;       // queries per block and head, ring rows, stripe table entries
};

__global__ void stripe_table_kernel(SuperlinearConfig cfg, int n, int32_t* table) {
  const int j = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (j < n) table[j] = table_offset(cfg, j);
}

// Where a stripe's rows sit: keys A .. A + bq - 1 at ring positions V .. V + bq - 1 (mod cap);
// its first m keys are the ones the previous stripe did not have.
struct StripeCursor {
  int64_t A;
  int V, m, j, o;
  __device__ __forceinline__ void start(int64_t t0, const int32_t* table, int bq) {
    j = 0, o = table[0], A = t0 + 1 - o, V = 0, m = bq;
  }
  __device__ __forceinline__ void next(const int32_t* table, int bq, int cap) {
    const int on = table[j + 1];
    const int64_t gap = int64_t(on) - o;
    o = on;
    ++j;
    A -= gap;
    m = int(min(gap, int64_t(bq)));
    V -= m;
    if (V < 0) V += cap;
  }
};

// One K row of the stream search: the int8 row (per-row scale), then 16 bytes of meta: s_u, the
// residual norm r_u = |k - s_u k8| and n_u = |s_u k8| (Note [stream search]).
template <int D>
constexpr int record_bytes() {
  return D + 16;
}

// Eight threads per K row write its record (E = D / 8 elements each); hstat[3 h] takes the
// largest |k| bits of head h (NaN and inf bits sort above every finite value), so that a head
// with a non-finite key is left to the bf16 search; hstat[3 h + 1], [3 h + 2] stay 0.
template <int D>
__global__ void quantize_records_kernel(const uint16_t* k, int64_t rows_per_head, unsigned* hstat,
                                        unsigned char* rec) {
  constexpr int E = D / 8;
  const int64_t h = blockIdx.y;
  const int64_t row = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 3;
  const int sub = int(threadIdx.x & 7);
  const bool ok = row < rows_per_head;
  float x[E];
  load_vec<bf16, E>(
      reinterpret_cast<const bf16*>(k + (h * rows_per_head + (ok ? row : 0)) * D + sub * E), x);
  unsigned mb = 0;
#pragma unroll
  for (int e = 0; e < E; ++e) mb = max(mb, abs_bits(x[e]));
#pragma unroll
  for (int o = 1; o < 8; o <<= 1) mb = max(mb, __shfl_xor_sync(kFull, mb, o));
  const float m = __uint_as_float(mb);
  const bool finite = mb < 0x7f800000u;
  const float su = finite ? m / 127.f : 0.f, inv = finite && m > 0.f ? 127.f / m : 0.f;
  float err = 0.f, kn = 0.f;
  uint32_t packed[E / 4];
#pragma unroll
  for (int c = 0; c < E / 4; ++c) {
    int v[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float xv = x[4 * c + e];
      v[e] = max(-127, min(127, __float2int_rn(xv * inv)));
      const float kt = su * float(v[e]);
      err = fmaf(xv - kt, xv - kt, err);
      kn = fmaf(kt, kt, kn);
    }
    packed[c] = pack_s8(v);
  }
#pragma unroll
  for (int o = 1; o < 8; o <<= 1) {
    err += __shfl_xor_sync(kFull, err, o);
    kn += __shfl_xor_sync(kFull, kn, o);
  }
  if (ok) {
    unsigned char* dst = rec + (h * rows_per_head + row) * record_bytes<D>();
    if constexpr (E == 16)
      *reinterpret_cast<uint4*>(dst + sub * E) =
          make_uint4(packed[0], packed[1], packed[2], packed[3]);
    else
      *reinterpret_cast<uint2*>(dst + sub * E) = make_uint2(packed[0], packed[1]);
    if (sub == 0) *reinterpret_cast<float4*>(dst + D) = make_float4(su, sqrtf(err), sqrtf(kn), 0.f);
  }
  block_max_into(ok ? mb : 0u, hstat + 3 * h);
}

template <int D>
__device__ __forceinline__ void issue_stripe(const StripeCursor& c, const unsigned char* recs,
                                             int64_t lkv, uint32_t ring, int cap, uint32_t bar) {
  constexpr int RB = record_bytes<D>();
  const int64_t lo = max(c.A, int64_t(0)), hi = min(c.A + c.m - 1, lkv - 1);
  const int n = hi >= lo ? int(hi - lo + 1) : 0;
  mbar_expect(bar, unsigned(n) * RB);
  if (n == 0) return;
  int v = c.V + int(lo - c.A);
  if (v >= cap) v -= cap;
  const int first = min(n, cap - v);
  bulk_copy(ring + uint32_t(v) * RB, recs + lo * RB, unsigned(first) * RB, bar);
  if (n > first) bulk_copy(ring, recs + (lo + first) * RB, unsigned(n - first) * RB, bar);
}

template <int D, int K>
__global__ void __launch_bounds__(kStreamQueries, 1)
    search_stream_kernel(SuperlinearParams p, StreamArgs sa) {
  constexpr int C = D / 16, RB = record_bytes<D>();
  extern __shared__ __align__(128) unsigned char smem[];
  const int tid = int(threadIdx.x), bq = sa.bq, cap = sa.cap;
  const int qi = tid % bq;
  // Later query blocks have more stripes and rows: they start first, so the short ones fill in
  // at the end of the grid.
  const int64_t xb = int64_t(gridDim.x) - 1 - blockIdx.x;
  const int64_t r = p.Hq / p.Hkv, bg = blockIdx.y, b = bg / p.Hkv, g = bg % p.Hkv;
  const int64_t h = g * r + tid / bq, i = xb * bq + qi;
  const bool valid = i < p.Lq;
  const int64_t row = ((b * p.Hq + h) * p.Lq + (valid ? i : 0));
  const int64_t t0 = p.q_start + xb * bq, t = t0 + qi;

  // This thread's Qs row in int8 with its scale, norm and quantisation error (Note [int8
  // search]).
  uint32_t q8[D / 4];
  float sq = 0.f, n2 = 0.f, e2q = 0.f;
  if (valid) {
    const bf16* q = static_cast<const bf16*>(p.qs) + row * D;
    float m = 0.f;
#pragma unroll
    for (int c = 0; c < D / 8; ++c) {
      float x[8];
      load_vec<bf16, 8>(q + 8 * c, x);
#pragma unroll
      for (int e = 0; e < 8; ++e) m = fmaxf(m, fabsf(x[e]));
    }
    sq = m / 127.f;
    const float inv = m > 0.f && m <= 3.402823466e38f ? 127.f / m : 0.f;
#pragma unroll
    for (int c = 0; c < C; ++c) {
      float x[16];
      load_vec<bf16, 16>(q + 16 * c, x);
#pragma unroll
      for (int w = 0; w < 4; ++w) {
        int iv[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float xv = x[4 * w + e];
          iv[e] = max(-127, min(127, __float2int_rn(xv * inv)));
          const float d = xv - sq * float(iv[e]);
          n2 = fmaf(xv, xv, n2);
          e2q = fmaf(d, d, e2q);
        }
        q8[4 * c + w] = pack_s8(iv);
      }
    }
  }
  const float nq = sqrtf(n2), eq = sqrtf(e2q);
  const float kmax = __uint_as_float(sa.hstat[3 * bg]);
  // NaN anywhere in the Qs row makes n2 NaN (fmaxf would skip it).
  const bool bad =
      valid && !(nq <= 3.402823466e38f && eq <= 3.402823466e38f && kmax <= 3.402823466e38f);
  const float nq_hi = nq * (1.f + kSlack), nq_lo = nq * kSlack;
  const int64_t sb = valid && p.doc_starts ? p.doc_starts[b * p.Lkv + t] : 0;
  const int n = valid && !bad ? int(num_candidates(p.cfg, t + 1 - sb)) : 0;

  const uint32_t ring = attn::smem_addr(smem);
  const int32_t* table = sa.table;
  unsigned char* tail = smem + cap * RB;
  const uint32_t bars = attn::smem_addr(tail);
  int* s_nmax = reinterpret_cast<int*>(tail + 8 * (kAhead + 1));
  if (tid == 0) {
    for (int x = 0; x <= kAhead; ++x) mbar_init(bars + 8 * x, 1);
    mbar_init_fence();
    *s_nmax = 0;
  }
  __syncthreads();
  const int wmax = __reduce_max_sync(kFull, n);
  if ((tid & 31) == 0) atomicMax(s_nmax, wmax);
  __syncthreads();
  const int nmax = *s_nmax;

  const unsigned char* recs = sa.recs + bg * p.Lkv * RB;
  StripeCursor cur, ahead;
  cur.start(t0, table, bq);
  ahead = cur;
  // Stripe j < nmax has table[j + 1], so a cursor may always step past it.
  if (tid == 0)
    for (int x = 0; x < kAhead && x < nmax; ++x) {
      issue_stripe<D>(ahead, recs, p.Lkv, ring, cap, bars + 8 * x);
      ahead.next(table, bq, cap);
    }

  // low: the k largest lower bounds s~ - e (the k-th, thr, bounds the k-th bf16 score from
  // below); up: the largest upper bounds s~ + e among candidates that reached thr.
  ValueTopNoPayload<K> low;
  ValueTop<kKeep> up;
  low.clear();
  up.clear();
  float thr = -INFINITY, dropped = -INFINITY;
  int stage = 0;
  unsigned parity = 0;
  for (int j = 0; j < nmax; ++j) {
    __syncthreads();  // every thread is done with stripe j - 1, whose stage is re-armed here
    if (tid == 0 && j + kAhead < nmax) {  // `ahead` is at stripe j + kAhead
      int st = stage + kAhead;
      if (st > kAhead) st -= kAhead + 1;
      issue_stripe<D>(ahead, recs, p.Lkv, ring, cap, bars + 8 * st);
      ahead.next(table, bq, cap);
    }
    mbar_wait(bars + 8 * stage, parity);
    if (j < n) {
      int slot = cur.V + qi;
      if (slot >= cap) slot -= cap;
      const unsigned char* kr = smem + slot * RB;
      // Four independent chains (integer sums are exact in any order).
      int acc[4] = {0, 0, 0, 0};
#pragma unroll
      for (int c = 0; c < C; ++c) {
        const uint4 w = *reinterpret_cast<const uint4*>(kr + 16 * c);
        acc[0] = __dp4a(int(w.x), int(q8[4 * c + 0]), acc[0]);
        acc[1] = __dp4a(int(w.y), int(q8[4 * c + 1]), acc[1]);
        acc[2] = __dp4a(int(w.z), int(q8[4 * c + 2]), acc[2]);
        acc[3] = __dp4a(int(w.w), int(q8[4 * c + 3]), acc[3]);
      }
      const float4 mu = *reinterpret_cast<const float4*>(kr + D);
      // |<q, k> - s~| <= |q| r_u + e_q n_u + slack (Note [int8 search], per row).
      const float sc = float((acc[0] + acc[1]) + (acc[2] + acc[3])) * (sq * mu.x);
      const float e = fmaf(nq_hi, mu.y, fmaf(nq_lo, mu.z, eq * mu.z));
      const float hi = sc + e;
      if (hi >= thr) {
        const float lo = sc - e;
        if (lo > low.s[K - 1]) {
          low.insert(lo);
          thr = low.s[K - 1];
        }
        if (hi > up.s[kKeep - 1]) {
          dropped = fmaxf(dropped, up.s[kKeep - 1]);
          up.insert(hi, int32_t(cur.A + qi));
        } else {
          dropped = fmaxf(dropped, hi);
        }
      }
    }
    cur.next(table, bq, cap);
    if (++stage > kAhead) stage = 0, parity ^= 1u;
  }

  if (!valid) return;
  int cnt = 0;
#pragma unroll
  for (int x = 0; x < kKeep; ++x)
    if (up.a[x] >= 0 && up.s[x] >= thr) {
      sa.keep[row * kKeep + x] = up.a[x];
      cnt = x + 1;
    }
  // A full list (a candidate with s~ + e >= thr was dropped) is settled after rescoring if the
  // largest dropped upper bound is below the list's own k-th bf16 score (rescore_kernel).
  const bool over = !bad && dropped >= thr;
  if (over) sa.dropped[row] = dropped;
  sa.status[row] = bad ? -1 : (over ? cnt | kOverflow : cnt);
  if (sa.stats != nullptr) {
    const int sum = __reduce_add_sync(__activemask(), cnt);
    const int nov = __reduce_add_sync(__activemask(), over || bad ? 1 : 0);
    if ((tid & 31) == __ffs(__activemask()) - 1) {
      atomicAdd(sa.stats, (unsigned long long)sum);
      atomicAdd(sa.stats + 1, (unsigned long long)nov);
    }
  }
}

template <int D>
constexpr int rescore_region_bytes() {
  constexpr int own = kStages * tile_bytes<D>() + 8 * kKeep * 3 * int(sizeof(int32_t));
  return own > exact_region_bytes<D>() ? own : exact_region_bytes<D>();
}

// The stream search's second kernel (Note [stream search]): one warp per 8 consecutive query rows
// (columns of the bf16 product); their survivors, 16 at a time (kStages tiles in flight), are the
// product's rows.
template <int D, int K>
__global__ void __launch_bounds__(kWarps * 32) rescore_kernel(SuperlinearParams p, StreamArgs sa) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int lane = lane_id(), wib = int(threadIdx.x) >> 5;
  const int64_t rows = p.B * p.Hq * p.Lq, r0 = (int64_t(blockIdx.x) * kWarps + wib) * 8;
  if (r0 >= rows) return;
  unsigned char* region = smem + wib * rescore_region_bytes<D>();
  const int64_t r = p.Hq / p.Hkv;
  // Lanes 0..7: row r0 + lane, its survivors and the key rows' base of its KV head.
  const int64_t row = r0 + (lane & 7);
  const bool mine = lane < 8 && row < rows;
  const int st = mine ? sa.status[row] : 0;
  const int cnt = st > 0 ? st & (kOverflow - 1) : 0;
  const int64_t hrow = (row / p.Lq) % p.Hq, brow = row / (p.Lq * p.Hq);
  const int32_t kvbase = int32_t((brow * p.Hkv + hrow / r) * p.Lkv);
  int off = cnt;
#pragma unroll
  for (int o = 1; o < 8; o <<= 1) {
    const int v = __shfl_up_sync(kFull, off, o);
    if ((lane & 7) >= o) off += v;
  }
  const int total = __shfl_sync(kFull, off, 7);
  off -= cnt;
  int32_t* s_anchor = reinterpret_cast<int32_t*>(region + kStages * tile_bytes<D>());
  int32_t* s_owner = s_anchor + 8 * kKeep;
  float* s_score = reinterpret_cast<float*>(s_owner + 8 * kKeep);
  for (int x = 0; x < cnt; ++x) {
    s_anchor[off + x] = sa.keep[row * kKeep + x];
    s_owner[off + x] = lane;
  }
  __syncwarp();

  // B fragments: column n = lane / 4 is row r0 + n.
  uint32_t qf[D / 16][2];
  {
    const int64_t rn = r0 + (lane >> 2);
    const bool ok = rn < rows;
    const uint16_t* q = static_cast<const uint16_t*>(p.qs) + (ok ? rn : 0) * D + 2 * (lane & 3);
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      qf[kk][0] = ok ? *reinterpret_cast<const uint32_t*>(q + 16 * kk) : 0u;
      qf[kk][1] = ok ? *reinterpret_cast<const uint32_t*>(q + 16 * kk + 8) : 0u;
    }
  }
  const uint16_t* keys = static_cast<const uint16_t*>(p.k);
  const uint32_t tiles = attn::smem_addr(region);
  const int ntiles = (total + kRows - 1) / kRows;
  auto load = [&](int j) {
    const int x = j * kRows + (lane & 15);
    const int own = x < total ? s_owner[x] : 0;
    const int32_t kb = __shfl_sync(kFull, kvbase, own);
    gather_rows<D>(tiles + (j % kStages) * tile_bytes<D>(), keys,
                   x < total ? kb + s_anchor[x] : kNoAnchor, lane);
  };
  for (int j = 1 - kStages; j < ntiles; ++j) {
    if (j >= 0) {
      attn::cp_async_wait<kStages - 2>();
      __syncwarp();
    }
    if (j + kStages - 1 < ntiles) load(j + kStages - 1);
    attn::cp_async_commit();
    if (j < 0) continue;
    const uint32_t tile = tiles + (j % kStages) * tile_bytes<D>();
    float acc[2][4] = {};
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t af[4];
      attn::load_a<D>(af, tile, 0, kk, lane);
      attn::Mma<bf16>::run(acc[kk & 1], af, qf[kk][0], qf[kk][1]);
    }
    const int base = j * kRows;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int tr = (lane >> 2) + 8 * half;
      const int ro = base + tr < total ? s_owner[base + tr] : -8;
      const int col = ro - 2 * (lane & 3);
      // exact_search's sum for this K row and Qs row: acc[0] + acc[1].
      const float c0 = acc[0][2 * half] + acc[1][2 * half];
      const float c1 = acc[0][2 * half + 1] + acc[1][2 * half + 1];
      if (col == 0 || col == 1) s_score[base + tr] = col == 0 ? c0 : c1;
    }
  }
  attn::cp_async_wait<0>();
  __syncwarp();
  bool done = false;
  if (mine && st >= 0) {
    TopK<K> fin;
    fin.clear();
    for (int x = off; x < off + cnt; ++x)
      if (ranks_before(s_score[x], s_anchor[x], fin.s[K - 1], fin.a[K - 1]))
        fin.insert(s_score[x], s_anchor[x]);
    // A dropped candidate's bf16 score is at most its upper bound; the list's k-th bf16 score is
    // at most the true k-th. Strictly below it, no dropped candidate can rank in the top-k.
    done = (st & kOverflow) == 0 || (fin.a[K - 1] >= 0 && sa.dropped[row] < fin.s[K - 1]);
    if (done)
#pragma unroll
      for (int j = 0; j < K; ++j)
        p.anchors[row * K + j] = fin.a[j], static_cast<float*>(p.scores)[row * K + j] = fin.s[j];
  }
  const unsigned redo = __ballot_sync(kFull, mine && !done);
  if (sa.stats != nullptr && lane == 0 && redo != 0)
    atomicAdd(sa.stats + 2, (unsigned long long)__popc(redo));
  __syncwarp();
  // Rows the stream left: the bf16 search, one row (head column 0) at a time.
  for (unsigned left = redo; left != 0; left &= left - 1) {
    const int64_t rr = r0 + __ffs(left) - 1;
    WarpJob job;
    job.i = rr % p.Lq;
    job.h0 = (rr / p.Lq) % p.Hq;
    job.b = rr / (p.Lq * p.Hq);
    job.g = job.h0 / r;
    job.nh = 1;
    job.t = p.q_start + job.i;
    const int64_t sb = p.doc_starts ? p.doc_starts[job.b * p.Lkv + job.t] : 0;
    job.n = num_candidates(p.cfg, job.t + 1 - sb);
    job.ntiles = int((job.n + kRows - 1) / kRows);
    load_qf<D>(p, job, lane, qf);
    exact_search<D, K>(p, job, qf, region, lane);
    __syncwarp();
  }
}

// Queries per block and head for r query heads per KV head (a multiple of 32, r * bq <= 512).
inline int stream_bq(int64_t r) {
  return 32 * int(std::max<int64_t>(1, (kStreamQueries / 32) / r));
}
template <int D>
int64_t stream_smem_bytes(int bq) {
  return int64_t(kAhead + 1) * bq * record_bytes<D>() + 8 * (kAhead + 1) + 8;
}
inline int stream_table(const SuperlinearParams& p) {
  return int(num_candidates(p.cfg, p.q_start + p.Lq)) + 1;
}

template <int D, int K>
void launch_stream(const SuperlinearParams& p, const StreamArgs& sa, cudaStream_t s,
                   cuda::Event* between) {
  const int64_t r = p.Hq / p.Hkv;
  const int smem = int(stream_smem_bytes<D>(sa.bq));
  SL_CUDA_CHECK(cudaFuncSetAttribute(search_stream_kernel<D, K>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  const dim3 grid(unsigned((p.Lq + sa.bq - 1) / sa.bq), unsigned(p.B * p.Hkv));
  search_stream_kernel<D, K><<<grid, unsigned(r * sa.bq), smem, s>>>(p, sa);
  SL_CUDA_LAUNCH_CHECK();
  if (between != nullptr) between->record(s);
  constexpr int rsmem = kWarps * rescore_region_bytes<D>();
  SL_CUDA_CHECK(cudaFuncSetAttribute(rescore_kernel<D, K>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, rsmem));
  const int64_t warps = (p.B * p.Hq * p.Lq + 7) / 8;
  rescore_kernel<D, K><<<unsigned((warps + kWarps - 1) / kWarps), kWarps * 32, rsmem, s>>>(p, sa);
  SL_CUDA_LAUNCH_CHECK();
}

template <int D, int K = 1>
void launch_stream_k(const SuperlinearParams& p, const StreamArgs& sa, cudaStream_t s,
                     cuda::Event* between) {
  if constexpr (K <= kMaxK) {
    if (p.cfg.k == K) return launch_stream<D, K>(p, sa, s, between);
    launch_stream_k<D, K + 1>(p, sa, s, between);
  } else {
    SL_FAIL() << kOp << ": the stream search keeps 1.." << kMaxK
              << " spans, config has k = " << p.cfg.k;
  }
}

}  // namespace

bool search_mma_supported(const SuperlinearParams& p) {
  return p.dtype == DType::BF16 && (p.D == 64 || p.D == 128) && p.stat_dtype == DType::F32 &&
         aligned16(p.k) && aligned16(p.qs);
}

void launch_search_mma(const SuperlinearParams& p, cudaStream_t s) {
  SL_CHECK(search_mma_supported(p)) << kOp << ": the tensor-core search needs bf16, D 64 or 128";
  if (p.D == 64) return launch_k<64>(p, nullptr, s);
  launch_k<128>(p, nullptr, s);
}

// Where it was measured faster (Note [int8 search]): one query head per KV head, 1M keys and up,
// and prefill-like calls only (the int8 copy costs a pass over all of K, which a chunk of few
// queries, as in decode, would not repay).
bool search_int8_preferred(const SuperlinearParams& p) {
  return p.Hq == p.Hkv && p.Lkv >= (int64_t(1) << 20) && 2 * p.Lq >= p.Lkv;
}

// The int8 copy of K and its statistics per (batch, KV head) (Note [int8 search]), in scratch.
struct KeysQ8 {
  Tensor rows, hstat;
};
KeysQ8 quantize_keys(const SuperlinearParams& p, Device dev, cudaStream_t s) {
  const int64_t heads = p.B * p.Hkv;
  SL_CHECK(heads <= 65535) << kOp
                           << ": the int8 searches take at most 65535 (batch, KV head) pairs";
  KeysQ8 q{scratch(heads * p.Lkv * p.D, dev), scratch(heads * 12, dev)};
  unsigned* hstat = static_cast<unsigned*>(q.hstat.data_ptr());
  int8_t* rows = static_cast<int8_t*>(q.rows.data_ptr());
  SL_CUDA_CHECK(cudaMemsetAsync(hstat, 0, size_t(heads) * 12, s));
  const uint16_t* k = static_cast<const uint16_t*>(p.k);
  const dim3 grid_max(unsigned(std::min<int64_t>(256, (p.Lkv * p.D / 8 + 255) / 256)),
                      unsigned(heads));
  const dim3 grid_rows(unsigned((p.Lkv * 8 + 255) / 256), unsigned(heads));
  if (p.D == 64) {
    head_absmax_kernel<64><<<grid_max, 256, 0, s>>>(k, p.Lkv, hstat);
    quantize_k_kernel<64><<<grid_rows, 256, 0, s>>>(k, p.Lkv, hstat, rows);
  } else {
    head_absmax_kernel<128><<<grid_max, 256, 0, s>>>(k, p.Lkv, hstat);
    quantize_k_kernel<128><<<grid_rows, 256, 0, s>>>(k, p.Lkv, hstat, rows);
  }
  SL_CUDA_LAUNCH_CHECK();
  return q;
}

// SL_SPAN_PROFILE=1: N zeroed 64-bit counters, else an undefined tensor.
template <int N>
Tensor profile_counters(Device dev, cudaStream_t s) {
  static const bool profile = std::getenv("SL_SPAN_PROFILE") != nullptr;
  if (!profile) return Tensor();
  Tensor c = scratch(8 * N, dev);
  SL_CUDA_CHECK(cudaMemsetAsync(c.data_ptr(), 0, 8 * N, s));
  return c;
}
template <int N>
void read_counters(const Tensor& c, unsigned long long (&h)[N], cudaStream_t s) {
  SL_CUDA_CHECK(cudaMemcpyAsync(h, c.data_ptr(), 8 * N, cudaMemcpyDeviceToHost, s));
  SL_CUDA_CHECK(cudaStreamSynchronize(s));
}

void launch_search_q8(const SuperlinearParams& p, int device, cudaStream_t s) {
  SL_CHECK(search_mma_supported(p)) << kOp << ": the int8 search needs bf16, D 64 or 128";
  const Device dev = Device::cuda(device);
  const KeysQ8 keys = quantize_keys(p, dev, s);
  const Tensor stats = profile_counters<2>(dev, s);
  Q8Keys q8{static_cast<int8_t*>(keys.rows.data_ptr()),
            static_cast<unsigned*>(keys.hstat.data_ptr()),
            stats.defined() ? static_cast<unsigned long long*>(stats.data_ptr()) : nullptr};
  if (p.D == 64)
    launch_k<64>(p, &q8, s);
  else
    launch_k<128>(p, &q8, s);
  if (stats.defined()) {
    unsigned long long h[2];
    read_counters(stats, h, s);
    const int64_t warps = warp_count(p);
    std::fprintf(stderr,
                 "superlinear int8 search: %lld of %lld warps fell back to the bf16 search, %.2f "
                 "candidates rescored per warp\n",
                 (long long)h[0], (long long)warps,
                 double(h[1]) / double(std::max<int64_t>(1, warps - int64_t(h[0]))));
  }
}

bool search_stream_supported(const SuperlinearParams& p) {
#if defined(SL_CUDA_SM90A)
  if (!search_mma_supported(p) || p.Hq / p.Hkv > kStreamQueries / 32) return false;
  int dev = 0, major = 0;
  SL_CUDA_CHECK(cudaGetDevice(&dev));
  SL_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  const int bq = stream_bq(p.Hq / p.Hkv);
  const int64_t smem = p.D == 64 ? stream_smem_bytes<64>(bq) : stream_smem_bytes<128>(bq);
  return major >= 9 && smem <= 227 * 1024;
#else
  (void)p;
  return false;
#endif
}

bool search_stream_preferred(const SuperlinearParams& p) {
  return p.Hq == p.Hkv && 2 * p.Lq >= p.Lkv && search_stream_supported(p);
}

void launch_search_stream(const SuperlinearParams& p, int device, cudaStream_t s) {
  SL_CHECK(search_stream_supported(p))
      << kOp << ": the stream search needs bf16, D 64 or 128, at most 16 query heads per KV head "
      << "and a Hopper device";
  const Device dev = Device::cuda(device);
  const int64_t heads = p.B * p.Hkv, rows = p.B * p.Hq * p.Lq;
  SL_CHECK(heads <= 65535) << kOp
                           << ": the stream search takes at most 65535 (batch, KV head) pairs";
  const bool timed = std::getenv("SL_SPAN_PROFILE") != nullptr;
  std::vector<cuda::Event> ev(timed ? 4 : 0);
  if (timed) ev[0].record(s);
  Tensor recs = scratch(heads * p.Lkv * (p.D + 16), dev), hstat = scratch(heads * 12, dev);
  {
    unsigned* hs = static_cast<unsigned*>(hstat.data_ptr());
    unsigned char* rc = static_cast<unsigned char*>(recs.data_ptr());
    SL_CUDA_CHECK(cudaMemsetAsync(hs, 0, size_t(heads) * 12, s));
    const uint16_t* k = static_cast<const uint16_t*>(p.k);
    const dim3 grid(unsigned((p.Lkv * 8 + 255) / 256), unsigned(heads));
    if (p.D == 64)
      quantize_records_kernel<64><<<grid, 256, 0, s>>>(k, p.Lkv, hs, rc);
    else
      quantize_records_kernel<128><<<grid, 256, 0, s>>>(k, p.Lkv, hs, rc);
    SL_CUDA_LAUNCH_CHECK();
  }
  Tensor keep = scratch(rows * kKeep * 4, dev), status = scratch(rows * 4, dev),
         dropped = scratch(rows * 4, dev);
  const Tensor stats = profile_counters<3>(dev, s);
  StreamArgs sa;
  sa.recs = static_cast<const unsigned char*>(recs.data_ptr());
  sa.hstat = static_cast<const unsigned*>(hstat.data_ptr());
  sa.keep = static_cast<int32_t*>(keep.data_ptr());
  sa.status = static_cast<int32_t*>(status.data_ptr());
  sa.dropped = static_cast<float*>(dropped.data_ptr());
  sa.stats = stats.defined() ? static_cast<unsigned long long*>(stats.data_ptr()) : nullptr;
  sa.bq = stream_bq(p.Hq / p.Hkv);
  sa.cap = (kAhead + 1) * sa.bq;
  sa.n_table = stream_table(p);
  Tensor table = scratch(int64_t(sa.n_table) * 4, dev);
  sa.table = static_cast<const int32_t*>(table.data_ptr());
  stripe_table_kernel<<<unsigned((sa.n_table + 255) / 256), 256, 0, s>>>(
      p.cfg, sa.n_table, static_cast<int32_t*>(table.data_ptr()));
  SL_CUDA_LAUNCH_CHECK();
  if (timed) ev[1].record(s);
  if (p.D == 64)
    launch_stream_k<64>(p, sa, s, timed ? &ev[2] : nullptr);
  else
    launch_stream_k<128>(p, sa, s, timed ? &ev[2] : nullptr);
  if (stats.defined()) {
    ev[3].record(s);
    unsigned long long h[3];
    read_counters(stats, h, s);
    std::fprintf(
        stderr,
        "superlinear stream search: of %lld rows %lld overflowed the list (or had non-finite "
        "inputs), %lld left to the bf16 search; %.2f survivors rescored per row; ms: "
        "quantise %.3f stream %.3f rescore %.3f\n",
        (long long)rows, (long long)h[1], (long long)h[2],
        double(h[0]) / double(std::max<int64_t>(1, rows)), double(ev[1].elapsed_ms(ev[0])),
        double(ev[2].elapsed_ms(ev[1])), double(ev[3].elapsed_ms(ev[2])));
  }
}

}  // namespace sl::kernels::slcuda
