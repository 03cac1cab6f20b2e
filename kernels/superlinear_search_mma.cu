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

// Offers (sc, an) to a lane's sorted top-k (bs, ba) whose k-th entry is (ws, wa); candidates
// that do not rank before the threshold (ts, ta) -- at least the k-th entry -- are rejected by
// the first compare (Note [shared threshold]).
__device__ __forceinline__ void offer(int k, float sc, int32_t an, float (&bs)[kMaxK],
                                      int32_t (&ba)[kMaxK], float& ws, int32_t& wa, float& ts,
                                      int32_t& ta) {
  if (an < 0 || !ranks_before(sc, an, ts, ta)) return;
  topk_insert(k, sc, an, bs, ba);
  ws = bs[0], wa = ba[0];
#pragma unroll
  for (int j = 1; j < kMaxK; ++j)
    if (j < k) ws = bs[j], wa = ba[j];
  if (ranks_before(ws, wa, ts, ta)) ts = ws, ta = wa;
}

// Merges in the top-k of lane ^ x: both lanes end with the top-k of the union.
__device__ __forceinline__ void merge_xor(int k, int x, float (&bs)[kMaxK], int32_t (&ba)[kMaxK],
                                          float& ws, int32_t& wa) {
  float ps[kMaxK];
  int32_t pa[kMaxK];
#pragma unroll
  for (int j = 0; j < kMaxK; ++j) {
    ps[j] = j < k ? __shfl_xor_sync(kFull, bs[j], x) : -INFINITY;
    pa[j] = j < k ? __shfl_xor_sync(kFull, ba[j], x) : kNoAnchor;
  }
  float ts = ws;
  int32_t ta = wa;
#pragma unroll
  for (int j = 0; j < kMaxK; ++j) offer(k, ps[j], pa[j], bs, ba, ws, wa, ts, ta);
}

template <int D>
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
  const int k = cfg.k;
  const int64_t t = p.q_start + i, sb = p.doc_starts ? p.doc_starts[b * p.Lkv + t] : 0;
  const int64_t n = num_candidates(cfg, t + 1 - sb);
  const int ntiles = int((n + kRows - 1) / kRows);
  const uint16_t* K = static_cast<const uint16_t*>(p.k) + (b * p.Hkv + g) * p.Lkv * D;
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

  // Tile j: lane l copies row l % 16 (candidate 16 j + l % 16), chunks l / 16, l / 16 + 2, ..., so
  // each row's two halves of a 32-byte sector arrive in one instruction. Anchors are computed
  // once per 32 candidates (lane per candidate) at even tiles; a_next carries the odd tile's.
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
    const uint16_t* src = K + (a >= 0 ? int64_t(a) * D : 0);
#pragma unroll
    for (int it = 0; it < D / 16; ++it) {
      const int cc = 2 * it + (lane >> 4);
      attn::cp_async16(tile + attn::tile_offset<D>(m, cc), src + cc * 8, a >= 0);
    }
  };

  // Note [per-lane top-k].
  const int hh = 2 * (lane & 3) + ((lane >> 2) & 1), r0 = lane >> 2, r1 = r0 ^ 1;
  const bool even = (r0 & 1) == 0, head_ok = hh < nh;
  float bs[kMaxK], ws = -INFINITY;
  int32_t ba[kMaxK], wa = kNoAnchor;
#pragma unroll
  for (int j = 0; j < kMaxK; ++j) bs[j] = -INFINITY, ba[j] = kNoAnchor;

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
    float ts = ws;
    int32_t ta = wa;
#pragma unroll
    for (int x = 8; x <= 16; x *= 2) {
      const float os = __shfl_xor_sync(kFull, ts, x);
      const int32_t oa = __shfl_xor_sync(kFull, ta, x);
      if (ranks_before(os, oa, ts, ta)) ts = os, ta = oa;
    }
    if (!head_ok) continue;
    const int32_t* an = anch + st * kRows;
    offer(k, even ? c[0] : c[1], an[r0], bs, ba, ws, wa, ts, ta);
    offer(k, even ? c[2] : c[3], an[r0 + 8], bs, ba, ws, wa, ts, ta);
    offer(k, give0, an[r1], bs, ba, ws, wa, ts, ta);
    offer(k, give2, an[r1 + 8], bs, ba, ws, wa, ts, ta);
  }
  attn::cp_async_wait<0>();

  merge_xor(k, 8, bs, ba, ws, wa);
  merge_xor(k, 16, bs, ba, ws, wa);
  if (lane >= kHeads || !head_ok) return;
  const int64_t row = ((b * p.Hq + h0 + hh) * p.Lq + i) * k;
#pragma unroll
  for (int j = 0; j < kMaxK; ++j)
    if (j < k) p.anchors[row + j] = ba[j], static_cast<float*>(p.scores)[row + j] = bs[j];
}

template <int D>
void launch(const SuperlinearParams& p, cudaStream_t s) {
  const int64_t r = p.Hq / p.Hkv, warps = p.B * p.Hkv * p.Lq * ((r + kHeads - 1) / kHeads);
  constexpr int smem = search_smem_bytes<D>();
  SL_CUDA_CHECK(cudaFuncSetAttribute(search_mma_kernel<D>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  search_mma_kernel<D><<<unsigned((warps + kWarps - 1) / kWarps), kWarps * 32, smem, s>>>(p);
  SL_CUDA_LAUNCH_CHECK();
}

}  // namespace

bool search_mma_supported(const SuperlinearParams& p) {
  return p.dtype == DType::BF16 && (p.D == 64 || p.D == 128) && p.stat_dtype == DType::F32 &&
         aligned16(p.k) && aligned16(p.qs);
}

void launch_search_mma(const SuperlinearParams& p, cudaStream_t s) {
  SL_CHECK(search_mma_supported(p)) << kOp << ": the tensor-core search needs bf16, D 64 or 128";
  if (p.D == 64) return launch<64>(p, s);
  launch<128>(p, s);
}

}  // namespace sl::kernels::slcuda
