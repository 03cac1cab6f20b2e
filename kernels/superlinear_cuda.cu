// CUDA forward of superlinear attention (spec §4-8), one warp per query row (Note [warp layouts]
// in kernels/superlinear_cuda_common.cuh): search over the candidate anchors (lane per
// candidate) with a warp-uniform running top-k, the window attended once, each kept span attended
// alone with an online softmax, LSE merge and gate; the O(L k) metadata of the CPU reference is
// saved for the backward (kernels/superlinear_bwd_cuda.cu).
//
// Non-obvious decision: anchors come from the same SL_HD schedule functions as the CPU reference
// and the top-k keeps the spec's total order (score descending, then the farther anchor), so the
// kept set does not depend on the order in which candidates are inserted; with scores equal in
// f32 and f64 (e.g. inputs on a coarse grid) the GPU selects exactly the CPU's anchors.
//
// launch_search (the search alone, for the tensor-core forward) runs the tensor-core search of
// kernels/superlinear_search_mma.cu where it applies (bf16, D 64 or 128) and this file's lane
// search otherwise, or the int8 search of the same file for prefill (Note [int8 search]).
// The stream search (Note [stream search]) is the int8 search with blocks of queries sharing K
// rows through shared memory. SL_SEARCH_KERNEL = stream, int8, bf16 or lanes (a testing knob,
// read per call) forces one.
#include <cstdlib>
#include <cstring>
#include <string>

#include "kernels/superlinear_cuda_common.cuh"

