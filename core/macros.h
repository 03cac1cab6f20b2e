// Portability macros shared by host and device code.
#pragma once

#if defined(__CUDACC__)
#define SL_HD __host__ __device__ __forceinline__
#else
#define SL_HD inline
#endif

// nvcc compiles each .cu twice; only the device pass (__CUDA_ARCH__) knows "#pragma unroll".
#if defined(__CUDA_ARCH__)
#define SL_UNROLL _Pragma("unroll")
#elif defined(__CUDACC__)
#define SL_UNROLL
#else
#define SL_UNROLL _Pragma("GCC unroll 16")
#endif

#ifndef SL_WITH_CUDA
#define SL_WITH_CUDA 0
#endif
