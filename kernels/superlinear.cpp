// Superlinear attention: configuration checks, the host schedule helpers (coverage, work) and the
// op-level functions that check arguments, allocate outputs and dispatch.
//
// Non-obvious decision: the op-level forward checks only the config's values (validate with
// allow_no_coverage = true); coverage is a configuration-time property, checked once by the caller
// through validate(cfg) (spec §10), not on every call.
#include "kernels/superlinear.h"

#include <algorithm>
#include <sstream>

#include "kernels/dispatch.h"

namespace sl::kernels {

namespace {
constexpr const char* kOp = "superlinear_attention";
}

std::string SuperlinearConfig::str() const {
  std::ostringstream os;
  if (p_inv > 0)
    os << "p=1/" << p_inv;
  else
    os << "p=" << p;
  os << " q=" << q << " s=" << s << " k=" << k << " f_b=" << f_b << " f_f=" << f_f;
  return os.str();
}

Status validate(const SuperlinearConfig& c, bool allow_no_coverage) {
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument("superlinear config (" + c.str() + "): " + why);
  };
  if (c.p_inv != 0 && (c.p_inv < 2 || c.p_inv > 6))
    return bad("p_inv must be 0 (float path) or 2..6 (p = 1/p_inv)");
  if (c.p_inv == 0 && !(c.p > 0 && c.p < 1)) return bad("p must lie in (0, 1)");
  if (!(c.q > 0 && c.q < 1)) return bad("q must lie in (0, 1)");
  if (c.s < 0) return bad("s must be >= 0");
  if (c.k < 1) return bad("k must be >= 1");
  if (!(c.f_b > 0)) return bad("f_b must be > 0");
  if (!(c.f_f >= 0)) return bad("f_f must be >= 0");
  if (std::pow(double(c.s + 1), 1.0 / c.p_value()) > 1e9)
    return bad("the window W = o(s+1) - 1 exceeds 1e9 keys");
  if (allow_no_coverage) return Status::Ok();
  const double p = c.p_value();
  const double margin = c.q - (1.0 - p);
  if (margin < -1e-12)
    return bad(
        "q < 1 - p breaks coverage (spec §10): anchors at distance d are about (1/p) d^(1-p) "
        "apart but a span covers only (f_b + f_f) T^q keys, so keys between distant anchors "
        "become unreachable; pass allow_no_coverage to override");
  if (margin <= 1e-12 && c.f_b + c.f_f < 1.0 / p - 1e-12)
    return bad(
        "q = 1 - p needs f_b + f_f >= 1/p for coverage (spec §10): the gap between anchors and "
        "the span length then grow at the same rate, (1/p) d^q vs (f_b + f_f) T^q; pass "
        "allow_no_coverage to override");
  std::string gap = coverage_gap(c, 2048);
  if (!gap.empty())
    return bad("a key is in neither the window nor any candidate span (" + gap +
               "); raise f_b or f_f, or pass allow_no_coverage to override");
  return Status::Ok();
}

std::vector<int64_t> candidate_anchors(const SuperlinearConfig& cfg, int64_t t, int64_t s_b) {
  int64_t n = num_candidates(cfg, t + 1 - s_b);
  std::vector<int64_t> a(size_t(std::max<int64_t>(n, 0)));
  for (int64_t j = 0; j < n; ++j) a[size_t(j)] = candidate_anchor(cfg, t, j);
  return a;
}

// Anchors descend with j and so do span starts and ends, so the keys below the window are covered
// exactly when each span reaches down to where the previous ones stopped (greedy sweep).
std::string coverage_gap(const SuperlinearConfig& cfg, int64_t t_end) {
  for (int64_t t = 0; t < t_end; ++t) {
    int64_t covered_from = sw_start(cfg, t, 0);  // keys [covered_from, t] are covered
    int64_t n = num_candidates(cfg, t + 1);
    for (int64_t j = 0; j < n && covered_from > 0; ++j) {
      int64_t a = candidate_anchor(cfg, t, j);
      if (span_end(cfg, a, t, 0) < covered_from - 1) break;
      covered_from = std::min(covered_from, span_start(cfg, a, t, 0));
    }
    if (covered_from > 0) {
      std::ostringstream os;
      os << "t=" << t << " u=" << covered_from - 1;
      return os.str();
    }
  }
  return "";
}

