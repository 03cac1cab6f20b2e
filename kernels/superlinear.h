// Superlinear attention (spec: ../shared/spec/superlinear-attention.md): the configuration, the
// anchor/window/span schedule shared by every implementation, and the op on tensors.
//
// The one non-obvious decision: every schedule quantity (stripe offsets, window, span bounds) is a
// host/device inline function of this header, computed with integer math or fp64 `pow`/`sqrt` and
// a floor/ceil, so the CPU reference, the CUDA kernels, prefill and decode all select the same keys
// bit for bit (spec §4 "Precision"). See Note [schedule precision].
//
// Note [schedule precision]
// o(i) on the integer path (p = 1/n) is i^n in int64, exact. On the float path it is
// floor(pow(double(i), 1.0 / p)) with 1/p divided in fp64. len_b/len_f are
// ceil(f * x) in fp64 with x = sqrt(double(T)) when q == 0.5 (IEEE sqrt is correctly rounded on
// host and device, so perfect squares give exact integers) and x = pow(double(T), q) otherwise.
// The number of candidates is derived from o itself (an estimate corrected with o), never from a
// separate root, so it can never disagree with the anchors. glibc's pow and CUDA's pow are both
// within 1-2 ulp; they can differ after floor/ceil only when the exact value lies within ~1e-15
// (relative) of an integer, which does not happen for the configurations in use (p = q = 0.55:
// i^(1/0.55) and T^0.55 are irrational for integers i, T > 1).
//
// Note [no valid slot]
// A stripe i > s is a candidate when o(i) <= T (its anchor t + 1 - o(i) >= s_b). The first
// candidate needs o(s+1) = W + 1 <= T, so a query has no candidate exactly when T <= W (the spec's
// parenthetical "T <= W + 1" is one too many; its "exact causal attention while t < W" and the
// formulas agree with T <= W). Then every slot is empty (anchor -1, score -inf), each O_j = O_w
// and the gate is uniform over the k slots, so O = O_w. With W = 0 every query (T >= 1) has the
// candidate a = t, so some slot is always valid.
//
// Note [span bounds]
// Spans are inclusive: [start_j, end_j] holds end_j - start_j + 1 keys, so with f_f = 0 and no
// clipping a span holds len_b + 1 keys (spec §11: 3 * (512 + 1) = 1539 at 64K). Spans never reach
// into the window: with f_f = 0, end = a_j <= a_{s+1} = sw_start - 1; with f_f > 0 the spec's
// min(a_j + len_f, t, sw_start - 1) is applied literally (for W = 0, sw_start - 1 = t).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/macros.h"
#include "core/tensor.h"

namespace sl::kernels {

// Hyperparameters (spec §3). p_inv > 0 selects the exact integer path p = 1/p_inv (2..6); p_inv = 0
// selects the float path with power p (0 < p < 1). Trivially copyable: travels into kernels.
struct SuperlinearConfig {
  int p_inv = 2;
  double p = 0.5;  // read only when p_inv == 0
  double q = 0.5;  // span power
  int64_t s = 0;   // window index: W = o(s+1) - 1
  int k = 3;       // spans kept
  double f_b = 2;  // backward span factor
  double f_f = 0;  // forward span factor

  // p = q = 1/2 (integer path n = 2), s = 0, k = 3, f_b = 2, f_f = 0.
  static SuperlinearConfig balanced() { return {}; }
  // The released model: p = q = 0.55 (float path), s = 65, k = 3, f_b = 3, f_f = 1.
  static SuperlinearConfig upscaled() { return {0, 0.55, 0.55, 65, 3, 3.0, 1.0}; }

