// Benchmark: sl::kernels::matmul (cuBLASLt, cached heuristic plan) against a plain cublasGemmEx
// call (default algorithm, f32 accumulation) on the same random inputs in the same run.
//
// Shapes are M x N x K with the transposes of the row-major operands: the square bf16 problems,
// then a training-like linear layer (16384 tokens, 768 -> 3072) with its two backward products
// (dx = dy w: NN; dw = dyᵀ x: TN). The acceptance bar is ours >= 90% of cuBLAS at bf16 4096³.
// Both results are also compared (max |ours - cuBLAS| / max |cuBLAS|) so a fast wrong answer
// cannot pass.
#include <cublas_v2.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "core/cuda_context.h"
#include "experiments/bench_util.h"
#include "kernels/matmul.h"

namespace {

using sl::DType;
using sl::Tensor;

struct Problem {
  DType dtype;
  int64_t m, n, k;
  bool trans_a, trans_b;
  const char* what;
};

// C = op(A) op(B) row-major through cublasGemmEx, with the usual swap to column-major.
void cublas_matmul(cublasHandle_t h, const Problem& p, const Tensor& a, const Tensor& b,
                   const Tensor& c) {
  cudaDataType t = p.dtype == DType::BF16 ? CUDA_R_16BF : CUDA_R_32F;
  float alpha = 1.0f, beta = 0.0f;
  int lda = int(p.trans_a ? p.m : p.k), ldb = int(p.trans_b ? p.k : p.n);
  SL_CUBLAS_CHECK(cublasGemmEx(h, p.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                               p.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, int(p.n), int(p.m), int(p.k),
                               &alpha, b.data_ptr(), t, ldb, a.data_ptr(), t, lda, &beta,
                               c.data_ptr(), t, int(p.n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

double max_rel_diff(const Tensor& x, const Tensor& ref) {
  std::vector<float> xv = x.to(DType::F32).to_vector<float>();
  std::vector<float> rv = ref.to(DType::F32).to_vector<float>();
  double diff = 0, scale = 0;
  for (size_t i = 0; i < xv.size(); ++i) {
    diff = std::max(diff, double(std::fabs(xv[i] - rv[i])));
    scale = std::max(scale, double(std::fabs(rv[i])));
  }
  return diff / std::max(scale, 1e-30);
}

}  // namespace

int main() {
  using namespace sl;
  const Device gpu = Device::cuda(0);
  cuda::set_device(0);
  cublasHandle_t h = nullptr;
  SL_CUBLAS_CHECK(cublasCreate(&h));
  SL_CUBLAS_CHECK(cublasSetStream(h, cuda::stream(0)));

  const std::vector<Problem> problems = {
      {DType::BF16, 4096, 4096, 4096, false, false, "square NN"},
      {DType::BF16, 8192, 8192, 8192, false, false, "square NN"},
      {DType::BF16, 16384, 3072, 768, false, true, "linear fwd x wᵀ (NT)"},
      {DType::BF16, 16384, 768, 3072, false, false, "linear dx = dy w (NN)"},
      {DType::BF16, 3072, 768, 16384, true, false, "linear dw = dyᵀ x (TN)"},
      {DType::F32, 4096, 4096, 4096, false, false, "square NN, f32 (info)"},
  };

  std::printf("device: %s\n\n", bench::device_name().c_str());
  std::printf(
      "| shape | ours ms | ours TFLOP/s | cuBLAS ms | cuBLAS TFLOP/s | ours/cuBLAS | ≥90%%? |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- |\n");
  std::vector<std::string> checks;
  Generator gen(2024);
  for (const Problem& p : problems) {
    Dims as = p.trans_a ? Dims{p.k, p.m} : Dims{p.m, p.k};
    Dims bs = p.trans_b ? Dims{p.n, p.k} : Dims{p.k, p.n};
    Tensor a = Tensor::randn(as, gen, p.dtype, gpu);
    Tensor b = Tensor::randn(bs, gen, p.dtype, gpu);
    Tensor ref = Tensor::empty({p.m, p.n}, p.dtype, gpu);
    Tensor ours;
    float ours_ms = bench::time_ms([&] { ours = kernels::matmul(a, b, p.trans_a, p.trans_b); });
    float cublas_ms = bench::time_ms([&] { cublas_matmul(h, p, a, b, ref); });
    cuda::synchronize(0);
    double flops = 2.0 * double(p.m) * double(p.n) * double(p.k);
    double ratio = double(cublas_ms) / double(ours_ms);
    char shape[128];
    std::snprintf(shape, sizeof(shape), "%s %lldx%lldx%lld %s", dtype_name(p.dtype), (long long)p.m,
                  (long long)p.n, (long long)p.k, p.what);
    std::printf("| %s | %.3f | %.1f | %.3f | %.1f | %.1f%% | %s |\n", shape, ours_ms,
                bench::tflops(flops, ours_ms), cublas_ms, bench::tflops(flops, cublas_ms),
                100.0 * ratio, ratio >= 0.9 ? "yes" : "NO");
    std::fflush(stdout);
    char line[192];
    std::snprintf(line, sizeof(line), "- %s: max |ours - cuBLAS| / max |cuBLAS| = %.2e", shape,
                  max_rel_diff(ours, ref));
    checks.push_back(line);
  }
  std::printf(
      "\nM x N x K of row-major C = op(A) op(B); acceptance: bf16 4096³ at >= 90%% of "
      "cuBLAS.\n\n");
  for (const std::string& c : checks) std::printf("%s\n", c.c_str());
  SL_CUBLAS_CHECK(cublasDestroy(h));
  return 0;
}
