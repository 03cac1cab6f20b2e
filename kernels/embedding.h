// Embedding lookup: out[..., :] = weight[ids[...], :], and its deterministic backward.
//
// Backward: dW[v, :] = sum over positions i with ids[i] == v of dy[i, :], summed in increasing i
// (rows of dW with no id are 0). On CUDA the ids are stably sorted with their positions (CUB
// radix sort), and one block per distinct id adds its dy rows in sorted (= position) order, so
// two runs give identical bits — no float atomics.
//
// Out-of-range ids (< 0 or >= V) are an error. The CPU throws naming the position and the value.
// On CUDA the forward kernel records the first bad position in a device flag (and writes a zero
// row there); embedding_forward reads it back after the launch (an 8-byte copy that synchronises
// the stream) and throws the same error. The CUDA backward trusts ids the forward validated and
// skips out-of-range ones.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace sl::kernels {

struct EmbeddingParams {
  const void* weight = nullptr;  // [v, c]
  DType dtype = DType::F32;      // of weight, out, dy, dweight
  const void* ids = nullptr;     // [n]
  DType id_dtype = DType::I64;   // I32 or I64
  int64_t n = 0, v = 0, c = 0;
  void* out = nullptr;             // [n, c]
  const void* dy = nullptr;        // [n, c]
  void* dweight = nullptr;         // [v, c]
  unsigned long long* bad = nullptr;  // CUDA forward flag: first bad position, or ~0
};

// weight [V, C] float; ids any shape, i32/i64, same device. Returns [ids..., C].
Tensor embedding_forward(const Tensor& weight, const Tensor& ids);
// dy [ids..., C]. Returns dW [num_embeddings, C] in dy's dtype.
Tensor embedding_backward(const Tensor& dy, const Tensor& ids, int64_t num_embeddings);

void embedding_forward_cpu(const EmbeddingParams& p);
void embedding_backward_cpu(const EmbeddingParams& p);
#if SL_WITH_CUDA
// Launchers: no host synchronisation; the forward resets *bad and the caller checks it.
void embedding_forward_cuda(const EmbeddingParams& p, int device);
void embedding_backward_cuda(const EmbeddingParams& p, int device);
#endif

}  // namespace sl::kernels
