// Internal to the CUDA flash attention (kernels/attention_cuda.cu, attention_bwd_cuda.cu) and the
// superlinear span kernels: warp-level tensor-core primitives (mma.sync m16n8k16 with fp32
// accumulation, ldmatrix), cp.async tile loads into swizzled shared memory, and the key-range
// geometry of Note [key ranges] (kernels/attention.h). Not a public header.
//
// Note [swizzled tiles]
// A tile is R rows of D 16-bit elements, row-major in shared memory, each row D * 2 bytes (128 or
// 256): 16-byte chunk c of row r is stored at chunk c ^ (r & 7). ldmatrix reads eight rows at the
// same logical chunk; without the swizzle all eight would hit the same banks (8-way conflict).
//
// Note [fragment layouts]
// mma.m16n8k16 (PTX ISA "Matrix fragments for mma.m16n8k16"): lane l holds accumulator rows
// l / 4 and l / 4 + 8, columns 2 (l % 4) + {0, 1}. An A operand (16 x 16) is four 8 x 8 matrices
// (rows 0-7 | 8-15) x (k 0-7 | 8-15); a B operand (16 x 8) two (k 0-7 | 8-15). ldmatrix_x4 lets
// lane l name the row address of matrix l / 8:
//   A from a [row][k] tile:           row = l % 16,                chunk = 2 kk + l / 16
//   two B tiles from a [n][k] tile:   n = l % 8 + 8 (l / 16),      chunk = 2 kk + (l / 8) % 2
//   two B tiles from a [k][n] tile:   k = l % 8 + 8 ((l / 8) % 2), chunk = n0 / 8 + l / 16 (.trans)
// and an accumulator tile pair (16 x 16) is re-used as an A operand by packing c0 c1 | c2 c3.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "core/dtype.h"
#include "kernels/attention.h"

namespace sl::kernels::attn {

constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return uint32_t(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, asynchronously; zero-filled when !pred (src must still be valid).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool pred) {
  const int n = pred ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n));
}
// cp_async16 with the source size n (16, or 0 to zero-fill), issued only where `issue` holds:
// a predicate in the instruction, not a branch (Note [loads under the products]).
__device__ __forceinline__ void cp_async16_if(uint32_t dst, const void* src, int n, bool issue) {
  asm volatile(
      "{\n .reg .pred p;\n setp.ne.b32 p, %3, 0;\n"
      " @p cp.async.cg.shared.global [%0], [%1], 16, %2;\n}\n" ::"r"(dst),
      "l"(src), "r"(n), "r"(int(issue)));
}
// The same without a source size: the whole 16 bytes, always (no zero fill). Its source address
// can take a constant offset in the instruction (Note [whole-tile loads]).
__device__ __forceinline__ void cp_async16_full(uint32_t dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src));
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

