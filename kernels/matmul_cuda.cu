// CUDA matmul through cuBLASLt, with a cublasGemmStridedBatchedEx fallback.
//
// Note [cuBLASLt mapping]
// cuBLAS is column-major. A row-major [r, c] matrix with row stride ld, read column-major, is its
// transpose [c, r] with leading dimension ld. So row-major C = op(A) op(B) is computed as the
// column-major Cᵀ = op(B)ᵀ op(A)ᵀ: cuBLAS's first operand is our B (transposed iff trans_b), its
// second our A (transposed iff trans_a), m = N, n = M, k = K, and D = Cᵀ is [N, M] with leading
// dimension ldc. The bias, one value per column of C, is one per row of D: CUBLASLT_EPILOGUE_BIAS
// as it stands, with the bias in D's dtype (cuBLASLt's default for f32 and bf16 outputs) and batch
// stride 0 (one bias for the whole batch).
//
// A plan (descriptors and the heuristic's algorithm) is cached per (shape, strides, dtypes,
// transposes, bias, pointer alignments), so repeated calls never query the heuristic again. When
// cuBLASLt offers no algorithm for a plan, or rejects the call as unsupported, the plan switches
// for good to cublasGemmStridedBatchedEx, which takes any shape: the bias is first broadcast into
// C and the GEMM adds onto it (beta = 1), so the result is still rounded once.
#include <cublasLt.h>
#include <cublas_v2.h>

#include <array>
#include <climits>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>

#include "core/allocator.h"
#include "core/cuda_context.h"
#include "kernels/cuda_utils.cuh"
#include "kernels/dispatch.h"
#include "kernels/matmul.h"

namespace sl::kernels {
namespace {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;
constexpr int kThreads = 256;

template <class T>
__global__ void broadcast_bias_kernel(T* c, const T* bias, int64_t total, int64_t m, int64_t n,
                                      int64_t ldc, int64_t stride_c) {
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    int64_t row = idx / n, j = idx % n;
    c[(row / m) * stride_c + (row % m) * ldc + j] = bias[j];
  }
}

cudaDataType cuda_type(DType t) {
  return t == DType::BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

cublasComputeType_t compute_type(const MatmulParams& p) {
  return p.ab_dtype == DType::F32 && p.allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                  : CUBLAS_COMPUTE_32F;
}

// The largest power of two (up to 256) that divides the address: what the heuristic may assume.
uint32_t alignment(const void* ptr) {
  auto u = reinterpret_cast<uintptr_t>(ptr);
  uint32_t al = 256;
  while (al > 1 && u % al != 0) al /= 2;
  return al;
}

// Per device: the library handles and the workspace, created on first use and kept for the
// process, like the plan cache. Deliberately never destroyed: at exit the CUDA runtime may already
// be torn down.
struct DeviceState {
  cublasLtHandle_t lt = nullptr;
  cublasHandle_t blas = nullptr;
  void* workspace = nullptr;
};

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;  // cuBLASLt's A (our B), B, D
  cublasLtMatmulAlgo_t algo{};
  bool use_lt = false;

  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (d) cublasLtMatrixLayoutDestroy(d);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

class Preference {
 public:
  Preference() { SL_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&p_)); }
  ~Preference() { cublasLtMatmulPreferenceDestroy(p_); }
  Preference(const Preference&) = delete;
  Preference& operator=(const Preference&) = delete;
  template <class V>
  void set(cublasLtMatmulPreferenceAttributes_t attr, V v) {
    SL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(p_, attr, &v, sizeof(v)));
  }
  cublasLtMatmulPreference_t get() const { return p_; }

 private:
  cublasLtMatmulPreference_t p_ = nullptr;
};

using PlanKey = std::array<int64_t, 21>;

std::mutex& cache_mutex() {
  static std::mutex mu;
  return mu;
}

// Callers hold cache_mutex().
DeviceState& device_state(int device) {
  static auto* states = new std::map<int, DeviceState>();
  auto it = states->find(device);
  if (it != states->end()) return it->second;
  DeviceState st;
  SL_CUBLAS_CHECK(cublasLtCreate(&st.lt));
  SL_CUBLAS_CHECK(cublasCreate(&st.blas));
  st.workspace = cuda_alloc::allocate(kWorkspaceBytes, device);
  SL_CUBLAS_CHECK(cublasSetStream(st.blas, cuda::stream(device)));
  SL_CUBLAS_CHECK(cublasSetWorkspace(st.blas, st.workspace, kWorkspaceBytes));
  return states->emplace(device, st).first->second;
}

cublasLtMatrixLayout_t make_layout(DType dt, int64_t rows, int64_t cols, int64_t ld, int64_t batch,
                                   int64_t stride) {
  cublasLtMatrixLayout_t l = nullptr;
  SL_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&l, cuda_type(dt), uint64_t(rows), uint64_t(cols), ld));
  if (batch > 1) {
    int32_t count = int32_t(batch);
    SL_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count,
                                                     sizeof(count)));
    SL_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                     &stride, sizeof(stride)));
  }
  return l;
}

