// Fused cross-entropy with an ignore index: loss from logits and integer targets without ever
// materialising the probabilities.
//
// Forward, per row r of logits [N, V] with target t_r:
//   lse_r  = log sum_j exp(logits[r, j])            (online max/sum, one pass over the row)
//   loss_r = lse_r - logits[r, t_r]                  (0 for rows with t_r == ignore_index)
//   loss   = sum_r loss_r / n_valid   (kMean)   or   sum_r loss_r   (kSum)
// n_valid counts the rows whose target is not ignore_index. If every row is ignored the loss is 0
// and every gradient is 0 (the mean divides by max(n_valid, 1)).
// Backward, from logits and the saved lse in one pass (read once, write once):
//   dlogits[r, j] = (exp(logits[r, j] - lse_r) - [j == t_r]) * dloss / n_valid   (kMean)
// with zero rows for ignored targets.
//
// Out-of-range targets (< 0 or >= V, and not ignore_index) are an error. The CPU reference throws
// naming the row and the value. On CUDA the forward kernel records the first bad row in a device
// flag (and treats the row as ignored); cross_entropy_forward reads the flag back after the
// kernels (one 8-byte device-to-host copy, which synchronises the stream) and throws the same
// error. The backward kernel trusts targets already validated by the forward and gives zero rows
// for out-of-range ones.
//
// The one non-obvious decision: n_valid is returned as a device f32 scalar (not a host int) and
// dloss is read from device memory, so forward and backward never need the host for the scale.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace sl::kernels {

enum class CeReduction { kMean, kSum };

struct CrossEntropyParams {
  const void* logits;    // [n, v] row-major
  DType dtype;           // of logits and dlogits
  const void* targets;   // [n]
  DType target_dtype;    // I32 or I64
  int64_t n = 0, v = 0;
  int64_t ignore_index = -100;
  CeReduction reduction = CeReduction::kMean;
  // Statistics (lse, loss, n_valid, dloss) are f32, or f64 when logits are f64 (CPU only).
  // forward outputs
  void* lse = nullptr;        // [n]
  void* loss = nullptr;       // [1]
  void* n_valid = nullptr;    // [1]
  float* row_loss = nullptr;  // [n] scratch (CUDA)
  unsigned long long* bad_row = nullptr;  // [1] CUDA flag: first row with a bad target, or ~0
  // backward
  const void* dloss = nullptr;           // [1]
  const void* n_valid_in = nullptr;      // [1] from the forward
  const void* lse_in = nullptr;          // [n] from the forward
  void* dlogits = nullptr;               // [n, v]
};

struct CrossEntropyResult {
  // f32, or f64 for f64 logits.
  Tensor loss;     // scalar (shape [])
  Tensor lse;      // [N]
  Tensor n_valid;  // [1]: the number of non-ignored rows
};

// logits [N, V] f32/bf16 (f64/f16 on CPU too); targets [N] i32/i64; same device.
CrossEntropyResult cross_entropy_forward(const Tensor& logits, const Tensor& targets,
                                         int64_t ignore_index = -100,
                                         CeReduction reduction = CeReduction::kMean);
// dloss: a one-element float tensor on logits' device. Returns dlogits [N, V], logits' dtype.
Tensor cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& lse,
                              const Tensor& n_valid, const Tensor& dloss,
                              int64_t ignore_index = -100,
                              CeReduction reduction = CeReduction::kMean);

void cross_entropy_forward_cpu(const CrossEntropyParams& p);
void cross_entropy_backward_cpu(const CrossEntropyParams& p);
#if SL_WITH_CUDA
// Launchers: no host synchronisation; the caller checks *bad_row (set to ~0 by the launcher).
void cross_entropy_forward_cuda(const CrossEntropyParams& p, int device);
void cross_entropy_backward_cuda(const CrossEntropyParams& p, int device);
#endif

}  // namespace sl::kernels
