// The stream search of superlinear attention (Note [stream search]): bf16 Qs and K, D 64 or 128,
// a Hopper device (bulk copies into shared memory). Same anchors and scores as the bf16 search
// of kernels/superlinear_search_mma.cu, bit for bit; launch_search (kernels/superlinear_cuda.cu)
// picks it for prefill at one query head per KV head.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "kernels/superlinear_bound_keys.h"
#include "kernels/superlinear_search_cuda.cuh"

namespace sl::kernels::slcuda {
namespace {

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
// largest upper bounds s~ + e among candidates whose upper bound reaches thr, as bound keys (Note
// [bound keys]), and the largest key it had to drop. Values alone order both lists (one compare
// per slot; a tie only keeps more). Survivors: the list's entries whose key reaches thr; every
// candidate of the bf16 top-k is one of them unless the list was full and a dropped key reached
// thr.
// rescore_kernel scores the survivors again with the bf16 search's mma, 16 K rows by 8 query
// rows per product (each row's result depends on its own K row and Qs row only), and writes the
// top-k under ranks_before: the bf16 search's anchors and scores, bit for bit. A full list is
// settled there too: a dropped candidate's bf16 score is at most its bound, the list's k-th bf16
// score at most the true k-th, so a dropped bound strictly below it cannot rank. Rows still
// open (ties, non-finite inputs) go through exact_search.
// Memory: the records ((D + 16) bytes per K row) and 56 bytes per query row, freed after.
// Measured (H200, balanced, B = 1, 16 heads, D = 128, GQA 1; forward ms, bf16 search -> stream,
// same call): 4K 0.39 -> 0.29, 16K 1.84 -> 1.06, 64K 10.5 -> 5.40, 1M 670 -> 301 (the int8
// search: 544). Since, A/B in one call each: the table read a stripe early and the rescoring's
// loads up front, 64K 5.35 -> 5.29 (rescoring 0.58 -> 0.50 ms); bound keys, 12 where the list
// held 8 (bound, anchor) pairs, 64K 5.29 -> 5.07 and 1M 301 -> 284: rows that fill the list 11%
// -> 0.8% at 64K (22% -> 3.4% at 1M), rows back to exact_search 6945 -> 67 (292867 -> 5583),
// rescoring 0.51 -> 0.35 ms (23.8 -> 7.1 at 1M); each stage's ring position in shared memory
// (no cursor per thread), stream kernel 2.07 -> 2.02 ms at 64K; that position read before
// the copy's wait rather than after, 2.03 -> 1.95 ms (64K forward 5.06 -> 5.00). At 64K the
// stream kernel takes 1.95 ms (~9.7 GB of records from L2), the rescoring 0.35 (5.8 survivors
// per row). Its floor there is shared memory: 25.8 GB of record loads and 9.7 GB of copies, ~1.06
// ms at 128 bytes per clock per SM (Nsight Compute: L1 and shared memory 44% busy at 2.02 ms).
// Nsight Compute at 64K (8 (bound, anchor) pairs): 0.41 instructions issued per scheduler, 159
// per warp and stripe (~35 of them the upper-bound list's insertion, run in 83% of warp-stripes),
// 16 warps per SM (127 registers, 221 KB of ring), L2 46%; stall samples barrier 22%, fixed
// latency 18%, shared-memory loads 12%. At 1M: L2 83% busy, 0.24 issued per scheduler, 39% of
// the stall samples waiting for a stripe's copy: there the kernel is bound by L2.
// Measured and dropped (experiments/attic/): without the barrier (the last warp done with a
// stripe issues the next copy) 7% slower; two blocks of 256 queries per SM, 3-6% slower (twice
// the L2 traffic at 64K); each lane holding one key for the list back until a warp-wide
// insertion, no change; each stripe's offers made one stripe late, after the next record's
// loads (ptxas keeps the products ahead of them: 127 registers), no change; each stripe's
// record loaded into registers before the barrier, copies three stripes ahead, 9% slower at 64K
// and 2% at 1M (experiments/attic/record-ahead.patch); two queries per thread in blocks of 256
// threads (the barrier, the copy's wait and the ring position paid once per two queries; 26%
// fewer loop instructions per query), 4% slower at 64K and the same at 1M
// (experiments/attic/stream-two-queries-per-thread.patch). At GQA 8 the bf16 search stays faster
// (64K: 1.16 against 2.9 ms; one K row read already serves eight heads). Steps and
// measurements: experiments/results/2026-11-29-h200-forward-stages.md, sessions 16 to 20.
// Next (not tried): fewer bytes per candidate at 1M, which bounds cheaper than a row's own
// (D + 16)-byte record do not give (experiments/stream_bounds_model.py: the meta bounded per
// head saves 8% and overflows the list for 17% of rows; a first int4 pass sends a fifth of the
// candidates to a gather). At 64K each (query, stripe) reads its record from shared memory
// (25.7 GB: ~0.8 ms of the SM's shared-memory bandwidth). More queries per block share more
// rows, but the registers (127, one query per thread) and the ring (3 x 512 records, 221 KB) are
// full. A cluster of two blocks with multicast bulk copies would read each row from L2 once for
// 1024 queries; with one stripe ahead the ring then holds 1024 + 513 records at 64K (221 KB),
// but more where the gap passes 512 (beyond 64K). Scoring on tensor cores (int8 mma, one useful
// diagonal entry per query and stripe) saves the dp4a but not the loads, and leaves each lane's
// score in another lane.
constexpr int kStreamQueries = 512, kAhead = 2, kKeep = 12;
static_assert(kKeep % 4 == 0, "rescore_kernel loads a row's anchors 16 bytes at a time");
constexpr int kOverflow = 1 << 30;  // status bit: the list was full (Note [stream search])

// A sorted (descending) list of N keys; key 0 is an empty slot (below every key of a finite
// bound).
template <int N>
struct KeyList {
  uint32_t k[N];
  __device__ __forceinline__ void clear() {
#pragma unroll
    for (int x = 0; x < N; ++x) k[x] = 0u;
  }
  __device__ __forceinline__ void insert(uint32_t key) {
    bool before[N];
#pragma unroll
    for (int x = 0; x < N; ++x) before[x] = key > k[x];
#pragma unroll
    for (int x = N - 1; x > 0; --x) k[x] = before[x - 1] ? k[x - 1] : (before[x] ? key : k[x]);
    if (before[0]) k[0] = key;
  }
};

// Stripe offset o(s + 1 + j), clamped to int32.
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

struct StreamArgs {
  const unsigned char* recs;  // [B Hkv Lkv] records (record_bytes)
  const unsigned* hstat;      // [B Hkv]: the largest |k| of each head, as f32 bits
  int32_t* keep;              // [rows, kKeep]: the survivors' anchors
  int32_t* status;            // [rows]: survivors (| kOverflow), or -1: left to the bf16 search
  float* dropped;             // [rows]: the largest upper bound not kept (kOverflow rows)
  unsigned long long* stats;  // profiling (or null): survivors, rows overflowed, rows redone
  const int32_t* table;       // o(s + 1 + j) for every stripe j of the call (stripe_table_kernel)
  int bq, cap;                // queries per block and head, ring rows
  uint32_t key_mask;          // 2^bits - 1: the stripe index's bits in a bound key
};

__global__ void stripe_table_kernel(SuperlinearConfig cfg, int n, int32_t* table) {
  const int j = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (j < n) table[j] = table_offset(cfg, j);
}

// Where a stripe's rows sit: keys A .. A + bq - 1 at ring positions V .. V + bq - 1 (mod cap);
// its first m keys are the ones the previous stripe did not have.
// The next stripe's offset is loaded a stripe early (nx), off the loop's critical path.
struct StripeCursor {
  int64_t A;
  int V, m, j, o, nx;
  __device__ __forceinline__ void start(int64_t t0, const int32_t* table, int bq) {
    j = 0, o = table[0], nx = table[1], A = t0 + 1 - o, V = 0, m = bq;
  }
  __device__ __forceinline__ void next(const int32_t* table, int bq, int cap) {
    const int on = nx;
    nx = table[j + 2];
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

// Eight threads per K row write its record (E = D / 8 elements each); hstat[h] takes the
// largest |k| bits of head h (NaN and inf bits sort above every finite value), so that a head
// with a non-finite key is left to the bf16 search (one word per head: the records carry the
// rest of the bound per row).
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
  float err, kn;
  uint32_t packed[E / 4];
  quantise_part<E>(x, su, inv, packed, err, kn);
  if (ok) {
    unsigned char* dst = rec + (h * rows_per_head + row) * record_bytes<D>();
    if constexpr (E == 16)
      *reinterpret_cast<uint4*>(dst + sub * E) =
          make_uint4(packed[0], packed[1], packed[2], packed[3]);
    else
      *reinterpret_cast<uint2*>(dst + sub * E) = make_uint2(packed[0], packed[1]);
    if (sub == 0) *reinterpret_cast<float4*>(dst + D) = make_float4(su, sqrtf(err), sqrtf(kn), 0.f);
  }
  block_max_into(ok ? mb : 0u, hstat + h);
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
      for (int w = 0; w < 4; ++w) q8[4 * c + w] = quantise_q4(x + 4 * w, sq, inv, n2, e2q);
    }
  }
  const float nq = sqrtf(n2), eq = sqrtf(e2q);
  const float kmax = __uint_as_float(sa.hstat[bg]);
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
  // Each stage's ring position V, written by thread 0 when it issues the stage's copy, at least
  // one block barrier before any thread reads it: the consumers keep no cursor of their own.
  int* s_pos = s_nmax + 1;
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
  StripeCursor ahead;
  ahead.start(t0, table, bq);
  // Stripe j < nmax has table[j + 2], so the cursor may always step past it.
  if (tid == 0)
    for (int x = 0; x < kAhead && x < nmax; ++x) {
      s_pos[x] = ahead.V;
      issue_stripe<D>(ahead, recs, p.Lkv, ring, cap, bars + 8 * x);
      ahead.next(table, bq, cap);
    }

