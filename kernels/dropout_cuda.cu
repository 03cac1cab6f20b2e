// CUDA dropout: each thread draws one Philox block (4 uniforms) and handles the 4 consecutive
// elements it covers, so the mask matches philox_uniform_at element for element.
#include <algorithm>

#include "core/cuda_context.h"
#include "core/philox.h"
#include "kernels/dispatch.h"
#include "kernels/dropout.h"

namespace sl::kernels {
namespace {

template <class T>
__global__ void dropout_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n, float p,
                               float scale, uint64_t seed, uint64_t offset) {
  const int64_t blocks4 = (n + 3) / 4;
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < blocks4;
       q += int64_t(gridDim.x) * blockDim.x) {
    Philox4 r = philox4x32_10(uint64_t(q), offset, seed);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      int64_t i = q * 4 + k;
      if (i >= n) break;
      bool keep = philox_uniform(r.x[k]) >= p;
      y[i] = ScalarTraits<T>::from_compute(keep ? ScalarTraits<T>::to_compute(x[i]) * scale
                                                : 0.f);
    }
  }
}

}  // namespace

void dropout_cuda(const DropoutParams& p, int device) {
  cuda::set_device(device);
  cudaStream_t s = cuda::stream(device);
  const int64_t blocks4 = (p.n + 3) / 4;
  const int blocks = int(std::min<int64_t>((blocks4 + 255) / 256, 132 * 32));
  SL_DISPATCH_CUDA_FLOAT(p.dtype, "dropout", T, {
    dropout_kernel<T><<<blocks, 256, 0, s>>>(static_cast<const T*>(p.x), static_cast<T*>(p.y),
                                             p.n, p.p, p.scale, p.seed, p.offset);
    SL_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace sl::kernels
