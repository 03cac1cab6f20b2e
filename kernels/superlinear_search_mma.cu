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
// The search is bounded by moving K rows, and no blocking removes that: candidate i of query t
// is key t + 1 - i^2 (p = 1/2), so for one stripe a block of consecutive queries needs one
// distinct row per query, and stripes i and i + 1 share rows only while 2 i + 1 is below the
// block's length, i.e. for the first few dozen of ~1,000 stripes at 1M. What can be shared is a
// row across the heads of a KV group (this kernel: one gather serves up to 8 heads), and rows of
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

template <int D, int K>
__global__ void __launch_bounds__(kWarps * 32) search_mma_kernel(SuperlinearParams p) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int lane = lane_id(), wib = int(threadIdx.x) >> 5;
  const int64_t r = p.Hq / p.Hkv, chunks = (r + kHeads - 1) / kHeads;
  const int64_t w = int64_t(blockIdx.x) * kWarps + wib;
  if (w >= p.B * p.Hkv * p.Lq * chunks) return;
  const int64_t hc = w % chunks, i = (w / chunks) % p.Lq, g = (w / (chunks * p.Lq)) % p.Hkv,
                b = w / (chunks * p.Lq * p.Hkv);
  const int64_t h0 = g * r + hc * kHeads;
  const int nh = int(min(int64_t(kHeads), r - hc * kHeads));
  const SuperlinearConfig& cfg = p.cfg;
  const int64_t t = p.q_start + i, sb = p.doc_starts ? p.doc_starts[b * p.Lkv + t] : 0;
  const int64_t n = num_candidates(cfg, t + 1 - sb);
  const int ntiles = int((n + kRows - 1) / kRows);
  const uint16_t* keys = static_cast<const uint16_t*>(p.k) + (b * p.Hkv + g) * p.Lkv * D;
  const uint32_t tiles = attn::smem_addr(smem + wib * kStages * tile_bytes<D>());
  int32_t* anch =
      reinterpret_cast<int32_t*>(smem + kWarps * kStages * tile_bytes<D>()) + wib * kStages * kRows;

  // B fragments: lane l holds head l / 4, d = 16 kk + 2 (l % 4) + {0, 1} and + 8.
  uint32_t qf[D / 16][2];
  {
    const int head = lane >> 2;
    const uint16_t* q = static_cast<const uint16_t*>(p.qs) +
                        ((b * p.Hq + h0 + min(head, nh - 1)) * p.Lq + i) * D + 2 * (lane & 3);
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      qf[kk][0] = head < nh ? *reinterpret_cast<const uint32_t*>(q + 16 * kk) : 0u;
      qf[kk][1] = head < nh ? *reinterpret_cast<const uint32_t*>(q + 16 * kk + 8) : 0u;
    }
  }

  // Tile j: copy `it` moves rows l / 8 + 4 (it % 4), 16-byte chunk l % 8 + 8 (it / 4), so each
  // copy instruction asks L2 for four whole 128-byte lines (Note [line copies]). Lane m < 16
  // holds candidate 16 j + m's anchor; a lane's four rows' anchors come by shuffle. Anchors are
  // computed once per 32 candidates (lane per candidate) at even tiles; a_next carries the odd
  // tile's.
  const int m = lane & 15;
  int32_t a_next = kNoAnchor;
  auto load = [&](int j) {
    int32_t a = a_next;
    if ((j & 1) == 0) {
      const int64_t cj = int64_t(j) * kRows + lane;
      const int32_t a32 = cj < n ? int32_t(candidate_anchor(cfg, t, cj)) : kNoAnchor;
      a = __shfl_sync(kFull, a32, m);
      a_next = __shfl_sync(kFull, a32, m + 16);
    }
    const int st = j % kStages;
    if (lane < kRows) anch[st * kRows + m] = a;
    const uint32_t tile = tiles + st * tile_bytes<D>();
    int32_t ar[4];
#pragma unroll
    for (int q = 0; q < 4; ++q) ar[q] = __shfl_sync(kFull, a, (lane >> 3) + 4 * q);
#pragma unroll
    for (int it = 0; it < D / 16; ++it) {
      const int q = it % 4, r = (lane >> 3) + 4 * q, cc = (lane & 7) + 8 * (it / 4);
      const uint16_t* src = keys + (ar[q] >= 0 ? int64_t(ar[q]) * D + cc * 8 : 0);
      attn::cp_async16(tile + attn::tile_offset<D>(r, cc), src, ar[q] >= 0);
    }
  };

  // Note [per-lane top-k].
  const int hh = 2 * (lane & 3) + ((lane >> 2) & 1), r0 = lane >> 2, r1 = r0 ^ 1;
  const bool even = (r0 & 1) == 0, head_ok = hh < nh;
  TopK<K> top;
  top.clear();

  for (int j = 1 - kStages; j < ntiles; ++j) {
    if (j >= 0) {
      attn::cp_async_wait<kStages - 2>();
      __syncwarp();
    }
    if (j + kStages - 1 < ntiles) load(j + kStages - 1);
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
    // Note [shared threshold]: the best of the k-th entries of the four lanes of this head.
    float ts = top.s[K - 1];
    int32_t ta = top.a[K - 1];
#pragma unroll
    for (int x = 8; x <= 16; x *= 2) {
      const float os = __shfl_xor_sync(kFull, ts, x);
      const int32_t oa = __shfl_xor_sync(kFull, ta, x);
      if (ranks_before(os, oa, ts, ta)) ts = os, ta = oa;
    }
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
  if (lane >= kHeads || !head_ok) return;
  const int64_t row = ((b * p.Hq + h0 + hh) * p.Lq + i) * K;
#pragma unroll
  for (int j = 0; j < K; ++j)
    p.anchors[row + j] = top.a[j], static_cast<float*>(p.scores)[row + j] = top.s[j];
}

template <int D, int K>
void launch(const SuperlinearParams& p, cudaStream_t s) {
  const int64_t r = p.Hq / p.Hkv, warps = p.B * p.Hkv * p.Lq * ((r + kHeads - 1) / kHeads);
  constexpr int smem = search_smem_bytes<D>();
  SL_CUDA_CHECK(cudaFuncSetAttribute(search_mma_kernel<D, K>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  search_mma_kernel<D, K><<<unsigned((warps + kWarps - 1) / kWarps), kWarps * 32, smem, s>>>(p);
  SL_CUDA_LAUNCH_CHECK();
}

// Note [fixed k]: one kernel per k, k = K, K + 1, ..., kMaxK tried in turn.
template <int D, int K = 1>
void launch_k(const SuperlinearParams& p, cudaStream_t s) {
  if constexpr (K <= kMaxK) {
    if (p.cfg.k == K) return launch<D, K>(p, s);
    launch_k<D, K + 1>(p, s);
  } else {
    SL_FAIL() << kOp << ": the tensor-core search keeps 1.." << kMaxK
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
  if (p.D == 64) return launch_k<64>(p, s);
  launch_k<128>(p, s);
}

}  // namespace sl::kernels::slcuda