  // low: the k largest lower bounds s~ - e (the k-th, thr, bounds the k-th bf16 score from
  // below); up: the largest upper bounds s~ + e among candidates that reached thr.
  TopK<K, true> low;
  KeyList<kKeep> up;
  low.clear();
  up.clear();
  float thr = -INFINITY;
  uint32_t dropped = 0u;  // the largest key not kept (Note [bound keys])
  const uint32_t mask = sa.key_mask;
  int stage = 0;
  unsigned parity = 0;
  for (int j = 0; j < nmax; ++j) {
    __syncthreads();  // every thread is done with stripe j - 1, whose stage is re-armed here
    if (tid == 0 && j + kAhead < nmax) {  // `ahead` is at stripe j + kAhead
      int st = stage + kAhead;
      if (st > kAhead) st -= kAhead + 1;
      s_pos[st] = ahead.V;
      issue_stripe<D>(ahead, recs, p.Lkv, ring, cap, bars + 8 * st);
      ahead.next(table, bq, cap);
    }
    // Stripe j's position was written before the barrier of iteration j - 1 (or before the
    // loop): the barrier above made it visible, so it is read before the copy's wait.
    int slot = s_pos[stage] + qi;
    if (slot >= cap) slot -= cap;
    mbar_wait(bars + 8 * stage, parity);
    if (j < n) {
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
          low.insert(lo, 0);
          thr = low.s[K - 1];
        }
        const uint32_t key = bound_key(hi, uint32_t(j), mask);
        if (key > up.k[kKeep - 1]) {
          dropped = max(dropped, up.k[kKeep - 1]);
          up.insert(key);
        } else {
          dropped = max(dropped, key);
        }
      }
    }
    if (++stage > kAhead) stage = 0, parity ^= 1u;
  }

  if (!valid) return;
  // Keys compare in integers (Note [bound keys]): one at least ordered_bits(thr) had a bound
  // that reached thr or a rounding step below it.
  const uint32_t thr_bits = ordered_bits(thr);
  int cnt = 0;
