// CUDA reductions over [outer, r, inner], f32 and bf16, f32 accumulation.
//
// Note [reduction kernels]
// inner == 1 (the reduced dim is the last): rows. Short rows (r <= kWarpRowMax) get one warp per
// row; longer rows one block per row, reading 16-byte packs when the rows are aligned. inner > 1:
// columns. Sums whose inner dim is a whole number of 16-byte packs (and aligned) use the packed
// column kernel: a kVX x kVY block puts kVX consecutive packs on the x threads (each thread adds
// 8 bf16 or 4 f32 columns, kVUnroll rows in flight) and splits r over the y threads; when the
// tiles alone cannot fill the card, r is split further over a cluster of up to 8 blocks whose
// partials are added through distributed shared memory. Other columns (and max): a 32 x 8 block
// puts 32 consecutive inner positions on the x threads and splits r over the 8 y threads, then
// combines the y partials in shared memory.
// When there are too few outputs to fill the card (a long row, or a narrow bias gradient
// [B*T, C] -> [C]), the other sums split r over several blocks that write f32 partials [outer,
// splits, inner], and a second launch of the same kernels reduces the partials. Every order of
// addition is fixed: results are deterministic.
#include <algorithm>
#include <cmath>
#include <limits>

#include <cooperative_groups.h>

#include "core/allocator.h"
#include "core/cuda_context.h"
#include "kernels/cuda_utils.cuh"
#include "kernels/dispatch.h"
#include "kernels/reduce.h"

