// CUDA fused cross-entropy: one block per row, 16-byte loads, online max/sum per thread merged
// across the block. Forward reads the logits once; backward reads them once and writes dlogits
// once. The mean over rows is a second, single-block kernel that sums the per-row losses in a
// fixed order, so the loss is bit-reproducible.
#include <cmath>

#include "core/cuda_context.h"
#include "kernels/cuda_utils.cuh"
#include "kernels/cross_entropy.h"
#include "kernels/dispatch.h"

namespace sl::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kUnroll = 4;  // vectors in flight per thread per iteration

using cu::load_vec;
using cu::store_vec;

struct MaxSum {
  float m, s;  // running max and sum of exp(x - m)
};

__device__ __forceinline__ MaxSum merge(MaxSum a, MaxSum b) {
  float m = fmaxf(a.m, b.m);
  if (m == -INFINITY) return {m, 0.f};
  return {m, a.s * expf(a.m - m) + b.s * expf(b.m - m)};
}

// Every thread gets the merged (max, sum) of the block. blockDim.x is a multiple of 32.
__device__ MaxSum block_merge(MaxSum v) {
  __shared__ MaxSum buf[32];
#pragma unroll
  for (int off = 16; off > 0; off >>= 1)
    v = merge(v, {__shfl_xor_sync(~0u, v.m, off), __shfl_xor_sync(~0u, v.s, off)});
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) buf[warp] = v;
  __syncthreads();
  v = lane < int(blockDim.x >> 5) ? buf[lane] : MaxSum{-INFINITY, 0.f};
#pragma unroll
  for (int off = 16; off > 0; off >>= 1)
    v = merge(v, {__shfl_xor_sync(~0u, v.m, off), __shfl_xor_sync(~0u, v.s, off)});
  return v;
}

__device__ __forceinline__ int64_t target_at(const void* targets, bool t64, int64_t r) {
  return t64 ? static_cast<const int64_t*>(targets)[r]
             : int64_t(static_cast<const int32_t*>(targets)[r]);
}

template <class T, int W>
__global__ void ce_forward_rows(const T* __restrict__ logits, const void* targets, bool t64,
                                int64_t v, int64_t ignore_index, float* __restrict__ lse,
                                float* __restrict__ row_loss, unsigned long long* bad_row) {
  int64_t r = blockIdx.x;
  const T* row = logits + r * v;
  MaxSum acc{-INFINITY, 0.f};
  const int64_t step = int64_t(blockDim.x) * W;
  for (int64_t base = int64_t(threadIdx.x) * W; base < v; base += step * kUnroll) {
    float x[kUnroll][W];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      int64_t j = base + u * step;
      if (j < v) {
        load_vec<T, W>(row + j, x[u]);
      } else {
#pragma unroll
        for (int k = 0; k < W; ++k) x[u][k] = -INFINITY;
      }
    }
    float m = acc.m;
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int k = 0; k < W; ++k) m = fmaxf(m, x[u][k]);
    float s = acc.m == -INFINITY ? 0.f : acc.s * expf(acc.m - m);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int k = 0; k < W; ++k) s += expf(x[u][k] - m);
    acc = {m, s};
  }
  acc = block_merge(acc);
  if (threadIdx.x == 0) {
    float l = acc.m + logf(acc.s);
    lse[r] = l;
    int64_t t = target_at(targets, t64, r);
    float loss = 0.f;
    if (t != ignore_index) {
      if (t >= 0 && t < v) {
        loss = l - ScalarTraits<T>::to_compute(row[t]);
      } else {
        atomicMin(bad_row, (unsigned long long)r);
      }
    }
    row_loss[r] = loss;
  }
}

// One block: sums the per-row losses and counts valid rows in a fixed order.
__global__ void ce_finalize(const float* __restrict__ row_loss, const void* targets, bool t64,
                            int64_t n, int64_t v, int64_t ignore_index, bool mean, float* loss,
                            float* n_valid) {
  __shared__ float sbuf[32];
  __shared__ long long cbuf[32];
  float s = 0.f;
  long long c = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    s += row_loss[i];
    int64_t t = target_at(targets, t64, i);
    c += (t != ignore_index && t >= 0 && t < v) ? 1 : 0;
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    s += __shfl_xor_sync(~0u, s, off);
    c += __shfl_xor_sync(~0u, c, off);
  }
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    sbuf[warp] = s;
    cbuf[warp] = c;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0.f;
    long long count = 0;
    for (int w = 0; w < int(blockDim.x >> 5); ++w) {
      total += sbuf[w];
      count += cbuf[w];
    }
    *n_valid = float(count);
    *loss = mean ? total / float(count > 0 ? count : 1) : total;
  }
}

