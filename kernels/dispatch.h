// Dtype dispatch and launcher plumbing shared by every kernel file.
//
// SL_DISPATCH_FLOAT(dtype, op, T, body) runs `body` with `T` bound to the C++ type of a floating
// dtype. CPU references accept f64 too; CUDA kernels are instantiated only for f32 and bf16
// (SL_DISPATCH_CUDA_FLOAT), the two compute dtypes of training, to keep instantiations few.
#pragma once

#include "core/dtype.h"
#include "core/errors.h"

#define SL_DISPATCH_CASE(DT, CT, T, ...) \
  case ::sl::DType::DT: {                \
    using T = CT;                        \
    __VA_ARGS__;                         \
    break;                               \
  }

#define SL_DISPATCH_FLOAT(dtype, op, T, ...)                                               \
  switch (dtype) {                                                                         \
    SL_DISPATCH_CASE(F32, float, T, __VA_ARGS__)                                           \
    SL_DISPATCH_CASE(F64, double, T, __VA_ARGS__)                                          \
    SL_DISPATCH_CASE(BF16, ::sl::bf16, T, __VA_ARGS__)                                     \
    SL_DISPATCH_CASE(F16, ::sl::f16, T, __VA_ARGS__)                                       \
    default: SL_FAIL() << op << ": unsupported dtype " << ::sl::dtype_name(dtype);         \
  }

#define SL_DISPATCH_ALL(dtype, op, T, ...)                                                 \
  switch (dtype) {                                                                         \
    SL_DISPATCH_CASE(F32, float, T, __VA_ARGS__)                                           \
    SL_DISPATCH_CASE(F64, double, T, __VA_ARGS__)                                          \
    SL_DISPATCH_CASE(BF16, ::sl::bf16, T, __VA_ARGS__)                                     \
    SL_DISPATCH_CASE(F16, ::sl::f16, T, __VA_ARGS__)                                       \
    SL_DISPATCH_CASE(I32, int32_t, T, __VA_ARGS__)                                         \
    SL_DISPATCH_CASE(I64, int64_t, T, __VA_ARGS__)                                         \
  }

#define SL_DISPATCH_CUDA_FLOAT(dtype, op, T, ...)                                          \
  switch (dtype) {                                                                         \
    SL_DISPATCH_CASE(F32, float, T, __VA_ARGS__)                                           \
    SL_DISPATCH_CASE(BF16, ::sl::bf16, T, __VA_ARGS__)                                     \
    default:                                                                               \
      SL_FAIL() << op << ": CUDA kernel supports f32 and bf16, got "                       \
                << ::sl::dtype_name(dtype);                                                \
  }

// Calls a CUDA launcher in a CUDA build; in a CPU-only build, a clear error instead.
#if SL_WITH_CUDA
#define SL_CUDA_CALL(op, ...) __VA_ARGS__
#else
#define SL_CUDA_CALL(op, ...) \
  SL_FAIL() << op << ": this build has no CUDA support (rebuild on a machine with nvcc)"
#endif
