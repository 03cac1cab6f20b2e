// CUDA gather and deterministic scatter_add (Note [deterministic scatter_add],
// Note [index range check on the GPU] in kernels/shape_ops.h).
//
// gather moves elements by size (2, 4 or 8 bytes), so every dtype shares three instantiations.
// scatter_add sorts (destination offset, position) pairs with CUB's stable radix sort, then one
// thread per run of equal destinations adds the run in position order.
#include <cub/device/device_radix_sort.cuh>

#include "core/cuda_context.h"
#include "kernels/cuda_utils.cuh"
#include "kernels/dispatch.h"
#include "kernels/indexing.h"
#include "kernels/shape_ops.h"

namespace sl::kernels {
namespace {

constexpr int kThreads = 256;
constexpr unsigned long long kNoError = ~0ull;

int grid_for(int64_t n) {
  return cu::grid_stride_blocks(n, kThreads);
}

template <class E, class I>
__global__ void gather_kernel(E* out, const E* x, const I* index, int64_t n, AxisIndexer ix,
                              int64_t x_dim_stride, int64_t dim_size,
                              unsigned long long* first_bad) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t oo, ox, oi;
    ix.at(i, oo, ox, oi);
    int64_t v = int64_t(index[oi]);
    if (v < 0 || v >= dim_size) {
      atomicMin(first_bad, (unsigned long long)i);
      continue;
    }
    out[oo] = x[ox + v * x_dim_stride];
  }
}

// keys[i] = storage offset of the destination of position i; vals[i] = i.
template <class I>
__global__ void scatter_keys_kernel(uint64_t* keys, int64_t* vals, const I* index, int64_t n,
                                    AxisIndexer ix, int64_t dst_dim_stride, int64_t dim_size,
                                    unsigned long long* first_bad) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t os, od, oi;
    ix.at(i, os, od, oi);
    int64_t v = int64_t(index[oi]);
    if (v < 0 || v >= dim_size) {
      atomicMin(first_bad, (unsigned long long)i);
      v = 0;
    }
    keys[i] = uint64_t(od + v * dst_dim_stride);
    vals[i] = i;
  }
}

// One thread per run of equal keys: dst = round(dst + src[p0] + src[p1] + ...) in f32.
template <class T>
__global__ void scatter_runs_kernel(T* dst, const T* src, const uint64_t* keys,
                                    const int64_t* vals, int64_t n, AxisIndexer ix) {
  for (int64_t s = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; s < n;
       s += int64_t(gridDim.x) * blockDim.x) {
    uint64_t key = keys[s];
    if (s > 0 && keys[s - 1] == key) continue;
    float acc = ScalarTraits<T>::to_compute(dst[key]);
    for (int64_t t = s; t < n && keys[t] == key; ++t) {
      int64_t os, od, oi;
      ix.at(vals[t], os, od, oi);
      acc += ScalarTraits<T>::to_compute(src[os]);
    }
    dst[key] = ScalarTraits<T>::from_compute(acc);
  }
}

// A device flag for the first out-of-range position (Note [index range check on the GPU]).
Tensor make_flag(int device) {
  return Tensor::full({1}, -1.0, DType::I64, Device::cuda(device));  // all bits set: no error
}

// Waits for the stream; throws the op's index error if the flag was set.
void check_flag(const Tensor& flag, const char* op, const char* target, const void* index,
                DType index_dtype, const Dims& shape, const Dims& index_strides, int64_t dim_size,
                int dim, cudaStream_t s) {
  unsigned long long bad = 0;
  SL_CUDA_CHECK(cudaMemcpyAsync(&bad, flag.data_ptr(), sizeof(bad), cudaMemcpyDeviceToHost, s));
  SL_CUDA_CHECK(cudaStreamSynchronize(s));
  if (bad == kNoError) return;
  int64_t off = StridedIndexer(shape, index_strides).offset(int64_t(bad));
  size_t es = dtype_size(index_dtype);
  int64_t value = 0;
  int32_t v32 = 0;
  const char* at = static_cast<const char*>(index) + off * int64_t(es);
  SL_CUDA_CHECK(cudaMemcpyAsync(index_dtype == DType::I32 ? static_cast<void*>(&v32) : &value,
                                at, es, cudaMemcpyDeviceToHost, s));
  SL_CUDA_CHECK(cudaStreamSynchronize(s));
  if (index_dtype == DType::I32) value = v32;
  throw_index_error(op, target, shape, int64_t(bad), value, dim_size, dim);
}

