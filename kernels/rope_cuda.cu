// CUDA RoPE: one block per token (b, t); the block evaluates cos/sin for its R/2 frequencies once
// (in double, as the CPU reference does, rounded to float) into shared memory, then rotates every
// head.
#include <algorithm>

#include "core/cuda_context.h"
#include "kernels/dispatch.h"
#include "kernels/rope.h"

namespace sl::kernels {
namespace {

template <class T>
__global__ void rope_kernel(const T* __restrict__ x, T* __restrict__ y, const RopeParams p) {
  __shared__ float cs[kRopeMaxHalf], sn[kRopeMaxHalf];
  const int64_t token = blockIdx.x;  // b * t + t
  const int64_t half = p.rot / 2;
  int64_t pos;
  if (p.positions) {
    pos = p.pos_dtype == DType::I32 ? int64_t(static_cast<const int32_t*>(p.positions)[token])
                                    : static_cast<const int64_t*>(p.positions)[token];
  } else {
    pos = p.start + token % p.t;
  }
  for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
    double angle = double(float(pos) * float(p.inv_freq[i]));
    cs[i] = float(cos(angle));
    sn[i] = float(p.inverse ? -sin(angle) : sin(angle));
  }
  __syncthreads();
  const int64_t base = token * p.h * p.d;
  const int64_t per_head = half + (p.d - p.rot);
  for (int64_t k = threadIdx.x; k < p.h * per_head; k += blockDim.x) {
    const int64_t hi = k / per_head, i = k % per_head;
    const int64_t o = base + hi * p.d;
    if (i < half) {
      float a = ScalarTraits<T>::to_compute(x[o + i]);
      float b = ScalarTraits<T>::to_compute(x[o + i + half]);
      y[o + i] = ScalarTraits<T>::from_compute(a * cs[i] - b * sn[i]);
      y[o + i + half] = ScalarTraits<T>::from_compute(b * cs[i] + a * sn[i]);
    } else {
      const int64_t j = p.rot + (i - half);
      y[o + j] = x[o + j];
    }
  }
}

}  // namespace

void rope_cuda(const RopeParams& p, int device) {
  cuda::set_device(device);
  cudaStream_t s = cuda::stream(device);
  const int64_t work = p.h * (p.rot / 2 + p.d - p.rot);
  const int threads = int(std::min<int64_t>(256, (work + 31) / 32 * 32));
  SL_DISPATCH_CUDA_FLOAT(p.dtype, "rope", T, {
    rope_kernel<T><<<unsigned(p.b * p.t), threads, 0, s>>>(static_cast<const T*>(p.x),
                                                            static_cast<T*>(p.y), p);
    SL_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace sl::kernels
