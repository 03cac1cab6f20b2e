// CUDA RMSNorm and gated RMSNorm. One block per (row, group) in the forward; the group's values
// are held in registers (kFwdIters 16-byte vectors per thread), so x and z are read once. The
// backward runs a grid of (row-blocks, groups): each block walks a fixed set of rows of one group,
// keeps dw partial sums for its columns in registers, and writes one partial row; a second kernel
// adds the partial rows in a fixed order (deterministic dw, no atomics). Groups longer than the
// register cache fall back to re-reading the tail from global memory.
#include <algorithm>

#include "core/cuda_context.h"
#include "kernels/cuda_utils.cuh"
#include "core/tensor.h"
#include "kernels/dispatch.h"
#include "kernels/rmsnorm.h"

namespace sl::kernels {
namespace {

constexpr int kFwdIters = 4;
constexpr int kBwdIters = 2;

using cu::load_vec;
using cu::store_vec;

// Sum over the block, returned to every thread; fixed order, so deterministic. Safe to call
// repeatedly (the first barrier protects the buffer from the previous call's readers).
__device__ float block_sum(float v) {
  __shared__ float buf[32];
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(~0u, v, off);
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) buf[warp] = v;
  __syncthreads();
  v = lane < int(blockDim.x >> 5) ? buf[lane] : 0.f;
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(~0u, v, off);
  return v;
}

__device__ __forceinline__ float sigmoidf(float z) { return 1.f / (1.f + expf(-z)); }

// h = x (plain) or x * silu(z) (gated), for W values.
template <class T, int W, bool kGated>
__device__ __forceinline__ void load_h(const T* x, const T* z, int64_t i, float (&h)[W]) {
  load_vec<T, W>(x + i, h);
  if constexpr (kGated) {
    float zv[W];
    load_vec<T, W>(z + i, zv);
#pragma unroll
    for (int k = 0; k < W; ++k) h[k] *= zv[k] * sigmoidf(zv[k]);
  }
}

// Grid: rows * groups blocks; block b normalises elements [b * gs, (b + 1) * gs) of x.
template <class T, int W, bool kGated>
__global__ void rmsnorm_fwd(const T* __restrict__ x, const T* __restrict__ z,
                            const T* __restrict__ w, T* __restrict__ y, float* __restrict__ rstd,
                            int64_t gs, int64_t groups, float eps) {
  const int64_t vrow = blockIdx.x;
  const int64_t base = vrow * gs, wbase = (vrow % groups) * gs;
  const int64_t step = int64_t(blockDim.x) * W;
  float h[kFwdIters][W];
  float ss = 0.f;
#pragma unroll
  for (int u = 0; u < kFwdIters; ++u) {
    int64_t j = u * step + int64_t(threadIdx.x) * W;
    if (j < gs) {
      load_h<T, W, kGated>(x, z, base + j, h[u]);
#pragma unroll
      for (int k = 0; k < W; ++k) ss += h[u][k] * h[u][k];
    }
  }
  for (int64_t j = kFwdIters * step + int64_t(threadIdx.x) * W; j < gs; j += step) {
    float t[W];
    load_h<T, W, kGated>(x, z, base + j, t);
#pragma unroll
    for (int k = 0; k < W; ++k) ss += t[k] * t[k];
  }
  const float rs = 1.f / sqrtf(block_sum(ss) / float(gs) + eps);
  if (threadIdx.x == 0) rstd[vrow] = rs;
#pragma unroll
  for (int u = 0; u < kFwdIters; ++u) {
    int64_t j = u * step + int64_t(threadIdx.x) * W;
    if (j < gs) {
      float wv[W], o[W];
      load_vec<T, W>(w + wbase + j, wv);
#pragma unroll
      for (int k = 0; k < W; ++k) o[k] = h[u][k] * rs * wv[k];
      store_vec<T, W>(y + base + j, o);
    }
  }
  for (int64_t j = kFwdIters * step + int64_t(threadIdx.x) * W; j < gs; j += step) {
    float t[W], wv[W];
    load_h<T, W, kGated>(x, z, base + j, t);
    load_vec<T, W>(w + wbase + j, wv);
#pragma unroll
    for (int k = 0; k < W; ++k) t[k] = t[k] * rs * wv[k];
    store_vec<T, W>(y + base + j, t);
  }
}

// dx (and dz) for W values of one row-group, given the group's rstd and mean(g * hh).
template <class T, int W, bool kGated>
__device__ __forceinline__ void write_grads(const T* x, const T* z, const T* w, T* dx, T* dz,
                                            int64_t i, int64_t wi, const float (&xv)[W],
                                            const float (&dyv)[W], float rs, float dot,
                                            float (&dwp)[W]) {
  float wv[W], zv[W], dh[W];
  load_vec<T, W>(w + wi, wv);
  if constexpr (kGated) load_vec<T, W>(z + i, zv);
#pragma unroll
  for (int k = 0; k < W; ++k) {
    float h = xv[k];
    if constexpr (kGated) h *= zv[k] * sigmoidf(zv[k]);
    float hh = h * rs;
    dwp[k] += dyv[k] * hh;
    dh[k] = rs * (dyv[k] * wv[k] - hh * dot);
  }
  if constexpr (!kGated) {
    store_vec<T, W>(dx + i, dh);
  } else {
    float a[W], b[W];
#pragma unroll
    for (int k = 0; k < W; ++k) {
      float s = sigmoidf(zv[k]);
      a[k] = dh[k] * zv[k] * s;
      b[k] = dh[k] * xv[k] * s * (1.f + zv[k] * (1.f - s));
    }
    store_vec<T, W>(dx + i, a);
    store_vec<T, W>(dz + i, b);
  }
}

// Partial dot of g * hh = dy * w * h * rs over W values.
template <class T, int W, bool kGated>
__device__ __forceinline__ float partial_dot(const T* z, const T* w, int64_t i, int64_t wi,
                                             const float (&xv)[W], const float (&dyv)[W],
                                             float rs) {
  float wv[W], zv[W], d = 0.f;
  load_vec<T, W>(w + wi, wv);
  if constexpr (kGated) load_vec<T, W>(z + i, zv);
#pragma unroll
  for (int k = 0; k < W; ++k) {
    float h = xv[k];
    if constexpr (kGated) h *= zv[k] * sigmoidf(zv[k]);
    d += dyv[k] * wv[k] * h * rs;
  }
  return d;
}

// Grid (gx, groups). Block (bx, k) handles rows bx, bx + gx, ... of group k and writes
// partial[bx, k * gs + j] = sum over its rows of dy * hh.
template <class T, int W, bool kGated>
__global__ void rmsnorm_bwd(const T* __restrict__ x, const T* __restrict__ z,
                            const T* __restrict__ w, const T* __restrict__ dy,
                            const float* __restrict__ rstd, T* __restrict__ dx,
                            T* __restrict__ dz, float* __restrict__ partial, int64_t rows,
                            int64_t gs, int64_t groups) {
  const int64_t k = blockIdx.y, c = gs * groups, wbase = k * gs;
  const int64_t step = int64_t(blockDim.x) * W;
  const int64_t tail0 = kBwdIters * step + int64_t(threadIdx.x) * W;
  float* prow = partial + int64_t(blockIdx.x) * c + wbase;
  float dwp[kBwdIters][W] = {};
  for (int64_t j = tail0; j < gs; j += step)
#pragma unroll
    for (int q = 0; q < W; ++q) prow[j + q] = 0.f;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t vrow = r * groups + k, base = vrow * gs;
    const float rs = rstd[vrow];
    float xv[kBwdIters][W], dyv[kBwdIters][W];
    float dot = 0.f;
#pragma unroll
    for (int u = 0; u < kBwdIters; ++u) {
      int64_t j = u * step + int64_t(threadIdx.x) * W;
      if (j < gs) {
        load_vec<T, W>(x + base + j, xv[u]);
        load_vec<T, W>(dy + base + j, dyv[u]);
        dot += partial_dot<T, W, kGated>(z, w, base + j, wbase + j, xv[u], dyv[u], rs);
      }
    }
    for (int64_t j = tail0; j < gs; j += step) {
      float xt[W], dyt[W];
      load_vec<T, W>(x + base + j, xt);
      load_vec<T, W>(dy + base + j, dyt);
      dot += partial_dot<T, W, kGated>(z, w, base + j, wbase + j, xt, dyt, rs);
    }
    dot = block_sum(dot) / float(gs);
#pragma unroll
    for (int u = 0; u < kBwdIters; ++u) {
      int64_t j = u * step + int64_t(threadIdx.x) * W;
      if (j < gs)
        write_grads<T, W, kGated>(x, z, w, dx, dz, base + j, wbase + j, xv[u], dyv[u], rs, dot,
                                  dwp[u]);
    }
    for (int64_t j = tail0; j < gs; j += step) {
      float xt[W], dyt[W], dwt[W] = {};
      load_vec<T, W>(x + base + j, xt);
      load_vec<T, W>(dy + base + j, dyt);
      write_grads<T, W, kGated>(x, z, w, dx, dz, base + j, wbase + j, xt, dyt, rs, dot, dwt);
#pragma unroll
      for (int q = 0; q < W; ++q) prow[j + q] += dwt[q];
    }
  }
#pragma unroll
  for (int u = 0; u < kBwdIters; ++u) {
    int64_t j = u * step + int64_t(threadIdx.x) * W;
    if (j < gs)
#pragma unroll
      for (int q = 0; q < W; ++q) prow[j + q] = dwp[u][q];
  }
}