template <class T, int W>
__global__ void ce_backward_rows(const T* __restrict__ logits, const void* targets, bool t64,
                                 int64_t v, int64_t ignore_index, const float* __restrict__ lse,
                                 const float* dloss, const float* n_valid, bool mean,
                                 T* __restrict__ dlogits) {
  int64_t r = blockIdx.x;
  const T* row = logits + r * v;
  T* drow = dlogits + r * v;
  int64_t t = target_at(targets, t64, r);
  bool valid = t != ignore_index && t >= 0 && t < v;
  float g = *dloss;
  if (mean) g /= fmaxf(*n_valid, 1.f);
  float l = lse[r];
  const int64_t step = int64_t(blockDim.x) * W;
  for (int64_t base = int64_t(threadIdx.x) * W; base < v; base += step * kUnroll) {
    float x[kUnroll][W];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      int64_t j = base + u * step;
      if (valid && j < v) load_vec<T, W>(row + j, x[u]);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      int64_t j = base + u * step;
      if (j >= v) continue;
      float d[W];
#pragma unroll
      for (int k = 0; k < W; ++k)
        d[k] = valid ? (expf(x[u][k] - l) - (j + k == t ? 1.f : 0.f)) * g : 0.f;
      store_vec<T, W>(drow + j, d);
    }
  }
}

template <class T>
bool vectorizable(const CrossEntropyParams& p) {
  constexpr int W = 16 / sizeof(T);
  auto aligned = [](const void* ptr) { return ptr == nullptr || (uintptr_t(ptr) & 15) == 0; };
  return p.v % W == 0 && aligned(p.logits) && aligned(p.dlogits);
}

}  // namespace

void cross_entropy_forward_cuda(const CrossEntropyParams& p, int device) {
  cuda::set_device(device);
  cudaStream_t s = cuda::stream(device);
  SL_CUDA_CHECK(cudaMemsetAsync(p.bad_row, 0xff, sizeof(unsigned long long), s));
  bool t64 = p.target_dtype == DType::I64;
  if (p.n > 0) {
    SL_DISPATCH_CUDA_FLOAT(p.dtype, "cross_entropy", T, {
      const T* logits = static_cast<const T*>(p.logits);
      float* lse = static_cast<float*>(p.lse);
      if (vectorizable<T>(p)) {
        ce_forward_rows<T, 16 / sizeof(T)><<<unsigned(p.n), kThreads, 0, s>>>(
            logits, p.targets, t64, p.v, p.ignore_index, lse, p.row_loss, p.bad_row);
      } else {
        ce_forward_rows<T, 1><<<unsigned(p.n), kThreads, 0, s>>>(
            logits, p.targets, t64, p.v, p.ignore_index, lse, p.row_loss, p.bad_row);
      }
      SL_CUDA_LAUNCH_CHECK();
    });
  }
  ce_finalize<<<1, 1024, 0, s>>>(p.row_loss, p.targets, t64, p.n, p.v, p.ignore_index,
                                 p.reduction == CeReduction::kMean, static_cast<float*>(p.loss),
                                 static_cast<float*>(p.n_valid));
  SL_CUDA_LAUNCH_CHECK();
}

void cross_entropy_backward_cuda(const CrossEntropyParams& p, int device) {
  cuda::set_device(device);
  cudaStream_t s = cuda::stream(device);
  bool t64 = p.target_dtype == DType::I64;
  bool mean = p.reduction == CeReduction::kMean;
  SL_DISPATCH_CUDA_FLOAT(p.dtype, "cross_entropy", T, {
    const T* logits = static_cast<const T*>(p.logits);
    T* dlogits = static_cast<T*>(p.dlogits);
    const float* lse = static_cast<const float*>(p.lse_in);
    const float* dloss = static_cast<const float*>(p.dloss);
    const float* nv = static_cast<const float*>(p.n_valid_in);
    if (vectorizable<T>(p)) {
      ce_backward_rows<T, 16 / sizeof(T)><<<unsigned(p.n), kThreads, 0, s>>>(
          logits, p.targets, t64, p.v, p.ignore_index, lse, dloss, nv, mean, dlogits);
    } else {
      ce_backward_rows<T, 1><<<unsigned(p.n), kThreads, 0, s>>>(
          logits, p.targets, t64, p.v, p.ignore_index, lse, dloss, nv, mean, dlogits);
    }
    SL_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace sl::kernels