namespace sl::kernels {
namespace {

constexpr int kBlockRows = 256;    // threads of the block-per-row kernel
constexpr int kWarpRowMax = 1024;  // longest row reduced by a single warp
constexpr int kColX = 32, kColY = 8;
constexpr int64_t kNoIndex = std::numeric_limits<int64_t>::max();

template <class T>
__device__ __forceinline__ float to_f(T v) {
  return float(ScalarTraits<T>::to_compute(v));
}

// A running maximum: NaN beats everything, then larger values, then the smaller index.
struct ArgMax {
  float v;
  int64_t i;
};
__device__ __forceinline__ bool beats(float v, int64_t i, const ArgMax& b) {
  if (isnan(b.v)) return isnan(v) && i < b.i;
  if (isnan(v)) return true;
  return v > b.v || (v == b.v && i < b.i);
}
__device__ __forceinline__ void take(ArgMax& a, float v, int64_t i) {
  if (beats(v, i, a)) a = ArgMax{v, i};
}

// The accumulator of one thread: a sum, or a running argmax. An aggregate (no constructor) so it
// can live in shared memory; start from identity().
template <bool kMax>
struct Acc {
  float s;
  ArgMax m;
  static __device__ __forceinline__ Acc identity() { return Acc{0.f, ArgMax{-INFINITY, kNoIndex}}; }
  __device__ __forceinline__ void add(float v, int64_t i) {
    if constexpr (kMax) {
      take(m, v, i);
    } else {
      s += v;
    }
  }
  __device__ __forceinline__ void merge(const Acc& o) {
    if constexpr (kMax) {
      take(m, o.m.v, o.m.i);
    } else {
      s += o.s;
    }
  }
  __device__ __forceinline__ Acc shfl_xor(int lane_mask) const {
    Acc o = identity();
    if constexpr (kMax) {
      o.m.v = __shfl_xor_sync(0xffffffffu, m.v, lane_mask);
      o.m.i = __shfl_xor_sync(0xffffffffu, m.i, lane_mask);
    } else {
      o.s = __shfl_xor_sync(0xffffffffu, s, lane_mask);
    }
    return o;
  }
};

template <bool kMax>
__device__ __forceinline__ Acc<kMax> warp_reduce(Acc<kMax> a) {
  _Pragma("unroll") for (int o = 16; o > 0; o >>= 1) a.merge(a.shfl_xor(o));
  return a;
}

// Every thread of the block gets the block's total. blockDim.x is a multiple of 32.
template <bool kMax>
__device__ __forceinline__ Acc<kMax> block_reduce(Acc<kMax> a) {
  __shared__ Acc<kMax> partial[32];
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nwarps = blockDim.x / 32;
  a = warp_reduce(a);
  __syncthreads();  // partial may still be read by a previous call
  if (lane == 0) partial[warp] = a;
  __syncthreads();
  Acc<kMax> t = lane < nwarps ? partial[lane] : Acc<kMax>::identity();
  return warp_reduce(t);
}

template <class Tout, bool kMax>
__device__ __forceinline__ void store(const Acc<kMax>& a, Tout* out, int64_t* index, int64_t j,
                                      float scale) {
  if constexpr (kMax) {
    out[j] = ScalarTraits<Tout>::from_compute(a.m.v);
    index[j] = a.m.i;
  } else {
    out[j] = ScalarTraits<Tout>::from_compute(a.s * scale);
  }
}

// Rows of length r, one warp per row.
template <class Tin, class Tout, bool kMax>
__global__ void reduce_rows_warp(const Tin* __restrict__ x, Tout* __restrict__ out,
                                 int64_t* __restrict__ index, int64_t rows, int64_t r,
                                 float scale) {
  int lane = threadIdx.x % 32;
  int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  for (int64_t row = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; row < rows;
       row += warps) {
    const Tin* xr = x + row * r;
    Acc<kMax> a = Acc<kMax>::identity();
    for (int64_t j = lane; j < r; j += 32) a.add(to_f(xr[j]), j);
    a = warp_reduce(a);
    if (lane == 0) store<Tout, kMax>(a, out, index, row, scale);
  }
}

// Block b reduces chunk b % splits of row b / splits ([c*chunk, min(r, (c+1)*chunk))) into
// out[b]. `packed`: rows and chunks start 16-byte aligned and chunk % V == 0.
template <class Tin, class Tout, bool kMax>
__global__ void __launch_bounds__(kBlockRows)
    reduce_rows_block(const Tin* __restrict__ x, Tout* __restrict__ out,
                      int64_t* __restrict__ index, int64_t r, int64_t chunk, int64_t splits,
                      bool packed, float scale) {
  constexpr int V = int(16 / sizeof(Tin));
  struct alignas(16) Pack {
    Tin v[V];
  };
  int64_t row = blockIdx.x / splits, c = blockIdx.x % splits;
  int64_t begin = c * chunk, end = std::min(r, begin + chunk);
  const Tin* xr = x + row * r;
  Acc<kMax> a = Acc<kMax>::identity();
  if (packed) {
    const Pack* pr = reinterpret_cast<const Pack*>(xr + begin);
    int64_t npack = (end - begin) / V;
    int64_t j = threadIdx.x;
    for (; j + kBlockRows < npack; j += 2 * kBlockRows) {
      Pack p0 = pr[j], p1 = pr[j + kBlockRows];
      _Pragma("unroll") for (int v = 0; v < V; ++v) a.add(to_f(p0.v[v]), begin + j * V + v);
      _Pragma("unroll") for (int v = 0; v < V; ++v)
          a.add(to_f(p1.v[v]), begin + (j + kBlockRows) * V + v);
    }
    if (j < npack) {
      Pack p0 = pr[j];
      _Pragma("unroll") for (int v = 0; v < V; ++v) a.add(to_f(p0.v[v]), begin + j * V + v);
    }
    for (int64_t k = begin + npack * V + threadIdx.x; k < end; k += kBlockRows)
      a.add(to_f(xr[k]), k);
  } else {
    for (int64_t k = begin + threadIdx.x; k < end; k += kBlockRows) a.add(to_f(xr[k]), k);
  }
  a = block_reduce(a);
  if (threadIdx.x == 0) store<Tout, kMax>(a, out, index, blockIdx.x, scale);
}

// Columns: x is [outer, r, inner]; block (x, y, z) = (inner tile, outer (grid-stride), split).
// Writes out[(o * gridDim.z + z) * inner + i].
template <class Tin, class Tout, bool kMax>
__global__ void __launch_bounds__(kColX* kColY)
    reduce_cols(const Tin* __restrict__ x, Tout* __restrict__ out, int64_t* __restrict__ index,
                int64_t outer, int64_t r, int64_t inner, int64_t chunk, float scale) {
  __shared__ Acc<kMax> part[kColY][kColX + 1];
  int64_t i = int64_t(blockIdx.x) * kColX + threadIdx.x;
  int64_t begin = int64_t(blockIdx.z) * chunk, end = std::min(r, begin + chunk);
  for (int64_t o = blockIdx.y; o < outer; o += gridDim.y) {
    Acc<kMax> a = Acc<kMax>::identity();
    if (i < inner) {
      const Tin* xc = x + o * r * inner + i;
#pragma unroll 4
      for (int64_t k = begin + threadIdx.y; k < end; k += kColY) a.add(to_f(xc[k * inner]), k);
    }
    part[threadIdx.y][threadIdx.x] = a;
    __syncthreads();
    if (threadIdx.y == 0) {
      _Pragma("unroll") for (int y = 1; y < kColY; ++y) a.merge(part[y][threadIdx.x]);
      if (i < inner)
        store<Tout, kMax>(a, out, index, (o * gridDim.z + blockIdx.z) * inner + i, scale);
    }
    __syncthreads();
  }
}

// Packed columns (sums): x is [outer, r, inner] with inner % V == 0 and 16-byte aligned. Block
// (x, y, z) = (tile of kVX packs, outer (grid-stride), slice z of `chunk` rows); the gridDim.z
// slices form one cluster along z (csize = gridDim.z). Writes out[o * inner + i] = scale * sum.
constexpr int kVX = 16, kVY = 16, kVUnroll = 8;
constexpr int kMaxColCluster = 8;

template <class T>
__global__ void __launch_bounds__(kVX* kVY)
    reduce_cols_packed(const T* __restrict__ x, T* __restrict__ out, int64_t outer, int64_t r,
                       int64_t inner, int64_t chunk, float scale) {
  using P = cu::Pack<T>;
  constexpr int V = P::V;
  __shared__ float part[kVY][V][kVX];
  __shared__ float tile[V][kVX];
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * kVX + tx;
  const int csize = int(gridDim.z);
  const int64_t npack = inner / V;
  const int64_t pc = int64_t(blockIdx.x) * kVX + tx;  // this thread's pack column
  const int64_t begin = int64_t(blockIdx.z) * chunk, end = std::min(r, begin + chunk);
  // The final sums: thread tid < kVX * V adds lane fv of pack column fc over the kVY partials.
  const int fv = tid / kVX, fc = tid % kVX;
  const int64_t fi = (int64_t(blockIdx.x) * kVX + fc) * V + fv;
  for (int64_t o = blockIdx.y; o < outer; o += gridDim.y) {
    float acc[V];
    _Pragma("unroll") for (int v = 0; v < V; ++v) acc[v] = 0.f;
    if (pc < npack) {
      const P* xc = reinterpret_cast<const P*>(x + o * r * inner) + pc;
      for (int64_t k = begin + ty; k < end; k += kVY * kVUnroll) {
        P buf[kVUnroll];
        _Pragma("unroll") for (int u = 0; u < kVUnroll; ++u) {
          int64_t kk = k + int64_t(u) * kVY;
          if (kk < end) buf[u] = xc[kk * npack];
        }
        _Pragma("unroll") for (int u = 0; u < kVUnroll; ++u) {
          if (k + int64_t(u) * kVY >= end) continue;
          _Pragma("unroll") for (int v = 0; v < V; ++v) acc[v] += cu::to_f(buf[u].v[v]);
        }
      }
    }
    _Pragma("unroll") for (int v = 0; v < V; ++v) part[ty][v][tx] = acc[v];
    __syncthreads();
    float t = 0.f;
    if (tid < kVX * V) {
      _Pragma("unroll") for (int y = 0; y < kVY; ++y) t += part[y][fv][fc];
    }
    if (csize == 1) {
      if (tid < kVX * V && fi < inner) out[o * inner + fi] = cu::from_f<T>(t * scale);
    } else {
      namespace cg = cooperative_groups;
      cg::cluster_group cluster = cg::this_cluster();
      if (tid < kVX * V) tile[fv][fc] = t;
      cluster.sync();
      if (cluster.block_rank() == 0 && tid < kVX * V) {
        float sum = 0.f;
        for (int q = 0; q < csize; ++q) sum += cluster.map_shared_rank(&tile[0][0], q)[fv * kVX + fc];
        if (fi < inner) out[o * inner + fi] = cu::from_f<T>(sum * scale);
      }
      cluster.sync();  // rank 0 has read every tile; they may be overwritten or released
    }
    __syncthreads();
  }
}

template <class T>
__global__ void max_backward_kernel(const T* __restrict__ dy, const int64_t* __restrict__ index,
                                    T* __restrict__ dx, int64_t n, int64_t r, int64_t inner) {
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
       e += int64_t(gridDim.x) * blockDim.x) {
    int64_t i = e % inner, t = e / inner;
    int64_t k = t % r, o = t / r;
    int64_t j = o * inner + i;
    dx[e] = index[j] == k ? dy[j] : ScalarTraits<T>::from_compute(0.f);
  }
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// One pass of the row reduction of x [rows, r] into out [rows, splits], splits = ceil(r / chunk).
template <class Tin, class Tout, bool kMax>
void rows_pass(const Tin* x, Tout* out, int64_t* index, int64_t rows, int64_t r, int64_t chunk,
               float scale, cudaStream_t s) {
  constexpr int V = int(16 / sizeof(Tin));
  int64_t splits = std::max<int64_t>(1, (r + chunk - 1) / chunk);
  if (splits == 1 && r <= kWarpRowMax) {
    int64_t blocks = std::min<int64_t>((rows + 7) / 8, 65535 * 16);
    reduce_rows_warp<Tin, Tout, kMax><<<int(blocks), 256, 0, s>>>(x, out, index, rows, r, scale);
    SL_CUDA_LAUNCH_CHECK();
    return;
  }
  bool packed = aligned16(x) && r % V == 0 && chunk % V == 0;
  reduce_rows_block<Tin, Tout, kMax>
      <<<int(rows * splits), kBlockRows, 0, s>>>(x, out, index, r, chunk, splits, packed, scale);
  SL_CUDA_LAUNCH_CHECK();
}

// One pass of the column reduction of x [outer, r, inner] into out [outer, splits, inner].
template <class Tin, class Tout, bool kMax>
void cols_pass(const Tin* x, Tout* out, int64_t* index, int64_t outer, int64_t r, int64_t inner,
               int64_t chunk, float scale, cudaStream_t s) {
  int64_t splits = std::max<int64_t>(1, (r + chunk - 1) / chunk);
  dim3 grid(unsigned((inner + kColX - 1) / kColX), unsigned(std::min<int64_t>(outer, 65535)),
            unsigned(splits));
  reduce_cols<Tin, Tout, kMax>
      <<<grid, dim3(kColX, kColY), 0, s>>>(x, out, index, outer, r, inner, chunk, scale);
  SL_CUDA_LAUNCH_CHECK();
}

template <class T>
void launch(const ReduceParams& p, int device, cudaStream_t s) {
  const T* x = static_cast<const T*>(p.x);
  T* out = static_cast<T*>(p.out);
  float scale = p.op == ReduceOp::Mean ? 1.f / float(p.r) : 1.f;
  int64_t sms = cuda::properties(device).multiProcessorCount;
  int64_t tiles = p.outer * ((p.inner + kColX - 1) / kColX);
  int64_t whole = std::max<int64_t>(1, p.r);
  constexpr int64_t kMinChunk = 4096;
  if (p.op == ReduceOp::Max) {
    if (p.inner == 1) {
      rows_pass<T, T, true>(x, out, p.index, p.outer, p.r, whole, 1.f, s);
    } else {
      cols_pass<T, T, true>(x, out, p.index, p.outer, p.r, p.inner, whole, 1.f, s);
    }
    return;
  }
  constexpr int V = int(16 / sizeof(T));
  if (p.inner > 1 && p.inner % V == 0 && cu::aligned16(x)) {
    int64_t ptiles = (p.inner / V + kVX - 1) / kVX;
    int64_t units = ptiles * p.outer;
    // Enough tiles for one clustered block per SM. (At 2 per SM, [16384, 4096] bf16 fell to the
    // two-pass kernel below: 38% of copy on an H100, against 88% for f32 on this path.)
    if (units * kMaxColCluster >= sms || p.r < 2 * kMinChunk) {
      // Split r over a cluster until about 4 blocks per SM have work, keeping >= kVY rows each.
      int64_t c = 1;
      while (c < kMaxColCluster && units * c < 4 * sms && 2 * c * kVY <= p.r) c *= 2;
      int64_t chunk = (p.r + c - 1) / c;
      dim3 grid(unsigned(ptiles), unsigned(std::min<int64_t>(p.outer, 65535)), unsigned(c));
      cu::launch_clustered(reduce_cols_packed<T>, grid, dim3(kVX, kVY), dim3(1, 1, unsigned(c)), s,
                           x, out, p.outer, p.r, p.inner, chunk, scale);
      return;
    }
  }
  // Split r so that about 4 blocks per SM have work, each reducing at least kMinChunk elements.
  // Row chunks are a multiple of the pack width so every chunk starts aligned.
  int64_t units = p.inner == 1 ? p.outer : tiles;
  int64_t splits = 1;
  if (units < 2 * sms && p.r >= 2 * kMinChunk)
    splits = std::min((4 * sms + units - 1) / units, p.r / kMinChunk);
  int64_t chunk = (p.r + splits - 1) / splits;
  if (p.inner == 1) chunk = (chunk + 7) / 8 * 8;
  splits = (p.r + chunk - 1) / chunk;
  if (splits <= 1) {
    if (p.inner == 1) {
      rows_pass<T, T, false>(x, out, nullptr, p.outer, p.r, whole, scale, s);
    } else {
      cols_pass<T, T, false>(x, out, nullptr, p.outer, p.r, p.inner, whole, scale, s);
    }
    return;
  }
  // Two passes through f32 partials [outer, splits, inner]. The temporary may be freed when this
  // function returns: later work on the same stream is ordered after these kernels (Note
  // [caching allocator]).
  Tensor part = Tensor::empty({p.outer, splits, p.inner}, DType::F32, Device::cuda(device));
  float* pp = part.data<float>();
  if (p.inner == 1) {
    rows_pass<T, float, false>(x, pp, nullptr, p.outer, p.r, chunk, 1.f, s);
    rows_pass<float, T, false>(pp, out, nullptr, p.outer, splits, splits, scale, s);
  } else {
    cols_pass<T, float, false>(x, pp, nullptr, p.outer, p.r, p.inner, chunk, 1.f, s);
    cols_pass<float, T, false>(pp, out, nullptr, p.outer, splits, p.inner, splits, scale, s);
  }
}

}  // namespace

void reduce_cuda(const ReduceParams& p, int device) {
  cuda::set_device(device);
  SL_DISPATCH_CUDA_FLOAT(p.dtype, "reduce", T, launch<T>(p, device, cuda::stream(device)));
}

void max_backward_cuda(const MaxBackwardParams& p, int device) {
  cuda::set_device(device);
  cudaStream_t s = cuda::stream(device);
  int64_t n = p.outer * p.r * p.inner;
  const int blocks = cu::grid_stride_blocks(n, 256);
  SL_DISPATCH_CUDA_FLOAT(p.dtype, "max", T, {
    max_backward_kernel<T><<<blocks, 256, 0, s>>>(static_cast<const T*>(p.dy), p.index,
                                                  static_cast<T*>(p.dx), n, p.r, p.inner);
    SL_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace sl::kernels
