// Benchmark of the Mamba-2 kernels: the chunked SSD scan forward, backward and forward+backward
// (Nemotron-H-like head: B = 1, H = 64 heads x P = 64, N = 128, G = 8 groups, chunk Q = 128, bf16)
// over T = 4K .. 64K against the card's ceilings measured in the same run, and the causal conv1d +
// SiLU over xBC (Cc = H*P + 2*G*N = 6144, W = 4). experiments/bench_ssd_torch.py times
// transformers' PyTorch path on the same shapes with the same counting rules (keep them equal).
//
// Note [SSD counting rules]. FLOPs are those of the chunked algorithm, per chunk (nc = ceil(T/Q));
// causally masked halves of Q x Q products count in full, as the algorithm's nominal work:
//   forward:  CB = Cm Bm^T 2 Q^2 N per group; chunk states 2 Q P N, state -> output 2 Q N P and
//             intra-chunk y 2 Q^2 P per head:  nc * (G * 2 Q^2 N + H * (4 Q P N + 2 Q^2 P))
//   backward: the forward's CB and chunk states again; per head dS_local 2 Q P N, dx (dS_out Bm
//             and CB^T dy) 2 Q N P + 2 Q^2 P, y - D x again 2 Q N P + 2 Q^2 P, dCB 2 Q^2 P, the
//             state parts of dCm and dBm 2 x 2 Q P N; per group dCm = dCB Bm and dBm = dCB^T Cm
//             2 x 2 Q^2 N:  nc * (G * 6 Q^2 N + H * (12 Q P N + 6 Q^2 P))
//   forward+backward: the sum of the two.
// State passing (2 P N per chunk and head, each way) is left out. Bytes, at the inputs' element
// size: forward reads x, dt, Bm, Cm and writes y; backward reads x, dt, Bm, Cm, dy and writes dx,
// ddt, dBm, dCm; forward+backward the sum (each tensor once per pass; A, D, their gradients, the
// final state and f32 scratch are not counted).
// Ceilings, measured here: GEMM = a bf16 8192^3 kernels::matmul (cuBLASLt), 2 M N K FLOPs; copy =
// bench::copy_gbps (device-to-device, read + write). The f32 FMA peak (SMs x 128 lanes x 2 x clock)
// is listed too because these kernels use f32 FMA, not tensor cores.
#include <cstdio>
#include <string>

#include "experiments/bench_util.h"
#include "kernels/conv1d.h"
#include "kernels/matmul.h"
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

struct SsdBench {
  Tensor x, dt, A, D, Bm, Cm, y, fin, dy, dx, ddt, dA, dBm, dCm, dD;
  kernels::SsdParams p;
};

SsdBench make_ssd(int64_t T) {
  const int64_t B = 1, H = 64, P = 64, N = 128, G = 8, Q = 128;
  const DType dt = DType::BF16;
  SsdBench s;
  s.x = randn({B, T, H, P}, dt, 1), s.dt = rand({B, T, H}, dt, 2, 0.01, 0.1);
  s.A = rand({H}, dt, 3, -4, -1), s.D = randn({H}, dt, 4);
  s.Bm = randn({B, T, G, N}, dt, 5, 0.3), s.Cm = randn({B, T, G, N}, dt, 6, 0.3);
  s.y = Tensor::empty(s.x.shape(), dt, kGpu);
  s.fin = Tensor::empty({B, H, P, N}, DType::F32, kGpu);
  s.dy = randn({B, T, H, P}, dt, 7);
  s.dx = Tensor::empty(s.x.shape(), dt, kGpu), s.ddt = Tensor::empty(s.dt.shape(), dt, kGpu);
  s.dA = Tensor::empty({H}, dt, kGpu), s.dD = Tensor::empty({H}, dt, kGpu);
  s.dBm = Tensor::empty(s.Bm.shape(), dt, kGpu), s.dCm = Tensor::empty(s.Cm.shape(), dt, kGpu);
  kernels::SsdParams& p = s.p;
  p.dtype = dt;
  p.batch = B, p.seqlen = T, p.heads = H, p.head_dim = P, p.groups = G, p.state = N, p.chunk = Q;
  p.x = s.x.data_ptr(), p.dt = s.dt.data_ptr(), p.A = s.A.data_ptr(), p.Bm = s.Bm.data_ptr();
  p.Cm = s.Cm.data_ptr(), p.D = s.D.data_ptr(), p.y = s.y.data_ptr();
  p.final_state = s.fin.data_ptr();
  p.dy = s.dy.data_ptr(), p.dx = s.dx.data_ptr(), p.ddt = s.ddt.data_ptr(), p.dA = s.dA.data_ptr();
  p.dBm = s.dBm.data_ptr(), p.dCm = s.dCm.data_ptr(), p.dD = s.dD.data_ptr();
  return s;
}

struct Ceilings {
  double gemm_tflops, fp32_tflops, copy_gbps;
};

