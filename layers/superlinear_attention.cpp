// SuperlinearAttention (layers/superlinear_attention.h): projections, doc_starts, the op call.
#include "layers/superlinear_attention.h"

#include <vector>

#include "layers/attention.h"

namespace sl::layers {

namespace {

// [B, T, H, D] -> [B, H, T, D], the op's layout (the op makes it contiguous).
ag::Var heads_first(const ag::Var& x) {
  return ag::transpose(x, 1, 2);
}

}  // namespace

Tensor doc_starts_from_seq_idx(const Tensor& seq_idx, Device device) {
  if (!seq_idx.defined()) return Tensor();
  SL_CHECK(seq_idx.dim() == 2 && seq_idx.dtype() == DType::I32)
      << "doc_starts_from_seq_idx: seq_idx must be int32 [B, T], got " << seq_idx.str();
  const int64_t B = seq_idx.size(0), T = seq_idx.size(1);
  std::vector<int32_t> seq = seq_idx.to(Device::cpu()).contiguous().to_vector<int32_t>();
  std::vector<int32_t> ds(seq.size());
  for (int64_t b = 0; b < B; ++b) {
    int32_t start = 0;
    for (int64_t t = 0; t < T; ++t) {
      const size_t i = size_t(b * T + t);
      if (t > 0 && seq[i] != seq[i - 1]) start = int32_t(t);
      ds[i] = start;
    }
  }
  return Tensor::from_vector(ds, {B, T}).to(device);
}

SuperlinearAttention::SuperlinearAttention(const ModelConfig& cfg, Generator& gen)
    : a_(cfg.attention), sl_(cfg.superlinear), d_model_(cfg.d_model) {
  SL_CHECK(a_.n_heads > 0 && a_.n_kv_heads > 0 && a_.n_heads % a_.n_kv_heads == 0 &&
           a_.head_dim > 0)
      << "SuperlinearAttention: need n_heads (" << a_.n_heads
      << ") a positive multiple of n_kv_heads (" << a_.n_kv_heads << ") and head_dim ("
      << a_.head_dim << ") > 0";
  SL_CHECK(!a_.rope || a_.head_dim % 2 == 0)
      << "SuperlinearAttention: RoPE needs an even head_dim, got " << a_.head_dim;
  SL_CHECK(a_.sliding_window == 0)
      << "SuperlinearAttention: attention.sliding_window (" << a_.sliding_window
      << ") does not apply; the window is the superlinear config's s";
  const Status st = kernels::validate(sl_, cfg.superlinear_allow_no_coverage);
  SL_CHECK(st.ok()) << "SuperlinearAttention: " << st.message()
                    << " (model setting superlinear_allow_no_coverage)";
  auto proj = [&](const std::string& name, int64_t out, int64_t in, ag::Var* w, ag::Var* b) {
    *w = register_parameter(name + ".weight", Tensor::randn({out, in}, gen, DType::F32,
                                                            Device::cpu(), 0, cfg.init_std));
    if (a_.bias) *b = register_parameter(name + ".bias", Tensor::zeros({out}, DType::F32));
  };
  const int64_t hq = a_.n_heads * a_.head_dim, hkv = a_.n_kv_heads * a_.head_dim;
  proj("q_proj", hq, d_model_, &q_w_, &q_b_);
  proj("qs_proj", hq, d_model_, &qs_w_, &qs_b_);
  proj("k_proj", hkv, d_model_, &k_w_, &k_b_);
  proj("v_proj", hkv, d_model_, &v_w_, &v_b_);
  proj("o_proj", d_model_, hq, &o_w_, &o_b_);
}

void SuperlinearAttention::init_qs_from_q() {
  qs_w_.set_value(q_w_.value().clone());
  qs_w_.zero_grad();
  if (q_b_.defined()) {
    qs_b_.set_value(q_b_.value().clone());
    qs_b_.zero_grad();
  }
}

ag::Var SuperlinearAttention::forward(const ag::Var& x, const SequenceInfo& seq) {
  SL_CHECK(x.defined() && x.dim() == 3 && x.size(2) == d_model_)
      << "SuperlinearAttention: x must be [B, T, " << d_model_ << "], got "
      << (x.defined() ? x.value().shape_str() : std::string("undefined"));
  const int64_t B = x.size(0), T = x.size(1), D = a_.head_dim;
  if (seq.seq_idx.defined()) {
    SL_CHECK(seq.seq_idx.dim() == 2 && seq.seq_idx.size(0) == B && seq.seq_idx.size(1) == T)
        << "SuperlinearAttention: seq_idx must be [" << B << ", " << T << "], got "
        << seq.seq_idx.str();
  }
  ag::Var qa = project_heads(x, q_w_, q_b_, a_.n_heads, D);
  ag::Var qs = project_heads(x, qs_w_, qs_b_, a_.n_heads, D);
  ag::Var k = project_heads(x, k_w_, k_b_, a_.n_kv_heads, D);
  ag::Var v = project_heads(x, v_w_, v_b_, a_.n_kv_heads, D);
  if (a_.rope) {
    kernels::RopeOptions ro;
    ro.theta = a_.rope_theta;
    ro.positions = positions_from_seq_idx(seq.seq_idx, B, T, x.device());
    qa = ag::rope(qa, ro);
    qs = ag::rope(qs, ro);
    k = ag::rope(k, ro);
  }
  ag::Var o =
      ag::superlinear_attention(heads_first(qa), heads_first(qs), heads_first(k), heads_first(v),
                                sl_, doc_starts_from_seq_idx(seq.seq_idx, x.device()), -1,
                                keep_partials_);
  o = ag::reshape(ag::transpose(o, 1, 2), {B, T, a_.n_heads * D});  // [B, T, Hq D]
  return ag::linear(o, o_w_, o_b_);
}

}  // namespace sl::layers
