// Internal to the fused optimizer kernels (kernels/adamw_cuda.cu, kernels/sgd_cuda.cu): gradient
// loads (f32 or bf16, one element or four through one 16- / 8-byte load), the bf16 pair packing
// of the parameter copy, and the grid of one grid-stride pass. Not a public header.
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/dtype.h"
#include "kernels/cuda_utils.cuh"

namespace sl::kernels::optcuda {

constexpr int kThreads = 256;

template <class G>
__device__ __forceinline__ float load_grad(const void* grad, int64_t i) {
  return ScalarTraits<G>::to_compute(static_cast<const G*>(grad)[i]);
}

// Four consecutive gradients starting at element 4 * i4.
template <class G>
__device__ __forceinline__ void load_grad4(const void* grad, int64_t i4, float g[4]) {
  if constexpr (sizeof(G) == 4) {
    float4 r = reinterpret_cast<const float4*>(grad)[i4];
    g[0] = r.x, g[1] = r.y, g[2] = r.z, g[3] = r.w;
  } else {
    uint2 r = reinterpret_cast<const uint2*>(grad)[i4];
    g[0] = bf16_to_float(bf16{uint16_t(r.x & 0xffffu)});
    g[1] = bf16_to_float(bf16{uint16_t(r.x >> 16)});
    g[2] = bf16_to_float(bf16{uint16_t(r.y & 0xffffu)});
    g[3] = bf16_to_float(bf16{uint16_t(r.y >> 16)});
  }
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  return uint32_t(float_to_bf16(lo).bits) | (uint32_t(float_to_bf16(hi).bits) << 16);
}

inline bool aligned(const void* ptr, uintptr_t bytes) {
  return reinterpret_cast<uintptr_t>(ptr) % bytes == 0;
}

// Blocks of kThreads for `items` work items (elements, or groups of four), capped: the kernels
// stride over the rest.
inline int grid_blocks(int64_t items) {
  return cu::grid_stride_blocks(items, kThreads);
}

}  // namespace sl::kernels::optcuda
