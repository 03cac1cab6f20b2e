// Copy, cast and fill: the memory ops that core/tensor.cpp builds on.
//
// copy_strided handles any strides and any pair of dtypes on one device (the cast rounds to
// nearest even, core/dtype.h). fill_random draws from Philox (core/philox.h) so a CPU and a CUDA
// tensor filled with the same (seed, offset) hold the same values.
#pragma once

#include <cstddef>

#include "core/tensor.h"

namespace sl::kernels {

// dst and src: same shape, same device; dtypes may differ.
void copy_strided(const Tensor& dst, const Tensor& src);
// Raw bytes between any two devices (host<->device, device<->device); synchronous for the host.
void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes);
void fill(const Tensor& t, double value);
// normal: value = a + b * N(0, 1); uniform: value = a + b * U[0, 1).
void fill_random(const Tensor& t, uint64_t seed, uint64_t offset, bool normal, double a, double b);

// Parameters shared by the CPU reference and the CUDA kernel.
struct CopyParams {
  void* dst;
  const void* src;
  DType dst_dtype, src_dtype;
  int64_t n;
  Dims shape, dst_strides, src_strides;
};
struct FillParams {
  void* data;
  DType dtype;
  int64_t n;
  Dims shape, strides;
  double value;                   // for fill
  uint64_t seed, offset;          // for fill_random
  bool random = false, normal = false;
  double a = 0, b = 1;
};

void copy_strided_cpu(const CopyParams& p);
void fill_cpu(const FillParams& p);
#if SL_WITH_CUDA
void copy_strided_cuda(const CopyParams& p, int device);
void fill_cuda(const FillParams& p, int device);
#endif

}  // namespace sl::kernels