// dw[j] = sum over b < nb of partial[b, j], in order b = 0, 1, ...
template <class T>
__global__ void dw_reduce(const float* __restrict__ partial, int64_t nb, int64_t c,
                          T* __restrict__ dw) {
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < c;
       j += int64_t(gridDim.x) * blockDim.x) {
    float s = 0.f;
    for (int64_t b = 0; b < nb; ++b) s += partial[b * c + j];
    dw[j] = ScalarTraits<T>::from_compute(s);
  }
}

bool aligned16(const void* p) { return p == nullptr || (uintptr_t(p) & 15) == 0; }

// Threads per block so that kIters vectors per thread cover a group (32..1024, whole warps).
int threads_for(int64_t gs, int w, int iters) {
  int64_t vecs = (gs + w - 1) / w;
  int64_t t = (vecs + iters - 1) / iters;
  t = (t + 31) / 32 * 32;
  return int(std::clamp<int64_t>(t, 32, 1024));
}

template <class T, int W, bool kGated>
void launch_fwd(const RmsNormParams& p, cudaStream_t s) {
  const int64_t groups = p.c / p.group_size;
  int threads = threads_for(p.group_size, W, kFwdIters);
  rmsnorm_fwd<T, W, kGated><<<unsigned(p.rows * groups), threads, 0, s>>>(
      static_cast<const T*>(p.x), static_cast<const T*>(p.z), static_cast<const T*>(p.w),
      static_cast<T*>(p.y), static_cast<float*>(p.rstd), p.group_size, groups, float(p.eps));
  SL_CUDA_LAUNCH_CHECK();
}

