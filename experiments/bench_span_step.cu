// Kernel sandbox: the rate of one span-tile step on Hopper, with nothing else around it
// (experiments/notes-span-tiles.md, "What to try next", 1). A step is what the forward's wgmma
// tile kernel does per 64 keys: S = Q K^T for 64 pairs (eight SS wgmma m64n64k16 over D = 128),
// wait; with P V, pack S to bf16 and O += P V (four RS wgmma m64n128k16), wait. Operands sit in
// shared memory and never change: no loads. The sweep varies
//   - warpgroups per SM (one 128-thread block each, 1 to 4),
//   - independent tiles per warpgroup (1 or 2: both tiles' products are issued before one wait),
//   - what else a step does: an mbarrier round trip, and/or a stand-in for the softmax,
// and reports the products' TFLOP/s and SM cycles per step of one warpgroup. The tile kernels
// take about 3,000 cycles per warpgroup step at 64K GQA 8
// (experiments/results/2026-11-28-h200-span-tiles-ws.md): this says what the step allows.
#include <cstdio>

#include "experiments/bench_util.h"
#include "kernels/attention_cuda_common.cuh"
#include "kernels/wgmma_cuda.cuh"

using namespace sl;
using namespace sl::kernels;
using namespace sl::bench;

namespace {

constexpr int D = 128, kRows = 64;
constexpr int kTileBytes = kRows * D * 2;  // a 64 x 128 bf16 panel tile

// kBar: an mbarrier arrive and wait per step (the round trip that a tile kernel's stage release
// and next wait cost at least). kExp: a stand-in for the softmax between S and P V (per row the
// max over the quad, 16 ex2, the sum; no mask, no rescale), written here, not the kernels'.
template <int kTiles, bool kPV, bool kBar = false, bool kExp = false>
__global__ void __launch_bounds__(128) step_kernel(int steps, float* sink) {
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  unsigned char* smem = smem_raw + ((1024 - attn::smem_addr(smem_raw) % 1024) % 1024);
  const uint32_t base = attn::smem_addr(smem);
  // Q, then K of each tile, then V: zeroed once.
  for (int i = int(threadIdx.x); i < (2 + kTiles) * kTileBytes / 16; i += 128)
    reinterpret_cast<uint4*>(smem)[i] = make_uint4(0, 0, 0, 0);
  wg::fence_proxy_async();
  __syncthreads();
  const wg::Desc dq = wg::desc(base, 16, 1024);
  const wg::Desc dv = wg::desc(base + uint32_t(1 + kTiles) * kTileBytes, kRows * 128, 1024);
  // Without P V, S accumulates over the steps, or ptxas drops the products whose results the
  // next step overwrites.
  float s[kTiles][8][4], o[kTiles][16][4];
#pragma unroll
  for (int a = 0; a < kTiles; ++a) {
#pragma unroll
    for (int n = 0; n < 8; ++n) s[a][n][0] = s[a][n][1] = s[a][n][2] = s[a][n][3] = 0.f;
#pragma unroll
    for (int n = 0; n < 16; ++n) o[a][n][0] = o[a][n][1] = o[a][n][2] = o[a][n][3] = 0.f;
  }
  __shared__ __align__(8) uint64_t mbar;
  if constexpr (kBar) {
    if (threadIdx.x == 0)
      asm volatile("mbarrier.init.shared::cta.b64 [%0], 128;\n" ::"r"(attn::smem_addr(&mbar)));
    __syncthreads();
  }
  float rowsum_total = 0.f;
  for (int it = 0; it < steps; ++it) {
    wg::fence();
#pragma unroll
    for (int a = 0; a < kTiles; ++a) {
      const wg::Desc dk = wg::desc(base + uint32_t(1 + a) * kTileBytes, 16, 1024);
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk)
        wg::mma_ss_n64(s[a], wg::step_k<kRows>(dq, kk), wg::step_k<kRows>(dk, kk),
                       kPV ? kk > 0 : 1);
    }
    wg::commit();
    wg::wait<0>();
#pragma unroll
    for (int a = 0; a < kTiles; ++a) wg::fence_regs(s[a]);
    float rowsum = 0.f;
    if constexpr (kExp) {
#pragma unroll
      for (int a = 0; a < kTiles; ++a)
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          float mx = -INFINITY;
#pragma unroll
          for (int n = 0; n < 8; ++n) mx = fmaxf(mx, fmaxf(s[a][n][2 * j], s[a][n][2 * j + 1]));
          mx = attn::quad_max(mx) * 0.1f;
#pragma unroll
          for (int n = 0; n < 8; ++n)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              s[a][n][2 * j + e] = attn::fast_exp2(fmaf(s[a][n][2 * j + e], 0.1f, -mx));
              rowsum += s[a][n][2 * j + e];
            }
        }
    }
    if constexpr (kBar) {
      const uint32_t b = attn::smem_addr(&mbar);
      asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(b) : "memory");
      uint32_t done = 0;
      while (!done)
        asm volatile(
            "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
            "selp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(done)
            : "r"(b), "r"(uint32_t(it & 1))
            : "memory");
      __syncwarp();
    }
    if constexpr (kPV) {
      wg::fence();
#pragma unroll
      for (int a = 0; a < kTiles; ++a) {
        uint32_t pa[4][4];
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
          pa[kk][0] = attn::Mma<bf16>::pack(s[a][2 * kk][0], s[a][2 * kk][1]);
          pa[kk][1] = attn::Mma<bf16>::pack(s[a][2 * kk][2], s[a][2 * kk][3]);
          pa[kk][2] = attn::Mma<bf16>::pack(s[a][2 * kk + 1][0], s[a][2 * kk + 1][1]);
          pa[kk][3] = attn::Mma<bf16>::pack(s[a][2 * kk + 1][2], s[a][2 * kk + 1][3]);
        }
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) wg::mma_rs<D>(o[a], pa[kk], wg::step_mn(dv, kk));
      }
      wg::commit();
      wg::wait<0>();
