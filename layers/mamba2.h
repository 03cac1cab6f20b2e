// Mamba2Mixer: the Mamba-2 mixer of Hugging Face's NemotronHMamba2Mixer (the `M` block), composed
// of existing autograd ops, so it runs on the CPU and on CUDA.
//
//   zxbcdt = in_proj(x)                            [B, T, 2 I + 2 G N + H],  I = H P
//   z, xBC, dt = split(zxbcdt, [I, I + 2 G N, H])  (HF's order; no d_mlp part: HF's d_mlp is
//                                                   (proj - 2I - 2GN - H) / 2 = 0 by construction)
//   xBC = silu(causal_conv1d(xBC))                 depthwise, width conv_kernel, document resets
//   x, Bm, Cm = split(xBC, [I, G N, G N])
//   dt = softplus(dt + dt_bias), clamped to [dt_limit_min, dt_limit_max] unless that is (0, inf)
//   y = SSD(x, dt, A = -exp(A_log), Bm, Cm, D)     ag::ssd_scan, chunk_size, seq_idx resets
//   out = out_proj(gated_rmsnorm(y, z))            group size I / G, norm_before_gate = False
//
// Parameters (HF names and shapes, HF's named_parameters order): dt_bias [H], A_log [H], D [H],
// conv1d.weight [I + 2GN, 1, K], conv1d.bias [I + 2GN] (use_conv_bias), in_proj.weight
// [2I + 2GN + H, d_model] (+ in_proj.bias when use_bias), norm.weight [I], out_proj.weight
// [d_model, I] (+ out_proj.bias).
//
// Initialisation (HF's NemotronHPreTrainedModel._init_weights): A_log = log(1 .. H), D = 1,
// dt_bias = softplus^-1(dt) with dt = exp(U[log dt_min, log dt_max]) floored at dt_init_floor,
// in_proj/out_proj weights N(0, init_std) and biases 0, norm.weight 1, conv1d as PyTorch's Conv1d
// default (weight and bias U(-1/sqrt(K), 1/sqrt(K))). HF's optional rescale of out_proj by
// 1/sqrt(n_layers) (rescale_prenorm_residual) is a model-level choice, not done here.
//
// The one non-obvious decision: dt is clamped as the mamba kernels HF calls do (dt_limit =
// time_step_limit; softplus > 0, so (0, inf) clamps nothing), not as HF's slow torch_forward path,
// which clamps from below at time_step_min instead. The clamp is x + relu(lo - x) and
// x - relu(x - hi): an unclamped value passes bit for bit, the gradient is 0 where a bound binds.
#pragma once

#include "autograd/ops.h"
#include "layers/config.h"
#include "layers/module.h"

namespace sl::layers {

// The recurrent state of one Mamba2Mixer after some tokens of each row (inference): what chunked
// prefill and decode carry from one call to the next. One document per row.
struct Mamba2State {
  Tensor conv;         // [B, conv_dim, conv_kernel - 1], the layer's dtype: the last inputs of the
                       // causal conv (xBC before the conv), oldest first; zeros before any token
  Tensor ssm;          // [B, n_heads, head_dim, state_size], f32 (f64 for f64 parameters)
  int64_t length = 0;  // tokens seen
};

class Mamba2Mixer : public Module {
 public:
  Mamba2Mixer(const ModelConfig& cfg, Generator& gen);
  // x [B, T, d_model] -> [B, T, d_model]. seq.seq_idx (if defined) resets the conv and SSD state
  // at every document start; it is moved to x's device if needed.
  ag::Var forward(const ag::Var& x, const SequenceInfo& seq);

  // ---- inference (layers/mamba2_decode.cpp): no autograd graph ----
  // The state before the first token: zeros, `batch` rows, on the parameters' device.
  Mamba2State make_state(int64_t batch) const;
  // x [B, Tc, d_model] (Tc >= 1): the next Tc tokens of each row. Returns rows state.length .. of
  // forward() on the whole sequence (up to rounding) and advances the state past them. Throws
  // sl::Error naming "Mamba2Mixer" when x or the state do not fit.
  Tensor prefill_chunk(const Tensor& x, Mamba2State& state);
  // prefill_chunk with Tc = 1: x [B, 1, d_model] -> [B, 1, d_model].
  Tensor decode_step(const Tensor& x, Mamba2State& state);

  int64_t intermediate_size() const { return inner_; }
  int64_t conv_dim() const { return conv_dim_; }

 private:
  // The mixer on x with seq_idx (checked, on x's device, or undefined); with a state, starts
  // from it and leaves it after x (the training forward passes none).
  ag::Var mix(const ag::Var& x, const Tensor& seq_idx, Mamba2State* state);
  // state->conv := the last conv_kernel - 1 inputs of [state->conv, xbc_in] ([B, T, conv_dim]).
  void advance_conv_state(const Tensor& xbc_in, Mamba2State* state) const;

  Mamba2Config m_;
  double norm_eps_;
  int64_t d_model_, inner_, conv_dim_;
  ag::Var dt_bias_, A_log_, D_, conv_w_, conv_b_, in_w_, in_b_, norm_w_, out_w_, out_b_;
};

}  // namespace sl::layers
