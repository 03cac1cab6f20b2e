// Matrix multiplication: C = op(A) op(B) (+ bias), batched or not, with its backward.
//
// Row-major throughout: A is [M, K] ([K, M] when trans_a), B is [K, N] ([N, K] when trans_b), C is
// [M, N], bias is [N] (added to every row). Batched when A or B is 3-D [batch, ., .]; a 2-D operand
// is shared across the batch. Inputs need only a unit stride in one of their two matrix dims: a
// transposed view is taken as the other storage order by flipping its transpose flag (no copy);
// anything else is made contiguous first. The CPU reference maps the operands with Eigen and
// computes in f32 (f64 for f64); the GPU runs cuBLASLt with f32 accumulation and the bias in the
// epilogue (Note [cuBLASLt mapping] in matmul_cuda.cu).
#pragma once

#include <optional>
#include <vector>

#include "core/tensor.h"

namespace sl::kernels {

// Process-wide GPU settings; set them before the first matmul that should see them (not
// thread-safe to change while matmuls run).
struct MatmulOptions {
  bool allow_tf32 = false;     // f32 inputs on the GPU may use TF32 tensor cores
  bool force_gemm_ex = false;  // GPU: skip cuBLASLt, run the cublasGemmStridedBatchedEx path
};
MatmulOptions& matmul_options();

// C = op(a) op(b) + bias. a, b: same float dtype and device, 2-D or 3-D (equal batch when both are
// 3-D). bias: undefined or [N], any float dtype (cast to out_dtype before it is added). out_dtype
// defaults to a's dtype. Returns a contiguous [M, N] or [batch, M, N] tensor on a's device.
// GPU: a, b in f32 or bf16; out f32 or bf16 (f32 inputs give f32 out).
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false,
              const Tensor& bias = Tensor(), std::optional<DType> out_dtype = std::nullopt);

// y = x wᵀ + bias over any leading dims: x [..., in], w [out, in] (nn.Linear layout), bias
// undefined or [out]. Returns [..., out] in x's dtype.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias = Tensor());

// Gradients of C = op(a) op(b) given dc (C's shape): {da, db} with the shapes and dtypes of a and
// b (undefined where not needed). Each is one matmul with flipped transposes of the stored
// operands, never a transposed copy; a 2-D operand shared across a batch gets the sum over the
// batch (folded into one matmul when a is not transposed, else summed by sum_leading).
std::vector<Tensor> matmul_backward(const Tensor& a, const Tensor& b, const Tensor& dc,
                                    bool trans_a, bool trans_b, bool need_da, bool need_db);

// Gradient of the bias: the sum of dc [..., N] over every leading dim, as [N] in `dtype`. Computed
// as a matmul of a ones row [1, rows] with dc viewed as [rows, N] (f32 accumulation, one kernel).
Tensor bias_backward(const Tensor& dc, DType dtype);

// Sum of x [d0, ...] over its first dim, as [...] in `dtype` (a ones-row matmul, f32 accumulation).
Tensor sum_leading(const Tensor& x, DType dtype);

// Parameters shared by the CPU reference and the GPU launcher. Matrix i of the batch starts at
// element i*stride_* of its pointer; stored matrices are row-major with row stride ld*.
struct MatmulParams {
  const void* a = nullptr;     // [m, k] or [k, m] (trans_a), row stride lda
  const void* b = nullptr;     // [k, n] or [n, k] (trans_b), row stride ldb
  const void* bias = nullptr;  // [n], contiguous, dtype c_dtype; null for none
  void* c = nullptr;           // [m, n], row stride ldc
  DType ab_dtype = DType::F32, c_dtype = DType::F32;
  int64_t batch = 1, m = 0, n = 0, k = 0;  // m, n, k > 0
  bool trans_a = false, trans_b = false;
  int64_t lda = 0, ldb = 0, ldc = 0;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;  // batch strides (elements); 0 = shared
  bool allow_tf32 = false;
  bool force_gemm_ex = false;
};

void matmul_cpu(const MatmulParams& p);
#if SL_WITH_CUDA
void matmul_cuda(const MatmulParams& p, int device);
#endif

}  // namespace sl::kernels