#pragma unroll
  for (int x = 0; x < kKeep; ++x)
    if (up.k[x] != 0u && up.k[x] >= thr_bits) {
      sa.keep[row * kKeep + x] = int32_t(t + 1 - table[key_stripe(up.k[x], mask)]);
      cnt = x + 1;
    }
  // A full list (a candidate with s~ + e >= thr was dropped) is settled after rescoring if the
  // largest dropped upper bound is below the list's own k-th bf16 score (rescore_kernel).
  const bool over = !bad && dropped != 0u && dropped >= thr_bits;
  if (over) sa.dropped[row] = key_value(dropped);
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
  // Lanes 0..7: row r0 + lane, its survivors and the key rows' base of its KV head. The loads
  // that do not depend on each other go first: the Qs fragments, each row's status and its kKeep
  // anchors (the entries past its count are not used).
  const int64_t row = r0 + (lane & 7);
  const bool mine = lane < 8 && row < rows;
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
  int st = 0;
  int4 kv[kKeep / 4] = {};
  if (mine) {
    st = sa.status[row];
    const int4* kp = reinterpret_cast<const int4*>(sa.keep + row * kKeep);
#pragma unroll
    for (int x = 0; x < kKeep / 4; ++x) kv[x] = kp[x];
  }
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
#pragma unroll
  for (int x = 0; x < kKeep; ++x) {
    const int4 v4 = kv[x / 4];
    const int32_t a = (x & 3) == 0 ? v4.x : (x & 3) == 1 ? v4.y : (x & 3) == 2 ? v4.z : v4.w;
    if (x < cnt) s_anchor[off + x] = a, s_owner[off + x] = lane;
  }
  __syncwarp();

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
  staged_tiles(ntiles, load, [&](int j) {
    float c[4];
    tile_scores<D>(tiles + (j % kStages) * tile_bytes<D>(), qf, lane, c);
    const int base = j * kRows;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int tr = (lane >> 2) + 8 * half;
      const int ro = base + tr < total ? s_owner[base + tr] : -8;
      const int col = ro - 2 * (lane & 3);
      if (col == 0 || col == 1) s_score[base + tr] = c[2 * half + col];
    }
    return true;
  });
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
  return int64_t(kAhead + 1) * bq * record_bytes<D>() + 8 * (kAhead + 1) + 4 * (kAhead + 2);
}
// Stripe j < nmax reads table[j + 2] (StripeCursor::next).
inline int stream_table(const SuperlinearParams& p) {
  return int(num_candidates(p.cfg, p.q_start + p.Lq)) + 2;
}
// The bits a bound key gives the stripe index (Note [bound keys]).
inline int stream_key_bits(const SuperlinearParams& p) {
  return key_bits(num_candidates(p.cfg, p.q_start + p.Lq));
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

bool search_stream_supported(const SuperlinearParams& p) {
#if defined(SL_CUDA_SM90A)
  if (!search_mma_supported(p) || p.Hq / p.Hkv > kStreamQueries / 32 ||
      stream_key_bits(p) > kMaxKeyBits)
    return false;
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
  const int rb = p.D == 64 ? record_bytes<64>() : record_bytes<128>();
  Tensor recs = scratch(heads * p.Lkv * rb, dev), hstat = scratch(heads * 4, dev);
  {
    unsigned* hs = static_cast<unsigned*>(hstat.data_ptr());
    unsigned char* rc = static_cast<unsigned char*>(recs.data_ptr());
    SL_CUDA_CHECK(cudaMemsetAsync(hs, 0, size_t(heads) * 4, s));
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
  const int n_table = stream_table(p);
  sa.key_mask = (1u << stream_key_bits(p)) - 1u;
  Tensor table = scratch(int64_t(n_table) * 4, dev);
  sa.table = static_cast<const int32_t*>(table.data_ptr());
  stripe_table_kernel<<<unsigned((n_table + 255) / 256), 256, 0, s>>>(
      p.cfg, n_table, static_cast<int32_t*>(table.data_ptr()));
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