SuperlinearWork superlinear_work(const SuperlinearConfig& cfg, int64_t Lq, int64_t q_start,
                                 const std::vector<int32_t>& doc_starts,
                                 const std::vector<int32_t>& anchors) {
  SL_CHECK(anchors.empty() || int64_t(anchors.size()) == Lq * cfg.k)
      << "superlinear_work: anchors must hold k = " << cfg.k << " per query, got " << anchors.size()
      << " for " << Lq << " queries";
  SuperlinearWork w;
  w.search.resize(size_t(Lq));
  w.keys.resize(size_t(Lq));
  for (int64_t i = 0; i < Lq; ++i) {
    int64_t t = q_start + i;
    int64_t sb = doc_starts.empty() ? 0 : doc_starts[size_t(t)];
    int64_t n = num_candidates(cfg, t + 1 - sb);
    int64_t keys = t - sw_start(cfg, t, sb) + 1;
    for (int j = 0; j < cfg.k; ++j) {
      int64_t a = anchors.empty() ? (j < n ? candidate_anchor(cfg, t, j) : -1)
                                  : anchors[size_t(i * cfg.k + j)];
      if (a >= 0) keys += span_end(cfg, a, t, sb) - span_start(cfg, a, t, sb) + 1;
    }
    w.search[size_t(i)] = n;
    w.keys[size_t(i)] = keys;
    w.total_search += n;
    w.total_keys += keys;
  }
  return w;
}

Tensor doc_starts_from_cu_seqlens(const std::vector<int32_t>& cu) {
  SL_CHECK(cu.size() >= 2 && cu.front() == 0) << "doc_starts_from_cu_seqlens: cu_seqlens must "
                                                 "start at 0 and hold at least one document";
  std::vector<int32_t> ds(size_t(cu.back()));
  for (size_t d = 0; d + 1 < cu.size(); ++d) {
    SL_CHECK(cu[d] <= cu[d + 1]) << "doc_starts_from_cu_seqlens: cu_seqlens must not decrease";
    for (int32_t u = cu[d]; u < cu[d + 1]; ++u) ds[size_t(u)] = cu[d];
  }
  return Tensor::from_vector(ds, {1, int64_t(ds.size())});
}

