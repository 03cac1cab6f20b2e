// CUDA fused AdamW step: one grid-stride pass, four elements per thread through 16-byte loads
// (8-byte for bf16), a scalar kernel when a pointer is not aligned for that.
//
// The arithmetic uses the explicitly rounded intrinsics (__fmul_rn, __fadd_rn, __fdiv_rn,
// __fsqrt_rn) so nvcc cannot contract it into FMAs: each element then follows exactly the f32
// operation order of the CPU reference, and the two agree bit for bit when the host compiler does
// not contract either.
#include <cstdint>

#include "core/cuda_context.h"
#include "kernels/adamw.h"
#include "kernels/optimizer_cuda_common.cuh"

namespace sl::kernels {
namespace {

using namespace optcuda;

__device__ __forceinline__ void adamw_update(const AdamWKernelParams& p, float graw, float& w,
                                             float& m, float& v) {
  float g = __fmul_rn(graw, p.grad_scale);
  m = __fadd_rn(__fmul_rn(p.beta1, m), __fmul_rn(p.one_minus_beta1, g));
  v = __fadd_rn(__fmul_rn(p.beta2, v), __fmul_rn(p.one_minus_beta2, __fmul_rn(g, g)));
  w = __fmul_rn(w, p.decay);
  float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), p.bias_correction2_sqrt), p.eps);
  w = __fsub_rn(w, __fmul_rn(p.step_size, __fdiv_rn(m, denom)));
}

template <class G, bool kVec4>
__global__ void adamw_kernel(AdamWKernelParams p) {
  int64_t tid = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  int64_t done = 0;
  if constexpr (kVec4) {
    int64_t n4 = p.n / 4;
    for (int64_t i = tid; i < n4; i += stride) {
      float4 w = reinterpret_cast<const float4*>(p.param)[i];
      float4 m = reinterpret_cast<const float4*>(p.exp_avg)[i];
      float4 v = reinterpret_cast<const float4*>(p.exp_avg_sq)[i];
      float g[4];
      load_grad4<G>(p.grad, i, g);
      adamw_update(p, g[0], w.x, m.x, v.x);
      adamw_update(p, g[1], w.y, m.y, v.y);
      adamw_update(p, g[2], w.z, m.z, v.z);
      adamw_update(p, g[3], w.w, m.w, v.w);
      reinterpret_cast<float4*>(p.param)[i] = w;
      reinterpret_cast<float4*>(p.exp_avg)[i] = m;
      reinterpret_cast<float4*>(p.exp_avg_sq)[i] = v;
      if (p.param_bf16)
        reinterpret_cast<uint2*>(p.param_bf16)[i] =
            make_uint2(pack_bf16(w.x, w.y), pack_bf16(w.z, w.w));
    }
    done = n4 * 4;
  }
  for (int64_t i = done + tid; i < p.n; i += stride) {
    float w = p.param[i], m = p.exp_avg[i], v = p.exp_avg_sq[i];
    adamw_update(p, load_grad<G>(p.grad, i), w, m, v);
    p.param[i] = w;
    p.exp_avg[i] = m;
    p.exp_avg_sq[i] = v;
    if (p.param_bf16) p.param_bf16[i] = float_to_bf16(w);
  }
}

template <class G>
void launch(const AdamWKernelParams& p, cudaStream_t s) {
  bool vec = aligned(p.param, 16) && aligned(p.exp_avg, 16) && aligned(p.exp_avg_sq, 16) &&
             aligned(p.grad, 4 * sizeof(G)) && (!p.param_bf16 || aligned(p.param_bf16, 8));
  int64_t items = vec ? std::max<int64_t>(p.n / 4, 1) : p.n;
  const int blocks = grid_blocks(items);
  if (vec)
    adamw_kernel<G, true><<<blocks, kThreads, 0, s>>>(p);
  else
    adamw_kernel<G, false><<<blocks, kThreads, 0, s>>>(p);
  SL_CUDA_LAUNCH_CHECK();
}

}  // namespace

void adamw_step_cuda(const AdamWKernelParams& p, int device) {
  cuda::set_device(device);
  cudaStream_t s = cuda::stream(device);
  if (p.grad_dtype == DType::BF16)
    launch<bf16>(p, s);
  else
    launch<float>(p, s);
}

}  // namespace sl::kernels
