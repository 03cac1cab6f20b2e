// CUDA embedding. The forward copies rows as raw 16-byte units (dtype-agnostic). The backward is
// deterministic: ids are stably radix-sorted with their positions (CUB), then one block per
// distinct id sums that id's dy rows in position order and writes its dW row once.
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>

#include "core/cuda_context.h"
#include "kernels/dispatch.h"
#include "kernels/embedding.h"

namespace sl::kernels {
namespace {

__device__ __forceinline__ int64_t id_at(const void* ids, bool i64, int64_t i) {
  return i64 ? static_cast<const int64_t*>(ids)[i] : int64_t(static_cast<const int32_t*>(ids)[i]);
}

// Block i copies row ids[i] of w (row_units units of U) to row i of out.
template <class U>
__global__ void embedding_fwd(const U* __restrict__ w, const void* ids, bool i64, int64_t v,
                              int64_t row_units, U* __restrict__ out, unsigned long long* bad) {
  const int64_t i = blockIdx.x;
  const int64_t id = id_at(ids, i64, i);
  U* dst = out + i * row_units;
  if (id < 0 || id >= v) {
    for (int64_t j = threadIdx.x; j < row_units; j += blockDim.x) dst[j] = U{};
    if (threadIdx.x == 0) atomicMin(bad, (unsigned long long)i);
    return;
  }
  const U* src = w + id * row_units;
  for (int64_t j = threadIdx.x; j < row_units; j += blockDim.x) dst[j] = src[j];
}

// keys[i] = ids[i] (v for an out-of-range id, sorted last and skipped), vals[i] = i.
__global__ void embedding_keys(const void* ids, bool i64, int64_t n, int64_t v,
                               int32_t* __restrict__ keys, int32_t* __restrict__ vals) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t id = id_at(ids, i64, i);
    keys[i] = int32_t(id >= 0 && id < v ? id : v);
    vals[i] = int32_t(i);
  }
}

// Block b starts a segment when sorted key b differs from key b - 1; it sums the dy rows of the
// segment in sorted order (= increasing position, the sort is stable) and writes dW[key].
template <class T>
__global__ void embedding_bwd_segments(const int32_t* __restrict__ keys,
                                       const int32_t* __restrict__ pos, int64_t n, int64_t v,
                                       int64_t c, const T* __restrict__ dy, T* __restrict__ dw) {
  const int64_t b = blockIdx.x;
  const int32_t key = keys[b];
  if (key >= v || (b > 0 && keys[b - 1] == key)) return;
  int64_t end = b + 1;
  while (end < n && keys[end] == key) ++end;
  for (int64_t j = threadIdx.x; j < c; j += blockDim.x) {
    float acc = 0.f;
    for (int64_t k = b; k < end; ++k) acc += ScalarTraits<T>::to_compute(dy[pos[k] * c + j]);
    dw[int64_t(key) * c + j] = ScalarTraits<T>::from_compute(acc);
  }
}

int threads_for(int64_t units) {
  return int(std::clamp<int64_t>((units + 31) / 32 * 32, 32, 256));
}

template <class U>
void launch_fwd(const EmbeddingParams& p, int64_t row_bytes, cudaStream_t s) {
  int64_t units = row_bytes / int64_t(sizeof(U));
  embedding_fwd<U><<<unsigned(p.n), threads_for(units), 0, s>>>(
      static_cast<const U*>(p.weight), p.ids, p.id_dtype == DType::I64, p.v, units,
      static_cast<U*>(p.out), p.bad);
  SL_CUDA_LAUNCH_CHECK();
}

}  // namespace

void embedding_forward_cuda(const EmbeddingParams& p, int device) {
  cuda::set_device(device);
  cudaStream_t s = cuda::stream(device);
  SL_CUDA_CHECK(cudaMemsetAsync(p.bad, 0xff, sizeof(unsigned long long), s));
  SL_CHECK(p.n < (int64_t(1) << 31)) << "embedding: more than 2^31 ids";
  const int64_t row_bytes = p.c * int64_t(dtype_size(p.dtype));
  auto aligned = [](const void* q) { return (uintptr_t(q) & 15) == 0; };
  if (row_bytes % 16 == 0 && aligned(p.weight) && aligned(p.out)) {
    launch_fwd<uint4>(p, row_bytes, s);
  } else if (row_bytes % 4 == 0) {
    launch_fwd<uint32_t>(p, row_bytes, s);
  } else {
    launch_fwd<uint16_t>(p, row_bytes, s);
  }
}

void embedding_backward_cuda(const EmbeddingParams& p, int device) {
  cuda::set_device(device);
  cudaStream_t s = cuda::stream(device);
  SL_CHECK(p.n < (int64_t(1) << 31) && p.v < (int64_t(1) << 31) - 1)
      << "embedding: backward supports fewer than 2^31 ids and rows, got " << p.n << " ids and "
      << p.v << " rows";
  Device dev = Device::cuda(device);
  Tensor keys = Tensor::empty({2, p.n}, DType::I32, dev), vals = Tensor::empty({2, p.n}, DType::I32, dev);
  int32_t* k_in = keys.data<int32_t>();
  int32_t* k_out = k_in + p.n;
  int32_t* v_in = vals.data<int32_t>();
  int32_t* v_out = v_in + p.n;
  int blocks = int(std::min<int64_t>((p.n + 255) / 256, 4096));
  embedding_keys<<<blocks, 256, 0, s>>>(p.ids, p.id_dtype == DType::I64, p.n, p.v, k_in, v_in);
  SL_CUDA_LAUNCH_CHECK();
  int end_bit = 1;
  while (end_bit < 31 && (int64_t(1) << end_bit) <= p.v) ++end_bit;
  size_t temp_bytes = 0;
  SL_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, k_in, k_out, v_in, v_out,
                                                int(p.n), 0, end_bit, s));
  Tensor temp = Tensor::empty({int64_t(temp_bytes / 8 + 1)}, DType::I64, dev);
  SL_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.data_ptr(), temp_bytes, k_in, k_out, v_in,
                                                v_out, int(p.n), 0, end_bit, s));
  const size_t dw_bytes = size_t(p.v * p.c) * dtype_size(p.dtype);
  SL_CUDA_CHECK(cudaMemsetAsync(p.dweight, 0, dw_bytes, s));
  SL_DISPATCH_CUDA_FLOAT(p.dtype, "embedding", T, {
    embedding_bwd_segments<T><<<unsigned(p.n), threads_for(p.c), 0, s>>>(
        k_out, v_out, p.n, p.v, p.c, static_cast<const T*>(p.dy), static_cast<T*>(p.dweight));
    SL_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace sl::kernels
