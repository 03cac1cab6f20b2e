// Internal to the CUDA superlinear attention (kernels/superlinear_cuda.cu forward,
// kernels/superlinear_bwd_cuda.cu backward): limits, row geometry, warp reductions, vectorised
// row loads, the gate and the argument checks shared by both launchers. Not a public header.
//
// Note [warp layouts]
// One warp owns one query row (b, h, t). Two layouts alternate inside its key loops:
//  - lane per key: for a chunk of 32 consecutive keys each lane computes the full dot products
//    <Qa, K_u> and <dO, V_u> of its own key, reading the query rows from shared memory
//    (broadcast); softmax statistics of the chunk are then two warp reductions;
//  - lane per dimension: each lane owns E consecutive elements of D (lane * E ..), so outputs and
//    gradients accumulate as O += p_u V_u with p_u broadcast by a shuffle.
// Every sum runs in a fixed order (per-lane sequential, then an xor butterfly, which gives every
// lane the same bits), so the forward and the deterministic backward are bitwise reproducible.
// The vectorised and scalar row loads accumulate the same elements into the same partial sums,
// so results do not depend on pointer alignment either.
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/cuda_context.h"
#include "kernels/dispatch.h"
#include "kernels/superlinear.h"

namespace sl::kernels::slcuda {

constexpr const char* kOp = "superlinear_attention";
constexpr int kMaxK = 8;    // spans kept (cfg.k) supported on the GPU
constexpr int kMaxD = 256;  // head dim supported on the GPU (E = ceil(D / 32) <= 8)
constexpr int kRowWarps = 4;

__device__ __forceinline__ int lane_id() {
  return int(threadIdx.x & 31);
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ __forceinline__ float logaddexp(float a, float b) {
  const float m = fmaxf(a, b);
  if (m == -INFINITY) return -INFINITY;
  return m + log1pf(expf(fminf(a, b) - m));
}

template <class T>
__device__ __forceinline__ float ld(const T* p) {
  return ScalarTraits<T>::to_compute(*p);
}
template <class T>
__device__ __forceinline__ void st(T* p, float v) {
  *p = ScalarTraits<T>::from_compute(v);
}

__device__ __forceinline__ void unpack(uint32_t w, float* x, const float*) {
  x[0] = __uint_as_float(w);
}
__device__ __forceinline__ void unpack(uint32_t w, float* x, const bf16*) {
  x[0] = __uint_as_float(w << 16);
  x[1] = __uint_as_float(w & 0xffff0000u);
}

// N consecutive elements at p as floats; p aligned to min(16, N * sizeof(T)) bytes.
template <class T, int N>
__device__ __forceinline__ void load_vec(const T* p, float* x) {
  constexpr int kPer = int(4 / sizeof(T));
  constexpr int kWords = N / kPer;
  static_assert(N % kPer == 0, "whole 32-bit words only");
  const T* tag = nullptr;
  if constexpr (kWords % 4 == 0) {
    const uint4* q = reinterpret_cast<const uint4*>(p);
#pragma unroll
    for (int c = 0; c < kWords / 4; ++c) {
      const uint4 w = q[c];
      unpack(w.x, x + (4 * c + 0) * kPer, tag);
      unpack(w.y, x + (4 * c + 1) * kPer, tag);
      unpack(w.z, x + (4 * c + 2) * kPer, tag);
      unpack(w.w, x + (4 * c + 3) * kPer, tag);
    }
  } else if constexpr (kWords == 2) {
    const uint2 w = *reinterpret_cast<const uint2*>(p);
    unpack(w.x, x, tag);
    unpack(w.y, x + kPer, tag);
  } else {
    static_assert(kWords == 1, "1, 2 or a multiple of 4 words");
    unpack(*reinterpret_cast<const uint32_t*>(p), x, tag);
  }
}

// This lane's E elements of a row (lane per dimension); zeros past D. `vec`: Note [warp layouts].
template <class T, int E>
__device__ __forceinline__ void load_lane(const T* row, int D, bool vec, float (&x)[E]) {
  const int d0 = lane_id() * E;
  if (vec && d0 + E <= D) {
    load_vec<T, E>(row + d0, x);
  } else {
#pragma unroll
    for (int e = 0; e < E; ++e) x[e] = d0 + e < D ? ld(row + d0 + e) : 0.f;
  }
}
template <int E>
__device__ __forceinline__ void load_lane_smem(const float* row, int D, float (&x)[E]) {
  const int d0 = lane_id() * E;
#pragma unroll
  for (int e = 0; e < E; ++e) x[e] = d0 + e < D ? row[d0 + e] : 0.f;
}

// <row, q> over D elements, q in shared memory (lane per key). Element d goes to partial sum
// d % 4 in increasing d on both paths, so both give the same bits.
template <class T>
__device__ __forceinline__ float dot_row(const T* row, const float* q, int D, bool vec) {
  float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;
  if (vec) {
    constexpr int P = int(16 / sizeof(T));
    for (int d = 0; d < D; d += P) {
      float x[P];
      load_vec<T, P>(row + d, x);
#pragma unroll
      for (int e = 0; e < P; e += 4) {
        a0 = fmaf(q[d + e + 0], x[e + 0], a0);
        a1 = fmaf(q[d + e + 1], x[e + 1], a1);
        a2 = fmaf(q[d + e + 2], x[e + 2], a2);
        a3 = fmaf(q[d + e + 3], x[e + 3], a3);
      }
    }
  } else {
    int d = 0;
    for (; d + 4 <= D; d += 4) {
      a0 = fmaf(q[d + 0], ld(row + d + 0), a0);
      a1 = fmaf(q[d + 1], ld(row + d + 1), a1);
      a2 = fmaf(q[d + 2], ld(row + d + 2), a2);
      a3 = fmaf(q[d + 3], ld(row + d + 3), a3);
    }
    if (d + 0 < D) a0 = fmaf(q[d + 0], ld(row + d + 0), a0);
    if (d + 1 < D) a1 = fmaf(q[d + 1], ld(row + d + 1), a1);
    if (d + 2 < D) a2 = fmaf(q[d + 2], ld(row + d + 2), a2);
  }
  return (a0 + a1) + (a2 + a3);
}

// Copies a row into shared memory as floats (all lanes; caller syncs the warp).
template <class T>
__device__ __forceinline__ void row_to_smem(const T* row, int D, float* dst) {
  for (int d = lane_id(); d < D; d += 32) dst[d] = ld(row + d);
}

// Query row geometry. Warps walk rows as (b, kv head, i, head in group), so the query heads that
// share a KV head run side by side and share K/V in L2; `row` is the [B, Hq, Lq] index.
struct RowGeom {
  int64_t row, b, h, t, sb, kv_off;
};
__device__ __forceinline__ RowGeom locate_warp(const SuperlinearParams& p, int64_t w) {
  const int64_t r = p.Hq / p.Hkv;
  const int64_t hr = w % r, i = (w / r) % p.Lq, kvh = (w / (r * p.Lq)) % p.Hkv,
                b = w / (r * p.Lq * p.Hkv);
  RowGeom g;
  g.b = b;
  g.h = kvh * r + hr;
  g.row = (b * p.Hq + g.h) * p.Lq + i;
  g.t = p.q_start + i;
  g.sb = p.doc_starts ? p.doc_starts[b * p.Lkv + g.t] : 0;
  g.kv_off = (b * p.Hkv + kvh) * p.Lkv * p.D;
  return g;
}

// (s, a) ranks before the entry (ws, wa): an empty slot loses to any candidate; a larger score
// wins; equal scores: the farther (smaller) anchor wins. A total order over distinct anchors, so
// a top-k under it does not depend on insertion order.
__device__ __forceinline__ bool ranks_before(float s, int32_t a, float ws, int32_t wa) {
  return wa < 0 || s > ws || (s == ws && a < wa);
}

// Inserts (s, a) into a sorted top-k of k <= kMaxK entries (static indices only, so the arrays
// stay in registers).
__device__ __forceinline__ void topk_insert(int k, float s, int32_t a, float (&bs)[kMaxK],
                                            int32_t (&ba)[kMaxK]) {
  int m = 0;
#pragma unroll
  for (int j = 0; j < kMaxK; ++j)
    if (j < k && !ranks_before(s, a, bs[j], ba[j])) m = j + 1;
  if (m >= k) return;
#pragma unroll
  for (int j = kMaxK - 1; j > 0; --j)
    if (j > m && j < k) {
      bs[j] = bs[j - 1];
      ba[j] = ba[j - 1];
    }
#pragma unroll
  for (int j = 0; j < kMaxK; ++j)
    if (j == m) {
      bs[j] = s;
      ba[j] = a;
    }
}

// Gate weights (spec §8): softmax over valid slots' scores, uniform 1/k when none is valid. The
// loops run over kMaxK with j < k inside, so that unrolled they index the arrays statically and
// the arrays stay in registers (a loop to a runtime k put them in local memory).
__device__ __forceinline__ void gate_weights(int k, const float (&sc)[kMaxK],
                                             const int32_t (&an)[kMaxK], float (&g)[kMaxK]) {
  int nv = 0;
  float mx = -INFINITY, sum = 0.f;
#pragma unroll
  for (int j = 0; j < kMaxK; ++j)
    if (j < k && an[j] >= 0) {
      ++nv;
      mx = fmaxf(mx, sc[j]);
    }
#pragma unroll
  for (int j = 0; j < kMaxK; ++j)
    if (j < k) {
      g[j] = nv == 0 ? 1.f / float(k) : (an[j] >= 0 ? expf(sc[j] - mx) : 0.f);
      sum += g[j];
    }
#pragma unroll
  for (int j = 0; j < kMaxK; ++j)
    if (j < k) g[j] /= sum;
}

inline bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

// Vector loads need 16-byte aligned bases and D % 8 == 0 (16-byte rows in bf16 and f32).
inline bool can_vectorise(const SuperlinearParams& p, std::initializer_list<const void*> extra) {
  if (p.D % 8 != 0) return false;
  for (const void* q : {p.qa, p.qs, p.k, p.v})
    if (!aligned16(q)) return false;
  for (const void* q : extra)
    if (q && !aligned16(q)) return false;
  return true;
}

inline void check_limits(const SuperlinearParams& p) {
  SL_CHECK(p.cfg.k >= 1 && p.cfg.k <= kMaxK)
      << kOp << ": the CUDA kernels keep at most " << kMaxK << " spans, config has k = " << p.cfg.k;
  SL_CHECK(p.D >= 1 && p.D <= kMaxD)
      << kOp << ": the CUDA kernels support head dim D <= " << kMaxD << ", got D = " << p.D;
  SL_CHECK(p.Lkv < (int64_t(1) << 31) && p.B * p.Hq * p.Lq * p.cfg.k < (int64_t(1) << 31) &&
           p.B * p.Hkv * p.Lkv < (int64_t(1) << 31) - 1)
      << kOp << ": sizes exceed the CUDA kernels' 32-bit indices (B " << p.B << ", Hq " << p.Hq
      << ", Hkv " << p.Hkv << ", Lq " << p.Lq << ", Lkv " << p.Lkv << ", k " << p.cfg.k << ")";
  SL_CHECK(p.work_search == nullptr && p.work_keys == nullptr)
      << kOp << ": work counters come from the CPU reference only";
}

// Bytes of scratch as an int32 tensor on the device (freed with the tensor).
inline Tensor scratch(int64_t bytes, Device dev) {
  return Tensor::empty({std::max<int64_t>(1, (bytes + 3) / 4)}, DType::I32, dev);
}

inline unsigned row_blocks(int64_t rows) {
  return unsigned((rows + kRowWarps - 1) / kRowWarps);
}

// The search alone (anchors and scores of every query row), kernels/superlinear_cuda.cu: where
// search_mma_supported(p), the stream search for prefill at one query head per KV head
// (search_stream_preferred), else the int8 search where it is preferred (the same case from 1M
// keys without a Hopper device), else the bf16 tensor-core search; else the lane search.
// SL_SEARCH_KERNEL = stream, int8, bf16 or lanes forces one (a testing knob, read per call). All
// keep the same top-k order; the int8 and bf16 searches give the same bits, the lane search's
// scores may differ in the last bits (summation order). The search launch_search runs for p:
// "stream", "int8", "bf16" or "lanes" (SL_SEARCH_KERNEL checked).
const char* search_kind(const SuperlinearParams& p);
void launch_search(const SuperlinearParams& p, int device, cudaStream_t s);
void launch_search_lanes(const SuperlinearParams& p, cudaStream_t s);
// kernels/superlinear_search_mma.cu: bf16, D 64 or 128, K and Qs 16-byte aligned.
bool search_mma_supported(const SuperlinearParams& p);
void launch_search_mma(const SuperlinearParams& p, cudaStream_t s);
// The int8 search (Note [int8 search]): quantises K into scratch of (D + 16) bytes per K row,
// freed when the search is done; worth it when the queries outnumber the keys' rows enough.
bool search_int8_preferred(const SuperlinearParams& p);
void launch_search_q8(const SuperlinearParams& p, int device, cudaStream_t s);
// The stream search (Note [stream search]): the int8 copy of K streamed through shared memory by
// blocks of consecutive queries, survivors scored again as in the int8 search; same bits as the
// bf16 search. Needs a Hopper device and a build with sm_90a code, at most 16 query heads per KV
// head.
bool search_stream_supported(const SuperlinearParams& p);
// Where it was measured faster than the bf16 search: one query head per KV head, prefill-like
// calls (the records cost a pass over all of K), and supported.
bool search_stream_preferred(const SuperlinearParams& p);
void launch_search_stream(const SuperlinearParams& p, int device, cudaStream_t s);

// The tensor-core forward (kernels/superlinear_span_cuda.cu): bf16, D 64 or 128. When
// spans_supported(p), superlinear_forward_cuda hands the call to forward_spans.
bool spans_supported(const SuperlinearParams& p);
void forward_spans(const SuperlinearParams& p, int device);
// The (row, slot) pairs of the (batch, KV head) groups bg0 .. bg0 + n_bg - 1 (bg = b Hkv + g;
// n_bg < 0: every group from bg0 on) sorted by (group, anchor) with a stable radix sort, and
// offsets[x] (x = (bg - bg0) * Lkv + a, 0 <= x <= n_bg Lkv) of the first pair with key >= x: a
// CSR from keys to the pairs that kept them as anchors (kernels/superlinear_bwd_cuda.cu). Only
// the rows of a group anchor at its keys. About 16 bytes per pair and 4 per key; deterministic.
struct AnchorIndex {
  Tensor storage;
  const int32_t* pairs = nullptr;    // the groups' pair ids v = row * k + slot, sorted
  const int32_t* offsets = nullptr;  // [n_bg Lkv + 1]
};
AnchorIndex anchor_index(const SuperlinearParams& p, int device, cudaStream_t s, int64_t bg0 = 0,
                         int64_t n_bg = -1);
// offsets[x] = the first position of the ascending keys[0 .. n) whose key is >= x, for x in
// [0, n_keys]: the CSR of anchor_index, and of the backward's key ranges
// (kernels/superlinear_span_bwd_cuda.cu).
void key_offsets(const uint32_t* keys, int64_t n, int64_t n_keys, int32_t* offsets, cudaStream_t s);
// The tensor-core backward on the same tiles (kernels/superlinear_span_bwd_cuda.cu), for the
// same inputs; both of bp.deterministic's modes take it (it uses no atomics).
void backward_spans(const SuperlinearBackwardParams& bp, int device);

}  // namespace sl::kernels::slcuda
