// Benchmark of the flash-attention kernels (kernels/attention.h): causal, bf16, B = 1, 16 query
// heads (GQA 1 and 8: 16 or 2 KV heads), D = 128, T = 1K .. 32K, forward and backward.
//
// FLOPs as FlashAttention counts them, over the keys actually attended (causal: T (T + 1) / 2
// per head): forward 4 D per (query, key) pair, backward 2.5x the forward (5 products of the
// FlashAttention-2 backward; ours runs 7, the extra 2 are not counted). The same rule is used by
// experiments/bench_attention_torch.py for PyTorch SDPA (cuDNN and flash backends), which the
// device run executes right after this program, on the same card.
#include <cstdio>
#include <string>

#include "experiments/bench_util.h"
#include "kernels/attention.h"

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
  return 0;
}