#pragma unroll
      for (int a = 0; a < kTiles; ++a) wg::fence_regs(o[a]);
    }
    rowsum_total += rowsum;
  }
  float acc = 0.f;
#pragma unroll
  for (int a = 0; a < kTiles; ++a) acc += s[a][0][0] + o[a][0][0];
  acc += rowsum_total;
  if (acc == 1.f) sink[threadIdx.x] = acc;  // (not with these inputs) keeps the products live
}

template <int kTiles, bool kPV, bool kBar = false, bool kExp = false>
void run(int sms, int clock_khz, float* sink) {
  const int smem = 1024 + (2 + kTiles) * kTileBytes;
  auto kernel = step_kernel<kTiles, kPV, kBar, kExp>;
  SL_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  const int steps = 4096;
  for (int per_sm = 1; per_sm <= 4; ++per_sm) {
    if (per_sm * (smem + 1024) > 227 * 1024) break;
    const int blocks = sms * per_sm;
    const float ms = time_ms([&] {
      kernel<<<blocks, 128, smem, cuda::stream(0)>>>(steps, sink);
      SL_CUDA_LAUNCH_CHECK();
    });
    const double flops_step = 2.0 * kRows * kRows * D + (kPV ? 2.0 * kRows * D * kRows : 0.0);
    const double flops = flops_step * double(blocks) * steps * kTiles;
    // SM cycles per (warpgroup, tile) step: the time of one warpgroup's step at its SM's pace.
    const double cycles = ms * 1e-3 * clock_khz * 1e3 / (double(steps) * kTiles);
    std::printf("| %s%s%s | %d | %d | %.3f | %.1f | %.0f |\n", kPV ? "S + P V" : "S",
                kExp ? " + exp stand-in" : "", kBar ? " + mbarrier" : "", per_sm, kTiles, ms,
                tflops(flops, ms), cycles);
  }
}

}  // namespace

int main() {
  int sms = 0, clock_khz = 0;
  SL_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  SL_CUDA_CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0));
  float* sink = nullptr;
  SL_CUDA_CHECK(cudaMalloc(&sink, 1024 * sizeof(float)));
  std::printf("# Span-tile step rate: %s, %d SMs, %d MHz (the attribute's clock)\n\n",
              device_name().c_str(), sms, clock_khz / 1000);
  std::printf(
      "| products | warpgroups per SM | tiles per warpgroup | ms | TFLOP/s | SM cycles per "
      "step |\n|---|---|---|---|---|---|\n");
  run<1, false>(sms, clock_khz, sink);
  run<2, false>(sms, clock_khz, sink);
  run<1, true>(sms, clock_khz, sink);
  run<2, true>(sms, clock_khz, sink);
  run<1, true, true>(sms, clock_khz, sink);
  run<1, true, false, true>(sms, clock_khz, sink);
  run<1, true, true, true>(sms, clock_khz, sink);
  SL_CUDA_CHECK(cudaFree(sink));
  return 0;
}
