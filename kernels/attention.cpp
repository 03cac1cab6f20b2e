// Flash attention op-level functions: argument checks, parameter filling, allocation, dispatch
// (kernels/attention.h).
#include "kernels/attention.h"

#include <cmath>
#include <string>
#include <vector>

#include "kernels/dispatch.h"

namespace sl::kernels {
namespace {

constexpr const char* kOp = "attention";

// q, k and v need D contiguous; any other stride is fine.
Tensor inner_contiguous(const Tensor& t) {
  return t.stride(3) == 1 ? t : t.contiguous();
}

AttentionParams check_inputs(const Tensor& q, const Tensor& k, const Tensor& v,
                             const AttentionOptions& opt) {
  SL_CHECK_DEFINED(kOp, q);
  SL_CHECK_DEFINED(kOp, k);
  SL_CHECK_DEFINED(kOp, v);
  SL_CHECK(q.dim() == 4 && k.dim() == 4 && k.shape() == v.shape())
      << kOp << ": need q [B, Lq, Hq, D] and k, v [B, Lk, Hkv, D], got q " << q.shape_str()
      << ", k " << k.shape_str() << ", v " << v.shape_str();
  SL_CHECK_DTYPE(kOp, q, DType::F32, DType::BF16, DType::F16, DType::F64);
  const int64_t B = q.size(0), Lq = q.size(1), Hq = q.size(2), D = q.size(3);
  const int64_t Lk = k.size(1), Hkv = k.size(2);
  SL_CHECK(k.size(0) == B && k.size(3) == D && Hkv > 0 && Hq % Hkv == 0)
      << kOp << ": k " << k.shape_str() << " does not fit q " << q.shape_str()
      << " (same B and D, Hkv dividing Hq)";
  for (const Tensor* t : {&k, &v}) {
    SL_CHECK(t->dtype() == q.dtype() && t->device() == q.device())
        << kOp << ": k and v must match q " << q.str() << ", got " << t->str();
  }
  SL_CHECK(opt.sliding_window >= 0 && opt.q_offset >= 0)
      << kOp << ": sliding_window (" << opt.sliding_window << ") and q_offset (" << opt.q_offset
      << ") must be >= 0";
  SL_CHECK(!opt.causal || opt.q_offset + Lq <= Lk)
      << kOp << ": causal queries at positions " << opt.q_offset << ".." << opt.q_offset + Lq - 1
      << " need their keys: Lk = " << Lk << " is too short";
  if (opt.doc_start.defined()) {
    SL_CHECK_SHAPE(kOp, opt.doc_start, B, Lk);
    SL_CHECK_DTYPE(kOp, opt.doc_start, DType::I32);
    SL_CHECK_DEVICE(kOp, opt.doc_start, q.device());
  }
  AttentionParams p;
  p.dtype = q.dtype();
  p.B = B;
  p.Lq = Lq;
  p.Lk = Lk;
  p.Hq = Hq;
  p.Hkv = Hkv;
  p.D = D;
  p.causal = opt.causal;
  p.window = opt.sliding_window;
  p.q_offset = opt.q_offset;
  p.scale = float(1.0 / std::sqrt(double(D)));
  return p;
}

void set_inputs(AttentionParams& p, const Tensor& q, const Tensor& k, const Tensor& v,
                const Tensor& doc_start) {
  SL_CHECK(k.strides() == v.strides()) << kOp << ": k and v must have the same strides, got "
                                       << k.strides().str() << " and " << v.strides().str();
  p.q = q.data_ptr();
  p.k = k.data_ptr();
  p.v = v.data_ptr();
  p.q_sb = q.stride(0);
  p.q_st = q.stride(1);
  p.q_sh = q.stride(2);
  p.k_sb = k.stride(0);
  p.k_st = k.stride(1);
  p.k_sh = k.stride(2);
  p.doc_start = doc_start.defined() ? doc_start.data<int32_t>() : nullptr;
}

// k and v with one stride set (both D-contiguous; copied when they differ).
void unify(Tensor& k, Tensor& v) {
  if (k.strides() != v.strides()) {
    k = k.contiguous();
    v = v.contiguous();
  }
}

}  // namespace

bool flash_attention_supported(const Tensor& q) {
  return SL_WITH_CUDA && q.defined() && q.is_cuda() && q.dim() == 4 &&
         (q.dtype() == DType::BF16 || q.dtype() == DType::F16) &&
         (q.size(3) == 64 || q.size(3) == 128);
}

AttentionOutput attention_forward(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                                  const AttentionOptions& opt) {
  AttentionParams p = check_inputs(q_in, k_in, v_in, opt);
  Tensor q = inner_contiguous(q_in), k = inner_contiguous(k_in), v = inner_contiguous(v_in);
  unify(k, v);
  Tensor doc = opt.doc_start.defined() ? opt.doc_start.contiguous() : Tensor();
  set_inputs(p, q, k, v, doc);
  AttentionOutput r;
  r.out = Tensor::empty({p.B, p.Lq, p.Hq, p.D}, q.dtype(), q.device());
  r.lse = Tensor::empty({p.B, p.Hq, p.Lq}, DType::F32, q.device());
  if (r.out.numel() == 0) return r;
  p.out = r.out.data_ptr();
  p.lse = r.lse.data<float>();
  if (q.is_cuda()) {
    SL_CHECK(flash_attention_supported(q))
        << kOp << ": the GPU kernel needs bf16 or f16 and D 64 or 128, got " << q.str()
        << " (use the composite attention for other cases)";
    SL_CUDA_CALL(kOp, attention_forward_cuda(p, q.device().index));
  } else {
    attention_forward_cpu(p);
  }
  return r;
}

AttentionGrads attention_backward(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                                  const Tensor& out_in, const Tensor& lse_in, const Tensor& dout_in,
                                  const AttentionOptions& opt) {
  AttentionParams p = check_inputs(q_in, k_in, v_in, opt);
  const Dims oshape{p.B, p.Lq, p.Hq, p.D};
  for (const Tensor* t : {&out_in, &dout_in}) {
    SL_CHECK(t->defined() && t->shape() == oshape && t->dtype() == q_in.dtype() &&
             t->device() == q_in.device())
        << kOp << ": out and dout must be " << dtype_name(q_in.dtype()) << oshape.str() << " on "
        << q_in.device().str() << ", got " << (t->defined() ? t->str() : std::string("undefined"));
  }
  SL_CHECK_SHAPE(kOp, lse_in, p.B, p.Hq, p.Lq);
  SL_CHECK_DTYPE(kOp, lse_in, DType::F32);
  Tensor q = inner_contiguous(q_in), k = inner_contiguous(k_in), v = inner_contiguous(v_in);
  unify(k, v);
  Tensor doc = opt.doc_start.defined() ? opt.doc_start.contiguous() : Tensor();
  set_inputs(p, q, k, v, doc);
  Tensor out = out_in.contiguous(), dout = dout_in.contiguous(), lse = lse_in.contiguous();
  AttentionGrads g;
  g.dq = Tensor::empty(q.shape(), q.dtype(), q.device());
  g.dk = Tensor::empty(k.shape(), k.dtype(), k.device());
  g.dv = Tensor::empty(v.shape(), v.dtype(), v.device());
  if (g.dq.numel() == 0 || g.dk.numel() == 0) {
    g.dq.zero_();
    g.dk.zero_();
    g.dv.zero_();
    return g;
  }
  Tensor delta = Tensor::empty({p.B, p.Hq, p.Lq}, DType::F32, q.device());
  p.out = out.data_ptr();
  p.lse = lse.data<float>();
  p.dout = dout.data_ptr();
  p.delta = delta.data<float>();
  p.dq = g.dq.data_ptr();
  p.dk = g.dk.data_ptr();
  p.dv = g.dv.data_ptr();
  if (q.is_cuda()) {
    SL_CHECK(flash_attention_supported(q))
        << kOp << ": the GPU kernel needs bf16 or f16 and D 64 or 128, got " << q.str();
    SL_CUDA_CALL(kOp, attention_backward_cuda(p, q.device().index));
  } else {
    attention_backward_cpu(p);
  }
  return g;
}

Tensor doc_start_from_seq_idx(const Tensor& seq_idx_in) {
  SL_CHECK_DEFINED("doc_start_from_seq_idx", seq_idx_in);
  SL_CHECK(seq_idx_in.dim() == 2 && seq_idx_in.dtype() == DType::I32)
      << "doc_start_from_seq_idx: seq_idx must be int32 [B, T], got " << seq_idx_in.str();
  Tensor seq = seq_idx_in.contiguous();
  const int64_t B = seq.size(0), T = seq.size(1);
  Tensor out = Tensor::empty({B, T}, DType::I32, seq.device());
  if (out.numel() == 0) return out;
  if (seq.is_cuda()) {
    SL_CUDA_CALL("doc_start_from_seq_idx", doc_start_cuda(seq.data<int32_t>(), out.data<int32_t>(),
                                                          B, T, seq.device().index));
    return out;
  }
  const int32_t* s = seq.data<int32_t>();
  int32_t* d = out.data<int32_t>();
  for (int64_t b = 0; b < B; ++b) {
    int32_t start = 0;
    for (int64_t t = 0; t < T; ++t) {
      if (t > 0 && s[b * T + t] != s[b * T + t - 1]) start = int32_t(t);
      d[b * T + t] = start;
    }
  }
  return out;
}

}  // namespace sl::kernels
