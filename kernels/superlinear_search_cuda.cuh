// Internal to the superlinear searches on tensor cores (kernels/superlinear_search_mma.cu: the
// bf16 and int8 searches; kernels/superlinear_search_stream.cu: the stream search): the bf16
// search of one warp (exact_search) that the others fall back to and whose bits they reproduce,
// its top-k lists and geometry, and the pieces the int8 quantisers share. Not a public header.
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
#pragma once

#include <cstdint>
#include <cstdlib>

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

// A sorted top-K under ranks_before (slot 0 ranks first), kept in registers. ByValue orders by
// the value alone (ties keep the earlier entry): the stream search's bounds need no more (Note
// [stream search]), and a slot then costs one compare instead of ranks_before's four.
template <int K, bool ByValue = false>
struct TopK {
  float s[K];
  int32_t a[K];

  __device__ __forceinline__ void clear() {
#pragma unroll
    for (int j = 0; j < K; ++j) s[j] = -INFINITY, a[j] = kNoAnchor;
  }
  // Inserts (sc, an), dropping the K-th entry. Both orders are total preorders, so "ranks before
  // slot j - 1" implies "ranks before slot j": slot j takes slot j - 1's entry, the new one, or
  // keeps its own. Walking down, slot j - 1 is still the old entry when slot j reads it.
  __device__ __forceinline__ void insert(float sc, int32_t an) {
    bool before[K];
#pragma unroll
    for (int j = 0; j < K; ++j) before[j] = ByValue ? sc > s[j] : ranks_before(sc, an, s[j], a[j]);
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

// The bf16 scores of a tile of 16 K rows (A, swizzled) against the 8 Qs columns of qf: lane l gets
// rows l / 4 and l / 4 + 8, columns 2 (l % 4) + {0, 1} (Note [fragment layouts]). Every search
// scores its final candidates with this product (Notes [int8 search], [stream search]): a row's
// result depends on that K row and that Qs column only, so they give the same bits.
template <int D>
__device__ __forceinline__ void tile_scores(uint32_t tile, const uint32_t (&qf)[D / 16][2],
                                            int lane, float (&c)[4]) {
  float acc[2][4] = {};
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    uint32_t af[4];
    attn::load_a<D>(af, tile, 0, kk, lane);
    attn::Mma<bf16>::run(acc[kk & 1], af, qf[kk][0], qf[kk][1]);
  }
#pragma unroll
  for (int e = 0; e < 4; ++e) c[e] = acc[0][e] + acc[1][e];
}

// The warps' cp.async pipeline over a job's tiles: load(j) starts tile j's copies into stage
// j % kStages, kStages - 1 tiles ahead (a group is committed every step, empty or not, so the
// wait for kStages - 2 groups always names tile j's); body(j) runs once tile j has landed and
// returns false to stop early. Every copy has landed on return.
template <class Load, class Body>
__device__ __forceinline__ void staged_tiles(int ntiles, Load&& load, Body&& body) {
  for (int j = 1 - kStages; j < ntiles; ++j) {
    if (j >= 0) {
      attn::cp_async_wait<kStages - 2>();
      __syncwarp();
    }
    if (j + kStages - 1 < ntiles) load(j + kStages - 1);
    attn::cp_async_commit();
    if (j >= 0 && !body(j)) break;
  }
  attn::cp_async_wait<0>();
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

  staged_tiles(w.ntiles, load, [&](int j) {
    const int st = j % kStages;
    float c[4];
    tile_scores<D>(tiles + st * tile_bytes<D>(), qf, lane, c);
    const float give0 = __shfl_xor_sync(kFull, even ? c[1] : c[0], 4);
    const float give2 = __shfl_xor_sync(kFull, even ? c[3] : c[2], 4);
    float ts;
    int32_t ta;
    head_threshold(top, ts, ta);
    if (!head_ok) return true;
    const int32_t* an = anch + st * kRows;
    offer(even ? c[0] : c[1], an[r0], top, ts, ta);
    offer(even ? c[2] : c[3], an[r0 + 8], top, ts, ta);
    offer(give0, an[r1], top, ts, ta);
    offer(give2, an[r1 + 8], top, ts, ta);
    return true;
  });

  merge_xor(8, top);
  merge_xor(16, top);
  if (lane < kHeads && head_ok) write_top(p, w, hh, top);
}

// The int8 searches: slack for f32 rounding in their bounds (Note [int8 search]), and the
// quantisers' helpers.
constexpr float kSlack = 1.f / 16384.f;  // 2^-14

__device__ __forceinline__ uint32_t pack_s8(const int (&v)[4]) {
  return uint32_t(v[0] & 0xff) | uint32_t(v[1] & 0xff) << 8 | uint32_t(v[2] & 0xff) << 16 |
         uint32_t(v[3] & 0xff) << 24;
}

// Four Qs values in int8 with the row's scale sq (inv = 1 / sq, or 0): their squares are added
// to n2 and their rounding errors' squares to e2 (Note [int8 search]: |q| and e_q).
__device__ __forceinline__ uint32_t quantise_q4(const float* x, float sq, float inv, float& n2,
                                                float& e2) {
  int v[4];
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    v[e] = max(-127, min(127, __float2int_rn(x[e] * inv)));
    const float d = x[e] - sq * float(v[e]);
    n2 = fmaf(x[e], x[e], n2);
    e2 = fmaf(d, d, e2);
  }
  return pack_s8(v);
}

// One of the eight threads of a K row (E = D / 8 values each): its values in int8 with the row's
// scale sk (inv = 1 / sk, or 0), and over the row's eight threads the squared norms of the
// residual x - sk k8 (err) and of sk k8 (kn).
template <int E>
__device__ __forceinline__ void quantise_part(const float (&x)[E], float sk, float inv,
                                              uint32_t (&packed)[E / 4], float& err, float& kn) {
  err = 0.f, kn = 0.f;
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

// SL_SPAN_PROFILE=1: N zeroed 64-bit counters, else an undefined tensor.
template <int N>
inline Tensor profile_counters(Device dev, cudaStream_t s) {
  static const bool profile = std::getenv("SL_SPAN_PROFILE") != nullptr;
  if (!profile) return Tensor();
  Tensor c = scratch(8 * N, dev);
  SL_CUDA_CHECK(cudaMemsetAsync(c.data_ptr(), 0, 8 * N, s));
  return c;
}
template <int N>
inline void read_counters(const Tensor& c, unsigned long long (&h)[N], cudaStream_t s) {
  SL_CUDA_CHECK(cudaMemcpyAsync(h, c.data_ptr(), 8 * N, cudaMemcpyDeviceToHost, s));
  SL_CUDA_CHECK(cudaStreamSynchronize(s));
}

}  // namespace
}  // namespace sl::kernels::slcuda
