// CUDA softmax / log-softmax over rows, forward and backward, f32 and bf16, f32 statistics.
//
// Note [softmax kernels]
// Rows of up to 1024 elements: one warp per row, the row held in registers (kPer values per
// lane), max and sum by warp shuffles. Longer rows whose 16-byte packs fit kRegPacks per thread in
// at most kMaxCluster blocks of kRegThreads: the register kernels. Each block of a cluster holds
// its slice of the row in registers (read once, with all its loads in flight before any use),
// reduces the slice's (max, sum of exp) or sum(dy * y), and the blocks of the cluster merge their
// partials through distributed shared memory in rank order; then each block writes its slice.
// Every row byte is read once and written once, with no shared-memory copy; a long row spreads
// over a cluster instead of being re-read from global memory (which misses L2 when ~260 rows of
// 256 KB are in flight). The forward keeps exp(x - m_thread) and rescales it by
// exp(m_thread - m_row) / sum, one exponential per element.
// Other long rows (unaligned, or longer than the clusters hold): one block per row. The forward
// pass reads the row once, keeping a running (max, sum of exp) per thread, while copying the raw
// row into shared memory; the second pass writes the output from shared memory. When the row does
// not fit in shared memory the second pass reads global memory again. The backward pass caches y
// and dy the same way.
// Exponentials use __expf (ex2.approx): its error grows with |x - max|, where the values are tiny
// next to the row's largest, which is what the tolerance rule's rms term allows for.
#include <algorithm>
#include <cmath>
#include <limits>

#include <cooperative_groups.h>

#include "core/cuda_context.h"
#include "kernels/cuda_utils.cuh"
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

// ---- register kernels: a row in the registers of a cluster of blocks ----

constexpr int kRegPacks = 4;      // 16-byte packs per thread (per operand)
constexpr int kRegThreads = 512;  // most threads of one block
constexpr int kMaxCluster = 8;    // most blocks per row (the portable cluster size)

// Block b handles packs [rank * blockDim.x * kRegPacks, ...) of row b / csize, rank = b % csize;
// thread t holds packs base + t + k * blockDim.x, k < kRegPacks.
template <class T>
__global__ void __launch_bounds__(kRegThreads)
    softmax_fwd_reg(const T* __restrict__ x, T* __restrict__ y, int64_t cols, int csize, bool log) {
  using P = cu::Pack<T>;
  constexpr int V = P::V;
  __shared__ float2 partial;
  const int64_t row = blockIdx.x / csize;
  const int rank = int(blockIdx.x % csize);
  const int64_t npack = cols / V;
  const int64_t base = int64_t(rank) * blockDim.x * kRegPacks + threadIdx.x;
  const P* xr = reinterpret_cast<const P*>(x + row * cols);
  P raw[kRegPacks];
  _Pragma("unroll") for (int k = 0; k < kRegPacks; ++k) {
    int64_t j = base + int64_t(k) * blockDim.x;
    if (j < npack) raw[k] = xr[j];
  }
  float v[kRegPacks][V];
  float lm = -INFINITY;
  _Pragma("unroll") for (int k = 0; k < kRegPacks; ++k) {
    bool ok = base + int64_t(k) * blockDim.x < npack;
    _Pragma("unroll") for (int e = 0; e < V; ++e) {
      v[k][e] = ok ? cu::to_f(raw[k].v[e]) : -INFINITY;
      lm = fmaxf(lm, v[k][e]);
    }
  }
  // This thread's sum of exp(v - lm); the forward keeps exp(v - lm) in v (0 where lm is -inf).
  float ls = 0.f;
  _Pragma("unroll") for (int k = 0; k < kRegPacks; ++k) {
    _Pragma("unroll") for (int e = 0; e < V; ++e) {
      float ex = lm == -INFINITY ? 0.f : __expf(v[k][e] - lm);
      ls += ex;
      if (!log) v[k][e] = ex;
    }
  }
  float m = lm, s = ls;
  block_reduce_ms(m, s);
  if (csize > 1) {
    namespace cg = cooperative_groups;
    cg::cluster_group cluster = cg::this_cluster();
    if (threadIdx.x == 0) partial = make_float2(m, s);
    cluster.sync();
    float M = -INFINITY, S = 0.f;
    for (int q = 0; q < csize; ++q) {
      float2 o = *cluster.map_shared_rank(&partial, q);
      merge_ms(M, S, o.x, o.y);
    }
    cluster.sync();  // no block leaves while another may still read its partial
    m = M;
    s = S;
  }
  P* yr = reinterpret_cast<P*>(y + row * cols);
  float inv = 1.f / s, log_s = logf(s);
  float sc = __expf(lm - m) * inv;  // lm == -inf: its v are 0 and sc is 0
  _Pragma("unroll") for (int k = 0; k < kRegPacks; ++k) {
    int64_t j = base + int64_t(k) * blockDim.x;
    if (j >= npack) continue;
    P o;
    _Pragma("unroll") for (int e = 0; e < V; ++e) o.v[e] =
        cu::from_f<T>(log ? v[k][e] - m - log_s : v[k][e] * sc);
    yr[j] = o;
  }
}