namespace sl::kernels {
namespace slcuda {
namespace {

// Online-softmax attention of the warp's query (qa_s, shared memory) over keys [lo, hi]: o gets
// this lane's E elements of the normalised output; returns the log-sum-exp of the scaled logits
// (-inf, o = 0 when the range is empty).
template <class T, int E>
__device__ float attend(const T* K, const T* V, int64_t lo, int64_t hi, const float* qa_s,
                        float scale, int D, bool vec, float (&o)[E]) {
#pragma unroll
  for (int e = 0; e < E; ++e) o[e] = 0.f;
  if (lo > hi) return -INFINITY;
  const int lane = lane_id();
  float m = -INFINITY, l = 0.f;
  for (int64_t base = lo; base <= hi; base += 32) {
    const int n = int(min(int64_t(32), hi - base + 1));
    const bool ok = lane < n;
    const float z = ok ? dot_row(K + (base + lane) * D, qa_s, D, vec) * scale : -INFINITY;
    const float mn = fmaxf(m, warp_max(z));
    const float pz = ok ? expf(z - mn) : 0.f;
    const float corr = expf(m - mn);
    l = l * corr + warp_sum(pz);
#pragma unroll
    for (int e = 0; e < E; ++e) o[e] *= corr;
#pragma unroll 4
    for (int j = 0; j < n; ++j) {
      const float pj = __shfl_sync(0xffffffffu, pz, j);
      float v[E];
      load_lane<T, E>(V + (base + j) * D, D, vec, v);
#pragma unroll
      for (int e = 0; e < E; ++e) o[e] = fmaf(pj, v[e], o[e]);
    }
    m = mn;
  }
  const float inv = 1.f / l;
#pragma unroll
  for (int e = 0; e < E; ++e) o[e] *= inv;
  return m + logf(l);
}

// kAttend = false: the search only (anchors and gate scores), for the tensor-core span path
// (kernels/superlinear_span_cuda.cu) that attends afterwards.
template <class T, int E, bool kAttend = true>
__global__ void __launch_bounds__(kRowWarps * 32)
    superlinear_fwd_kernel(SuperlinearParams p, bool vec) {
  extern __shared__ float smem[];
  const int64_t w = int64_t(blockIdx.x) * kRowWarps + threadIdx.x / 32;
  if (w >= p.B * p.Hq * p.Lq) return;
  const SuperlinearConfig& c = p.cfg;
  const int D = int(p.D), k = c.k, lane = lane_id();
  float* qa_s = smem + (threadIdx.x / 32) * 2 * D;
  float* qs_s = qa_s + D;
  const RowGeom r = locate_warp(p, w);
  const T* K = static_cast<const T*>(p.k) + r.kv_off;
  const T* V = static_cast<const T*>(p.v) + r.kv_off;
  row_to_smem(static_cast<const T*>(p.qa) + r.row * D, D, qa_s);
  row_to_smem(static_cast<const T*>(p.qs) + r.row * D, D, qs_s);
  __syncwarp();

  // Search: 32 candidates at a time, lane per candidate; only those that beat the current k-th
  // entry are inserted, in lane order.
  float bs[kMaxK];
  int32_t ba[kMaxK];
#pragma unroll
  for (int j = 0; j < kMaxK; ++j) bs[j] = -INFINITY, ba[j] = kNoAnchor;
  const int64_t n = num_candidates(c, r.t + 1 - r.sb);
  for (int64_t c0 = 0; c0 < n; c0 += 32) {
    const bool ok = c0 + lane < n;
    const int32_t a = ok ? int32_t(candidate_anchor(c, r.t, c0 + lane)) : kNoAnchor;
    const float s = ok ? dot_row(K + int64_t(a) * D, qs_s, D, vec) : -INFINITY;
    float ws = -INFINITY;
    int32_t wa = kNoAnchor;
#pragma unroll
    for (int j = 0; j < kMaxK; ++j)
      if (j == k - 1) ws = bs[j], wa = ba[j];
    unsigned mask = __ballot_sync(0xffffffffu, ok && ranks_before(s, a, ws, wa));
    while (mask) {
      const int src = __ffs(mask) - 1;
      mask &= mask - 1;
      const float ss = __shfl_sync(0xffffffffu, s, src);
      const int32_t aa = __shfl_sync(0xffffffffu, a, src);
      topk_insert(k, ss, aa, bs, ba);
    }
  }

  const int64_t mrow = r.row * k;
  float* scores = static_cast<float*>(p.scores) + mrow;
  float* lse_s = static_cast<float*>(p.lse_s) + mrow;
  if (lane == 0)
#pragma unroll
    for (int j = 0; j < kMaxK; ++j)
      if (j < k) p.anchors[mrow + j] = ba[j], scores[j] = bs[j];
  if (!kAttend) return;
  float g[kMaxK];
  gate_weights(k, bs, ba, g);

  const float scale = 1.f / sqrtf(float(D));
  float ow[E], os[E], out[E];
#pragma unroll
  for (int e = 0; e < E; ++e) out[e] = 0.f;
  const float lse_w = attend<T, E>(K, V, sw_start(c, r.t, r.sb), r.t, qa_s, scale, D, vec, ow);
  for (int j = 0; j < k; ++j) {
    const int32_t a = ba[j];
    float lj = -INFINITY;
    if (a >= 0)
      lj = attend<T, E>(K, V, span_start(c, a, r.t, r.sb), span_end(c, a, r.t, r.sb), qa_s, scale,
                        D, vec, os);
    if (lane == 0) lse_s[j] = lj;
    const float lam = logaddexp(lse_w, lj);
    if (lam == -INFINITY) continue;  // window and span both empty: O_j = 0
    const float ww = expf(lse_w - lam), wj = a >= 0 ? expf(lj - lam) : 0.f;
#pragma unroll
    for (int e = 0; e < E; ++e) out[e] += g[j] * (ww * ow[e] + (a >= 0 ? wj * os[e] : 0.f));
  }
  T* o = static_cast<T*>(p.out) + r.row * D;
#pragma unroll
  for (int e = 0; e < E; ++e)
    if (lane * E + e < D) st(o + lane * E + e, out[e]);
  if (lane == 0) static_cast<float*>(p.lse_w)[r.row] = lse_w;
}

template <class T, int E>
void launch_forward(const SuperlinearParams& p, bool vec, cudaStream_t s) {
  const size_t smem = size_t(kRowWarps) * 2 * size_t(p.D) * sizeof(float);
  superlinear_fwd_kernel<T, E><<<row_blocks(p.B * p.Hq * p.Lq), kRowWarps * 32, smem, s>>>(p, vec);
  SL_CUDA_LAUNCH_CHECK();
}

}  // namespace

void launch_search_lanes(const SuperlinearParams& p, cudaStream_t s) {
  const bool vec = can_vectorise(p, {});
  const size_t smem = size_t(kRowWarps) * 2 * size_t(p.D) * sizeof(float);
  SL_DISPATCH_CUDA_FLOAT(p.dtype, kOp, T, {
    superlinear_fwd_kernel<T, 4, false>
        <<<row_blocks(p.B * p.Hq * p.Lq), kRowWarps * 32, smem, s>>>(p, vec);
  });
  SL_CUDA_LAUNCH_CHECK();
}

const char* search_kind(const SuperlinearParams& p) {
  const char* env = std::getenv("SL_SEARCH_KERNEL");
  const std::string kind = env != nullptr ? env : "";
  SL_CHECK(kind.empty() || kind == "stream" || kind == "int8" || kind == "bf16" || kind == "lanes")
      << kOp << ": SL_SEARCH_KERNEL is '" << kind << "', expected stream, int8, bf16 or lanes";
  if (kind == "lanes" || !search_mma_supported(p)) return "lanes";
  if (kind == "stream" && search_stream_supported(p)) return "stream";
  if (kind.empty() && search_stream_preferred(p)) return "stream";
  if (kind == "int8" || (kind.empty() && search_int8_preferred(p))) return "int8";
  return "bf16";
}

void launch_search(const SuperlinearParams& p, int device, cudaStream_t s) {
  const std::string kind = search_kind(p);
  if (kind == "lanes") return launch_search_lanes(p, s);
  if (kind == "stream") return launch_search_stream(p, device, s);
  if (kind == "int8") return launch_search_q8(p, device, s);
  launch_search_mma(p, s);
}

}  // namespace slcuda

bool superlinear_cuda_keeps_partials(const SuperlinearParams& p) {
  return slcuda::spans_supported(p);
}

const char* superlinear_cuda_search_kernel(const SuperlinearParams& p) {
  // Off the tensor-core path the warp-per-query forward runs its own lane search.
  return slcuda::spans_supported(p) ? slcuda::search_kind(p) : "lanes";
}

void superlinear_forward_cuda(const SuperlinearParams& p, int device) {
  using namespace slcuda;
  check_limits(p);
  SL_CHECK(p.stat_dtype == DType::F32)
      << kOp << ": CUDA statistics are f32, got " << dtype_name(p.stat_dtype);
  if (p.B * p.Hq * p.Lq == 0) return;
  cuda::set_device(device);
  if (spans_supported(p)) return forward_spans(p, device);
  SL_CHECK(!p.span_out && !p.window_out)
      << kOp << ": only the tensor-core path keeps partials (superlinear_cuda_keeps_partials)";
  cudaStream_t s = cuda::stream(device);
  const bool vec = can_vectorise(p, {p.out});
  SL_DISPATCH_CUDA_FLOAT(p.dtype, kOp, T, {
    if (p.D <= 64)
      launch_forward<T, 2>(p, vec, s);
    else if (p.D <= 128)
      launch_forward<T, 4>(p, vec, s);
    else
      launch_forward<T, 8>(p, vec, s);
  });
}

}  // namespace sl::kernels
