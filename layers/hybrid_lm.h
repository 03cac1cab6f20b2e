// HybridLM: the Nemotron-H causal language model (Hugging Face NemotronHForCausalLM), with
// superlinear attention as one more block kind.
//
//   h = embeddings(ids)                                       backbone.embeddings.weight [V, C]
//   for each letter of cfg.pattern (M Mamba-2, * attention, S superlinear attention, - MLP,
//   E mixture of experts):  h = h + mixer(norm(h))           backbone.layers.{i}.norm.weight,
//                                                             backbone.layers.{i}.mixer.*
//   logits = lm_head(norm_f(h))                               backbone.norm_f.weight,
//                                                             lm_head.weight [V, C] (untied)
//
// Names are those of the released checkpoints ("backbone." prefix, experts.{e}.*; see
// layers/moe.h), so a safetensors file maps onto named_parameters() one to one. With
// tie_embeddings the head reuses backbone.embeddings.weight and lm_head.weight does not exist.
//
// Note [residual in fp32]
// As NVIDIA's NemotronHBlock: with residual_in_fp32 the residual stream is kept in f32 whatever
// the parameter dtype: the block's norm reads it cast to the parameter dtype
// (norm(h.to(norm.weight.dtype))), the mixer runs in the parameter dtype, and the sum
// residual + mixer output is f32. norm_f reads it the same way. Without it (or for f64
// parameters) the stream has the parameter dtype.
//
// Initialisation: Linear and Embedding weights normal(0, init_std), biases zeros, norm weights
// ones (layers/linear.h); the MoE router as a Linear, its correction bias zeros; Mamba-2's own
// parameters as layers/mamba2.h documents. HF's optional rescale_prenorm_residual is not applied.
// Everything is drawn from the Generator in parameter order, in f32 on the CPU; call to() after.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "layers/config.h"
#include "layers/linear.h"
#include "layers/moe.h"

namespace sl::layers {

class SuperlinearAttention;

// One pre-norm residual block: parameters norm.weight and mixer.*.
class HybridBlock : public Module {
 public:
  HybridBlock(const ModelConfig& cfg, char kind, Generator& gen);
  // h [B, T, C] -> h + mixer(norm(h)) (Note [residual in fp32]).
  ag::Var forward(const ag::Var& h, const SequenceInfo& seq);

  char kind() const { return kind_; }
  const char* mixer_name() const;    // "Mamba2Mixer", "Attention", ...
  Moe* moe() const { return moe_; }  // non-null for 'E' blocks
  SuperlinearAttention* superlinear() const { return superlinear_; }  // non-null for 'S' blocks
  // On: forward keeps only h and recomputes the block in the backward pass (ag::checkpoint).
  void set_recompute(bool on) { recompute_ = on; }
  // The MoE load-balancing loss of the last forward, in the graph ('E' blocks; else undefined).
  ag::Var aux_loss() const;

 private:
  char kind_;
  bool recompute_ = false;
  bool aux_in_loss_ = false;  // cfg.moe.aux_loss_coef > 0: aux_loss() needs its gradient
  ag::Var aux_;               // aux_loss() when recomputed
  RMSNorm* norm_ = nullptr;
  Moe* moe_ = nullptr;
  SuperlinearAttention* superlinear_ = nullptr;
  std::function<ag::Var(const ag::Var&, const SequenceInfo&)> mixer_;
};

// Hugging Face NemotronHModel: embeddings, layers, norm_f.
class HybridBackbone : public Module {
 public:
  HybridBackbone(const ModelConfig& cfg, Generator& gen);
  // ids [B, T] i32/i64 -> final hidden states norm_f(h) [B, T, C] in the parameter dtype.
  ag::Var forward(const Tensor& ids, const SequenceInfo& seq);

  Embedding& embeddings() const { return *embeddings_; }
  HybridBlock& layer(int64_t i) const { return (*layers_)[i]; }
  int64_t num_layers() const { return layers_->size(); }

 private:
  bool residual_in_fp32_;
  Embedding* embeddings_ = nullptr;
  ModuleList<HybridBlock>* layers_ = nullptr;
  RMSNorm* norm_f_ = nullptr;
};

struct LmLoss {
  ag::Var total;  // ce + aux_loss_coef * aux: the scalar to call backward() on
  ag::Var ce;     // mean cross-entropy over the targets that are not ignore_index
  ag::Var aux;    // sum over the MoE blocks of their load-balancing loss; undefined without 'E'
};

class HybridLM : public Module {
 public:
  // Validates cfg (validate_model_config; an invalid config is an sl::Error with its message).
  HybridLM(const ModelConfig& cfg, Generator& gen);

  // ids [B, T] (i32/i64, on the parameters' device) -> logits [B, T, V] in the parameter dtype.
  // seq.seq_idx, when defined, marks packed documents (layers/module.h).
  ag::Var forward(const Tensor& ids, const SequenceInfo& seq = {});
  // Cross-entropy of the logits of ids against targets [B, T] (ignore_index skipped), plus the
  // MoE load-balancing loss times cfg.moe.aux_loss_coef (layers/moe.h, Note [load-balancing
  // loss]), the parts reported separately.
  LmLoss loss(const Tensor& ids, const Tensor& targets, const SequenceInfo& seq = {},
              int64_t ignore_index = -100);

  // One line for the model, one per block with its parameter count, and the total.
  std::string summary() const;

  const ModelConfig& config() const { return cfg_; }
  HybridBackbone& backbone() const { return *backbone_; }
  // Blocks whose letter is in `kinds` (e.g. "M*S"; "" none) recompute their activations in the
  // backward pass; the trainer's `recompute:` key (layers/recompute.h).
  void set_recompute(const std::string& kinds);
  // Every 'S' block keeps its window and span outputs for the backward (on) or has it recompute
  // them (off, the default): SuperlinearAttention::set_keep_partials; the trainer's
  // superlinear_keep_partials key.
  void set_superlinear_keep_partials(bool on);
  // The LM head weight [V, C]: lm_head.weight, or the embedding weight when tied.
  ag::Var lm_head_weight() const;

 private:
  ModelConfig cfg_;
  HybridBackbone* backbone_ = nullptr;
  Linear* lm_head_ = nullptr;
};

}  // namespace sl::layers
