// Chunked prefill and decode of the attention layers against a KvCache (spec §12): the layers'
// projections (and RoPE at absolute positions) on the new tokens only, their keys and values
// appended to the cache, then the attention op with the chunk's queries placed at q_start /
// q_offset = the cache's old length.
//
// The one non-obvious decision: the forward's own ops are reused (ag::linear, ag::rope under
// NoGradGuard, the same kernels), so a chunk's rows are computed by the same arithmetic as the
// full forward's and differ from it only where a kernel's summation order depends on the number
// of rows (Eigen's GEMM, and the dense layer's CPU core: the composite O(T^2) path in forward(),
// the flash reference here).
#include <string>

#include "kernels/attention.h"
#include "kernels/superlinear.h"
#include "layers/attention.h"
#include "layers/superlinear_attention.h"

namespace sl::layers {

namespace {

// x must be [B, Tc, d_model], Tc >= 1, on the parameters' device and dtype.
void check_chunk(const std::string& who, const Tensor& x, int64_t d_model, const ag::Var& w) {
  SL_CHECK(x.defined() && x.dim() == 3 && x.size(1) >= 1 && x.size(2) == d_model &&
           x.dtype() == w.dtype() && x.device() == w.device())
      << who << ": x must be " << dtype_name(w.dtype()) << "[B, Tc >= 1, " << d_model << "] on "
      << w.device().str() << ", got " << (x.defined() ? x.str() : std::string("undefined"));
}

void check_step(const std::string& who, const Tensor& x) {
  SL_CHECK(x.defined() && x.dim() == 3 && x.size(1) == 1)
      << who << ": x must be [B, 1, d_model] (one token per row), got "
      << (x.defined() ? x.str() : std::string("undefined"));
}

// [B, T, H, D] -> [B, H, T, D] (a view).
Tensor heads_first(const ag::Var& x) {
  return x.value().transpose(1, 2);
}

kernels::RopeOptions rope_at(const AttentionConfig& a, int64_t start) {
  kernels::RopeOptions ro;
  ro.theta = a.rope_theta;
  ro.start = start;
  return ro;
}

}  // namespace

// ---- SuperlinearAttention ----

KvCache SuperlinearAttention::make_cache(int64_t batch, int64_t capacity) const {
  return KvCache("SuperlinearAttention", KvLayout::kHeadsFirst, batch, a_.n_kv_heads, a_.head_dim,
                 k_w_.dtype(), k_w_.device(), capacity);
}

Tensor SuperlinearAttention::prefill_chunk(const Tensor& x, KvCache& cache) {
  const std::string who = "SuperlinearAttention.prefill_chunk";
  check_chunk(who, x, d_model_, k_w_);
  const int64_t B = x.size(0), Tc = x.size(1), D = a_.head_dim, t0 = cache.length();
  cache.check_fits(who, KvLayout::kHeadsFirst, B, a_.n_kv_heads, D, k_w_.dtype(), k_w_.device());
  ag::NoGradGuard no_grad;
  const ag::Var xv(x);
  ag::Var qa = project_heads(xv, q_w_, q_b_, a_.n_heads, D);
  ag::Var qs = project_heads(xv, qs_w_, qs_b_, a_.n_heads, D);
  ag::Var k = project_heads(xv, k_w_, k_b_, a_.n_kv_heads, D);
  ag::Var v = project_heads(xv, v_w_, v_b_, a_.n_kv_heads, D);
  if (a_.rope) {
    const kernels::RopeOptions ro = rope_at(a_, t0);
    qa = ag::rope(qa, ro);
    qs = ag::rope(qs, ro);
    k = ag::rope(k, ro);
  }
  cache.append(heads_first(k), heads_first(v));
  kernels::SuperlinearForward f =
      kernels::superlinear_forward(heads_first(qa), heads_first(qs), cache.keys(), cache.values(),
                                   sl_, Tensor(), /*q_start=*/t0);
  const Tensor o = f.out.transpose(1, 2).reshape({B, Tc, a_.n_heads * D});
  return ag::linear(ag::Var(o), o_w_, o_b_).value();
}

Tensor SuperlinearAttention::decode_step(const Tensor& x, KvCache& cache) {
  check_step("SuperlinearAttention.decode_step", x);
  return prefill_chunk(x, cache);
}

// ---- Attention ----

KvCache Attention::make_cache(int64_t batch, int64_t capacity) const {
  return KvCache("Attention", KvLayout::kTimeFirst, batch, a_.n_kv_heads, a_.head_dim, k_w_.dtype(),
                 k_w_.device(), capacity);
}

Tensor Attention::prefill_chunk(const Tensor& x, KvCache& cache) {
  const std::string who = "Attention.prefill_chunk";
  check_chunk(who, x, d_model_, k_w_);
  const int64_t B = x.size(0), Tc = x.size(1), D = a_.head_dim, t0 = cache.length();
  cache.check_fits(who, KvLayout::kTimeFirst, B, a_.n_kv_heads, D, k_w_.dtype(), k_w_.device());
  ag::NoGradGuard no_grad;
  const ag::Var xv(x);
  ag::Var q = project_heads(xv, q_w_, q_b_, a_.n_heads, D);
  ag::Var k = project_heads(xv, k_w_, k_b_, a_.n_kv_heads, D);
  ag::Var v = project_heads(xv, v_w_, v_b_, a_.n_kv_heads, D);
  if (a_.rope) {
    const kernels::RopeOptions ro = rope_at(a_, t0);
    q = ag::rope(q, ro);
    k = ag::rope(k, ro);
  }
  SL_CHECK(!x.is_cuda() || kernels::flash_attention_supported(q.value()))
      << who << ": on CUDA the cached path runs the flash-attention kernel, which needs bf16 or "
      << "f16 and head_dim 64 or 128; got " << dtype_name(x.dtype()) << " with head_dim " << D
      << " (run this layer's decode on the CPU, or in bf16)";
  cache.append(k.value(), v.value());
  kernels::AttentionOptions opt;
  opt.causal = true;
  opt.sliding_window = a_.sliding_window;
  opt.q_offset = t0;
  const Tensor o = kernels::attention_forward(q.value(), cache.keys(), cache.values(), opt).out;
  return ag::linear(ag::Var(o.reshape({B, Tc, a_.n_heads * D})), o_w_, o_b_).value();
}

Tensor Attention::decode_step(const Tensor& x, KvCache& cache) {
  check_step("Attention.decode_step", x);
  return prefill_chunk(x, cache);
}

}  // namespace sl::layers
