// Hopper warpgroup matrix multiply (wgmma.mma_async, sm_90a only) for bf16 operands with fp32
// accumulation: shared-memory descriptors of the panel layout (placed and loaded by
// kernels/attention_cuda_common.cuh), the fences, the three instruction shapes the span kernels
// use and their paired score products. Not a public header.
//
// Note [wgmma panels]
// A wgmma operand in shared memory is read through a 64-bit descriptor (PTX ISA "Matrix
// Descriptor Format": start address, leading and stride byte offsets, each >> 4, and the swizzle
// mode in bits 62-63). We use one layout for every tile, the 128-byte swizzle:
//   a tile of R rows by D 16-bit columns is stored as D / 64 column panels, panel c holding
//   columns 64 c .. 64 c + 63 of every row as R rows of 128 bytes; 16-byte chunk j of row r sits
//   at chunk j ^ (r % 8) of its row. Panels start 1024-byte aligned (the swizzle is applied to
//   address bits 4-6 from bits 7-9, so an 8-row group must start on a 1024-byte boundary).
// Read K-major (rows are M or N, columns are the reduction): eight-row groups are 1024 bytes
// apart (the stride byte offset); the leading offset is unused. The k-step kk (16 columns) of a
// panel starts (kk % 4) * 32 bytes into it, in panel kk / 4.
// Read MN-major (rows are the reduction, columns are N; V in P V): 64-column panels are
// R * 128 bytes apart (the leading offset), eight-row groups 1024 bytes (the stride offset); the
// k-step kk starts 16 kk rows in. Both are the canonical 128-byte-swizzle layouts of the PTX
// ISA's "Shared Memory Matrix Layout" section; for D = 64 the panel is the same bytes as
// attn::tile_offset<64> (Note [swizzled tiles]); attn::panel_offset and attn::load_tile<..., true>
// (kernels/attention_cuda_common.cuh) place and load them.
//
// Note [wgmma ordering]
// wgmma reads shared memory through the async proxy and writes its accumulators asynchronously:
//   - shared memory written by ordinary stores or cp.async needs fence_proxy_async() by the
//     writing threads, then a barrier, before a wgmma reads it;
//   - fence() before the first wgmma of a batch whose registers other instructions touched;
//   - commit(), then wait<N>() before the accumulators are read; the compiler does not know
//     the asm writes them late, so fence_regs() after the wait pins every later read behind it.
// The accumulator layout of m64nNk16 is, per warp w of the group, rows 16 w .. 16 w + 15 laid out
// as mma.m16n8k16 accumulators (Note [fragment layouts]): d[n][e] is row 16 w + lane / 4 + 8 (e /
// 2), column 8 n + 2 (lane % 4) + e % 2. A register A operand is the m16n8k16 A fragment.
#pragma once

#include <cstdint>

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define SL_WGMMA 1
#else
#define SL_WGMMA 0
#endif

