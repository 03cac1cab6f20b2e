// Bandwidth of the elementwise, reduction and softmax kernels against the card's device-to-device
// copy rate. Each row counts the bytes the op must move once (inputs read + outputs written); the
// bar is 70% of copy. Inputs are random, several times the L2, in bf16 and f32.
//
//   ./build/bench_elementwise
#include <cstdio>
#include <string>

#include "core/tensor.h"
#include "experiments/bench_util.h"
#include "kernels/elementwise.h"
#include "kernels/reduce.h"
#include "kernels/softmax.h"

namespace sl {
namespace {

constexpr double kBar = 70;

std::string size_str(int64_t rows, int64_t cols, DType dt) {
  return std::to_string(rows) + "x" + std::to_string(cols) + " " + dtype_name(dt);
}

void bench_dtype(DType dt, double copy) {
  Device gpu = Device::cuda(0);
  Generator gen(1234);
  const double es = double(dtype_size(dt));

  // Elementwise on 64M elements as [16384, 4096].
  const int64_t R = 16384, C = 4096, n = R * C;
  Tensor a = Tensor::randn({R, C}, gen, dt, gpu), b = Tensor::randn({R, C}, gen, dt, gpu);
  Tensor row = Tensor::randn({C}, gen, dt, gpu);
  std::string sz = size_str(R, C, dt);
  float ms = bench::time_ms([&] { kernels::add(a, b); });
  bench::row("add", sz, ms, bench::gbps(3.0 * n * es, ms), "GB/s", copy, kBar);
  ms = bench::time_ms([&] { kernels::mul(a, row); });
  bench::row("mul, row broadcast [R,C]*[C]", sz, ms, bench::gbps(2.0 * n * es, ms), "GB/s", copy,
             kBar);
  ms = bench::time_ms([&] { kernels::unary(kernels::UnaryOp::Silu, a); });
  bench::row("silu", sz, ms, bench::gbps(2.0 * n * es, ms), "GB/s", copy, kBar);
  ms = bench::time_ms([&] { kernels::unary_backward(kernels::UnaryOp::Silu, a, b); });
  bench::row("silu backward", sz, ms, bench::gbps(3.0 * n * es, ms), "GB/s", copy, kBar);
  ms = bench::time_ms([&] { kernels::sum(a, -1); });
  bench::row("sum over last dim", sz, ms, bench::gbps((n + R) * es, ms), "GB/s", copy, kBar);
  ms = bench::time_ms([&] { kernels::sum(a, 0); });
  bench::row("sum over first dim", sz, ms, bench::gbps((n + C) * es, ms), "GB/s", copy, kBar);
  a = b = row = Tensor();

  // Softmax rows: 16384 x 4096, 8192 x 32000, 4096 x 50304.
  const int64_t shapes[][2] = {{16384, 4096}, {8192, 32000}, {4096, 50304}};
  for (const auto& s : shapes) {
    int64_t rows = s[0], cols = s[1], m = rows * cols;
    Tensor x = Tensor::randn({rows, cols}, gen, dt, gpu, 0, 2);
    Tensor dy = Tensor::randn({rows, cols}, gen, dt, gpu);
    Tensor y = kernels::softmax(x);
    sz = size_str(rows, cols, dt);
    ms = bench::time_ms([&] { kernels::softmax(x); });
    bench::row("softmax", sz, ms, bench::gbps(2.0 * m * es, ms), "GB/s", copy, kBar);
    ms = bench::time_ms([&] { kernels::softmax_backward(y, dy); });
    bench::row("softmax backward", sz, ms, bench::gbps(3.0 * m * es, ms), "GB/s", copy, kBar);
  }
}

}  // namespace
}  // namespace sl

int main() {
  using namespace sl;
  std::printf("# Elementwise, reduction and softmax bandwidth on %s\n\n",
              bench::device_name().c_str());
  double copy = bench::copy_gbps();
  std::printf("Device-to-device copy: %.1f GB/s (read + write). Bar: 70%% of copy.\n\n", copy);
  std::printf("| kernel | size | ms | rate | %% of copy | ≥70%%? |\n");
  std::printf("|---|---|---|---|---|---|\n");
  for (DType dt : {DType::BF16, DType::F32}) bench_dtype(dt, copy);
  return 0;
}