namespace {

struct Shapes {
  int64_t B, Hq, Hkv, Lq, Lkv, D, q_start;
};

Shapes check_args(const Tensor& qa, const Tensor& qs, const Tensor& k, const Tensor& v,
                  const SuperlinearConfig& cfg, const Tensor& doc_starts, int64_t q_start) {
  SL_CHECK_DEFINED(kOp, qa);
  SL_CHECK_DEFINED(kOp, qs);
  SL_CHECK_DEFINED(kOp, k);
  SL_CHECK_DEFINED(kOp, v);
  SL_CHECK_SHAPE(kOp, qa, -1, -1, -1, -1);
  Shapes s{qa.size(0), qa.size(1), 0, qa.size(2), 0, qa.size(3), q_start};
  SL_CHECK_SHAPE(kOp, k, s.B, -1, -1, s.D);
  s.Hkv = k.size(1);
  s.Lkv = k.size(2);
  SL_CHECK_SHAPE(kOp, qs, s.B, s.Hq, s.Lq, s.D);
  SL_CHECK_SHAPE(kOp, v, s.B, s.Hkv, s.Lkv, s.D);
  SL_CHECK_DTYPE(kOp, qa, DType::F32, DType::F64, DType::BF16, DType::F16);
  SL_CHECK_DTYPE(kOp, qs, qa.dtype());
  SL_CHECK_DTYPE(kOp, k, qa.dtype());
  SL_CHECK_DTYPE(kOp, v, qa.dtype());
  SL_CHECK_DEVICE(kOp, qs, qa.device());
  SL_CHECK_DEVICE(kOp, k, qa.device());
  SL_CHECK_DEVICE(kOp, v, qa.device());
  SL_CHECK(s.Hkv > 0 && s.Hq % s.Hkv == 0)
      << kOp << ": query heads (" << s.Hq << ") must be a multiple of KV heads (" << s.Hkv
      << "); qa " << qa.shape_str() << ", k " << k.shape_str();
  if (s.q_start < 0) s.q_start = s.Lkv - s.Lq;
  SL_CHECK(s.q_start >= 0 && s.q_start + s.Lq <= s.Lkv)
      << kOp << ": queries at q_start " << s.q_start << " .. " << s.q_start + s.Lq
      << " need that many keys, k has " << s.Lkv << " (qa " << qa.shape_str() << ", k "
      << k.shape_str() << ")";
  Status st = validate(cfg, /*allow_no_coverage=*/true);
  SL_CHECK(st.ok()) << kOp << ": " << st.message();
  if (doc_starts.defined()) {
    SL_CHECK_SHAPE(kOp, doc_starts, s.B, s.Lkv);
    SL_CHECK_DTYPE(kOp, doc_starts, DType::I32);
    SL_CHECK_DEVICE(kOp, doc_starts, qa.device());
    if (doc_starts.device().is_cpu()) {
      std::vector<int32_t> ds = doc_starts.contiguous().to_vector<int32_t>();
      for (int64_t b = 0; b < s.B; ++b)
        for (int64_t t = 0; t < s.Lkv; ++t) {
          int32_t v0 = ds[size_t(b * s.Lkv + t)];
          SL_CHECK(v0 >= 0 && v0 <= t) << kOp << ": doc_starts[" << b << ", " << t << "] = " << v0
                                       << " must lie in [0, " << t << "]";
        }
    }
  }
  return s;
}

DType stat_dtype(DType dt) {
  return dt == DType::F64 ? DType::F64 : DType::F32;
}

SuperlinearParams make_params(const Shapes& s, const Tensor& qa, const Tensor& qs, const Tensor& k,
                              const Tensor& v, const Tensor& doc_starts,
                              const SuperlinearConfig& cfg) {
  SuperlinearParams p{};
  p.qa = qa.data_ptr();
  p.qs = qs.data_ptr();
  p.k = k.data_ptr();
  p.v = v.data_ptr();
  p.doc_starts = doc_starts.defined() ? doc_starts.data<int32_t>() : nullptr;
  p.dtype = qa.dtype();
  p.stat_dtype = stat_dtype(qa.dtype());
  p.B = s.B;
  p.Hq = s.Hq;
  p.Hkv = s.Hkv;
  p.Lq = s.Lq;
  p.Lkv = s.Lkv;
  p.D = s.D;
  p.q_start = s.q_start;
  p.cfg = cfg;
  return p;
}

// Whether inputs like qa (D, device, dtype) with Lkv keys run on the CUDA tensor-core path
// (superlinear_cuda_keeps_partials).
bool tensor_core_path(const Tensor& qa, const Shapes& s) {
#if SL_WITH_CUDA
  if (!qa.device().is_cuda()) return false;
  SuperlinearParams p{};
  p.dtype = qa.dtype();
  p.D = s.D;
  p.Lkv = s.Lkv;
  return superlinear_cuda_keeps_partials(p);
#else
  (void)qa, (void)s;
  return false;
#endif
}

}  // namespace

void drop_unsaved(SuperlinearForward& f, const Tensor& qa, const Tensor& k,
                  const SuperlinearConfig& cfg) {
  SL_CHECK(qa.dim() == 4 && k.dim() == 4)
      << kOp << ": drop_unsaved takes qa [B, Hq, Lq, D] and k [B, Hkv, Lkv, D]";
  f.out = Tensor();
  Shapes s{};
  s.D = qa.size(3);
  s.Lkv = k.size(2);
  if (!tensor_core_path(qa, s)) return;
  f.scores = Tensor();
  if (window_len(cfg) == 0) f.lse_w = Tensor();
}

std::string superlinear_search_kernel(const Tensor& qa, const Tensor& k, int64_t q_start) {
  SL_CHECK(qa.defined() && k.defined() && qa.dim() == 4 && k.dim() == 4)
      << kOp << ": superlinear_search_kernel takes qa [B, Hq, Lq, D] and k [B, Hkv, Lkv, D]";
  if (!qa.device().is_cuda()) return "cpu";
#if SL_WITH_CUDA
  SuperlinearParams p{};
  p.dtype = qa.dtype();
  p.stat_dtype = stat_dtype(qa.dtype());
  p.B = qa.size(0), p.Hq = qa.size(1), p.Lq = qa.size(2), p.D = qa.size(3);
  p.Hkv = k.size(1), p.Lkv = k.size(2);
  p.q_start = q_start < 0 ? p.Lkv - p.Lq : q_start;
  // The forward's contiguous copies are freshly allocated (aligned); given tensors, as they are.
  p.qs = qa.is_contiguous() ? qa.data_ptr() : nullptr;
  p.k = k.is_contiguous() ? k.data_ptr() : nullptr;
  return superlinear_cuda_search_kernel(p);
#else
  (void)q_start;
  return "cpu";
#endif
}