// The card's bf16 GEMM rate through kernels::matmul, in TFLOP/s.
double gemm_tflops(int64_t n = 8192) {
  Tensor a = randn({n, n}, DType::BF16, 11), b = randn({n, n}, DType::BF16, 12);
  Tensor c;
  float ms = bench::time_ms([&] { c = kernels::matmul(a, b); });
  return bench::tflops(2.0 * double(n) * double(n) * double(n), ms);
}

void ssd_row(const char* pass, int64_t T, float ms, double flops, double bytes, const Ceilings& c) {
  const double tf = bench::tflops(flops, ms), gb = bench::gbps(bytes, ms);
  std::printf("| %s | %lld | %.3f | %.2f | %.1f%% | %.1f%% | %.1f | %.1f%% |\n", pass, (long long)T,
              ms, tf, 100.0 * tf / c.gemm_tflops, 100.0 * tf / c.fp32_tflops, gb,
              100.0 * gb / c.copy_gbps);
  std::fflush(stdout);
}

void bench_ssd(int64_t T, const Ceilings& c) {
  SsdBench s = make_ssd(T);
  const kernels::SsdParams& p = s.p;
  const double B = double(p.batch), H = double(p.heads), P = double(p.head_dim);
  const double N = double(p.state), G = double(p.groups), Q = double(p.chunk);
  const double nc = double((T + p.chunk - 1) / p.chunk), Tn = double(T);
  const double es = double(dtype_size(p.dtype));
  const double fwd_flops = nc * (G * 2 * Q * Q * N + H * (4 * Q * P * N + 2 * Q * Q * P));
  const double bwd_flops = nc * (G * 6 * Q * Q * N + H * (12 * Q * P * N + 6 * Q * Q * P));
  const double fwd_bytes = es * (2 * B * Tn * H * P + B * Tn * H + 2 * B * Tn * G * N);
  const double bwd_bytes = es * (3 * B * Tn * H * P + 2 * B * Tn * H + 4 * B * Tn * G * N);
  float ms = bench::time_ms([&] { kernels::ssd_forward_cuda(p, 0); }, 3, 10);
  ssd_row("fwd", T, ms, fwd_flops, fwd_bytes, c);
  ms = bench::time_ms([&] { kernels::ssd_backward_cuda(p, 0); }, 3, 10);
  ssd_row("bwd", T, ms, bwd_flops, bwd_bytes, c);
  ms = bench::time_ms(
      [&] {
        kernels::ssd_forward_cuda(p, 0);
        kernels::ssd_backward_cuda(p, 0);
      },
      3, 10);
  ssd_row("fwd+bwd", T, ms, fwd_flops + bwd_flops, fwd_bytes + bwd_bytes, c);
}

void bench_conv(int64_t T, double copy) {
  const int64_t B = 1, C = 64 * 64 + 2 * 8 * 128, W = 4;
  const DType dt = DType::BF16;
  Tensor x = randn({B, T, C}, dt, 7), w = randn({C, W}, dt, 8, 0.5), bias = randn({C}, dt, 9);
  Tensor dy = randn({B, T, C}, dt, 10);
  const std::string size = "T=" + std::to_string(T) + " Cc=" + std::to_string(C) + " bf16";
  const double es = double(dtype_size(dt));
  float ms =
      bench::time_ms([&] { kernels::causal_conv1d_silu_forward(x, w, bias, Tensor(), Tensor()); });
  bench::row("conv1d+silu fwd", size, ms, bench::gbps(2.0 * B * T * C * es, ms), "GB/s", copy, 60);
  ms = bench::time_ms(
      [&] { kernels::causal_conv1d_silu_backward(dy, x, w, bias, Tensor(), Tensor()); });
  // dy, x read, dx written; the f32 dz buffer written once and read twice.
  bench::row("conv1d+silu bwd", size, ms, bench::gbps(3.0 * B * T * C * es + 12.0 * B * T * C, ms),
             "GB/s", copy, 60);
}

}  // namespace

int main() {
  Ceilings c;
  c.copy_gbps = bench::copy_gbps();
  c.fp32_tflops = fp32_peak_tflops();
  c.gemm_tflops = gemm_tflops();
  std::printf(
      "device: %s; ceilings: bf16 GEMM 8192^3 (kernels::matmul) %.1f TFLOP/s, f32 FMA peak %.1f "
      "TFLOP/s, device copy %.0f GB/s\n\n",
      bench::device_name().c_str(), c.gemm_tflops, c.fp32_tflops, c.copy_gbps);
  std::printf(
      "SSD (ours, CUDA): B=1 H=64 P=64 N=128 G=8 Q=128 bf16; FLOPs and bytes per Note [SSD "
      "counting rules]\n\n");
  std::printf(
      "| pass | T | ms | TFLOP/s | %% of GEMM | %% of f32 FMA | GB/s | %% of copy |\n"
      "|---|---|---|---|---|---|---|---|\n");
  for (int64_t T : {4096, 8192, 16384, 32768, 65536}) bench_ssd(T, c);
  std::printf(
      "\n| kernel | size | ms | rate | %% of ceiling | verdict |\n|---|---|---|---|---|---|\n");
  for (int64_t T : {4096, 65536}) bench_conv(T, c.copy_gbps);
  return 0;
}
