// CUDA copy, cast and fill. Contiguous same-dtype copies go to cudaMemcpyAsync and zero fills of
// contiguous tensors to cudaMemsetAsync; everything else runs one thread per element, through
// StridedIndexer unless every operand is row-major (kDense: the element index is the offset; the
// indexer's int64 divisions per element held a bf16 fill near 0.3 TB/s on an H200).
#include "core/cuda_context.h"
#include "core/philox_normal.h"
#include "kernels/copy.h"
#include "kernels/cuda_utils.cuh"
#include "kernels/dispatch.h"
#include "kernels/indexing.h"

namespace sl::kernels {
namespace {

constexpr int kThreads = 256;

template <class D, class S>
__device__ __forceinline__ D convert(S v) {
  using DC = typename ScalarTraits<D>::compute;
  if constexpr (std::is_same_v<D, S>) {
    return v;
  } else {
    return ScalarTraits<D>::from_compute(DC(double(ScalarTraits<S>::to_compute(v))));
  }
}

template <bool kDense>
__device__ __forceinline__ int64_t offset_of(const StridedIndexer& idx, int64_t i) {
  if constexpr (kDense) return i;
  return idx.offset(i);
}

template <class D, class S, bool kDense>
__global__ void copy_kernel(D* dst, const S* src, int64_t n, StridedIndexer di,
                            StridedIndexer si) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[offset_of<kDense>(di, i)] = convert<D, S>(src[offset_of<kDense>(si, i)]);
}

template <class T, bool kDense>
__global__ void fill_kernel(T* data, int64_t n, StridedIndexer idx, T v) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    data[offset_of<kDense>(idx, i)] = v;
}

template <class T, bool kDense>
__global__ void fill_random_kernel(T* data, int64_t n, StridedIndexer idx, uint64_t seed,
                                   uint64_t offset, bool normal, double a, double b) {
  using C = typename ScalarTraits<T>::compute;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float r = normal ? philox_normal_at(seed, offset, uint64_t(i))
                     : philox_uniform_at(seed, offset, uint64_t(i));
    data[offset_of<kDense>(idx, i)] = ScalarTraits<T>::from_compute(C(a + b * double(r)));
  }
}

// All-zero bits (0 in every dtype here except -0.0).
template <class T>
bool zero_bits(T v) {
  const unsigned char* b = reinterpret_cast<const unsigned char*>(&v);
  for (size_t i = 0; i < sizeof(T); ++i)
    if (b[i] != 0) return false;
  return true;
}

bool is_row_major(const Dims& shape, const Dims& strides) {
  return strides == contiguous_strides(shape) || shape.numel() <= 1;
}

}  // namespace

void copy_strided_cuda(const CopyParams& p, int device) {
  cuda::set_device(device);
  cudaStream_t s = cuda::stream(device);
  const bool rows = is_row_major(p.shape, p.dst_strides) && is_row_major(p.shape, p.src_strides);
  if (rows && p.dst_dtype == p.src_dtype) {
    SL_CUDA_CHECK(cudaMemcpyAsync(p.dst, p.src, size_t(p.n) * dtype_size(p.dst_dtype),
                                  cudaMemcpyDeviceToDevice, s));
    return;
  }
  StridedIndexer di(p.shape, p.dst_strides), si(p.shape, p.src_strides);
  const int blocks = cu::grid_stride_blocks(p.n, kThreads);
  SL_DISPATCH_ALL(p.dst_dtype, "copy", D, {
    SL_DISPATCH_ALL(p.src_dtype, "copy", S, {
      auto* kernel = rows ? copy_kernel<D, S, true> : copy_kernel<D, S, false>;
      kernel<<<blocks, kThreads, 0, s>>>(static_cast<D*>(p.dst), static_cast<const S*>(p.src), p.n,
                                         di, si);
      SL_CUDA_LAUNCH_CHECK();
    });
  });
}

void fill_cuda(const FillParams& p, int device) {
  cuda::set_device(device);
  cudaStream_t s = cuda::stream(device);
  StridedIndexer idx(p.shape, p.strides);
  const int blocks = cu::grid_stride_blocks(p.n, kThreads);
  const bool rows = is_row_major(p.shape, p.strides);
  SL_DISPATCH_ALL(p.dtype, "fill", T, {
    using C = typename ScalarTraits<T>::compute;
    const T v = ScalarTraits<T>::from_compute(C(p.value));
    if (p.random) {
      auto* kernel = rows ? fill_random_kernel<T, true> : fill_random_kernel<T, false>;
      kernel<<<blocks, kThreads, 0, s>>>(static_cast<T*>(p.data), p.n, idx, p.seed, p.offset,
                                         p.normal, p.a, p.b);
    } else if (rows && zero_bits(v)) {
      SL_CUDA_CHECK(cudaMemsetAsync(p.data, 0, size_t(p.n) * sizeof(T), s));
    } else {
      auto* kernel = rows ? fill_kernel<T, true> : fill_kernel<T, false>;
      kernel<<<blocks, kThreads, 0, s>>>(static_cast<T*>(p.data), p.n, idx, v);
    }
    SL_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace sl::kernels
