// Attention (layers/attention.h): the masked O(T^2) reference core and the HF projections.
#include "layers/attention.h"

#include <cmath>
#include <limits>
#include <vector>

namespace sl::layers {

namespace {

std::vector<int32_t> host_seq_idx(const Tensor& seq_idx, int64_t B, int64_t T, const char* op) {
  SL_CHECK(seq_idx.dim() == 2 && seq_idx.size(0) == B && seq_idx.size(1) == T &&
           seq_idx.dtype() == DType::I32)
      << op << ": seq_idx must be int32 [" << B << ", " << T << "], got " << seq_idx.str();
  return seq_idx.to(Device::cpu()).contiguous().to_vector<int32_t>();
}

// [B, T, H, D] -> [B, H, T, D] (contiguous), the layout of the batched matmuls.
ag::Var heads_first(const ag::Var& x) {
  return ag::reshape(ag::transpose(x, 1, 2), {x.size(0), x.size(2), x.size(1), x.size(3)});
}

}  // namespace

Tensor attention_mask(const AttentionMaskInfo& mask, int64_t B, int64_t T, DType dtype,
                      Device device) {
  std::vector<int32_t> seq;
  if (mask.seq_idx.defined()) seq = host_seq_idx(mask.seq_idx, B, T, "attention_core");
  const int64_t rows = seq.empty() ? 1 : B;  // without documents every row has the same mask
  std::vector<float> m(size_t(rows * T * T), -std::numeric_limits<float>::infinity());
  for (int64_t b = 0; b < rows; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t u = 0; u <= t; ++u) {
        if (mask.sliding_window > 0 && t - u >= mask.sliding_window) continue;
        if (!seq.empty() && seq[size_t(b * T + u)] != seq[size_t(b * T + t)]) continue;
        m[size_t((b * T + t) * T + u)] = 0;
      }
  return Tensor::from_vector(m, {rows, 1, 1, T, T}).to(dtype).to(device);
}

ag::Var project_heads(const ag::Var& x, const ag::Var& w, const ag::Var& b, int64_t n_heads,
                      int64_t head_dim) {
  return ag::reshape(ag::linear(x, w, b), {x.size(0), x.size(1), n_heads, head_dim});
}

Tensor positions_from_seq_idx(const Tensor& seq_idx, int64_t B, int64_t T, Device device) {
  std::vector<int32_t> pos(size_t(B * T));
  std::vector<int32_t> seq;
  if (seq_idx.defined()) seq = host_seq_idx(seq_idx, B, T, "positions_from_seq_idx");
  for (int64_t b = 0; b < B; ++b) {
    int64_t start = 0;
    for (int64_t t = 0; t < T; ++t) {
      if (!seq.empty() && t > 0 && seq[size_t(b * T + t)] != seq[size_t(b * T + t - 1)]) start = t;
      pos[size_t(b * T + t)] = int32_t(t - start);
    }
  }
  return Tensor::from_vector(pos, {B, T}).to(device);
}

ag::Var attention_core(const ag::Var& q, const ag::Var& k, const ag::Var& v,
                       const AttentionMaskInfo& mask) {
  SL_CHECK(q.defined() && k.defined() && v.defined() && q.dim() == 4 && k.dim() == 4 &&
           k.shape() == v.shape() && k.size(0) == q.size(0) && k.size(1) == q.size(1) &&
           k.size(3) == q.size(3) && k.size(2) > 0 && q.size(2) % k.size(2) == 0)
      << "attention_core: need q [B, T, Hq, D], k and v [B, T, Hkv, D] with Hkv dividing Hq, got q "
      << (q.defined() ? q.value().shape_str() : "undefined") << ", k "
      << (k.defined() ? k.value().shape_str() : "undefined") << ", v "
      << (v.defined() ? v.value().shape_str() : "undefined");
  if (kernels::flash_attention_supported(q.value())) {
    kernels::AttentionOptions opt;
    opt.sliding_window = mask.sliding_window;
    if (mask.seq_idx.defined())
      opt.doc_start = kernels::doc_start_from_seq_idx(mask.seq_idx.to(q.device()));
    return ag::flash_attention(q, k, v, opt);
  }
  const int64_t B = q.size(0), T = q.size(1), Hq = q.size(2), D = q.size(3), Hkv = k.size(2);
  const int64_t r = Hq / Hkv;
  // Query head h = g r + j reads KV head g: stack the r heads of group g along time.
  ag::Var qg = ag::reshape(q, {B, T, Hkv, r, D});
  qg = ag::reshape(ag::transpose(ag::transpose(qg, 1, 2), 2, 3), {B * Hkv, r * T, D});
  const ag::Var kg = ag::reshape(heads_first(k), {B * Hkv, T, D});
  const ag::Var vg = ag::reshape(heads_first(v), {B * Hkv, T, D});
  ag::Var s = ag::scale(ag::matmul(qg, kg, false, true), 1.0 / std::sqrt(double(D)));
  s = ag::add(ag::reshape(s, {B, Hkv, r, T, T}),
              ag::Var(attention_mask(mask, B, T, q.dtype(), q.device())));
  ag::Var p = ag::reshape(ag::softmax(s), {B * Hkv, r * T, T});
  ag::Var o = ag::reshape(ag::matmul(p, vg), {B, Hkv, r, T, D});
  o = ag::transpose(ag::transpose(o, 2, 3), 1, 2);  // [B, T, Hkv, r, D]
  return ag::reshape(o, {B, T, Hq, D});
}

Attention::Attention(const ModelConfig& cfg, Generator& gen)
    : a_(cfg.attention), d_model_(cfg.d_model) {
  SL_CHECK(a_.n_heads > 0 && a_.n_kv_heads > 0 && a_.n_heads % a_.n_kv_heads == 0 &&
           a_.head_dim > 0 && a_.sliding_window >= 0)
      << "Attention: need n_heads (" << a_.n_heads << ") a positive multiple of n_kv_heads ("
      << a_.n_kv_heads << "), head_dim (" << a_.head_dim << ") > 0, sliding_window ("
      << a_.sliding_window << ") >= 0";
  SL_CHECK(!a_.rope || a_.head_dim % 2 == 0)
      << "Attention: RoPE needs an even head_dim, got " << a_.head_dim;
  auto proj = [&](const std::string& name, int64_t out, int64_t in, ag::Var* w, ag::Var* b) {
    *w = register_parameter(name + ".weight", Tensor::randn({out, in}, gen, DType::F32,
                                                            Device::cpu(), 0, cfg.init_std));
    if (a_.bias) *b = register_parameter(name + ".bias", Tensor::zeros({out}, DType::F32));
  };
  const int64_t hq = a_.n_heads * a_.head_dim, hkv = a_.n_kv_heads * a_.head_dim;
  proj("q_proj", hq, d_model_, &q_w_, &q_b_);
  proj("k_proj", hkv, d_model_, &k_w_, &k_b_);
  proj("v_proj", hkv, d_model_, &v_w_, &v_b_);
  proj("o_proj", d_model_, hq, &o_w_, &o_b_);
}

ag::Var Attention::forward(const ag::Var& x, const SequenceInfo& seq) {
  SL_CHECK(x.defined() && x.dim() == 3 && x.size(2) == d_model_)
      << "Attention: x must be [B, T, " << d_model_ << "], got "
      << (x.defined() ? x.value().shape_str() : std::string("undefined"));
  const int64_t B = x.size(0), T = x.size(1), D = a_.head_dim;
  ag::Var q = project_heads(x, q_w_, q_b_, a_.n_heads, D);
  ag::Var k = project_heads(x, k_w_, k_b_, a_.n_kv_heads, D);
  ag::Var v = project_heads(x, v_w_, v_b_, a_.n_kv_heads, D);
  if (a_.rope) {
    kernels::RopeOptions ro;
    ro.theta = a_.rope_theta;
    ro.positions = positions_from_seq_idx(seq.seq_idx, B, T, x.device());
    q = ag::rope(q, ro);
    k = ag::rope(k, ro);
  }
  ag::Var o = attention_core(q, k, v, AttentionMaskInfo{seq.seq_idx, a_.sliding_window});
  return ag::linear(ag::reshape(o, {B, T, a_.n_heads * D}), o_w_, o_b_);
}

}  // namespace sl::layers
