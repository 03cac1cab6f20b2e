// Shared timing harness for the benchmarks in experiments/ (CUDA builds only).
//
// time_ms runs `fn` (which enqueues work on sl::cuda::stream(0)) warmup times, then `reps` times
// between CUDA events, and returns the median of the per-rep times. Inputs should be several times
// the L2 (50 MB on an H100) so repeated runs do not measure the cache.
#pragma once

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "core/cuda_context.h"

namespace sl::bench {

inline float time_ms(const std::function<void()>& fn, int warmup = 5, int reps = 20) {
  cudaStream_t s = cuda::stream(0);
  for (int i = 0; i < warmup; ++i) fn();
  SL_CUDA_CHECK(cudaStreamSynchronize(s));
  std::vector<float> times;
  cuda::Event a, b;
  for (int i = 0; i < reps; ++i) {
    a.record(s);
    fn();
    b.record(s);
    b.synchronize();
    times.push_back(b.elapsed_ms(a));
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// Median ms over `reps` runs after one warm-up; reps = 0: one timed run decides how many more
// (~1.5 s worth, at most 10; a single run over 1.5 s is the answer itself). For work whose time
// varies over orders of magnitude across a sweep (long-context attention).
inline float time_auto(const std::function<void()>& fn, int reps = 0) {
  if (reps > 0) return time_ms(fn, 1, reps);
  cuda::Event a, b;
  a.record(cuda::stream(0));
  fn();
  b.record(cuda::stream(0));
  b.synchronize();
  const float once = b.elapsed_ms(a);
  const int n = std::max(1, std::min(10, int(1500.f / std::max(once, 1e-3f))));
  return n == 1 ? once : time_ms(fn, 0, n);
}

// Bytes read + written per second, in GB/s.
inline double gbps(double bytes, float ms) {
  return bytes / (double(ms) * 1e-3) / 1e9;
}
inline double tflops(double flops, float ms) {
  return flops / (double(ms) * 1e-3) / 1e12;
}

// The card's device-to-device copy rate (cudaMemcpyAsync of `bytes`, counting read + write).
inline double copy_gbps(size_t bytes = size_t(1) << 30) {
  void *a = nullptr, *b = nullptr;
  SL_CUDA_CHECK(cudaMalloc(&a, bytes));
  SL_CUDA_CHECK(cudaMalloc(&b, bytes));
  SL_CUDA_CHECK(cudaMemset(a, 1, bytes));
  cudaStream_t s = cuda::stream(0);
  float ms =
      time_ms([&] { SL_CUDA_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, s)); });
  SL_CUDA_CHECK(cudaFree(a));
  SL_CUDA_CHECK(cudaFree(b));
  return gbps(2.0 * double(bytes), ms);
}

inline std::string device_name() {
  return cuda::properties(0).name;
}

// One Markdown table row: | name | size | ms | metric | % of ceiling | verdict |
inline void row(const std::string& name, const std::string& size, float ms, double value,
                const char* unit, double ceiling, double bar) {
  double pct = 100.0 * value / ceiling;
  std::printf("| %s | %s | %.4f | %.1f %s | %.1f%% | %s |\n", name.c_str(), size.c_str(), ms, value,
              unit, pct, pct >= bar ? "ok" : "BELOW BAR");
  std::fflush(stdout);
}

}  // namespace sl::bench
