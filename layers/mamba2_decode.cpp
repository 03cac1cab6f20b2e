// Chunked prefill and decode of the Mamba-2 mixer (layers/mamba2.h): the forward's own pipeline
// (Mamba2Mixer::mix) started from a carried state, the conv's last inputs and the SSD state.
//
// The one non-obvious decision: a decode step is the forward on one token with init states
// rather than a separate hand-written recurrence, so the two can never disagree on the model
// (dt clamp, D skip, gated norm); the SSD and conv kernels already take an init_state and return
// what follows a chunk, which is exactly the recurrent step.
#include <string>

#include "layers/mamba2.h"

namespace sl::layers {

Mamba2State Mamba2Mixer::make_state(int64_t batch) const {
  SL_CHECK(batch > 0) << "Mamba2Mixer.make_state: batch must be >= 1, got " << batch;
  const DType dt = in_w_.dtype(), sdt = dt == DType::F64 ? DType::F64 : DType::F32;
  Mamba2State s;
  s.conv = Tensor::zeros({batch, conv_dim_, m_.conv_kernel - 1}, dt, in_w_.device());
  s.ssm = Tensor::zeros({batch, m_.n_heads, m_.head_dim, m_.state_size}, sdt, in_w_.device());
  return s;
}

void Mamba2Mixer::advance_conv_state(const Tensor& xbc_in, Mamba2State* state) const {
  const int64_t B = xbc_in.size(0), T = xbc_in.size(1), K1 = m_.conv_kernel - 1;
  if (K1 == 0) return;
  Tensor all = Tensor::empty({B, conv_dim_, K1 + T}, state->conv.dtype(), state->conv.device());
  all.slice(2, 0, K1).copy_(state->conv);
  all.slice(2, K1, K1 + T).copy_(xbc_in.transpose(1, 2));
  state->conv = all.slice(2, T, T + K1).contiguous();
}

Tensor Mamba2Mixer::prefill_chunk(const Tensor& x, Mamba2State& state) {
  const std::string who = "Mamba2Mixer.prefill_chunk";
  SL_CHECK(x.defined() && x.dim() == 3 && x.size(1) >= 1 && x.size(2) == d_model_ &&
           x.dtype() == in_w_.dtype() && x.device() == in_w_.device())
      << who << ": x must be " << dtype_name(in_w_.dtype()) << "[B, Tc >= 1, " << d_model_
      << "] on " << in_w_.device().str() << ", got "
      << (x.defined() ? x.str() : std::string("undefined"));
  const int64_t B = x.size(0);
  const Mamba2State want = make_state(B);
  SL_CHECK(state.conv.defined() && state.ssm.defined() && state.conv.shape() == want.conv.shape() &&
           state.ssm.shape() == want.ssm.shape() && state.conv.dtype() == want.conv.dtype() &&
           state.ssm.dtype() == want.ssm.dtype() && state.conv.device() == want.conv.device() &&
           state.ssm.device() == want.ssm.device())
      << who << ": the state does not fit this layer (make it with make_state): need conv "
      << want.conv.str() << " and ssm " << want.ssm.str() << ", got conv "
      << (state.conv.defined() ? state.conv.str() : std::string("undefined")) << " and ssm "
      << (state.ssm.defined() ? state.ssm.str() : std::string("undefined"));
  ag::NoGradGuard no_grad;
  const Tensor y = mix(ag::Var(x), Tensor(), &state).value();
  state.length += x.size(1);
  return y;
}

Tensor Mamba2Mixer::decode_step(const Tensor& x, Mamba2State& state) {
  SL_CHECK(x.defined() && x.dim() == 3 && x.size(1) == 1)
      << "Mamba2Mixer.decode_step: x must be [B, 1, d_model] (one token per row), got "
      << (x.defined() ? x.str() : std::string("undefined"));
  return prefill_chunk(x, state);
}

}  // namespace sl::layers
