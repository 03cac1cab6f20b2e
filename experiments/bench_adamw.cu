// AdamW step bandwidth: the fused kernel on 256M f32 master weights with bf16 gradients and the
// bf16 copy written in the same pass, against the card's device-to-device copy rate.
//
// Bytes per parameter: read param, exp_avg, exp_avg_sq (12) and grad (2); write param, exp_avg,
// exp_avg_sq (12) and the bf16 copy (2): 28 bytes, about 7.5 GB a step. Memory-bound, so the bar
// is 70% of copy bandwidth.
#include <cstdio>
#include <string>

#include "experiments/bench_util.h"
#include "kernels/adamw.h"

int main() {
  using namespace sl;
  const int64_t n = int64_t(256) << 20;
  const Device gpu = Device::cuda(0);
  Generator gen(1);
  kernels::AdamWParams p;
  p.param = Tensor::randn({n}, gen, DType::F32, gpu);
  p.grad = Tensor::randn({n}, gen, DType::BF16, gpu);
  p.exp_avg = Tensor::zeros({n}, DType::F32, gpu);
  p.exp_avg_sq = Tensor::zeros({n}, DType::F32, gpu);
  p.param_bf16 = Tensor::empty({n}, DType::BF16, gpu);
  p.lr = 1e-4;
  p.weight_decay = 0.1;
  p.grad_scale = 0.5;

  double copy = bench::copy_gbps();
  std::printf("AdamW step on %s (copy: %.1f GB/s)\n\n", bench::device_name().c_str(), copy);
  std::printf("| kernel | size | ms | bandwidth | %% of copy | verdict |\n");
  std::printf("| --- | --- | --- | --- | --- | --- |\n");

  const std::string size = "256M params";
  float ms = bench::time_ms([&] {
    kernels::adamw_step(p);
    p.step++;
  });
  bench::row("adamw f32 master, bf16 grad + bf16 copy", size, ms,
             bench::gbps(28.0 * double(n), ms), "GB/s", copy, 70);

  p.param_bf16 = Tensor();
  p.grad = Tensor::randn({n}, gen, DType::F32, gpu);
  ms = bench::time_ms([&] {
    kernels::adamw_step(p);
    p.step++;
  });
  bench::row("adamw f32 master, f32 grad, no copy", size, ms, bench::gbps(32.0 * double(n), ms),
             "GB/s", copy, 70);
  return 0;
}