template <class E>
void launch_gather(const GatherParams& p, unsigned long long* flag, cudaStream_t s) {
  AxisIndexer ix(p.shape, p.dim, p.out_strides, p.x_strides, p.index_strides);
  E* out = static_cast<E*>(p.out);
  const E* x = static_cast<const E*>(p.x);
  int64_t xs = p.x_strides[p.dim];
  if (p.index_dtype == DType::I32) {
    gather_kernel<E, int32_t><<<grid_for(p.n), kThreads, 0, s>>>(
        out, x, static_cast<const int32_t*>(p.index), p.n, ix, xs, p.dim_size, flag);
  } else {
    gather_kernel<E, int64_t><<<grid_for(p.n), kThreads, 0, s>>>(
        out, x, static_cast<const int64_t*>(p.index), p.n, ix, xs, p.dim_size, flag);
  }
  SL_CUDA_LAUNCH_CHECK();
}

// Largest storage offset of dst reachable by a destination: bounds the radix sort's key bits.
int64_t max_dst_offset(const ScatterAddParams& p) {
  int64_t m = 0;
  for (int i = 0; i < p.shape.n; ++i) {
    int64_t extent = i == p.dim ? p.dim_size : p.shape[i];
    m += (extent - 1) * p.dst_strides[i];
  }
  return m;
}

}  // namespace

void gather_cuda(const GatherParams& p, int device) {
  cuda::set_device(device);
  cudaStream_t s = cuda::stream(device);
  Tensor flag = make_flag(device);
  auto* f = static_cast<unsigned long long*>(flag.data_ptr());
  switch (p.elem_size) {
    case 2: launch_gather<uint16_t>(p, f, s); break;
    case 4: launch_gather<uint32_t>(p, f, s); break;
    case 8: launch_gather<uint64_t>(p, f, s); break;
    default: SL_FAIL() << "gather: unsupported element size " << p.elem_size;
  }
  check_flag(flag, "gather", "x", p.index, p.index_dtype, p.shape, p.index_strides, p.dim_size,
             p.dim, s);
}

void scatter_add_cuda(const ScatterAddParams& p, int device) {
  SL_CHECK(p.dtype == DType::F32 || p.dtype == DType::BF16)
      << "scatter_add: CUDA kernel supports f32 and bf16, got " << dtype_name(p.dtype);
  cuda::set_device(device);
  cudaStream_t s = cuda::stream(device);
  Device dev = Device::cuda(device);
  AxisIndexer ix(p.shape, p.dim, p.src_strides, p.dst_strides, p.index_strides);
  int64_t ds = p.dst_strides[p.dim];

  // Keys and values, in and out of the sort (u64 keys stored in i64 tensors).
  Tensor keys_in = Tensor::empty({p.n}, DType::I64, dev);
  Tensor keys_out = Tensor::empty({p.n}, DType::I64, dev);
  Tensor vals_in = Tensor::empty({p.n}, DType::I64, dev);
  Tensor vals_out = Tensor::empty({p.n}, DType::I64, dev);
  auto* ki = static_cast<uint64_t*>(keys_in.data_ptr());
  auto* ko = static_cast<uint64_t*>(keys_out.data_ptr());
  auto* vi = static_cast<int64_t*>(vals_in.data_ptr());
  auto* vo = static_cast<int64_t*>(vals_out.data_ptr());

  Tensor flag = make_flag(device);
  auto* f = static_cast<unsigned long long*>(flag.data_ptr());
  if (p.index_dtype == DType::I32) {
    scatter_keys_kernel<int32_t><<<grid_for(p.n), kThreads, 0, s>>>(
        ki, vi, static_cast<const int32_t*>(p.index), p.n, ix, ds, p.dim_size, f);
  } else {
    scatter_keys_kernel<int64_t><<<grid_for(p.n), kThreads, 0, s>>>(
        ki, vi, static_cast<const int64_t*>(p.index), p.n, ix, ds, p.dim_size, f);
  }
  SL_CUDA_LAUNCH_CHECK();
  check_flag(flag, "scatter_add", "dst", p.index, p.index_dtype, p.shape, p.index_strides,
             p.dim_size, p.dim, s);

  int end_bit = 1;
  while (end_bit < 64 && (uint64_t(max_dst_offset(p)) >> end_bit) != 0) ++end_bit;
  size_t temp_bytes = 0;
  SL_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, ki, ko, vi, vo, p.n, 0,
                                                end_bit, s));
  Tensor temp = Tensor::empty({int64_t(temp_bytes / 8 + 1)}, DType::I64, dev);
  SL_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.data_ptr(), temp_bytes, ki, ko, vi, vo, p.n,
                                                0, end_bit, s));

  SL_DISPATCH_CUDA_FLOAT(p.dtype, "scatter_add", T, {
    scatter_runs_kernel<T><<<grid_for(p.n), kThreads, 0, s>>>(
        static_cast<T*>(p.dst), static_cast<const T*>(p.src), ko, vo, p.n, ix);
    SL_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace sl::kernels
