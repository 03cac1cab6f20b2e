// CUDA fused SGD step: one grid-stride pass, four elements per thread through 16-byte loads
// (8-byte for bf16), a scalar kernel when a pointer is not aligned for that.
//
// The arithmetic uses the explicitly rounded intrinsics (__fmul_rn, __fadd_rn) so nvcc cannot
// contract it into FMAs: each element follows exactly the f32 operation order of the CPU
// reference, and the two agree bit for bit when the host compiler does not contract either.
#include <cstdint>

#include "core/cuda_context.h"
#include "kernels/optimizer_cuda_common.cuh"
#include "kernels/sgd.h"

namespace sl::kernels {
namespace {

using namespace optcuda;

__device__ __forceinline__ void sgd_update(const SgdKernelParams& p, float graw, float& w,
                                           float& b) {
  float g = __fmul_rn(graw, p.grad_scale);
  g = __fadd_rn(g, __fmul_rn(p.weight_decay, w));
  b = __fadd_rn(__fmul_rn(p.momentum, b), g);
  float d = p.nesterov ? __fadd_rn(g, __fmul_rn(p.momentum, b)) : b;
  w = __fsub_rn(w, __fmul_rn(p.lr, d));
}

template <class G, bool kVec4>
__global__ void sgd_kernel(SgdKernelParams p) {
  int64_t tid = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  int64_t done = 0;
  if constexpr (kVec4) {
    int64_t n4 = p.n / 4;
    for (int64_t i = tid; i < n4; i += stride) {
      float4 w = reinterpret_cast<const float4*>(p.param)[i];
      float4 b = reinterpret_cast<const float4*>(p.momentum_buf)[i];
      float g[4];
      load_grad4<G>(p.grad, i, g);
      sgd_update(p, g[0], w.x, b.x);
      sgd_update(p, g[1], w.y, b.y);
      sgd_update(p, g[2], w.z, b.z);
      sgd_update(p, g[3], w.w, b.w);
      reinterpret_cast<float4*>(p.param)[i] = w;
      reinterpret_cast<float4*>(p.momentum_buf)[i] = b;
      if (p.param_bf16)
        reinterpret_cast<uint2*>(p.param_bf16)[i] =
            make_uint2(pack_bf16(w.x, w.y), pack_bf16(w.z, w.w));
    }
    done = n4 * 4;
  }
  for (int64_t i = done + tid; i < p.n; i += stride) {
    float w = p.param[i], b = p.momentum_buf[i];
    sgd_update(p, load_grad<G>(p.grad, i), w, b);
    p.param[i] = w;
    p.momentum_buf[i] = b;
    if (p.param_bf16) p.param_bf16[i] = float_to_bf16(w);
  }
}

template <class G>
void launch(const SgdKernelParams& p, cudaStream_t s) {
  bool vec = aligned(p.param, 16) && aligned(p.momentum_buf, 16) &&
             aligned(p.grad, 4 * sizeof(G)) && (!p.param_bf16 || aligned(p.param_bf16, 8));
  int64_t items = vec ? std::max<int64_t>(p.n / 4, 1) : p.n;
  const int blocks = grid_blocks(items);
  if (vec)
    sgd_kernel<G, true><<<blocks, kThreads, 0, s>>>(p);
  else
    sgd_kernel<G, false><<<blocks, kThreads, 0, s>>>(p);
  SL_CUDA_LAUNCH_CHECK();
}

}  // namespace

void sgd_step_cuda(const SgdKernelParams& p, int device) {
  cuda::set_device(device);
  cudaStream_t s = cuda::stream(device);
  if (p.grad_dtype == DType::BF16)
    launch<bf16>(p, s);
  else
    launch<float>(p, s);
}

}  // namespace sl::kernels
