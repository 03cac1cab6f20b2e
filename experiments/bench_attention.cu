// Benchmark of the flash-attention kernels (kernels/attention.h): causal, bf16, B = 1, 16 query
// heads (GQA 1 and 8: 16 or 2 KV heads), D = 128, T = 1K .. 32K, forward and backward.
//
// FLOPs as FlashAttention counts them, over the keys actually attended (causal: T (T + 1) / 2
// per head): forward 4 D per (query, key) pair, backward 2.5x the forward (5 products of the
// FlashAttention-2 backward; ours runs 7, the extra 2 are not counted). The same rule is used by
// experiments/bench_attention_torch.py for PyTorch SDPA (cuDNN and flash backends), which the
// device run executes right after this program, on the same card.
#include <cmath>
#include <cstdio>
#include <string>

#include "experiments/bench_util.h"
#include "kernels/attention.h"
#include "kernels/attention_cuda_common.cuh"

using namespace sl;

int main() {
  const Device gpu = Device::cuda(0);
  std::printf("card: %s\n\n", bench::device_name().c_str());
  std::printf("| case | T | fwd ms | fwd TFLOP/s | bwd ms | bwd TFLOP/s |\n");
  std::printf("| --- | --- | --- | --- | --- | --- |\n");
  const int64_t B = 1, Hq = 16, D = 128;
  for (int64_t hkv : {int64_t(16), int64_t(2)}) {
    for (int64_t T : {1024, 2048, 4096, 8192, 16384, 32768}) {
      Generator g(1);
      Tensor q = Tensor::randn({B, T, Hq, D}, g, DType::BF16, gpu);
      Tensor k = Tensor::randn({B, T, hkv, D}, g, DType::BF16, gpu);
      Tensor v = Tensor::randn({B, T, hkv, D}, g, DType::BF16, gpu);
      Tensor dout = Tensor::randn({B, T, Hq, D}, g, DType::BF16, gpu);
      kernels::AttentionOutput o;
      const int reps = T >= 16384 ? 5 : 20;
      float fwd = bench::time_ms([&] { o = kernels::attention_forward(q, k, v); }, 2, reps);
      float bwd = bench::time_ms(
          [&] { kernels::attention_backward(q, k, v, o.out, o.lse, dout); }, 2, reps);
      const double flops = 4.0 * double(B * Hq * D) * double(T) * double(T + 1) / 2.0;
      std::printf("| causal GQA %lld | %lld | %.3f | %.1f | %.3f | %.1f |\n",
                  (long long)(Hq / hkv), (long long)T, fwd, bench::tflops(flops, fwd), bwd,
                  bench::tflops(2.5 * flops, bwd));
      std::fflush(stdout);
    }
  }
  // Forward tile variants (kernels/attention_cuda.cu FwdTile), GQA 1: the kept default is 0.
  std::printf("\n| forward variant | T | ms | TFLOP/s |\n| --- | --- | --- | --- |\n");
  const char* names[] = {"4 warps x 32 rows, 64 keys (default)", "8 warps x 16 rows, 64 keys",
                         "4 warps x 32 rows, 32 keys"};
  for (int64_t T : {4096, 16384}) {
    Generator g(2);
    Tensor q = Tensor::randn({B, T, Hq, D}, g, DType::BF16, gpu);
    Tensor k = Tensor::randn({B, T, Hq, D}, g, DType::BF16, gpu);
    Tensor v = Tensor::randn({B, T, Hq, D}, g, DType::BF16, gpu);
    kernels::AttentionOutput o = kernels::attention_forward(q, k, v);
    kernels::AttentionParams p;
    p.dtype = DType::BF16;
    p.B = B, p.Lq = p.Lk = T, p.Hq = p.Hkv = Hq, p.D = D;
    p.scale = float(1.0 / std::sqrt(double(D)));
    p.q = q.data_ptr(), p.k = k.data_ptr(), p.v = v.data_ptr();
    p.q_sb = q.stride(0), p.q_st = q.stride(1), p.q_sh = q.stride(2);
    p.k_sb = k.stride(0), p.k_st = k.stride(1), p.k_sh = k.stride(2);
    p.out = o.out.data_ptr();
    p.lse = o.lse.data<float>();
    for (int var = 0; var < kernels::attn::kFwdVariants; ++var) {
      float ms = bench::time_ms([&] { kernels::attn::forward_variant(p, 0, var); }, 2, 10);
      const double flops = 4.0 * double(B * Hq * D) * double(T) * double(T + 1) / 2.0;
      std::printf("| %s | %lld | %.3f | %.1f |\n", names[var], (long long)T, ms,
                  bench::tflops(flops, ms));
    }
  }
  return 0;
}
