// CUDA error checks and per-device context: the framework's stream, library handles, RAII
// wrappers for streams, events and pinned buffers. Include only from code built with CUDA.
//
// Every op runs on sl::cuda::stream(device) (Note [caching allocator] relies on this). Library
// handles (cuBLAS, cuBLASLt) are created lazily, one per device, bound to that stream.
#pragma once

#include <cuda_runtime.h>

#include "core/errors.h"

#define SL_CUDA_CHECK(call)                                                              \
  do {                                                                                   \
    cudaError_t sl_cuda_err_ = (call);                                                   \
    if (sl_cuda_err_ != cudaSuccess)                                                     \
      ::sl::detail::ErrorBuilder(__FILE__, __LINE__, "CUDA call failed", #call)          \
          << cudaGetErrorName(sl_cuda_err_) << " (" << cudaGetErrorString(sl_cuda_err_) \
          << ")";                                                                        \
  } while (0)

// After every kernel launch: reports launch-configuration errors at the launch site.
#define SL_CUDA_LAUNCH_CHECK() SL_CUDA_CHECK(cudaGetLastError())

// cuBLAS / cuBLASLt status (cublasStatus_t; cublas headers must be included by the caller).
#define SL_CUBLAS_CHECK(call)                                                             \
  do {                                                                                    \
    auto sl_cublas_st_ = (call);                                                          \
    if (sl_cublas_st_ != 0)                                                               \
      ::sl::detail::ErrorBuilder(__FILE__, __LINE__, "cuBLAS call failed", #call)         \
          << "status " << int(sl_cublas_st_) << " (" << cublasGetStatusString(sl_cublas_st_) \
          << ")";                                                                         \
  } while (0)

// NCCL (ncclResult_t; nccl.h must be included by the caller).
#define SL_NCCL_CHECK(call)                                                               \
  do {                                                                                    \
    auto sl_nccl_rc_ = (call);                                                            \
    if (sl_nccl_rc_ != 0)                                                                 \
      ::sl::detail::ErrorBuilder(__FILE__, __LINE__, "NCCL call failed", #call)           \
          << ncclGetErrorString(sl_nccl_rc_);                                             \
  } while (0)

namespace sl::cuda {

// The framework's stream on `device` (created on first use, non-blocking).
cudaStream_t stream(int device = 0);
// Makes `device` current for the calling thread (cudaSetDevice) if it is not already.
void set_device(int device);
// Blocks the host until all framework work on `device` is done.
void synchronize(int device = 0);
const cudaDeviceProp& properties(int device = 0);

class Stream {
 public:
  explicit Stream(int device = 0);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

class Event {
 public:
  Event();
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record(cudaStream_t s);
  void synchronize();
  // Milliseconds from `start` to this event (both recorded, this one completed).
  float elapsed_ms(const Event& start) const;
  cudaEvent_t get() const { return e_; }

 private:
  cudaEvent_t e_ = nullptr;
};

}  // namespace sl::cuda
