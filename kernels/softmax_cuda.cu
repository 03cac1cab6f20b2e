// CUDA softmax / log-softmax over rows, forward and backward, f32 and bf16, f32 statistics.
//
// Note [softmax kernels]
// Rows of up to 1024 elements: one warp per row, the row held in registers (kPer values per
// lane), max and sum by warp shuffles. Longer rows: one block per row. The forward pass reads the
// row once, keeping a running (max, sum of exp) per thread — the sum is rescaled only when a new
// maximum appears — while copying the raw row into shared memory; the second pass writes the
// output from shared memory. When the row does not fit in shared memory the second pass reads
// global memory again (mostly from L2). The backward pass caches y and dy the same way.
// Exponentials use __expf (ex2.approx): its error grows with |x - max|, where the values are tiny
// next to the row's largest, which is what the tolerance rule's rms term allows for.
#include <algorithm>
#include <cmath>

#include "core/cuda_context.h"
#include "kernels/dispatch.h"
#include "kernels/softmax.h"

namespace sl::kernels {
namespace {

constexpr int kWarpsPerBlock = 8;

template <class T>
__device__ __forceinline__ float to_f(T v) {
  return float(ScalarTraits<T>::to_compute(v));
}
template <class T>
__device__ __forceinline__ T from_f(float v) {
  return ScalarTraits<T>::from_compute(v);
}

__device__ __forceinline__ float warp_max(float v) {
  _Pragma("unroll") for (int o = 16; o > 0; o >>= 1) v =
      fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
  _Pragma("unroll") for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// (max, sum of exp(x - max)) of two parts; a part with max -inf contributes nothing.
__device__ __forceinline__ void merge_ms(float& m, float& s, float m2, float s2) {
  float M = fmaxf(m, m2);
  float a = m == -INFINITY ? 0.f : s * __expf(m - M);
  float b = m2 == -INFINITY ? 0.f : s2 * __expf(m2 - M);
  m = M;
  s = a + b;
}

// Block-wide reductions; every thread gets the result. blockDim.x is a multiple of 32.
__device__ __forceinline__ void block_reduce_ms(float& m, float& s) {
  __shared__ float sm_m[32], sm_s[32];
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nwarps = blockDim.x / 32;
  _Pragma("unroll") for (int o = 16; o > 0; o >>= 1)
      merge_ms(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
  if (lane == 0) sm_m[warp] = m, sm_s[warp] = s;
  __syncthreads();
  m = lane < nwarps ? sm_m[lane] : -INFINITY;
  s = lane < nwarps ? sm_s[lane] : 0.f;
  _Pragma("unroll") for (int o = 16; o > 0; o >>= 1)
      merge_ms(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
}
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float sm[32];
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nwarps = blockDim.x / 32;
  v = warp_sum(v);
  if (lane == 0) sm[warp] = v;
  __syncthreads();
  return warp_sum(lane < nwarps ? sm[lane] : 0.f);
}

// ---- one warp per row (cols <= 32 * kPer) ----

template <class T, int kPer>
__global__ void softmax_fwd_warp(const T* __restrict__ x, T* __restrict__ y, int64_t rows, int cols,
                                 bool log) {
  int lane = threadIdx.x % 32;
  for (int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32; row < rows;
       row += int64_t(gridDim.x) * kWarpsPerBlock) {
    const T* xr = x + row * cols;
    float v[kPer];
    float m = -INFINITY;
    _Pragma("unroll") for (int k = 0; k < kPer; ++k) {
      int j = lane + 32 * k;
      v[k] = j < cols ? to_f(xr[j]) : -INFINITY;
      m = fmaxf(m, v[k]);
    }
    m = warp_max(m);
    float s = 0.f;
    _Pragma("unroll") for (int k = 0; k < kPer; ++k) s +=
        lane + 32 * k < cols ? __expf(v[k] - m) : 0.f;
    s = warp_sum(s);
    float inv = 1.f / s, log_s = logf(s);
    T* yr = y + row * cols;
    _Pragma("unroll") for (int k = 0; k < kPer; ++k) {
      int j = lane + 32 * k;
      if (j < cols) yr[j] = from_f<T>(log ? v[k] - m - log_s : __expf(v[k] - m) * inv);
    }
  }
}

template <class T, int kPer>
__global__ void softmax_bwd_warp(const T* __restrict__ y, const T* __restrict__ dy,
                                 T* __restrict__ dx, int64_t rows, int cols, bool log) {
  int lane = threadIdx.x % 32;
  for (int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32; row < rows;
       row += int64_t(gridDim.x) * kWarpsPerBlock) {
    const T *yr = y + row * cols, *gr = dy + row * cols;
    float vy[kPer], vg[kPer];
    float s = 0.f;
    _Pragma("unroll") for (int k = 0; k < kPer; ++k) {
      int j = lane + 32 * k;
      vy[k] = j < cols ? to_f(yr[j]) : 0.f;
      vg[k] = j < cols ? to_f(gr[j]) : 0.f;
      s += log ? vg[k] : vg[k] * vy[k];
    }
    s = warp_sum(s);
    T* dr = dx + row * cols;
    _Pragma("unroll") for (int k = 0; k < kPer; ++k) {
      int j = lane + 32 * k;
      if (j < cols) dr[j] = from_f<T>(log ? vg[k] - __expf(vy[k]) * s : vy[k] * (vg[k] - s));
    }
  }
}

// ---- one block per row ----

template <class T>
struct alignas(16) Pack {
  static constexpr int V = int(16 / sizeof(T));
  T v[V];
};

// Calls f(a_j, b_j) for this thread's elements j of rows a and b (b may be null: then b_j = 0),
// copying them to ca / cb when those are non-null. `packed`: rows and caches 16-byte aligned and
// cols % V == 0. Each thread visits the same j in every call, so a thread reads back from the
// cache exactly what it wrote.
template <class T, class F>
__device__ __forceinline__ void visit_rows(const T* a, const T* b, T* ca, T* cb, int64_t cols,
                                           bool packed, F f) {
  constexpr int V = Pack<T>::V;
  if (packed) {
    int64_t npack = cols / V;
#pragma unroll 4
    for (int64_t j = threadIdx.x; j < npack; j += blockDim.x) {
      Pack<T> pa = reinterpret_cast<const Pack<T>*>(a)[j], pb{};
      if (b) pb = reinterpret_cast<const Pack<T>*>(b)[j];
      if (ca) reinterpret_cast<Pack<T>*>(ca)[j] = pa;
      if (cb) reinterpret_cast<Pack<T>*>(cb)[j] = pb;
      _Pragma("unroll") for (int v = 0; v < V; ++v) f(to_f(pa.v[v]), b ? to_f(pb.v[v]) : 0.f);
    }
  } else {
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      T ta = a[j], tb = b ? b[j] : T{};
      if (ca) ca[j] = ta;
      if (cb) cb[j] = tb;
      f(to_f(ta), b ? to_f(tb) : 0.f);
    }
  }
}

// out[j] = g(a_j, b_j) over the row (b may be null: then b_j = 0).
template <class T, class G>
__device__ __forceinline__ void write_row(const T* a, const T* b, T* out, int64_t cols, bool packed,
                                          G g) {
  constexpr int V = Pack<T>::V;
  if (packed) {
    int64_t npack = cols / V;
#pragma unroll 4
    for (int64_t j = threadIdx.x; j < npack; j += blockDim.x) {
      Pack<T> pa = reinterpret_cast<const Pack<T>*>(a)[j], pb{}, po;
      if (b) pb = reinterpret_cast<const Pack<T>*>(b)[j];
      _Pragma("unroll") for (int v = 0; v < V; ++v) po.v[v] =
          from_f<T>(g(to_f(pa.v[v]), b ? to_f(pb.v[v]) : 0.f));
      reinterpret_cast<Pack<T>*>(out)[j] = po;
    }
  } else {
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
      out[j] = from_f<T>(g(to_f(a[j]), b ? to_f(b[j]) : 0.f));
  }
}

template <class T>
__global__ void softmax_fwd_block(const T* __restrict__ x, T* __restrict__ y, int64_t cols,
                                  bool log, bool packed, bool cache) {
  extern __shared__ __align__(16) unsigned char smem[];
  T* sm = cache ? reinterpret_cast<T*>(smem) : nullptr;
  const T* xr = x + int64_t(blockIdx.x) * cols;
  float m = -INFINITY, s = 0.f;
  visit_rows<T>(xr, nullptr, sm, nullptr, cols, packed, [&](float v, float) {
    if (v > m) {
      s = s * __expf(m - v) + 1.f;
      m = v;
    } else if (v != -INFINITY) {
      s += __expf(v - m);
    }
  });
  block_reduce_ms(m, s);
  float inv = 1.f / s, log_s = logf(s);
  write_row<T>(cache ? sm : xr, nullptr, y + int64_t(blockIdx.x) * cols, cols, packed,
               [&](float v, float) { return log ? v - m - log_s : __expf(v - m) * inv; });
}

template <class T>
__global__ void softmax_bwd_block(const T* __restrict__ y, const T* __restrict__ dy,
                                  T* __restrict__ dx, int64_t cols, bool log, bool packed,
                                  bool cache) {
  extern __shared__ __align__(16) unsigned char smem[];
  T* sy = cache ? reinterpret_cast<T*>(smem) : nullptr;
  T* sg = cache ? sy + cols : nullptr;
  int64_t off = int64_t(blockIdx.x) * cols;
  const T *yr = y + off, *gr = dy + off;
  float s = 0.f;
  visit_rows<T>(yr, gr, sy, sg, cols, packed, [&](float v, float g) { s += log ? g : g * v; });
  s = block_sum(s);
  write_row<T>(cache ? sy : yr, cache ? sg : gr, dx + off, cols, packed,
               [&](float v, float g) { return log ? g - __expf(v) * s : v * (g - s); });
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

template <class T>
void launch(const SoftmaxParams& p, int device, cudaStream_t s) {
  const T* in0 = static_cast<const T*>(p.in0);
  const T* in1 = static_cast<const T*>(p.in1);
  T* out = static_cast<T*>(p.out);
  if (p.cols <= 1024) {
    int cols = int(p.cols);
    int blocks = int(std::min<int64_t>((p.rows + kWarpsPerBlock - 1) / kWarpsPerBlock, 65535 * 8));
    int threads = 32 * kWarpsPerBlock;
    if (!p.backward) {
      if (cols <= 128) {
        softmax_fwd_warp<T, 4><<<blocks, threads, 0, s>>>(in0, out, p.rows, cols, p.log);
      } else {
        softmax_fwd_warp<T, 32><<<blocks, threads, 0, s>>>(in0, out, p.rows, cols, p.log);
      }
    } else {
      if (cols <= 128) {
        softmax_bwd_warp<T, 4><<<blocks, threads, 0, s>>>(in0, in1, out, p.rows, cols, p.log);
      } else {
        softmax_bwd_warp<T, 32><<<blocks, threads, 0, s>>>(in0, in1, out, p.rows, cols, p.log);
      }
    }
    SL_CUDA_LAUNCH_CHECK();
    return;
  }
  constexpr int V = Pack<T>::V;
  bool packed =
      p.cols % V == 0 && aligned16(in0) && aligned16(out) && (!p.backward || aligned16(in1));
  int64_t units = packed ? p.cols / V : p.cols;
  int threads = int(std::clamp<int64_t>((units / 2 + 31) / 32 * 32, 128, 1024));
  size_t bytes = size_t(p.cols) * sizeof(T) * (p.backward ? 2 : 1);
  size_t limit = cuda::properties(device).sharedMemPerBlockOptin - 1024;
  bool cache = bytes <= limit;
  size_t dyn = cache ? bytes : 0;
  if (!p.backward) {
    if (dyn > 48 * 1024)
      SL_CUDA_CHECK(cudaFuncSetAttribute(softmax_fwd_block<T>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, int(dyn)));
    softmax_fwd_block<T><<<int(p.rows), threads, dyn, s>>>(in0, out, p.cols, p.log, packed, cache);
  } else {
    if (dyn > 48 * 1024)
      SL_CUDA_CHECK(cudaFuncSetAttribute(softmax_bwd_block<T>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, int(dyn)));
    softmax_bwd_block<T>
        <<<int(p.rows), threads, dyn, s>>>(in0, in1, out, p.cols, p.log, packed, cache);
  }
  SL_CUDA_LAUNCH_CHECK();
}

}  // namespace

void softmax_cuda(const SoftmaxParams& p, int device) {
  cuda::set_device(device);
  SL_DISPATCH_CUDA_FLOAT(p.dtype, "softmax", T, launch<T>(p, device, cuda::stream(device)));
}

}  // namespace sl::kernels
