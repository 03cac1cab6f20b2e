// Benchmark of the Mamba-2 kernels: the chunked SSD scan (Nemotron-H-like head: B = 1, H = 64
// heads x P = 64, N = 128, G = 8 groups, chunk Q = 128, bf16) over T = 4K .. 64K, and the causal
// conv1d + SiLU over xBC (Cc = H*P + 2*G*N = 6144, W = 4).
//
// FLOPs are those of the chunked algorithm as implemented, per chunk (nc = ceil(T / Q) chunks):
//   CB = Cm Bm^T        2 Q^2 N per group   (only the lower-triangle tiles are computed; counted
//                                            in full, as the algorithm's nominal work)
//   chunk states        2 Q P N per head
//   state -> output     2 Q N P per head
//   intra-chunk y       2 Q^2 P per head    (the causal half is masked; counted in full)
// i.e. nc * (G * 2 Q^2 N + H * (4 Q P N + 2 Q^2 P)); state passing (2 P N per chunk and head) is
// left out. Bytes: x, dt, Bm, Cm read and y written once (scratch buffers not counted). The
// ceiling for TFLOP/s is the card's f32 FMA rate (the kernels use f32 FMA, not tensor cores);
// for GB/s the device-to-device copy rate. The backward is not benchmarked: its CUDA kernels are
// not written yet.
#include <cstdio>
#include <string>

#include "experiments/bench_util.h"
#include "kernels/conv1d.h"
#include "kernels/ssd.h"

using namespace sl;

namespace {

const Device kGpu = Device::cuda(0);

Tensor randn(const Dims& shape, DType dt, uint64_t seed, double std = 1) {
  Generator g(seed);
  return Tensor::randn(shape, g, dt, kGpu, 0, std);
}
Tensor rand(const Dims& shape, DType dt, uint64_t seed, double lo, double hi) {
  Generator g(seed);
  return Tensor::rand(shape, g, dt, kGpu, lo, hi);
}

// The card's f32 FMA peak in TFLOP/s: SMs * 128 FP32 lanes * 2 * clock.
double fp32_peak_tflops() {
  const cudaDeviceProp& p = cuda::properties(0);
  int khz = 0;
  SL_CUDA_CHECK(cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, 0));
  return double(p.multiProcessorCount) * 128 * 2 * double(khz) * 1e3 / 1e12;
}

void bench_ssd(int64_t T, double copy, double peak) {
  const int64_t B = 1, H = 64, P = 64, N = 128, G = 8, Q = 128;
  const DType dt = DType::BF16;
  Tensor x = randn({B, T, H, P}, dt, 1), dtv = rand({B, T, H}, dt, 2, 0.01, 0.1);
  Tensor A = rand({H}, dt, 3, -4, -1), D = randn({H}, dt, 4);
  Tensor Bm = randn({B, T, G, N}, dt, 5, 0.3), Cm = randn({B, T, G, N}, dt, 6, 0.3);
  Tensor y = Tensor::empty(x.shape(), dt, kGpu);
  Tensor fin = Tensor::empty({B, H, P, N}, DType::F32, kGpu);
  kernels::SsdParams p;
  p.dtype = dt;
  p.batch = B, p.seqlen = T, p.heads = H, p.head_dim = P, p.groups = G, p.state = N, p.chunk = Q;
  p.x = x.data_ptr(), p.dt = dtv.data_ptr(), p.A = A.data_ptr(), p.Bm = Bm.data_ptr();
  p.Cm = Cm.data_ptr(), p.D = D.data_ptr(), p.y = y.data_ptr(), p.final_state = fin.data_ptr();
  const float ms = bench::time_ms([&] { kernels::ssd_forward_cuda(p, 0); }, 3, 10);
  const double nc = double((T + Q - 1) / Q);
  const double flops = nc * (G * 2.0 * Q * Q * N + H * (4.0 * Q * P * N + 2.0 * Q * Q * P));
  const double es = double(dtype_size(dt));
  const double bytes = es * (2.0 * B * T * H * P + B * T * H + 2.0 * B * T * G * N);
  const std::string size = "T=" + std::to_string(T) + " bf16";
  bench::row("ssd fwd (H64 P64 N128 G8 Q128)", size, ms, bench::tflops(flops, ms), "TFLOP/s",
             peak, 30);
  std::printf("|   (same run) | %s | %.4f | %.1f GB/s | %.1f%% of copy | |\n", size.c_str(), ms,
              bench::gbps(bytes, ms), 100.0 * bench::gbps(bytes, ms) / copy);
}

void bench_conv(int64_t T, double copy) {
  const int64_t B = 1, C = 64 * 64 + 2 * 8 * 128, W = 4;
  const DType dt = DType::BF16;
  Tensor x = randn({B, T, C}, dt, 7), w = randn({C, W}, dt, 8, 0.5), bias = randn({C}, dt, 9);
  Tensor dy = randn({B, T, C}, dt, 10);
  const std::string size = "T=" + std::to_string(T) + " Cc=" + std::to_string(C) + " bf16";
  const double es = double(dtype_size(dt));
  float ms = bench::time_ms(
      [&] { kernels::causal_conv1d_silu_forward(x, w, bias, Tensor(), Tensor()); });
  bench::row("conv1d+silu fwd", size, ms, bench::gbps(2.0 * B * T * C * es, ms), "GB/s", copy,
             60);
  ms = bench::time_ms(
      [&] { kernels::causal_conv1d_silu_backward(dy, x, w, bias, Tensor(), Tensor()); });
  // dy, x read, dx written; the f32 dz buffer written once and read twice.
  bench::row("conv1d+silu bwd", size, ms,
             bench::gbps(3.0 * B * T * C * es + 12.0 * B * T * C, ms), "GB/s", copy, 60);
}

}  // namespace

int main() {
  const double copy = bench::copy_gbps();
  const double peak = fp32_peak_tflops();
  std::printf("device: %s, copy %.0f GB/s, f32 FMA peak %.1f TFLOP/s\n\n",
              bench::device_name().c_str(), copy, peak);
  std::printf("| kernel | size | ms | rate | %% of ceiling | verdict |\n|---|---|---|---|---|---|\n");
  for (int64_t T : {4096, 8192, 16384, 32768, 65536}) bench_ssd(T, copy, peak);
  for (int64_t T : {4096, 65536}) bench_conv(T, copy);
  return 0;
}