template <class T>
struct Mma;
template <>
struct Mma<bf16> {
  static __device__ __forceinline__ void run(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                             uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
};
template <>
struct Mma<f16> {
  static __device__ __forceinline__ void run(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                             uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
};

// Byte offset of chunk `chunk` of row `row` in a swizzled tile of D-element rows.
template <int D>
__device__ __forceinline__ uint32_t tile_offset(int row, int chunk) {
  return uint32_t(row * (D * 2) + ((chunk ^ (row & 7)) << 4));
}
// The same in a wgmma panel tile of R rows (Note [wgmma panels] in kernels/wgmma_cuda.cuh): 64
// columns per panel, 128-byte rows, the same swizzle.
template <int R>
__device__ __forceinline__ uint32_t panel_offset(int row, int chunk) {
  return uint32_t((chunk >> 3) * (R * 128) + row * 128 + (((chunk & 7) ^ (row & 7)) << 4));
}

// Rows [0, R) of a tile from global rows base + r * row_stride (elements); rows >= valid are
// zero-filled. All NT threads of the block take part; the caller commits the group. kPanels: into
// a wgmma panel tile instead of a [row][k] one.
// Note [unrolled tile loads]: written as `for (c = threadIdx.x; c < R * chunks; c += NT)`, the
// trip count depends on threadIdx.x, so nvcc kept a loop (unrolled by four, with a remainder
// loop and a branch per step) whose address arithmetic, on the H200, made integer ALU the busiest
// pipe of the span tile kernels (Nsight Compute). When NT threads cover whole groups of eight
// rows, thread i takes chunk i % (D / 8) of rows i / (D / 8) + j * step for a compile-time
// count of j: each row has the same swizzle phase (row % 8), so the shared address is one base
// plus a constant per j.
// Note [whole-tile loads]
// A tile that lies wholly before `valid` (every one but the last of a sequence) is loaded without
// the per-row test: each of a thread's copies is then its first source address plus a constant,
// which the copy instruction carries. With the test, every copy cost a compare, two selects and
// the 64-bit address arithmetic, about eight instructions (the wgmma span tile kernel's key
// block loop: two tiles per key block, ~150 of its ~580 instructions per warp in SASS). Panel
// tiles only (the wgmma kernels'): the mma.sync span tile kernel, at its 168-register bound,
// spilled with the second path.
template <int R, int D, int NT, bool kPanels = false>
__device__ __forceinline__ void load_tile(uint32_t smem, const uint16_t* base, int64_t row_stride,
                                          int valid) {
  constexpr int kChunks = D / 8;
  constexpr bool kWholeGroups =
      NT % kChunks == 0 && (NT / kChunks) % 8 == 0 && R % (NT / kChunks) == 0;
  static_assert(kWholeGroups || !kPanels, "panel tiles are loaded in whole row groups");
  if constexpr (kWholeGroups) {
    constexpr int kStep = NT / kChunks, kRowBytes = kPanels ? 128 : D * 2;
    const int row0 = int(threadIdx.x) / kChunks, chunk = int(threadIdx.x) % kChunks;
    const uint32_t dst =
        smem + (kPanels ? panel_offset<R>(row0, chunk) : tile_offset<D>(row0, chunk));
    // Panel tiles hold rows of D elements (row_stride = D): 32-bit offsets, as the wgmma kernels
    // were measured with.
    const std::conditional_t<kPanels, int, int64_t> stride = row_stride;
    const uint16_t* src = base + row0 * stride + chunk * 8;
    if (kPanels && valid >= R) {  // Note [whole-tile loads]
#pragma unroll
      for (int j = 0; j < R / kStep; ++j)
        cp_async16_full(dst + uint32_t(j * kStep * kRowBytes), src + j * kStep * stride);
      return;
    }
#pragma unroll
    for (int j = 0; j < R / kStep; ++j) {
      const bool ok = row0 + j * kStep < valid;
      cp_async16(dst + uint32_t(j * kStep * kRowBytes), ok ? src + j * kStep * stride : base, ok);
    }
  } else {
#pragma unroll
    for (int c = int(threadIdx.x); c < R * kChunks; c += NT) {
      const int row = c / kChunks, chunk = c % kChunks;
      const bool ok = row < valid;
      const uint16_t* src = base + (ok ? row * row_stride + chunk * 8 : 0);
      cp_async16(smem + tile_offset<D>(row, chunk), src, ok);
    }
  }
}

// A operand (rows r0..r0+15, k-step kk) from a [row][k] tile.
template <int D>
__device__ __forceinline__ void load_a(uint32_t (&a)[4], uint32_t tile, int r0, int kk, int lane) {
  const int row = r0 + (lane & 15);
  ldmatrix_x4(a, tile + tile_offset<D>(row, 2 * kk + (lane >> 4)));
}
// Two B operands (n-tiles n0..n0+7 and n0+8..n0+15, k-step kk) from a [n][k] tile:
// b[0], b[1] for the first, b[2], b[3] for the second.
template <int D>
__device__ __forceinline__ void load_b_nk(uint32_t (&b)[4], uint32_t tile, int n0, int kk,
                                          int lane) {
  const int n = n0 + (lane & 7) + ((lane >> 4) << 3);
  ldmatrix_x4(b, tile + tile_offset<D>(n, 2 * kk + ((lane >> 3) & 1)));
}
// Two B operands (n-tiles n0.., n0+8.., k rows k0..k0+15) from a [k][n] tile (transposed load).
template <int D>
__device__ __forceinline__ void load_b_kn(uint32_t (&b)[4], uint32_t tile, int k0, int n0,
                                          int lane) {
  const int k = k0 + (lane & 7) + (((lane >> 3) & 1) << 3);
  ldmatrix_x4_trans(b, tile + tile_offset<D>(k, (n0 >> 3) + (lane >> 4)));
}

// acc (16 x N, this warp's accumulator fragments) = A B^T with A = rows r0 .. r0 + 15 of an
// [row][k] tile and B = rows 0 .. N - 1 of an [n][k] tile, both D long (Q K^T, V dO^T, ...).
template <class T, int D, int N>
__device__ __forceinline__ void mma_a_nk(float (&acc)[N / 8][4], uint32_t a_tile, int r0,
                                         uint32_t b_tile, int lane) {
#pragma unroll
  for (int n = 0; n < N / 8; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    uint32_t a[4];
    load_a<D>(a, a_tile, r0, kk, lane);
#pragma unroll
    for (int np = 0; np < N / 16; ++np) {
      uint32_t b[4];
      load_b_nk<D>(b, b_tile, np * 16, kk, lane);
      Mma<T>::run(acc[2 * np], a, b[0], b[1]);
      Mma<T>::run(acc[2 * np + 1], a, b[2], b[3]);
    }
  }
}

// S = Q K^T and dP = dO V^T (both 16 x N, zeroed first) for rows r0 .. r0 + 15 of the [row][k]
// tiles q and dout against rows 0 .. N - 1 of the [n][k] tiles k and v, in one k-step loop (the
// flash backward's score and dP products: each A fragment is loaded once for N / 16 products).
template <class T, int D, int N>
__device__ __forceinline__ void mma_scores_dp(float (&s)[N / 8][4], float (&dp)[N / 8][4],
                                              uint32_t q, uint32_t dout, uint32_t k, uint32_t v,
                                              int r0, int lane) {
#pragma unroll
  for (int n = 0; n < N / 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) s[n][e] = dp[n][e] = 0.f;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    uint32_t aq[4], ado[4];
    load_a<D>(aq, q, r0, kk, lane);
    load_a<D>(ado, dout, r0, kk, lane);
#pragma unroll
    for (int np = 0; np < N / 16; ++np) {
      uint32_t bk[4], bv[4];
      load_b_nk<D>(bk, k, np * 16, kk, lane);
      load_b_nk<D>(bv, v, np * 16, kk, lane);
      Mma<T>::run(s[2 * np], aq, bk[0], bk[1]);
      Mma<T>::run(s[2 * np + 1], aq, bk[2], bk[3]);
      Mma<T>::run(dp[2 * np], ado, bv[0], bv[1]);
      Mma<T>::run(dp[2 * np + 1], ado, bv[2], bv[3]);
    }
  }
}

// acc (16 x D) += A B with A (16 x K) = the accumulator fragments s rounded to T and re-used as
// an A operand (Note [fragment layouts]: tiles 2 kk, 2 kk + 1 are k-step kk) and B = rows 0 ..
// K - 1 of a [k][n] tile (P V, dS K, P^T dO, dS^T Q).
template <class T, int D, int K>
__device__ __forceinline__ void mma_acc_kn(float (&acc)[D / 8][4], const float (&s)[K / 8][4],
                                           uint32_t b_tile, int lane) {
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) {
    uint32_t a[4];
    a[0] = Mma<T>::pack(s[2 * kk][0], s[2 * kk][1]);
    a[1] = Mma<T>::pack(s[2 * kk][2], s[2 * kk][3]);
    a[2] = Mma<T>::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
    a[3] = Mma<T>::pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
    for (int dd = 0; dd < D / 16; ++dd) {
      uint32_t b[4];
      load_b_kn<D>(b, b_tile, kk * 16, dd * 16, lane);
      Mma<T>::run(acc[2 * dd], a, b[0], b[1]);
      Mma<T>::run(acc[2 * dd + 1], a, b[2], b[3]);
    }
  }
}

// Key range of the query at absolute position t of batch row b (Note [key ranges]).
__device__ __forceinline__ int key_lo(const AttentionParams& p, int64_t b, int64_t t) {
  int64_t lo = 0;
  if (p.window > 0) lo = t - p.window + 1 > 0 ? t - p.window + 1 : 0;
  if (p.doc_start) {
    const int64_t tc = t < p.Lk - 1 ? t : p.Lk - 1;
    const int64_t d = p.doc_start[b * p.Lk + tc];
    lo = d > lo ? d : lo;
  }
  return int(lo);
}
__device__ __forceinline__ int key_hi(const AttentionParams& p, int64_t t) {
  return int(p.causal ? t : p.Lk - 1);
}

// The forward with a chosen tile, for experiments/bench_attention.cu's comparison: 0 = 4 warps x
// 32 rows, 64-key blocks (the default); 1 = 8 warps x 16 rows, 64 keys; 2 = 4 warps x 32 rows,
// 32 keys.
constexpr int kFwdVariants = 3;
void forward_variant(const AttentionParams& p, int device, int variant);

// 2^x on the special-function unit, flushing denormals (exp2f without fast-math adds range
// handling around the same instruction); 2^-inf = 0.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

}  // namespace sl::kernels::attn