template <class T, int W, bool kGated>
void launch_bwd(const RmsNormParams& p, int device, cudaStream_t s) {
  const int64_t groups = p.c / p.group_size;
  int threads = threads_for(p.group_size, W, kBwdIters);
  int per_sm = 0;
  SL_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      &per_sm, rmsnorm_bwd<T, W, kGated>, threads, 0));
  int64_t slots = int64_t(std::max(per_sm, 1)) * cuda::properties(device).multiProcessorCount;
  int64_t gx = std::clamp<int64_t>(slots / groups, 1, std::min<int64_t>(p.rows, 65535));
  Tensor partial = Tensor::empty({gx, p.c}, DType::F32, Device::cuda(device));
  rmsnorm_bwd<T, W, kGated><<<dim3(unsigned(gx), unsigned(groups)), threads, 0, s>>>(
      static_cast<const T*>(p.x), static_cast<const T*>(p.z), static_cast<const T*>(p.w),
      static_cast<const T*>(p.dy), static_cast<const float*>(p.rstd_in), static_cast<T*>(p.dx),
      static_cast<T*>(p.dz), partial.data<float>(), p.rows, p.group_size, groups);
  SL_CUDA_LAUNCH_CHECK();
  int blocks = int(std::min<int64_t>((p.c + 255) / 256, 4096));
  dw_reduce<T><<<blocks, 256, 0, s>>>(partial.data<float>(), gx, p.c, static_cast<T*>(p.dw));
  SL_CUDA_LAUNCH_CHECK();
}

template <class T>
bool vectorizable(const RmsNormParams& p) {
  return p.group_size % (16 / int64_t(sizeof(T))) == 0 && aligned16(p.x) && aligned16(p.z) &&
         aligned16(p.w) && aligned16(p.y) && aligned16(p.dy) && aligned16(p.dx) &&
         aligned16(p.dz);
}

}  // namespace

void rmsnorm_forward_cuda(const RmsNormParams& p, int device) {
  cuda::set_device(device);
  cudaStream_t s = cuda::stream(device);
  SL_CHECK(p.group_size <= int64_t(1) << 30) << "rmsnorm: group too long";
  SL_DISPATCH_CUDA_FLOAT(p.dtype, "rmsnorm", T, {
    constexpr int kW = 16 / sizeof(T);
    bool vec = vectorizable<T>(p);
    if (p.z) {
      vec ? launch_fwd<T, kW, true>(p, s) : launch_fwd<T, 1, true>(p, s);
    } else {
      vec ? launch_fwd<T, kW, false>(p, s) : launch_fwd<T, 1, false>(p, s);
    }
  });
}

void rmsnorm_backward_cuda(const RmsNormParams& p, int device) {
  cuda::set_device(device);
  cudaStream_t s = cuda::stream(device);
  SL_CHECK(p.c / p.group_size <= 65535) << "rmsnorm: more than 65535 groups";
  SL_DISPATCH_CUDA_FLOAT(p.dtype, "rmsnorm", T, {
    constexpr int kW = 16 / sizeof(T);
    bool vec = vectorizable<T>(p);
    if (p.z) {
      vec ? launch_bwd<T, kW, true>(p, device, s) : launch_bwd<T, 1, true>(p, device, s);
    } else {
      vec ? launch_bwd<T, kW, false>(p, device, s) : launch_bwd<T, 1, false>(p, device, s);
    }
  });
}

}  // namespace sl::kernels
