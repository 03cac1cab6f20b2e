// Attention: the `*` block, Hugging Face's NemotronHAttention (q_proj, k_proj, v_proj, o_proj),
// causal, grouped-query (query head h reads KV head h / (Hq / Hkv)), scale 1/sqrt(D), optional
// RoPE (off in Nemotron-H), optional sliding window, and no attention across documents of a
// packed row (seq_idx).
//
// The one non-obvious decision: the attention itself is one function, attention_core. On a GPU
// with bf16/f16 and head dim 64 or 128 it is the fused flash-attention kernel
// (kernels/attention.h, autograd/ops_attention.h); otherwise (CPU, f32, f64: tests and small
// runs) an O(T^2) composition of batched matmul, an additive mask and softmax, the reference the
// kernel is tested against. GQA is done without repeating K and V: the r = Hq / Hkv query heads
// of a group are stacked along time, so a group is one batched matmul [r T, D] x [D, T].
#pragma once

#include "autograd/ops.h"
#include "layers/config.h"
#include "layers/kv_cache.h"
#include "layers/module.h"

namespace sl::layers {

// Which keys a query sees: u <= t (causal), t - u < sliding_window when sliding_window > 0 (the
// window holds the query itself and the W - 1 keys before it, as HF's sliding_window), and
// seq_idx[b, u] == seq_idx[b, t] when seq_idx ([B, T] int32, any device) is defined.
struct AttentionMaskInfo {
  Tensor seq_idx;
  int64_t sliding_window = 0;
};

// q [B, T, Hq, D], k and v [B, T, Hkv, D] (Hq a multiple of Hkv; one dtype and device) ->
// [B, T, Hq, D]: softmax over the visible keys of <q, k> / sqrt(D), times v. Every query sees at
// least itself, so no row is empty.
ag::Var attention_core(const ag::Var& q, const ag::Var& k, const ag::Var& v,
                       const AttentionMaskInfo& mask);

// The additive mask of attention_core: [B, 1, 1, T, T] ([1, 1, 1, T, T] without seq_idx) of
// `dtype` on `device`, 0 where key u is visible to query t and -inf elsewhere.
Tensor attention_mask(const AttentionMaskInfo& mask, int64_t B, int64_t T, DType dtype,
                      Device device);

// RoPE positions [B, T] int32 on `device`: t, or t minus its document start when seq_idx is
// defined (each packed document starts at position 0).
Tensor positions_from_seq_idx(const Tensor& seq_idx, int64_t B, int64_t T, Device device);

// x [B, T, d_model] through the projection (w, b; b may be undefined) into heads:
// [B, T, n_heads, head_dim]. Shared by the attention layers' forward and cached paths.
ag::Var project_heads(const ag::Var& x, const ag::Var& w, const ag::Var& b, int64_t n_heads,
                      int64_t head_dim);

class Attention : public Module {
 public:
  Attention(const ModelConfig& cfg, Generator& gen);
  // x [B, T, d_model] -> [B, T, d_model].
  ag::Var forward(const ag::Var& x, const SequenceInfo& seq);

  // ---- inference (layers/attention_decode.cpp): no autograd graph, one document per row ----
  // An empty time-first cache for this layer (KvLayout::kTimeFirst) with `batch` rows, on the
  // parameters' device and dtype.
  KvCache make_cache(int64_t batch, int64_t capacity = 0) const;
  // x [B, Tc, d_model] (Tc >= 1) at positions cache.length() .. + Tc - 1: appends their keys and
  // values and returns rows cache.length() .. of forward() on the whole sequence, up to rounding
  // (kernels::attention_forward with q_offset: the CPU reference for any float dtype, on CUDA the
  // flash kernel, which needs bf16/f16 and head_dim 64 or 128; other CUDA cases throw).
  // Throws sl::Error naming "Attention" when x or the cache do not fit.
  Tensor prefill_chunk(const Tensor& x, KvCache& cache);
  // prefill_chunk with Tc = 1: x [B, 1, d_model] -> [B, 1, d_model].
  Tensor decode_step(const Tensor& x, KvCache& cache);

 private:
  AttentionConfig a_;
  int64_t d_model_;
  ag::Var q_w_, q_b_, k_w_, k_b_, v_w_, v_b_, o_w_, o_b_;
};

}  // namespace sl::layers