std::unique_ptr<Plan> make_plan(const MatmulParams& p, const DeviceState& st) {
  auto plan = std::make_unique<Plan>();
  if (p.batch > INT32_MAX) return plan;
  SL_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc, compute_type(p), CUDA_R_32F));
  cublasOperation_t op_a = p.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasOperation_t op_b = p.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  SL_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
  SL_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
  if (p.bias) {
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    SL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi,
                                                   sizeof(epi)));
    // The heuristic reads the pointer's value for its alignment.
    SL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                   &p.bias, sizeof(p.bias)));
  }
  plan->a = make_layout(p.ab_dtype, p.trans_b ? p.k : p.n, p.trans_b ? p.n : p.k, p.ldb, p.batch,
                        p.stride_b);
  plan->b = make_layout(p.ab_dtype, p.trans_a ? p.m : p.k, p.trans_a ? p.k : p.m, p.lda, p.batch,
                        p.stride_a);
  plan->d = make_layout(p.c_dtype, p.n, p.m, p.ldc, p.batch, p.stride_c);

  Preference pref;
  pref.set(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, uint64_t(kWorkspaceBytes));
  pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, alignment(p.b));
  pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, alignment(p.a));
  pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, alignment(p.c));
  pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, alignment(p.c));
  cublasLtMatmulHeuristicResult_t result{};
  int returned = 0;
  cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(st.lt, plan->desc, plan->a, plan->b, plan->d,
                                                    plan->d, pref.get(), 1, &result, &returned);
  if (s == CUBLAS_STATUS_NOT_SUPPORTED || (s == CUBLAS_STATUS_SUCCESS && returned == 0))
    return plan;
  SL_CUBLAS_CHECK(s);
  plan->algo = result.algo;
  plan->use_lt = true;
  return plan;
}

PlanKey plan_key(const MatmulParams& p, int device) {
  return {device,
          int64_t(p.ab_dtype),
          int64_t(p.c_dtype),
          p.allow_tf32,
          p.trans_a,
          p.trans_b,
          p.m,
          p.n,
          p.k,
          p.lda,
          p.ldb,
          p.ldc,
          p.batch,
          p.stride_a,
          p.stride_b,
          p.stride_c,
          p.bias != nullptr,
          alignment(p.a),
          alignment(p.b),
          alignment(p.c),
          alignment(p.bias)};
}

// Returns false when cuBLASLt rejects the call as unsupported.
bool run_lt(const Plan& plan, const MatmulParams& p, const DeviceState& st, cudaStream_t s) {
  if (p.bias)
    SL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                   &p.bias, sizeof(p.bias)));
  float alpha = 1.0f, beta = 0.0f;
  cublasStatus_t status =
      cublasLtMatmul(st.lt, plan.desc, &alpha, p.b, plan.a, p.a, plan.b, &beta, p.c, plan.d, p.c,
                     plan.d, &plan.algo, st.workspace, kWorkspaceBytes, s);
  if (status == CUBLAS_STATUS_NOT_SUPPORTED) return false;
  SL_CUBLAS_CHECK(status);
  return true;
}

void run_gemm_ex(const MatmulParams& p, const DeviceState& st, cudaStream_t s) {
  for (int64_t v : {p.m, p.n, p.k, p.lda, p.ldb, p.ldc, p.batch})
    SL_CHECK(v <= INT_MAX) << "matmul: size " << v << " too large for cublasGemmStridedBatchedEx";
  float alpha = 1.0f, beta = 0.0f;
  if (p.bias) {
    int64_t total = p.batch * p.m * p.n;
    const int blocks = cu::grid_stride_blocks(total, kThreads);
    SL_DISPATCH_CUDA_FLOAT(p.c_dtype, "matmul", T, {
      broadcast_bias_kernel<T><<<blocks, kThreads, 0, s>>>(
          static_cast<T*>(p.c), static_cast<const T*>(p.bias), total, p.m, p.n, p.ldc, p.stride_c);
      SL_CUDA_LAUNCH_CHECK();
    });
    beta = 1.0f;
  }
  cublasOperation_t op_a = p.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasOperation_t op_b = p.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  SL_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
      st.blas, op_a, op_b, int(p.n), int(p.m), int(p.k), &alpha, p.b, cuda_type(p.ab_dtype),
      int(p.ldb), p.stride_b, p.a, cuda_type(p.ab_dtype), int(p.lda), p.stride_a, &beta, p.c,
      cuda_type(p.c_dtype), int(p.ldc), p.stride_c, int(p.batch), compute_type(p),
      CUBLAS_GEMM_DEFAULT));
}

}  // namespace

void matmul_cuda(const MatmulParams& p, int device) {
  SL_CHECK(p.ab_dtype == DType::F32 || p.ab_dtype == DType::BF16)
      << "matmul: CUDA inputs must be f32 or bf16, got " << dtype_name(p.ab_dtype);
  SL_CHECK(p.c_dtype == DType::F32 || p.c_dtype == DType::BF16)
      << "matmul: CUDA output must be f32 or bf16, got " << dtype_name(p.c_dtype);
  cuda::set_device(device);
  cudaStream_t s = cuda::stream(device);
  std::lock_guard<std::mutex> lock(cache_mutex());
  DeviceState& st = device_state(device);
  if (p.force_gemm_ex) {
    run_gemm_ex(p, st, s);
    return;
  }
  static auto* plans = new std::map<PlanKey, std::unique_ptr<Plan>>();
  std::unique_ptr<Plan>& plan = (*plans)[plan_key(p, device)];
  if (!plan) plan = make_plan(p, st);
  if (plan->use_lt && run_lt(*plan, p, st, s)) return;
  plan->use_lt = false;
  run_gemm_ex(p, st, s);
}

}  // namespace sl::kernels
