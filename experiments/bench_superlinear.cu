// Benchmark of superlinear attention on the GPU: balanced config (p = q = 1/2, s = 0, k = 3,
// f_b = 2, f_f = 0), B = 1, Hq = 16 query heads, Hkv in {16, 2}, D = 128, bf16, L = 4K .. 128K,
// then 256K and 1M while the time budget (~55 s in all) and memory allow.
//
// FLOPs follow spec §11: forward = 4 * (attended keys) * D per query and head, the attended keys
// (window + every kept span) counted exactly by superlinear_work from the anchors the GPU kept;
// backward = 2.5 x forward. The search (2 D per candidate) is reported apart and not counted.
// Peak memory is the caching allocator's high-water mark during the call minus what was allocated
// before it (inputs and saved forward tensors excluded); for the backward, minus the gradients.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "core/allocator.h"
#include "experiments/bench_util.h"
#include "kernels/superlinear.h"

using namespace sl;
using namespace sl::kernels;

namespace {

const Device kGpu = Device::cuda(0);

Tensor randn(const Dims& shape, uint64_t seed, double std = 1) {
  Generator g(seed);
  return Tensor::randn(shape, g, DType::BF16, kGpu, 0, std);
}

struct Problem {
  Tensor qa, qs, k, v, dout;
  SuperlinearConfig cfg = SuperlinearConfig::balanced();
};

// The fast backward mode (deterministic = false): for bf16 with D 64/128 the same tensor-core
// path as the deterministic one (it has no atomics); f32 atomics on the other paths.
void backward_fast(const Problem& pr, const SuperlinearForward& f, SuperlinearGrads& g) {
  g = superlinear_backward(pr.dout, pr.qa, pr.qs, pr.k, pr.v, f, pr.cfg, Tensor(), -1,
                           /*deterministic=*/false);
}

double mib(int64_t bytes) {
  return double(bytes) / (1024.0 * 1024.0);
}

// Peak bytes allocated by fn beyond what was allocated before it.
template <class F>
int64_t peak_extra(F&& fn) {
  cuda::synchronize(0);
  const int64_t before = cuda_alloc::stats(0).allocated;
  cuda_alloc::reset_peak(0);
  fn();
  cuda::synchronize(0);
  return cuda_alloc::stats(0).peak_allocated - before;
}

}  // namespace

int main() {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  const double kBudget = 55.0;
  // Debugging knob for profilers: stop after this L (e.g. SL_BENCH_MAX_L=65536 under nsys).
  const char* max_l_env = std::getenv("SL_BENCH_MAX_L");
  const int64_t max_L = max_l_env ? std::atoll(max_l_env) : (int64_t(1) << 40);
  const int64_t B = 1, Hq = 16, D = 128;
  std::printf("# superlinear attention, %s, balanced config (%s), B=%lld Hq=%lld D=%lld bf16\n\n",
              bench::device_name().c_str(), SuperlinearConfig::balanced().str().c_str(),
              (long long)B, (long long)Hq, (long long)D);
  std::printf(
      "| L | Hkv | keys/query | fwd ms | fwd TFLOP/s | search GFLOP | bwd det ms | bwd det "
      "TFLOP/s | bwd fast ms | bwd fast TFLOP/s | fwd MiB | bwd det MiB | bwd fast MiB |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  double last_s[2] = {0, 0};
  int64_t last_L[2] = {0, 0};
  for (int64_t L : {int64_t(4) << 10, int64_t(16) << 10, int64_t(64) << 10, int64_t(128) << 10,
                    int64_t(256) << 10, int64_t(1) << 20}) {
    if (L > max_L) break;
    for (int hi = 0; hi < 2; ++hi) {
      const int64_t Hkv = hi == 0 ? 16 : 2;
      const double predicted =
          last_L[hi] ? last_s[hi] * std::pow(double(L) / double(last_L[hi]), 1.5) : 0;
      if (elapsed() + predicted > kBudget) {
        std::printf("| %lldK | %lld | skipped: ~%.0f s predicted, %.0f s of %.0f s used |\n",
                    (long long)(L >> 10), (long long)Hkv, predicted, elapsed(), kBudget);
        continue;
      }
      const double case_t0 = elapsed();
      cuda_alloc::empty_cache(0);
      Problem pr;
      pr.qa = randn({B, Hq, L, D}, 1);
      pr.qs = randn({B, Hq, L, D}, 2, 1.0 / std::sqrt(double(D)));
      pr.k = randn({B, Hkv, L, D}, 3);
      pr.v = randn({B, Hkv, L, D}, 4);
      pr.dout = randn({B, Hq, L, D}, 5);

      SuperlinearForward f;
      const int64_t fwd_mem =
          peak_extra([&] { f = superlinear_forward(pr.qa, pr.qs, pr.k, pr.v, pr.cfg); });
      const float fwd_ms =
          bench::time_auto([&] { (void)superlinear_forward(pr.qa, pr.qs, pr.k, pr.v, pr.cfg); });

      // Exact attended keys and searched candidates from the kept anchors, head by head.
      const std::vector<int32_t> anchors = f.anchors.to(Device::cpu()).to_vector<int32_t>();
      int64_t keys = 0, search = 0;
      for (int64_t h = 0; h < Hq; ++h) {
        const auto first = anchors.begin() + h * L * pr.cfg.k;
        SuperlinearWork w =
            superlinear_work(pr.cfg, L, 0, {}, std::vector<int32_t>(first, first + L * pr.cfg.k));
        keys += w.total_keys;
        search += w.total_search;
      }
      const double fwd_flops = 4.0 * double(keys) * double(D), bwd_flops = 2.5 * fwd_flops;

      SuperlinearGrads g;
      const int64_t det_mem = peak_extra(
          [&] { g = superlinear_backward(pr.dout, pr.qa, pr.qs, pr.k, pr.v, f, pr.cfg); });
      const float det_ms = bench::time_auto(
          [&] { (void)superlinear_backward(pr.dout, pr.qa, pr.qs, pr.k, pr.v, f, pr.cfg); });
      const int64_t grads_bytes = int64_t(2 * (g.dqa.nbytes() + g.dk.nbytes()));
      const int64_t fast_mem = peak_extra([&] { backward_fast(pr, f, g); });
      const float fast_ms = bench::time_auto([&] { backward_fast(pr, f, g); });

      std::printf(
          "| %lldK | %lld | %.0f | %.3f | %.1f | %.1f | %.3f | %.1f | %.3f | %.1f | %.0f | %.0f | "
          "%.0f |\n",
          (long long)(L >> 10), (long long)Hkv, double(keys) / double(Hq * L), fwd_ms,
          bench::tflops(fwd_flops, fwd_ms), 2.0 * double(search) * double(D) / 1e9, det_ms,
          bench::tflops(bwd_flops, det_ms), fast_ms, bench::tflops(bwd_flops, fast_ms),
          mib(fwd_mem), mib(det_mem - grads_bytes), mib(fast_mem - grads_bytes));
      std::fflush(stdout);
      last_s[hi] = elapsed() - case_t0;
      last_L[hi] = L;
    }
  }
  std::printf(
      "\nfwd MiB: output and saved metadata; bwd MiB: scratch beyond the four gradients "
      "(gate terms, per-chunk tiles and slot tables, the anchor index, f32 dK/dV accumulators). "
      "bwd fast: deterministic = false, the same tensor-core path here.\n");
  return 0;
}