SuperlinearForward superlinear_forward(const Tensor& qa_in, const Tensor& qs_in, const Tensor& k_in,
                                       const Tensor& v_in, const SuperlinearConfig& cfg,
                                       const Tensor& ds_in, int64_t q_start, SuperlinearWork* work,
                                       bool keep_partials) {
  Shapes s = check_args(qa_in, qs_in, k_in, v_in, cfg, ds_in, q_start);
  Tensor qa = qa_in.contiguous(), qs = qs_in.contiguous(), k = k_in.contiguous(),
         v = v_in.contiguous();
  Tensor ds = ds_in.defined() ? ds_in.contiguous() : Tensor();
  Device dev = qa.device();
  DType sdt = stat_dtype(qa.dtype());
  SuperlinearForward f;
  f.out = Tensor::empty({s.B, s.Hq, s.Lq, s.D}, qa.dtype(), dev);
  f.anchors = Tensor::empty({s.B, s.Hq, s.Lq, cfg.k}, DType::I32, dev);
  f.scores = Tensor::empty({s.B, s.Hq, s.Lq, cfg.k}, sdt, dev);
  f.lse_w = Tensor::empty({s.B, s.Hq, s.Lq}, sdt, dev);
  f.lse_s = Tensor::empty({s.B, s.Hq, s.Lq, cfg.k}, sdt, dev);
  SuperlinearParams p = make_params(s, qa, qs, k, v, ds, cfg);
  p.out = f.out.data_ptr();
  p.anchors = f.anchors.data<int32_t>();
  p.scores = f.scores.data_ptr();
  p.lse_w = f.lse_w.data_ptr();
  p.lse_s = f.lse_s.data_ptr();
  if (work) {
    SL_CHECK(dev.is_cpu()) << kOp << ": work counters come from the CPU reference only";
    *work = SuperlinearWork{};
    work->search.resize(size_t(s.B * s.Hq * s.Lq));
    work->keys.resize(size_t(s.B * s.Hq * s.Lq));
    p.work_search = work->search.data();
    p.work_keys = work->keys.data();
  }
  if (f.out.numel() == 0) return f;
  if (dev.is_cuda()) {
#if SL_WITH_CUDA
    if (keep_partials && superlinear_cuda_keeps_partials(p)) {  // Note [kept partials]
      f.span_out = Tensor::empty({s.B, s.Hq, s.Lq, cfg.k, s.D}, qa.dtype(), dev);
      p.span_out = f.span_out.data_ptr();
      if (window_len(cfg) > 0) {
        f.window_out = Tensor::empty({s.B, s.Lq, s.Hq, s.D}, qa.dtype(), dev);
        p.window_out = f.window_out.data_ptr();
      }
    }
#else
    (void)keep_partials;  // only the CUDA tensor-core path keeps partials
#endif
    SL_CUDA_CALL(kOp, superlinear_forward_cuda(p, dev.index));
  } else {
    superlinear_forward_cpu(p);
  }
  if (work) {
    for (int64_t x : work->search) work->total_search += x;
    for (int64_t x : work->keys) work->total_keys += x;
  }
  return f;
}

