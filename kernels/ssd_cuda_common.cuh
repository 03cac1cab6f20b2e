// Internal to the CUDA SSD scan (kernels/ssd_cuda.cu, kernels/ssd_backward_cuda.cu): sizes, the
// shared 64x64 f32 tile routine, and the forward's first four steps, which the backward reruns
// to recompute the states entering every chunk (it stores nothing from the forward). Not a
// public header.
#pragma once

#include "core/cuda_context.h"
#include "core/tensor.h"
#include "kernels/dispatch.h"
#include "kernels/ssd.h"

namespace sl::kernels::ssd_cuda {

constexpr int kTile = 64;   // output tile edge
constexpr int kTileK = 16;  // reduction step staged in shared memory
constexpr int kThreads = 256;
constexpr int64_t kMaxChunk = 256;

struct SsdDims {
  int64_t B, T, H, P, G, N, Q, nc, hpg;  // nc chunks of Q positions; hpg heads per group
};

inline SsdDims dims_of(const SsdParams& p) {
  return SsdDims{p.batch,           p.seqlen, p.heads, p.head_dim,
                 p.groups,          p.state,  p.chunk, (p.seqlen + p.chunk - 1) / p.chunk,
                 p.heads / p.groups};
}

inline int64_t tiles(int64_t n) {
  return (n + kTile - 1) / kTile;
}

inline int grid_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return int(blocks < 132 * 32 ? blocks : 132 * 32);
}

template <class T>
__device__ __forceinline__ float ld(const T* p, int64_t i) {
  return ScalarTraits<T>::to_compute(p[i]);
}

// The operand staging buffer of tile_gemm, declared outside the template so that every
// instantiation in one kernel shares it: rows [0, kTileK) hold A, rows [kTileK, 2 kTileK) B.
__device__ __forceinline__ float (*tile_smem())[kTile + 4] {
  __shared__ float s[2 * kTileK][kTile + 4];
  return s;
}

// acc[i][j] += sum_{k < K} a(row0 + r_i, k) * b(col0 + c_j, k) for the 4x4 outputs of this thread
// (r_i = 4 * (tid / 16) + i, c_j = 4 * (tid % 16) + j). Loaders take tile-local row/col and k,
// and return 0 outside the operand. Every thread of the block must call it.
template <class LA, class LB>
__device__ void tile_gemm(float (&acc)[4][4], int64_t K, LA la, LB lb) {
  float(*As)[kTile + 4] = tile_smem();
  float(*Bs)[kTile + 4] = As + kTileK;
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  for (int64_t k0 = 0; k0 < K; k0 += kTileK) {
    for (int e = tid; e < kTile * kTileK; e += kThreads) {
      const int r = e / kTileK, k = e % kTileK;
      const bool in = k0 + k < K;
      As[k][r] = in ? la(r, k0 + k) : 0.f;
      Bs[k][r] = in ? lb(r, k0 + k) : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kTileK; ++k) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = As[k][ty * 4 + i], b[i] = Bs[k][tx * 4 + i];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
    }
    __syncthreads();
  }
}

// Sum of v over the 16 threads sharing one tile row (tid / 16), in a fixed order; every thread
// of the warp must call it, and all 16 get the sum.
__device__ __forceinline__ float tile_row_sum(float v) {
#pragma unroll
  for (int off = 8; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

__device__ __forceinline__ bool is_reset(const int32_t* seq, int64_t b, int64_t T, int64_t t) {
  return seq && t >= 1 && seq[b * T + t] != seq[b * T + t - 1];
}

inline Tensor scratch(const Dims& shape, DType dt, int device) {
  return Tensor::empty(shape, dt, Device::cuda(device));
}

// What the forward's steps 1-4 leave behind, all on the device:
//   cs     [B, H, T] f32  inclusive cumsum of dt * A inside each chunk
//   seg    [B, T] i32     last document start <= t inside t's chunk (chunk-relative), or -1
//   CB     [B, nc, G, Q, Q] f32  Cm_t . Bm_s, lower-triangle tiles only
//   states [B, nc, H, P, N] f32  the state entering every chunk (S_in)
struct ChunkStates {
  Tensor cs, seg, CB, states;
};

// Runs steps 1-4 on p's inputs on sl::cuda::stream(device) and writes the final state
// ([B, H, P, N] f32) to final_state. Requires p.chunk <= kMaxChunk (checked).
ChunkStates ssd_chunk_states_cuda(const SsdParams& p, int device, float* final_state);

}  // namespace sl::kernels::ssd_cuda
