// Small CUDA helpers shared by the kernels: 16-byte packs and vector loads, warp / block sums,
// and a thread-block-cluster launch.
//
// The one non-obvious decision: cluster launches (sm_90) are how a row too long for one block's
// registers is still read exactly once — the blocks of a cluster each hold a slice in registers
// and exchange their partial statistics through distributed shared memory, in rank order, so the
// result is deterministic and identical in every block.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <utility>

#include "core/cuda_context.h"
#include "core/dtype.h"

namespace sl::kernels::cu {

// 16 bytes of T: 8 bf16 or 4 f32.
template <class T>
struct alignas(16) Pack {
  static constexpr int V = int(16 / sizeof(T));
  T v[V];
};

template <class T>
__device__ __forceinline__ float to_f(T v) {
  return float(ScalarTraits<T>::to_compute(v));
}
template <class T>
__device__ __forceinline__ T from_f(float v) {
  return ScalarTraits<T>::from_compute(v);
}

// W values of T at p into f32 (W = 1: one scalar; else one 16-byte load through the read-only
// cache, p 16-byte aligned), and back.
template <class T, int W>
__device__ __forceinline__ void load_vec(const T* p, float (&v)[W]) {
  if constexpr (W == 1) {
    v[0] = ScalarTraits<T>::to_compute(p[0]);
  } else {
    static_assert(W * sizeof(T) == 16, "a vector is 16 bytes");
    uint4 raw = __ldg(reinterpret_cast<const uint4*>(p));
    const T* e = reinterpret_cast<const T*>(&raw);
    _Pragma("unroll") for (int k = 0; k < W; ++k) v[k] = ScalarTraits<T>::to_compute(e[k]);
  }
}

template <class T, int W>
__device__ __forceinline__ void store_vec(T* p, const float (&v)[W]) {
  if constexpr (W == 1) {
    p[0] = ScalarTraits<T>::from_compute(v[0]);
  } else {
    uint4 raw;
    T* e = reinterpret_cast<T*>(&raw);
    _Pragma("unroll") for (int k = 0; k < W; ++k) e[k] = ScalarTraits<T>::from_compute(v[k]);
    *reinterpret_cast<uint4*>(p) = raw;
  }
}

// Every lane gets the same value: the xor butterfly adds the same pairs in every lane.
__device__ __forceinline__ float warp_sum(float v) {
  _Pragma("unroll") for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Every thread of the block gets the same total. blockDim.x is a multiple of 32; `scratch` holds
// 32 floats and may be reused right after the call returns only behind a __syncthreads().
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nwarps = blockDim.x / 32;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  return warp_sum(lane < nwarps ? scratch[lane] : 0.f);
}

// Makes the compiler forget what the packs hold, so values derived from them are recomputed from
// the packs rather than kept alive in more registers.
template <class T, int N>
__device__ __forceinline__ void launder(Pack<T> (&p)[N]) {
  _Pragma("unroll") for (int k = 0; k < N; ++k) {
    uint32_t* w = reinterpret_cast<uint32_t*>(&p[k]);
    _Pragma("unroll") for (int i = 0; i < 4; ++i) asm volatile("" : "+r"(w[i]));
  }
}

inline bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// Blocks of `threads` for a grid-stride loop over `items` work items, capped at 65535 * 8 (the
// loop strides over the rest).
inline int grid_stride_blocks(int64_t items, int threads) {
  return int(std::min<int64_t>((items + threads - 1) / threads, int64_t(65535) * 8));
}

// Launches kernel on `grid` blocks of `block` threads grouped in clusters of `cluster` blocks
// along x (cluster 1: an ordinary launch).
template <class... Params, class... Args>
void launch_clustered(void (*kernel)(Params...), dim3 grid, dim3 block, dim3 cluster,
                      cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = 0;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = cluster.x;
  attr[0].val.clusterDim.y = cluster.y;
  attr[0].val.clusterDim.z = cluster.z;
  cfg.attrs = attr;
  cfg.numAttrs = cluster.x * cluster.y * cluster.z > 1 ? 1 : 0;
  SL_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
  SL_CUDA_LAUNCH_CHECK();
}

}  // namespace sl::kernels::cu