SuperlinearGrads superlinear_backward(const Tensor& dout_in, const Tensor& qa_in,
                                      const Tensor& qs_in, const Tensor& k_in, const Tensor& v_in,
                                      const SuperlinearForward& fwd, const SuperlinearConfig& cfg,
                                      const Tensor& ds_in, int64_t q_start, bool deterministic) {
  Shapes s = check_args(qa_in, qs_in, k_in, v_in, cfg, ds_in, q_start);
  const Tensor& dout = dout_in;
  SL_CHECK_SHAPE(kOp, dout, s.B, s.Hq, s.Lq, s.D);
  SL_CHECK_DEVICE(kOp, dout, qa_in.device());
  DType sdt = stat_dtype(qa_in.dtype());
  const Tensor &anchors = fwd.anchors, &scores = fwd.scores, &lse_w = fwd.lse_w, &lse_s = fwd.lse_s;
  const bool tc = tensor_core_path(qa_in, s);
  // Note [saved for backward]: the tensor-core path reads no scores, and lse_w only with a
  // window.
  SL_CHECK(scores.defined() || tc)
      << kOp << ": fwd.scores is undefined, but only the CUDA tensor-core path (bf16, D 64 or "
      << "128) computes the gate scores again; this backward (" << dtype_name(qa_in.dtype())
      << ", D = " << s.D << ", " << qa_in.device().str() << ") needs the forward's";
  SL_CHECK(lse_w.defined() || (tc && window_len(cfg) == 0))
      << kOp << ": fwd.lse_w is undefined, but "
      << (tc ? "the window is not empty (W = " + std::to_string(window_len(cfg)) + ")"
             : std::string("this path reads it"));
  SL_CHECK_SHAPE(kOp, anchors, s.B, s.Hq, s.Lq, cfg.k);
  SL_CHECK_SHAPE(kOp, lse_s, s.B, s.Hq, s.Lq, cfg.k);
  SL_CHECK_DTYPE(kOp, anchors, DType::I32);
  SL_CHECK_DTYPE(kOp, lse_s, sdt);
  if (scores.defined()) {
    SL_CHECK_SHAPE(kOp, scores, s.B, s.Hq, s.Lq, cfg.k);
    SL_CHECK_DTYPE(kOp, scores, sdt);
  }
  if (lse_w.defined()) {
    SL_CHECK_SHAPE(kOp, lse_w, s.B, s.Hq, s.Lq);
    SL_CHECK_DTYPE(kOp, lse_w, sdt);
  }
  Tensor qa = qa_in.contiguous(), qs = qs_in.contiguous(), k = k_in.contiguous(),
         v = v_in.contiguous(), dO = dout.to(qa.dtype()).contiguous();
  Tensor ds = ds_in.defined() ? ds_in.contiguous() : Tensor();
  Tensor an = anchors.contiguous(), ls = lse_s.contiguous();
  Tensor sc = scores.defined() ? scores.contiguous() : Tensor(),
         lw = lse_w.defined() ? lse_w.contiguous() : Tensor();
  Device dev = qa.device();
  SuperlinearBackwardParams p{};
  p.fwd = make_params(s, qa, qs, k, v, ds, cfg);
  // The tensor-core path writes every element of the four gradients (its row and key kernels
  // cover all rows and keys); the other paths accumulate into zeros.
  const bool written = tc && qa.numel() > 0;
  auto grad = [&](const Tensor& like) {
    return written ? Tensor::empty(like.shape(), like.dtype(), dev)
                   : Tensor::zeros(like.shape(), like.dtype(), dev);
  };
  SuperlinearGrads g;
  g.dqa = grad(qa);
  g.dqs = grad(qa);
  g.dk = grad(k);
  g.dv = grad(k);
  p.fwd.anchors = an.data<int32_t>();
  p.fwd.scores = sc.defined() ? sc.data_ptr() : nullptr;
  p.fwd.lse_w = lw.defined() ? lw.data_ptr() : nullptr;
  p.fwd.lse_s = ls.data_ptr();
  // The kept partials (Note [kept partials]): used only as the forward produced them.
  if (fwd.span_out.defined()) {
    SL_CHECK_SHAPE(kOp, fwd.span_out, s.B, s.Hq, s.Lq, cfg.k, s.D);
    SL_CHECK_DTYPE(kOp, fwd.span_out, qa.dtype());
    SL_CHECK_DEVICE(kOp, fwd.span_out, dev);
    SL_CHECK(fwd.span_out.is_contiguous()) << kOp << ": span_out must be contiguous";
    SL_CHECK(fwd.window_out.defined() == (window_len(cfg) > 0))
        << kOp << ": span_out is kept, so window_out must be kept exactly when the window is "
        << "non-empty (W = " << window_len(cfg) << ")";
    p.fwd.span_out = fwd.span_out.data_ptr();
    if (fwd.window_out.defined()) {
      SL_CHECK_SHAPE(kOp, fwd.window_out, s.B, s.Lq, s.Hq, s.D);
      SL_CHECK_DTYPE(kOp, fwd.window_out, qa.dtype());
      SL_CHECK_DEVICE(kOp, fwd.window_out, dev);
      SL_CHECK(fwd.window_out.is_contiguous()) << kOp << ": window_out must be contiguous";
      p.fwd.window_out = fwd.window_out.data_ptr();
    }
  } else {
    SL_CHECK(!fwd.window_out.defined()) << kOp << ": window_out is kept without span_out";
  }
  p.dout = dO.data_ptr();
  p.dqa = g.dqa.data_ptr();
  p.dqs = g.dqs.data_ptr();
  p.dk = g.dk.data_ptr();
  p.dv = g.dv.data_ptr();
  p.deterministic = deterministic;
  if (qa.numel() == 0) return g;
  if (dev.is_cuda()) {
    SL_CUDA_CALL(kOp, superlinear_backward_cuda(p, dev.index));
  } else {
    superlinear_backward_cpu(p);
  }
  return g;
}

}  // namespace sl::kernels
