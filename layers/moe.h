// Mixture of experts, Hugging Face NemotronHMoE (n_group = topk_group = 1, no latent projection):
//
//   logits = x Wgᵀ (in f32; f64 for f64 x)                         gate.weight [E, C]
//   s      = sigmoid(logits) or softmax(logits)                     (MoeConfig::score)
//   choice = s + gate.e_score_correction_bias                       selection only, no gradient
//   top-k experts per token by choice (ties: the lower expert index)
//   w      = s at the chosen experts; with norm_topk_prob w /= (sum_k w + 1e-20); w *=
//   routed_scaling y      = sum_k w_k expert_{i_k}(x) (+ shared_experts(x))
//
// Experts and the shared expert are Mlp (relu² for Nemotron-H). Parameter names are the
// checkpoint's: gate.weight, gate.e_score_correction_bias, experts.{e}.up_proj.weight,
// experts.{e}.down_proj.weight, shared_experts.up_proj.weight, shared_experts.down_proj.weight.
// (HF keeps the correction bias as a buffer; here it is a parameter so that checkpoints load by
// name, but nothing differentiates through it: its grad stays undefined, and an optimizer must
// skip parameters without a gradient — as it must for experts that received no token.)
//
// Note [MoE dispatch]
// The top-k selection runs on the host: the scores [N, E] are copied back once per call (the
// per-expert token counts must be known on the host anyway, to size each expert's matmuls). The
// N*K (token, choice) pairs are sorted by expert (counting sort; tokens ascending within an
// expert) and uploaded as two index vectors; then, on x's device, ag::gather collects the tokens
// of all experts into one [N*K, C] tensor, each expert's Mlp runs on its contiguous slice only,
// the outputs are concatenated, multiplied by their gate weights (gathered from w by choice
// position), and ag::scatter_add sums them back per token — in the gate weight's dtype (f32),
// deterministically (kernels/shape_ops.h), then cast to x's dtype as HF does.
// forward_dense() is the reference: every expert on every token, weighted by the dense [N, E]
// gate matrix that is zero off the selection.
//
// Note [load-balancing loss]
// Switch-Transformer style, over all N tokens of the call: aux = E * sum_e f_e * P_e, where
// f_e = (number of top-k choices of expert e) / (N K) (a constant, no gradient) and P_e is the
// mean over tokens of the normalised router probability of e (softmax: s; sigmoid: s / sum_e s).
// It is 1 when routing is perfectly uniform. The caller scales it by aux_loss_coef.
#pragma once

#include <cstdint>
#include <vector>

#include "layers/config.h"
#include "layers/mlp.h"

namespace sl::layers {

// Parameters "weight" [E, C] (normal(0, init_std)) and "e_score_correction_bias" [E] (zeros).
class TopkRouter : public Module {
 public:
  TopkRouter(int64_t d_model, int64_t n_experts, double init_std, Generator& gen);
  ag::Var weight() const { return weight_; }
  ag::Var e_score_correction_bias() const { return bias_; }

 private:
  ag::Var weight_, bias_;
};

// The routing of N tokens.
struct MoeRouting {
  Tensor topk_index;             // [N, K] i64 on x's device
  std::vector<int64_t> choices;  // the same, on the host, row-major
  std::vector<int64_t> counts;   // [E] number of choices of each expert
  ag::Var topk_weight;           // [N, K] gate weights (f32; f64 for f64 x), differentiable
  ag::Var probs;                 // [N, E] normalised router probabilities (for the aux loss)
};

class Moe : public Module {
 public:
  // Checks cfg.moe (sizes positive, 1 <= top_k <= n_routed_experts, n_shared_experts 0 or 1,
  // score "softmax"/"sigmoid"); throws sl::Error naming the field.
  Moe(const ModelConfig& cfg, Generator& gen);

  // x [..., C] -> [..., C], dispatched per expert (Note [MoE dispatch]). Sets aux_loss().
  ag::Var forward(const ag::Var& x, const SequenceInfo& info = {});
  // The dense reference: same result, every expert on every token. Sets aux_loss().
  ag::Var forward_dense(const ag::Var& x);
  // Router on x2d [N, C].
  MoeRouting route(const ag::Var& x2d) const;

  // Load-balancing loss of the last forward (Note [load-balancing loss]); a scalar Var.
  const ag::Var& aux_loss() const { return aux_; }
  // Choices per expert in the last forward.
  const std::vector<int64_t>& last_counts() const { return counts_; }

  const MoeConfig& config() const { return cfg_; }
  TopkRouter& gate() const { return *gate_; }
  Mlp& expert(int64_t e) const { return (*experts_)[e]; }
  Mlp* shared_expert() const { return shared_; }  // null when n_shared_experts == 0

 private:
  ag::Var flatten(const ag::Var& x) const;
  ag::Var finish(const ag::Var& routed, const ag::Var& x2d, const ag::Var& x);
  void set_aux(const MoeRouting& r);

  MoeConfig cfg_;
  int64_t d_model_;
  ModuleList<Mlp>* experts_ = nullptr;
  TopkRouter* gate_ = nullptr;
  Mlp* shared_ = nullptr;
  ag::Var aux_;
  std::vector<int64_t> counts_;
};

}  // namespace sl::layers
