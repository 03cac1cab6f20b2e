// SuperlinearAttention: the `S` block (spec §2, §15). The projections of an attention layer
// (q_proj = Qa, k_proj, v_proj, o_proj; HF names) plus a search-query projection qs_proj (Qs),
// around ag::superlinear_attention with the model's superlinear config. GQA as in Attention;
// RoPE, when cfg.attention.rope is on, rotates Qa, Qs and K alike; packed documents reach the op
// as doc_starts derived from seq_idx.
//
// The one non-obvious decision: the config is validated (kernels::validate) when the layer is
// built, so a setting that breaks coverage (spec §10) fails at model construction with the reason,
// not mid-training; cfg.superlinear_allow_no_coverage lets it through deliberately.
#pragma once

#include "autograd/ops.h"
#include "layers/config.h"
#include "layers/kv_cache.h"
#include "layers/module.h"

namespace sl::layers {

// seq_idx [B, T] int32 (document id per position, any device) -> doc_starts [B, T] int32 on
// `device`: the first position of each position's document (a new document starts wherever the
// id changes). Undefined seq_idx gives an undefined tensor (one document per row).
Tensor doc_starts_from_seq_idx(const Tensor& seq_idx, Device device);

class SuperlinearAttention : public Module {
 public:
  // Throws sl::Error naming "SuperlinearAttention" and the reason when kernels::validate rejects
  // cfg.superlinear (coverage is not checked when cfg.superlinear_allow_no_coverage).
  SuperlinearAttention(const ModelConfig& cfg, Generator& gen);
  // x [B, T, d_model] -> [B, T, d_model].
  ag::Var forward(const ag::Var& x, const SequenceInfo& seq);
  // Qs := Qa (weights and bias copied): converting a pretrained dense-attention layer (spec §15).
  void init_qs_from_q();

  // ---- inference (layers/attention_decode.cpp): no autograd graph, one document per row ----
  // An empty heads-first cache for this layer (KvLayout::kHeadsFirst) with `batch` rows, on the
  // parameters' device and dtype.
  KvCache make_cache(int64_t batch, int64_t capacity = 0) const;
  // x [B, Tc, d_model] (Tc >= 1): the tokens at positions cache.length() .. + Tc - 1 of each row.
  // Appends their keys and values (RoPE at those absolute positions) to the cache and returns
  // [B, Tc, d_model]: rows cache.length() .. of forward() on the whole sequence (spec §12), up to
  // rounding. Throws sl::Error naming "SuperlinearAttention" when x or the cache do not fit.
  Tensor prefill_chunk(const Tensor& x, KvCache& cache);
  // prefill_chunk with Tc = 1: x [B, 1, d_model] -> [B, 1, d_model].
  Tensor decode_step(const Tensor& x, KvCache& cache);

  const kernels::SuperlinearConfig& superlinear_config() const { return sl_; }
  // On: forward() keeps the window and span outputs for the backward instead of having it
  // recompute them (Note [kept partials] in kernels/superlinear.h; the trainer's
  // superlinear_keep_partials key). Off by default.
  void set_keep_partials(bool on) { keep_partials_ = on; }
  bool keep_partials() const { return keep_partials_; }

 private:
  AttentionConfig a_;
  kernels::SuperlinearConfig sl_;
  bool keep_partials_ = false;
  int64_t d_model_;
  ag::Var q_w_, q_b_, qs_w_, qs_b_, k_w_, k_b_, v_w_, v_b_, o_w_, o_b_;
};

}  // namespace sl::layers
