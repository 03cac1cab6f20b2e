// Flash attention: softmax(Q K^T / sqrt(D)) V without the T x T matrix, forward and backward,
// as attention of each query over a *key range*.
//
// Tensors (D contiguous; other strides free, so [B, T, H, D] projections need no transpose):
//   q [B, Lq, Hq, D], k and v [B, Lk, Hkv, D], Hkv dividing Hq (query head h reads KV head
//   h / (Hq / Hkv)); out [B, Lq, Hq, D]; lse [B, Hq, Lq] f32 (natural log of the softmax
//   denominator, including the 1/sqrt(D) scale), the statistic the backward needs.
//
// Note [key ranges]
// Query row i sits at absolute position t = q_offset + i (a chunk of queries against a longer
// key range: chunked prefill, context parallelism; q_offset = Lk - Lq for the last chunk).
// It attends keys u with
//     lo(t) <= u <= hi(t),   hi(t) = t (causal) or Lk - 1,
//     lo(t) = max(doc_start[b, t], t - sliding_window + 1 when sliding_window > 0, 0),
// where doc_start [B, Lk] int32 (optional) is the first position of the packed document holding
// position t (non-decreasing in t). Every query sees at least itself, so no row is empty.
// The kernels walk, for a block of queries, only the key blocks of [lo(first row), hi(last row)]
// and mask element-wise only in blocks that straddle some row's bounds; the superlinear span
// kernels reuse the same range machinery with per-(query, span) bounds.
//
// GPU: bf16 and f16, D in {64, 128}, tensor-core products (mma.sync m16n8k16, fp32
// accumulation, online softmax in fp32). The backward is deterministic (no atomics): one kernel
// per key block accumulates dK, dV over the queries of all heads of its KV group, another per
// query block accumulates dQ. CPU: the plain O(Lq Lk D) reference in fp32 (fp64 for f64).
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace sl::kernels {

struct AttentionOptions {
  bool causal = true;
  int64_t sliding_window = 0;  // > 0: t - u < sliding_window
  int64_t q_offset = 0;        // absolute position of query row 0
  Tensor doc_start;            // [B, Lk] int32 on the inputs' device, or undefined
};

struct AttentionOutput {
  Tensor out;  // [B, Lq, Hq, D], q's dtype
  Tensor lse;  // [B, Hq, Lq] f32
};

struct AttentionGrads {
  Tensor dq, dk, dv;  // contiguous, shapes and dtypes of q, k, v
};

// True when attention_forward / attention_backward run the fused GPU kernels for these inputs
// (CUDA device, bf16/f16, D 64 or 128); otherwise only the CPU reference exists.
bool flash_attention_supported(const Tensor& q);

AttentionOutput attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                  const AttentionOptions& opt = {});

// dout [B, Lq, Hq, D]; out and lse from attention_forward.
AttentionGrads attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                                  const Tensor& out, const Tensor& lse, const Tensor& dout,
                                  const AttentionOptions& opt = {});

// doc_start from a packed row's document ids: seq_idx [B, T] int32 (any device) ->
// [B, T] int32 on the same device, doc_start[b, t] = the first t' <= t with
// seq_idx[b, t'..t] constant.
Tensor doc_start_from_seq_idx(const Tensor& seq_idx);

// The kernels' parameters, filled and checked in one place (kernels/attention.cpp). Strides in
// elements; the D dimension is contiguous. Backward-only fields are null in the forward.
struct AttentionParams {
  DType dtype = DType::F32;
  int64_t B = 0, Lq = 0, Lk = 0, Hq = 0, Hkv = 0, D = 0;
  bool causal = true;
  int64_t window = 0, q_offset = 0;
  float scale = 1;  // 1 / sqrt(D)
  const void *q = nullptr, *k = nullptr, *v = nullptr;
  int64_t q_sb = 0, q_st = 0, q_sh = 0;  // q strides (batch, time, head)
  int64_t k_sb = 0, k_st = 0, k_sh = 0;  // k and v share strides (checked)
  const int32_t* doc_start = nullptr;    // [B, Lk] contiguous, or null
  void* out = nullptr;                   // [B, Lq, Hq, D] contiguous
  float* lse = nullptr;                  // [B, Hq, Lq]
  const void* dout = nullptr;            // backward: [B, Lq, Hq, D] contiguous, as out
  float* delta = nullptr;                // backward scratch: [B, Hq, Lq] rowsum(dout * out)
  bool delta_given = false;              // backward: delta already holds the row terms, out unused
  void *dq = nullptr, *dk = nullptr, *dv = nullptr;  // contiguous like q, k, v
};

void attention_forward_cpu(const AttentionParams& p);
void attention_backward_cpu(const AttentionParams& p);
void attention_forward_cuda(const AttentionParams& p, int device);
void attention_backward_cuda(const AttentionParams& p, int device);
void doc_start_cuda(const int32_t* seq_idx, int32_t* doc_start, int64_t B, int64_t T, int device);

}  // namespace sl::kernels
