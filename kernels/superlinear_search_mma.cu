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
#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "kernels/superlinear_search_cuda.cuh"

namespace sl::kernels::slcuda {
namespace {

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
constexpr int kCap = 64;  // buffered candidates per head

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
  float err, kn;
  uint32_t packed[E / 4];
  quantise_part<E>(x, sk, inv, packed, err, kn);
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
        const uint32_t w = quantise_q4(v[kk] + 4 * h, sq, inv, n2, e2);
        q8f[kk][h] = head < job.nh ? w : 0u;
      }
    n2 += __shfl_xor_sync(kFull, n2, 1);
    n2 += __shfl_xor_sync(kFull, n2, 2);
    e2 += __shfl_xor_sync(kFull, e2, 1);
    e2 += __shfl_xor_sync(kFull, e2, 2);
    nq = sqrtf(n2);
    eq = sqrtf(e2);
    // fmaxf skips NaN, so m misses a NaN element; n2 does not.
    bad = bad || (head < job.nh && !(nq <= 3.402823466e38f));
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
  staged_tiles(job.ntiles, load, [&](int j) {
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
      if (__any_sync(kFull, lane < kHeads && cnt[hh] > kCap)) return false;
    }
    return true;
  });
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
    float c[4];
    tile_scores<D>(rt, qf, lane, c);
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int row = r0 + 8 * half;
      const int rh = __shfl_sync(kFull, eh, row), rs = __shfl_sync(kFull, slot, row);
      const int col = rh - 2 * (lane & 3);
      if (col == 0 || col == 1) buf[rs].y = __float_as_int(c[2 * half + col]);
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

}  // namespace sl::kernels::slcuda
