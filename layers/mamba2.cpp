// Mamba2Mixer (layers/mamba2.h): parameters, HF initialisation and the composed forward.
#include "layers/mamba2.h"

#include <cmath>
#include <vector>

namespace sl::layers {

namespace {

// softplus^-1 of dt drawn log-uniformly in [dt_min, dt_max], floored at dt_init_floor.
Tensor init_dt_bias(const Mamba2Config& m, Generator& gen) {
  std::vector<double> u = Tensor::rand({m.n_heads}, gen, DType::F64).to_vector<double>();
  std::vector<float> out(u.size());
  const double lo = std::log(m.dt_min), hi = std::log(m.dt_max);
  for (size_t h = 0; h < u.size(); ++h) {
    double dt = std::max(std::exp(u[h] * (hi - lo) + lo), m.dt_init_floor);
    out[h] = float(dt + std::log(-std::expm1(-dt)));
  }
  return Tensor::from_vector(out, {m.n_heads});
}

}  // namespace

Mamba2Mixer::Mamba2Mixer(const ModelConfig& cfg, Generator& gen)
    : m_(cfg.mamba), norm_eps_(cfg.norm_eps), d_model_(cfg.d_model) {
  const int64_t H = m_.n_heads, G = m_.n_groups, N = m_.state_size, K = m_.conv_kernel;
  SL_CHECK(H > 0 && m_.head_dim > 0 && N > 0 && K >= 1 && G > 0 && H % G == 0)
      << "Mamba2Mixer: need n_heads (" << H << ") a positive multiple of n_groups (" << G
      << "), head_dim (" << m_.head_dim << "), state_size (" << N << "), conv_kernel (" << K
      << ") >= 1";
  SL_CHECK(m_.chunk_size > 0) << "Mamba2Mixer: chunk_size must be positive, got " << m_.chunk_size;
  SL_CHECK(m_.dt_min > 0 && m_.dt_max >= m_.dt_min && m_.dt_limit_min <= m_.dt_limit_max)
      << "Mamba2Mixer: need 0 < dt_min <= dt_max and dt_limit_min <= dt_limit_max";
  inner_ = H * m_.head_dim;
  conv_dim_ = inner_ + 2 * G * N;
  const int64_t proj = inner_ + conv_dim_ + H;
  const DType f32 = DType::F32;
  const Device cpu = Device::cpu();

  std::vector<float> a_log(static_cast<size_t>(H));
  for (int64_t h = 0; h < H; ++h) a_log[size_t(h)] = float(std::log(double(h + 1)));
  dt_bias_ = register_parameter("dt_bias", init_dt_bias(m_, gen));
  A_log_ = register_parameter("A_log", Tensor::from_vector(a_log, {H}));
  D_ = register_parameter("D", Tensor::full({H}, 1.0, f32));
  const double cb = 1.0 / std::sqrt(double(K));
  conv_w_ =
      register_parameter("conv1d.weight", Tensor::rand({conv_dim_, 1, K}, gen, f32, cpu, -cb, cb));
  if (m_.use_conv_bias)
    conv_b_ = register_parameter("conv1d.bias", Tensor::rand({conv_dim_}, gen, f32, cpu, -cb, cb));
  in_w_ = register_parameter("in_proj.weight",
                             Tensor::randn({proj, d_model_}, gen, f32, cpu, 0, cfg.init_std));
  if (m_.use_bias) in_b_ = register_parameter("in_proj.bias", Tensor::zeros({proj}, f32));
  norm_w_ = register_parameter("norm.weight", Tensor::full({inner_}, 1.0, f32));
  out_w_ = register_parameter("out_proj.weight",
                              Tensor::randn({d_model_, inner_}, gen, f32, cpu, 0, cfg.init_std));
  if (m_.use_bias) out_b_ = register_parameter("out_proj.bias", Tensor::zeros({d_model_}, f32));
}

ag::Var Mamba2Mixer::forward(const ag::Var& x, const SequenceInfo& seq) {
  SL_CHECK(x.defined() && x.dim() == 3 && x.size(2) == d_model_)
      << "Mamba2Mixer: x must be [B, T, " << d_model_ << "], got "
      << (x.defined() ? x.value().shape_str() : std::string("undefined"));
  const int64_t B = x.size(0), T = x.size(1);
  Tensor seq_idx;
  if (seq.seq_idx.defined()) {
    SL_CHECK(seq.seq_idx.dim() == 2 && seq.seq_idx.size(0) == B && seq.seq_idx.size(1) == T &&
             seq.seq_idx.dtype() == DType::I32)
        << "Mamba2Mixer: seq_idx must be int32 [" << B << ", " << T << "], got "
        << seq.seq_idx.str();
    seq_idx = seq.seq_idx.to(x.device());
  }
  return mix(x, seq_idx, nullptr);
}

ag::Var Mamba2Mixer::mix(const ag::Var& x, const Tensor& seq_idx, Mamba2State* state) {
  const int64_t B = x.size(0), T = x.size(1);
  const int64_t H = m_.n_heads, P = m_.head_dim, G = m_.n_groups, N = m_.state_size;
  std::vector<ag::Var> zxbcdt = ag::split(ag::linear(x, in_w_, in_b_), {inner_, conv_dim_, H}, 2);
  const ag::Var conv_w = ag::reshape(conv_w_, {conv_dim_, m_.conv_kernel});
  const ag::Var conv_b =
      conv_b_.defined() ? conv_b_ : ag::Var(Tensor::zeros({conv_dim_}, x.dtype(), x.device()));
  const ag::Var conv_init = state && m_.conv_kernel > 1 ? ag::Var(state->conv) : ag::Var();
  ag::Var xbc = ag::causal_conv1d_silu(zxbcdt[1], conv_w, conv_b, conv_init, seq_idx);
  if (state) advance_conv_state(zxbcdt[1].value(), state);
  std::vector<ag::Var> parts = ag::split(xbc, {inner_, G * N, G * N}, 2);
  ag::Var xs = ag::reshape(parts[0], {B, T, H, P});
  ag::Var Bm = ag::reshape(parts[1], {B, T, G, N});
  ag::Var Cm = ag::reshape(parts[2], {B, T, G, N});

  ag::Var dt = ag::softplus(ag::add(zxbcdt[2], dt_bias_));
  if (m_.dt_limit_min > 0)
    dt = ag::add(dt, ag::relu(ag::neg(ag::add_scalar(dt, -m_.dt_limit_min))));
  if (std::isfinite(m_.dt_limit_max))
    dt = ag::sub(dt, ag::relu(ag::add_scalar(dt, -m_.dt_limit_max)));
  const ag::Var A = ag::neg(ag::exp(A_log_));
  ag::SsdScanResult scan = ag::ssd_scan(xs, dt, A, Bm, Cm, D_,
                                        state ? ag::Var(state->ssm) : ag::Var(), seq_idx,
                                        kernels::SsdOptions{m_.chunk_size, false});
  if (state) state->ssm = scan.final_state.value();
  ag::Var y = scan.y;
  y = ag::gated_rmsnorm(ag::reshape(y, {B, T, inner_}), zxbcdt[0], norm_w_, inner_ / G, norm_eps_);
  return ag::linear(y, out_w_, out_b_);
}

}  // namespace sl::layers