namespace sl::kernels::wg {

// A 128-byte-swizzle descriptor as its two 32-bit words: the start address (>> 4) and leading
// offset in lo, the stride offset and the swizzle mode in hi. Offsets into the operand are added
// to lo (the 14-bit address field cannot carry: shared memory ends below 2^18 bytes).
struct Desc {
  uint32_t lo, hi;
};
__device__ __forceinline__ Desc desc(uint32_t addr, uint32_t leading, uint32_t stride) {
  return {((addr & 0x3FFFFu) >> 4) | ((leading >> 4) << 16), (stride >> 4) | (1u << 30)};
}
__device__ __forceinline__ uint64_t at(Desc d, uint32_t byte_offset) {
  return (uint64_t(d.hi) << 32) | (d.lo + (byte_offset >> 4));
}
// The k-step kk of a panel tile of R rows: 16 reduction columns (K-major, leading offset 16
// unused, stride 1024) or 16 reduction rows (MN-major, leading R * 128, stride 1024).
template <int R>
__device__ __forceinline__ uint64_t step_k(Desc d, int kk) {
  return at(d, uint32_t((kk >> 2) * (R * 128) + (kk & 3) * 32));
}
__device__ __forceinline__ uint64_t step_mn(Desc d, int kk) {
  return at(d, uint32_t(kk * 16 * 128));
}

__device__ __forceinline__ void fence() {
#if SL_WGMMA
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void commit() {
#if SL_WGMMA
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void wait() {
#if SL_WGMMA
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}
__device__ __forceinline__ void fence_proxy_async() {
#if SL_WGMMA
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void fence_regs(float (&d)[N][4]) {
#pragma unroll
  for (int n = 0; n < N; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) asm volatile("" : "+f"(d[n][e])::"memory");
}

#define SL_WG_ACC(i) "+f"(d[i][0]), "+f"(d[i][1]), "+f"(d[i][2]), "+f"(d[i][3])
#define SL_WG_REGS32                                                                 \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, " \
  "%18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define SL_WG_REGS64                                                                        \
  SL_WG_REGS32                                                                              \
  ", %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, " \
  "%49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"

// d (64 x 64) = a b^T, or d += a b^T when accumulate: a (64 x 16) and b (64 x 16) both K-major
// in shared memory.
__device__ __forceinline__ void mma_ss_n64(float (&d)[8][4], uint64_t a, uint64_t b,
                                           int accumulate) {
#if SL_WGMMA
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {" SL_WG_REGS32
      "}, %32, %33, p, 1, 1, 0, 0;\n}\n"
      : SL_WG_ACC(0), SL_WG_ACC(1), SL_WG_ACC(2), SL_WG_ACC(3), SL_WG_ACC(4), SL_WG_ACC(5),
        SL_WG_ACC(6), SL_WG_ACC(7)
      : "l"(a), "l"(b), "r"(accumulate));
#else
  __trap();
#endif
}

// d (64 x 64) += a b: a (64 x 16) from registers, b (16 x 64) MN-major in shared memory.
__device__ __forceinline__ void mma_rs_n64(float (&d)[8][4], const uint32_t (&a)[4], uint64_t b) {
#if SL_WGMMA
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {" SL_WG_REGS32
      "}, {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
      : SL_WG_ACC(0), SL_WG_ACC(1), SL_WG_ACC(2), SL_WG_ACC(3), SL_WG_ACC(4), SL_WG_ACC(5),
        SL_WG_ACC(6), SL_WG_ACC(7)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b));
#else
  __trap();
#endif
}

// d (64 x 128) += a b: a (64 x 16) from registers, b (16 x 128) MN-major in shared memory.
__device__ __forceinline__ void mma_rs_n128(float (&d)[16][4], const uint32_t (&a)[4], uint64_t b) {
#if SL_WGMMA
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {" SL_WG_REGS64
      "}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
      : SL_WG_ACC(0), SL_WG_ACC(1), SL_WG_ACC(2), SL_WG_ACC(3), SL_WG_ACC(4), SL_WG_ACC(5),
        SL_WG_ACC(6), SL_WG_ACC(7), SL_WG_ACC(8), SL_WG_ACC(9), SL_WG_ACC(10), SL_WG_ACC(11),
        SL_WG_ACC(12), SL_WG_ACC(13), SL_WG_ACC(14), SL_WG_ACC(15)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b));
#else
  __trap();
#endif
}

// x = a1 b1^T and y = a2 b2^T (each 64 x 64), the reduction D long, all four operands K-major
// panel tiles of 64 rows: the score products of the span kernels (S and dP, or S^T and dP^T),
// issued as one group and waited for.
template <int D>
__device__ __forceinline__ void mma_scores_pair(float (&x)[8][4], Desc a1, Desc b1,
                                                float (&y)[8][4], Desc a2, Desc b2) {
  fence();
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    mma_ss_n64(x, step_k<64>(a1, kk), step_k<64>(b1, kk), kk > 0);
    mma_ss_n64(y, step_k<64>(a2, kk), step_k<64>(b2, kk), kk > 0);
  }
  commit();
  wait<0>();
  fence_regs(x);
  fence_regs(y);
}

// d (64 x D) += a b for D in {64, 128}.
template <int D>
__device__ __forceinline__ void mma_rs(float (&d)[D / 8][4], const uint32_t (&a)[4], uint64_t b) {
  if constexpr (D == 64)
    mma_rs_n64(d, a, b);
  else
    mma_rs_n128(d, a, b);
}

#undef SL_WG_ACC
#undef SL_WG_REGS32
#undef SL_WG_REGS64

}  // namespace sl::kernels::wg
