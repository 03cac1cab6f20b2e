// Bandwidth benchmark of the NN kernels (RMSNorm, gated RMSNorm, fused cross-entropy, embedding)
// against the card's device-to-device copy rate. Bytes are counted once: every tensor the kernel
// must read plus every tensor it must write (e.g. CE forward: the logits; CE backward: logits read
// + dlogits written). The launchers are called directly, so the CE forward's error-flag read-back
// (a host sync) is not timed.
#include <cstdio>
#include <string>

#include "experiments/bench_util.h"
#include "kernels/cross_entropy.h"
#include "kernels/embedding.h"
#include "kernels/rmsnorm.h"

using namespace sl;

namespace {

const Device kGpu = Device::cuda(0);

std::string shape2(int64_t a, int64_t b, DType dt) {
  return std::to_string(a) + "x" + std::to_string(b) + " " + dtype_name(dt);
}

Tensor randn(const Dims& shape, DType dt, uint64_t seed) {
  Generator g(seed);
  return Tensor::randn(shape, g, dt, kGpu);
}

void bench_rmsnorm(int64_t rows, int64_t c, DType dt, double copy) {
  const double es = double(dtype_size(dt));
  Tensor x = randn({rows, c}, dt, 1), w = randn({c}, dt, 2), dy = randn({rows, c}, dt, 3);
  Tensor y = Tensor::empty({rows, c}, dt, kGpu), dx = Tensor::empty({rows, c}, dt, kGpu);
  Tensor rstd = Tensor::empty({rows}, DType::F32, kGpu), dw = Tensor::empty({c}, dt, kGpu);
  kernels::RmsNormParams p;
  p.x = x.data_ptr();
  p.w = w.data_ptr();
  p.dtype = dt;
  p.rows = rows;
  p.c = c;
  p.group_size = c;
  p.y = y.data_ptr();
  p.rstd = rstd.data_ptr();
  p.dy = dy.data_ptr();
  p.rstd_in = rstd.data_ptr();
  p.dx = dx.data_ptr();
  p.dw = dw.data_ptr();
  float ms = bench::time_ms([&] { kernels::rmsnorm_forward_cuda(p, 0); });
  double bytes = 2.0 * rows * c * es + c * es + 4.0 * rows;
  bench::row("rmsnorm fwd", shape2(rows, c, dt), ms, bench::gbps(bytes, ms), "GB/s", copy, 70);
  ms = bench::time_ms([&] { kernels::rmsnorm_backward_cuda(p, 0); });
  bytes = 3.0 * rows * c * es + 2.0 * c * es + 4.0 * rows;
  bench::row("rmsnorm bwd", shape2(rows, c, dt), ms, bench::gbps(bytes, ms), "GB/s", copy, 70);
}

void bench_gated(int64_t rows, int64_t c, int64_t gs, DType dt, double copy) {
  const double es = double(dtype_size(dt));
  Tensor x = randn({rows, c}, dt, 4), z = randn({rows, c}, dt, 5), w = randn({c}, dt, 6);
  Tensor y = Tensor::empty({rows, c}, dt, kGpu);
  Tensor rstd = Tensor::empty({rows, c / gs}, DType::F32, kGpu);
  kernels::RmsNormParams p;
  p.x = x.data_ptr();
  p.z = z.data_ptr();
  p.w = w.data_ptr();
  p.dtype = dt;
  p.rows = rows;
  p.c = c;
  p.group_size = gs;
  p.y = y.data_ptr();
  p.rstd = rstd.data_ptr();
  float ms = bench::time_ms([&] { kernels::rmsnorm_forward_cuda(p, 0); });
  double bytes = 3.0 * rows * c * es + c * es + 4.0 * rows * (c / gs);
  bench::row("gated rmsnorm fwd (G=" + std::to_string(gs) + ")", shape2(rows, c, dt), ms,
             bench::gbps(bytes, ms), "GB/s", copy, 70);
}

void bench_ce(int64_t n, int64_t v, DType dt, double copy) {
  const double es = double(dtype_size(dt));
  Tensor logits = randn({n, v}, dt, 7);
  Generator g(8);
  Tensor targets = Tensor::rand({n}, g, DType::F32, kGpu, 0, double(v) - 1).to(DType::I64);
  Tensor lse = Tensor::empty({n}, DType::F32, kGpu), loss = Tensor::empty({}, DType::F32, kGpu);
  Tensor nv = Tensor::empty({1}, DType::F32, kGpu), row_loss = Tensor::empty({n}, DType::F32, kGpu);
  Tensor bad = Tensor::empty({1}, DType::I64, kGpu), dloss = Tensor::full({}, 1.0, DType::F32, kGpu);
  Tensor dlogits = Tensor::empty({n, v}, dt, kGpu);
  kernels::CrossEntropyParams p;
  p.logits = logits.data_ptr();
  p.dtype = dt;
  p.targets = targets.data_ptr();
  p.target_dtype = DType::I64;
  p.n = n;
  p.v = v;
  p.lse = lse.data_ptr();
  p.loss = loss.data_ptr();
  p.n_valid = nv.data_ptr();
  p.row_loss = row_loss.data<float>();
  p.bad_row = reinterpret_cast<unsigned long long*>(bad.data<int64_t>());
  p.lse_in = lse.data_ptr();
  p.n_valid_in = nv.data_ptr();
  p.dloss = dloss.data_ptr();
  p.dlogits = dlogits.data_ptr();
  float ms = bench::time_ms([&] { kernels::cross_entropy_forward_cuda(p, 0); });
  bench::row("cross_entropy fwd", shape2(n, v, dt), ms, bench::gbps(n * v * es, ms), "GB/s", copy,
             70);
  ms = bench::time_ms([&] { kernels::cross_entropy_backward_cuda(p, 0); });
  bench::row("cross_entropy bwd", shape2(n, v, dt), ms, bench::gbps(2.0 * n * v * es, ms), "GB/s",
             copy, 70);
}

void bench_embedding(int64_t v, int64_t c, int64_t n, DType dt, double copy) {
  const double es = double(dtype_size(dt));
  Tensor w = randn({v, c}, dt, 9);
  Generator g(10);
  Tensor ids = Tensor::rand({n}, g, DType::F32, kGpu, 0, double(v) - 1).to(DType::I64);
  Tensor out = Tensor::empty({n, c}, dt, kGpu), bad = Tensor::empty({1}, DType::I64, kGpu);
  kernels::EmbeddingParams p;
  p.weight = w.data_ptr();
  p.dtype = dt;
  p.ids = ids.data_ptr();
  p.id_dtype = DType::I64;
  p.n = n;
  p.v = v;
  p.c = c;
  p.out = out.data_ptr();
  p.bad = reinterpret_cast<unsigned long long*>(bad.data<int64_t>());
  float ms = bench::time_ms([&] { kernels::embedding_forward_cuda(p, 0); });
  bench::row("embedding fwd (V=" + std::to_string(v) + ")", shape2(n, c, dt), ms,
             bench::gbps(2.0 * n * c * es, ms), "GB/s", copy, 70);
}

}  // namespace

int main() {
  double copy = bench::copy_gbps();
  std::printf("# NN kernels on %s\n\ndevice-to-device copy: %.1f GB/s\n\n",
              bench::device_name().c_str(), copy);
  std::printf("| kernel | size | ms | rate | %% of copy | ≥70%%? |\n");
  std::printf("|---|---|---|---|---|---|\n");
  for (DType dt : {DType::BF16, DType::F32}) bench_rmsnorm(16384 * 4, 4096, dt, copy);
  bench_gated(16384, 8192, 1024, DType::BF16, copy);
  for (int64_t v : {int64_t(32000), int64_t(131072)}) bench_ce(8192, v, DType::BF16, copy);
  bench_embedding(131072, 4096, 16384, DType::BF16, copy);
  return 0;
}