template <class T>
__global__ void __launch_bounds__(kRegThreads)
    softmax_bwd_reg(const T* __restrict__ y, const T* __restrict__ dy, T* __restrict__ dx,
                    int64_t cols, int csize, bool log) {
  using P = cu::Pack<T>;
  constexpr int V = P::V;
  __shared__ float scratch[32];
  __shared__ float partial;
  const int64_t row = blockIdx.x / csize;
  const int rank = int(blockIdx.x % csize);
  const int64_t npack = cols / V;
  const int64_t base = int64_t(rank) * blockDim.x * kRegPacks + threadIdx.x;
  const P* yr = reinterpret_cast<const P*>(y + row * cols);
  const P* gr = reinterpret_cast<const P*>(dy + row * cols);
  P py[kRegPacks], pg[kRegPacks];
  _Pragma("unroll") for (int k = 0; k < kRegPacks; ++k) {
    int64_t j = base + int64_t(k) * blockDim.x;
    if (j < npack) {
      py[k] = yr[j];
      pg[k] = gr[j];
    }
  }
  float s = 0.f;
  _Pragma("unroll") for (int k = 0; k < kRegPacks; ++k) {
    if (base + int64_t(k) * blockDim.x >= npack) continue;
    _Pragma("unroll") for (int e = 0; e < V; ++e) {
      float g = cu::to_f(pg[k].v[e]);
      s += log ? g : g * cu::to_f(py[k].v[e]);
    }
  }
  s = cu::block_sum(s, scratch);
  if (csize > 1) {
    namespace cg = cooperative_groups;
    cg::cluster_group cluster = cg::this_cluster();
    if (threadIdx.x == 0) partial = s;
    cluster.sync();
    float S = 0.f;
    for (int q = 0; q < csize; ++q) S += *cluster.map_shared_rank(&partial, q);
    cluster.sync();  // no block leaves while another may still read its partial
    s = S;
  }
  // Convert y and dy again below instead of keeping 2 * kRegPacks * V floats alive (bf16: 64).
  cu::launder(py);
  cu::launder(pg);
  P* dr = reinterpret_cast<P*>(dx + row * cols);
  _Pragma("unroll") for (int k = 0; k < kRegPacks; ++k) {
    int64_t j = base + int64_t(k) * blockDim.x;
    if (j >= npack) continue;
    P o;
    _Pragma("unroll") for (int e = 0; e < V; ++e) {
      float v = cu::to_f(py[k].v[e]), g = cu::to_f(pg[k].v[e]);
      o.v[e] = cu::from_f<T>(log ? g - __expf(v) * s : v * (g - s));
    }
    dr[j] = o;
  }
}

// The cluster size and block size of the register kernels for rows of `npack` packs, or false
// when the row does not fit.
bool reg_config(int64_t npack, int& csize, int& threads) {
  const int64_t per_block = int64_t(kRegThreads) * kRegPacks;
  int c = 1;
  while (c < kMaxCluster && c * per_block < npack) c *= 2;
  if (c * per_block < npack) return false;
  int64_t t = (npack + int64_t(c) * kRegPacks - 1) / (int64_t(c) * kRegPacks);
  csize = c;
  threads = int((t + 31) / 32 * 32);
  return true;
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
    int blocks = cu::grid_stride_blocks(p.rows, kWarpsPerBlock);
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
  int csize = 0, rthreads = 0;
  // Forward rows that need a cluster measured slower (H100: 58-72% of copy at 32000-50304
  // columns) than the shared-memory block kernel below (74-79%); the backward gains from it.
  if (packed && reg_config(p.cols / V, csize, rthreads) && (p.backward || csize == 1) &&
      p.rows * csize <= std::numeric_limits<int>::max()) {
    dim3 grid(unsigned(p.rows * csize)), cluster{unsigned(csize), 1, 1};
    if (!p.backward) {
      cu::launch_clustered(softmax_fwd_reg<T>, grid, dim3(rthreads), cluster, s, in0, out, p.cols,
                           csize, p.log);
    } else {
      cu::launch_clustered(softmax_bwd_reg<T>, grid, dim3(rthreads), cluster, s, in0, in1, out,
                           p.cols, csize, p.log);
    }
    return;
  }
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