  SL_HD double p_value() const { return p_inv > 0 ? 1.0 / double(p_inv) : p; }
  std::string str() const;  // "p=1/2 q=0.5 s=0 k=3 f_b=2 f_f=0"
};

// Rejects values outside spec §3 (p, q in (0,1), p_inv in 2..6, s >= 0, k >= 1, f_b > 0,
// f_f >= 0) and, unless allow_no_coverage, settings that break coverage (spec §10): the distance
// between consecutive anchors at distance d grows like (1/p) d^(1-p) while a span covers
// (f_b + f_f) T^q keys, so every key stays reachable only if q >= 1 - p and, at equality (within
// 1e-12, so p = 1/3, q = 2/3 counts as equal), f_b + f_f >= 1/p. Passing that asymptotic test is
// not enough for small T, so validate() also runs coverage_gap() exhaustively for t < 2048.
Status validate(const SuperlinearConfig& cfg, bool allow_no_coverage = false);

// ---- the schedule (spec §4, §5, §7); t is an absolute position, s_b its document start ----

constexpr int32_t kNoAnchor = -1;

// Stripe offset o(i), i >= 1 (Note [schedule precision]).
SL_HD int64_t stripe_offset(const SuperlinearConfig& c, int64_t i) {
  if (c.p_inv > 0) {
    int64_t r = 1;
    for (int e = 0; e < c.p_inv; ++e) r *= i;
    return r;
  }
  return int64_t(floor(pow(double(i), 1.0 / c.p)));
}

// Window length W = o(s+1) - 1 (0 when s = 0).
SL_HD int64_t window_len(const SuperlinearConfig& c) {
  return stripe_offset(c, c.s + 1) - 1;
}

// First window key: sw_start = max(s_b, t - W + 1). The window is [sw_start, t] (empty if W = 0).
SL_HD int64_t sw_start(const SuperlinearConfig& c, int64_t t, int64_t s_b) {
  int64_t w = t - window_len(c) + 1;
  return w > s_b ? w : s_b;
}

// The largest stripe index i with o(i) <= T (0 when T < 1): an fp64 estimate corrected with o.
SL_HD int64_t max_stripe(const SuperlinearConfig& c, int64_t T) {
  if (T < 1) return 0;
  int64_t i = int64_t(floor(pow(double(T), c.p_value())));
  if (i < 1) i = 1;
  while (i > 0 && stripe_offset(c, i) > T) --i;
  while (stripe_offset(c, i + 1) <= T) ++i;
  return i;
}

// Candidates of a query with T = t + 1 - s_b visible tokens: stripes s+1 .. max_stripe(T), i.e.
// max(0, floor(T^p) - s) on the exact schedule.
SL_HD int64_t num_candidates(const SuperlinearConfig& c, int64_t T) {
  int64_t n = max_stripe(c, T) - c.s;
  return n > 0 ? n : 0;
}

// Anchor of stripe i: a_i(t) = t + 1 - o(i).
SL_HD int64_t stripe_anchor(const SuperlinearConfig& c, int64_t t, int64_t i) {
  return t + 1 - stripe_offset(c, i);
}

// The j-th candidate anchor (j = 0 .. num_candidates - 1), nearest first: stripe s + 1 + j.
SL_HD int64_t candidate_anchor(const SuperlinearConfig& c, int64_t t, int64_t j) {
  return stripe_anchor(c, t, c.s + 1 + j);
}

// ceil(f * T^q) in fp64 (Note [schedule precision]); 0 when T <= 0 or f <= 0.
SL_HD int64_t span_extent(const SuperlinearConfig& c, double f, int64_t T) {
  if (T <= 0 || f <= 0) return 0;
  double x = c.q == 0.5 ? sqrt(double(T)) : pow(double(T), c.q);
  return int64_t(ceil(f * x));
}
SL_HD int64_t len_b(const SuperlinearConfig& c, int64_t T) {
  return span_extent(c, c.f_b, T);
}
SL_HD int64_t len_f(const SuperlinearConfig& c, int64_t T) {
  return span_extent(c, c.f_f, T);
}

// Inclusive span [start, end] of anchor a for query t in a document starting at s_b (Note [span
// bounds]).
SL_HD int64_t span_start(const SuperlinearConfig& c, int64_t a, int64_t t, int64_t s_b) {
  int64_t st = a - len_b(c, t + 1 - s_b);
  return st > s_b ? st : s_b;
}
SL_HD int64_t span_end(const SuperlinearConfig& c, int64_t a, int64_t t, int64_t s_b) {
  if (c.f_f <= 0) return a;
  int64_t e = a + len_f(c, t + 1 - s_b);
  if (e > t) e = t;
  if (window_len(c) > 0) {
    int64_t w = sw_start(c, t, s_b) - 1;
    if (e > w) e = w;
  }
  return e;
}

// All candidate anchors of query t, nearest first (host convenience over candidate_anchor).
std::vector<int64_t> candidate_anchors(const SuperlinearConfig& cfg, int64_t t, int64_t s_b);

// Structural non-exclusion (spec §10), checked exhaustively: the first (t, u) with
// s_b <= u <= t < t_end (documents start at 0, so s_b = 0) where key u is in neither the window
// nor any candidate span, as "t=.. u=.."; empty when every key is covered.
std::string coverage_gap(const SuperlinearConfig& cfg, int64_t t_end);

// ---- the op ----

// Work counts (spec §11), per query (row-major over [B, Hq, Lq] when from the forward).
struct SuperlinearWork {
  std::vector<int64_t> search;  // per query: scores computed = number of candidates
  std::vector<int64_t> keys;    // per query: window keys + sum of the kept spans' lengths
  int64_t total_search = 0, total_keys = 0;
};

// Raw arguments shared by the CPU reference and a CUDA kernel. All tensors contiguous. qa, qs,
// out: [B, Hq, Lq, D] of `dtype`; k, v: [B, Hkv, Lkv, D]; query i sits at t = q_start + i;
// doc_starts: int32 [B, Lkv] (s_b of each position) or null (one document from 0). Saved
// metadata (stat dtype: f64 for f64 inputs, f32 otherwise): anchors int32 [B, Hq, Lq, K] (-1 for
// an empty slot), scores [B, Hq, Lq, K] (gate logits, descending, -inf for an empty slot), lse_w
// [B, Hq, Lq] and lse_s [B, Hq, Lq, K] (-inf for an empty window/span).
struct SuperlinearParams {
  const void *qa, *qs, *k, *v;
  void* out;
  int32_t* anchors;
  void *scores, *lse_w, *lse_s;
  const int32_t* doc_starts;
  DType dtype, stat_dtype;
  int64_t B, Hq, Hkv, Lq, Lkv, D, q_start;
  SuperlinearConfig cfg;
  // Optional work counters [B, Hq, Lq] (may be null): key dot products of the search and keys
  // attended (window once + every kept span), as actually performed.
  int64_t *work_search, *work_keys;
  // Optional partial outputs kept for the backward (CUDA tensor-core path only, Note [kept
  // partials]; null: not kept): the window's output window_out [B, Lq, Hq, D] (written when
  // W > 0) and each kept span's own normalised output span_out [B, Hq, Lq, K, D] (rows of empty
  // slots are left unwritten), both of `dtype`.
  void *window_out = nullptr, *span_out = nullptr;
};

// Backward: the forward's inputs and metadata, dout [B, Hq, Lq, D]; writes dqa, dqs ([B, Hq, Lq,
// D]) and dk, dv ([B, Hkv, Lkv, D]) of `dtype`, all overwritten.
struct SuperlinearBackwardParams {
  SuperlinearParams fwd;  // out, work counters unused; window_out / span_out: the kept partials
  const void* dout;
  void *dqa, *dqs, *dk, *dv;
  // CUDA only (the CPU reference is always deterministic): true reduces dK/dV in a fixed order
  // with no floating-point atomics, bitwise reproducible run to run; false lets the warp-per-query
  // kernels (f32, other D) accumulate them with f32 atomicAdd (faster, not reproducible in the
  // last bits). The tensor-core path (bf16, D 64/128) has no atomics and ignores it (Note
  // [fused dQ, measured and dropped] in kernels/superlinear_span_bwd_cuda.cu).
  bool deterministic = true;
};

struct SuperlinearForward {
  Tensor out, anchors, scores, lse_w, lse_s;
  Tensor window_out, span_out;  // the kept partials (Note [kept partials]), else undefined
};

// Note [kept partials]
// The backward needs, per (query, span) pair, y_j = <dO, O_j> with O_j the span's own
// normalised output, and <dO, O_w> for the window (spec §9's gate gradient and each softmax's
// delta). By default it recomputes them: a y pass over the span tiles (two of the backward's
// nine tile products) and a second window forward. With keep_partials the forward keeps the
// O_j it computed anyway (bf16 rows it merges from) and the window's output, and the backward
// reads them instead: the same values the forward merged, at the cost of (K + 1) times the size
// of the output in memory until the backward. Only the CUDA tensor-core path (bf16, D 64 or 128)
// keeps them; elsewhere the forward leaves both undefined and the backward recomputes.
struct SuperlinearGrads {
  Tensor dqa, dqs, dk, dv;
};

// Forward on tensors (spec §2-8). q_start < 0 means Lkv - Lq. `work` (CPU only, may be null)
// receives the dot products the reference actually performed. doc_starts: undefined, or int32
// [B, Lkv] with 0 <= doc_starts[b, t] <= t. Throws sl::Error naming "superlinear_attention" on bad
// arguments (shapes, dtypes, devices, Hq % Hkv, q_start + Lq > Lkv, config values).
SuperlinearForward superlinear_forward(const Tensor& qa, const Tensor& qs, const Tensor& k,
                                       const Tensor& v, const SuperlinearConfig& cfg,
                                       const Tensor& doc_starts = Tensor(), int64_t q_start = -1,
                                       SuperlinearWork* work = nullptr, bool keep_partials = false);
// Note [saved for backward]
// What a caller keeps from the forward for the backward. The CUDA tensor-core path (bf16, D 64
// or 128) computes the gate scores again from Qs and K at the saved anchors (k dot products per
// row, in the backward's row kernel, which reads those K rows anyway) and reads lse_w only with
// a window (W > 0; it is -inf throughout otherwise). So there the forward's scores, and lse_w
// when W = 0, need not live until the backward: 16 of the 40 bytes per query row of metadata
// at k = 3, 256 MiB at 1M tokens and 16 heads. The recomputed scores sum D in another order
// than the search's, so the gate weights the gradient uses can differ from the forward's in the
// last bits of f32. Every other path reads all of the metadata.
// Drops from f what superlinear_backward does not read for inputs like qa and k: always the
// output; on the tensor-core path the scores, and lse_w when W = 0.
void drop_unsaved(SuperlinearForward& f, const Tensor& qa, const Tensor& k,
                  const SuperlinearConfig& cfg);

// Gradients (spec §9) from the forward's saved metadata (and its kept partials, when defined);
// no gradient through top-k or bounds. fwd.scores and (W = 0) fwd.lse_w may be undefined on the
// tensor-core path (Note [saved for backward]).
// deterministic (the default): no floating-point atomics, identical bits run to run; false: the
// CUDA fast mode (fp32 atomics for dK/dV off the tensor-core path; on it, the same deterministic
// kernels). The CPU reference is deterministic either way.
SuperlinearGrads superlinear_backward(const Tensor& dout, const Tensor& qa, const Tensor& qs,
                                      const Tensor& k, const Tensor& v,
                                      const SuperlinearForward& fwd, const SuperlinearConfig& cfg,
                                      const Tensor& doc_starts = Tensor(), int64_t q_start = -1,
                                      bool deterministic = true);

// The search kernel superlinear_forward runs for qa [B, Hq, Lq, D] against k [B, Hkv, Lkv, D]
// (q_start as there): "cpu" (the CPU reference), or on CUDA "lanes" (the warp-per-query
// search), "bf16" or "int8" (the tensor-core searches of kernels/superlinear_search_mma.cu;
// SL_SEARCH_KERNEL included). For logs and benchmarks.
std::string superlinear_search_kernel(const Tensor& qa, const Tensor& k, int64_t q_start = -1);

void superlinear_forward_cpu(const SuperlinearParams& p);
void superlinear_backward_cpu(const SuperlinearBackwardParams& p);
#if SL_WITH_CUDA
// CUDA kernels (kernels/superlinear_cuda.cu, kernels/superlinear_bwd_cuda.cu): f32 and bf16,
// fp32 accumulation, k <= 8, D <= 256; work counters must be null. Throw sl::Error naming
// "superlinear_attention" outside those limits.
void superlinear_forward_cuda(const SuperlinearParams& p, int device);
void superlinear_backward_cuda(const SuperlinearBackwardParams& p, int device);
// Whether the forward of p runs on the tensor-core path, the one that can keep partials.
bool superlinear_cuda_keeps_partials(const SuperlinearParams& p);
// superlinear_search_kernel's answer for p (shapes, dtype, k and qs pointers for alignment).
const char* superlinear_cuda_search_kernel(const SuperlinearParams& p);
#endif

// Per-document start of every position from cu_seqlens ([n_docs + 1] int32, 0 .. L): int32 [1, L].
Tensor doc_starts_from_cu_seqlens(const std::vector<int32_t>& cu_seqlens);

// ---- the O(L^2) oracle: the spec read literally (masks over all keys, full sort), in f64 ----

struct SuperlinearOracle {
  Tensor out;      // f64 [B, Hq, Lq, D]
  Tensor anchors;  // int32 [B, Hq, Lq, K]
  Tensor scores;   // f64 [B, Hq, Lq, K]
};
SuperlinearOracle superlinear_dense_oracle(const Tensor& qa, const Tensor& qs, const Tensor& k,
                                           const Tensor& v, const SuperlinearConfig& cfg,
                                           const Tensor& doc_starts = Tensor(),
                                           int64_t q_start = -1);

// ---- work (spec §11) ----

// Work of Lq queries at t = q_start + i (one document unless doc_starts: int32 [Lkv], positions'
// s_b) against the given anchors (int32, k per query, -1 for empty), or, when `anchors` is empty,
// against the k nearest candidates (the most keys for f_f = 0). No attention is computed.
SuperlinearWork superlinear_work(const SuperlinearConfig& cfg, int64_t Lq, int64_t q_start,
                                 const std::vector<int32_t>& doc_starts = {},
                                 const std::vector<int32_t>& anchors = {});

}  // namespace sl::kernels
