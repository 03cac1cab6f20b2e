// CUDA backward of superlinear attention (spec §9), following the CPU reference's math (Note
// [backward through the merge] in kernels/superlinear_cpu.cpp) with the layouts of Note [warp
// layouts] (kernels/superlinear_cuda_common.cuh). bf16 with D 64 or 128 goes to the tensor-core
// backward instead (kernels/superlinear_span_bwd_cuda.cu); these kernels serve the rest.
//
// Note [deterministic superlinear backward]
// 1. Rows (one warp per query row): pass 1 recomputes y_j = <dO, O_j> from the window and span
//    log-sum-exps, hence the gate gradient dscore_j and dQs = sum_j dscore_j K[a_j]; pass 2 walks
//    window and spans again for dQa. Each row writes only its own dQa/dQs. It saves, per (row,
//    slot) v = row * k + j, the softmax term of slot j's span: lam_j = logaddexp(lse_w, lse_j),
//    c1 = g_j, c2 = g_j y_j and dscore_j; per row alpha = sum_j g_j e^{lse_w - lam_j} and
//    alpha_y = sum_j g_j e^{lse_w - lam_j} y_j (the window's term). Every key u of a term (lse,
//    c1, c2) gets dV_u += c1 P_u dO and dK_u += P_u (c1 <dO, V_u> - c2) Qa / sqrt(D) with
//    P_u = exp(<Qa, K_u> / sqrt(D) - lse).
// 2. Index: the (row, slot) pairs sorted by (KV group, anchor) with a stable radix sort of the
//    pair ids (CUB; deterministic), and offsets[group * Lkv + a] by binary search: a CSR from
//    anchors to the pairs that kept them.
// 3. Keys (one warp per 32 keys of one KV group, dK/dV of the block in shared memory): the window
//    terms of queries t in [u0, u0 + 31 + W - 1] (t ascending, heads ascending), then the span
//    terms of every anchor whose span can reach the block (a in [u0 - len_f(Lkv),
//    u0 + 31 + len_b(Lkv)], anchors ascending, pairs in index order), then the routing term
//    dK[a] += dscore Qs of the pairs that kept each key a of the block. Each key is written by one
//    warp, in a fixed order: no floating-point atomics, bitwise reproducible.
// Memory besides the outputs: per (row, slot) 4 floats of terms + 4 int32 of sort keys/values
// (in and out) + CUB's temporary storage (about 8 bytes per pair); per row 2 floats; 4 bytes per
// (group, key) of offsets. About 40 bytes per (row, slot), O(L k), nothing of size L x candidates.
// The fast mode skips 2-3 and scatters dK/dV from pass 2 with f32 atomicAdd (into dk/dv for f32,
// into f32 [B, Hkv, Lkv, D] accumulators for bf16, 8 bytes per K/V element).
#include <cub/device/device_radix_sort.cuh>

#include "kernels/superlinear_cuda_common.cuh"

namespace sl::kernels {
namespace slcuda {
namespace {

constexpr int kKeyBlock = 32;  // keys per warp in the key-centric pass

struct Terms {
  float *lam, *c1, *c2, *dscore;  // [rows * k]; null in the fast mode
  float *alpha, *alpha_y;         // [rows]
  float *dk_acc, *dv_acc;         // fast mode: f32 [B, Hkv, Lkv, D]; null in the deterministic mode
};

struct KeyIndex {
  const int32_t* pairs;    // [rows * k] pair ids v = row * k + j, sorted by (group, anchor)
  const int32_t* offsets;  // [B * Hkv * Lkv + 1]
  int64_t nblk, lenb_max, lenf_max, W;
};

// sum over keys [lo, hi] of exp(<Qa, K_u> scale - lse) <dO, V_u> (lane per key, one warp sum).
template <class T>
__device__ float sweep_y(const T* K, const T* V, int64_t lo, int64_t hi, const float* qa_s,
                         const float* do_s, float scale, float lse, int D, bool vec) {
  if (lo > hi || lse == -INFINITY) return 0.f;
  float acc = 0.f;
  for (int64_t u = lo + lane_id(); u <= hi; u += 32) {
    const float z = dot_row(K + u * D, qa_s, D, vec) * scale;
    acc += expf(z - lse) * dot_row(V + u * D, do_s, D, vec);
  }
  return warp_sum(acc);
}

// Pass 2 over keys [lo, hi] for one softmax term (lse, c1, c2): dQa += dz_u K_u with
// dz_u = P_u (c1 <dO, V_u> - c2) scale; with accumulators (fast mode) also dK_u += dz_u Qa and
// dV_u += c1 P_u dO by atomicAdd.
template <class T, int E>
__device__ void sweep_grad(const T* K, const T* V, int64_t lo, int64_t hi, const float* qa_s,
                           const float* do_s, float scale, float lse, float c1, float c2, int D,
                           bool vec, float (&dqa)[E], float* dk_acc, float* dv_acc) {
  const int lane = lane_id();
  float qa_c[E], do_c[E];
  load_lane_smem<E>(qa_s, D, qa_c);
  load_lane_smem<E>(do_s, D, do_c);
  for (int64_t base = lo; base <= hi; base += 32) {
    const int n = int(min(int64_t(32), hi - base + 1));
    float dz = 0.f, pv = 0.f;
    if (lane < n) {
      const int64_t u = base + lane;
      const float P = expf(dot_row(K + u * D, qa_s, D, vec) * scale - lse);
      dz = P * (c1 * dot_row(V + u * D, do_s, D, vec) - c2) * scale;
      pv = c1 * P;
    }
#pragma unroll 4
    for (int j = 0; j < n; ++j) {
      const float dzj = __shfl_sync(0xffffffffu, dz, j);
      const float pvj = __shfl_sync(0xffffffffu, pv, j);
      float kk[E];
      load_lane<T, E>(K + (base + j) * D, D, vec, kk);
#pragma unroll
      for (int e = 0; e < E; ++e) dqa[e] = fmaf(dzj, kk[e], dqa[e]);
      if (dk_acc) {
        const int64_t off = (base + j) * D + lane * E;
#pragma unroll
        for (int e = 0; e < E; ++e)
          if (lane * E + e < D) {
            atomicAdd(dk_acc + off + e, dzj * qa_c[e]);
            atomicAdd(dv_acc + off + e, pvj * do_c[e]);
          }
      }
    }
  }
}

template <class T, int E>
__global__ void __launch_bounds__(kRowWarps * 32)
    superlinear_bwd_rows_kernel(SuperlinearBackwardParams bp, Terms tm, bool vec) {
  extern __shared__ float smem[];
  const SuperlinearParams& p = bp.fwd;
  const int64_t w = int64_t(blockIdx.x) * kRowWarps + threadIdx.x / 32;
  if (w >= p.B * p.Hq * p.Lq) return;
  const SuperlinearConfig& c = p.cfg;
  const int D = int(p.D), k = c.k, lane = lane_id();
  float* qa_s = smem + (threadIdx.x / 32) * 3 * D;
  float* qs_s = qa_s + D;
  float* do_s = qs_s + D;
  const RowGeom r = locate_warp(p, w);
  const T* K = static_cast<const T*>(p.k) + r.kv_off;
  const T* V = static_cast<const T*>(p.v) + r.kv_off;
  row_to_smem(static_cast<const T*>(p.qa) + r.row * D, D, qa_s);
  row_to_smem(static_cast<const T*>(p.qs) + r.row * D, D, qs_s);
  row_to_smem(static_cast<const T*>(bp.dout) + r.row * D, D, do_s);
  __syncwarp();
  const float scale = 1.f / sqrtf(float(D));
  float* dk_acc = tm.dk_acc ? tm.dk_acc + r.kv_off : nullptr;
  float* dv_acc = tm.dv_acc ? tm.dv_acc + r.kv_off : nullptr;

  const int64_t mrow = r.row * k;
  const float lse_w = static_cast<const float*>(p.lse_w)[r.row];
  float sc[kMaxK], ls[kMaxK], lam[kMaxK], g[kMaxK], y[kMaxK];
  int32_t an[kMaxK];
  int64_t lo[kMaxK], hi[kMaxK];
  for (int j = 0; j < k; ++j) {
    an[j] = p.anchors[mrow + j];
    sc[j] = static_cast<const float*>(p.scores)[mrow + j];
    ls[j] = an[j] >= 0 ? static_cast<const float*>(p.lse_s)[mrow + j] : -INFINITY;
    lam[j] = logaddexp(lse_w, ls[j]);
    lo[j] = an[j] >= 0 ? span_start(c, an[j], r.t, r.sb) : 0;
    hi[j] = an[j] >= 0 ? span_end(c, an[j], r.t, r.sb) : -1;
  }
  gate_weights(k, sc, an, g);
  const int64_t sw = sw_start(c, r.t, r.sb);

  // Pass 1: y_j = <dO, O_j>, the gate gradient and the window's weights.
  const float yw = sweep_y(K, V, sw, r.t, qa_s, do_s, scale, lse_w, D, vec);
  float ybar = 0.f, alpha = 0.f, alpha_y = 0.f;
  for (int j = 0; j < k; ++j) {
    const float ys = sweep_y(K, V, lo[j], hi[j], qa_s, do_s, scale, ls[j], D, vec);
    const float l = lam[j];
    y[j] = l == -INFINITY ? 0.f
                          : (lse_w == -INFINITY ? 0.f : expf(lse_w - l) * yw) +
                                (an[j] >= 0 ? expf(ls[j] - l) * ys : 0.f);
    ybar += g[j] * y[j];
    if (l != -INFINITY && lse_w != -INFINITY) {
      const float aj = g[j] * expf(lse_w - l);
      alpha += aj;
      alpha_y += aj * y[j];
    }
  }

  // Routing: dscore_j = g_j (y_j - ybar); dQs += dscore_j K[a_j]; dK[a_j] += dscore_j Qs.
  float dqs[E], qs_c[E];
  load_lane_smem<E>(qs_s, D, qs_c);
#pragma unroll
  for (int e = 0; e < E; ++e) dqs[e] = 0.f;
  for (int j = 0; j < k; ++j) {
    const float ds = an[j] >= 0 ? g[j] * (y[j] - ybar) : 0.f;
    if (tm.dscore && lane == 0) {
      tm.dscore[mrow + j] = ds;
      tm.lam[mrow + j] = lam[j];
      tm.c1[mrow + j] = an[j] >= 0 ? g[j] : 0.f;
      tm.c2[mrow + j] = an[j] >= 0 ? g[j] * y[j] : 0.f;
    }
    if (an[j] < 0) continue;
    float kk[E];
    load_lane<T, E>(K + int64_t(an[j]) * D, D, vec, kk);
#pragma unroll
    for (int e = 0; e < E; ++e) dqs[e] = fmaf(ds, kk[e], dqs[e]);
    if (dk_acc)
#pragma unroll
      for (int e = 0; e < E; ++e)
        if (lane * E + e < D) atomicAdd(dk_acc + int64_t(an[j]) * D + lane * E + e, ds * qs_c[e]);
  }
  if (tm.alpha && lane == 0) tm.alpha[r.row] = alpha, tm.alpha_y[r.row] = alpha_y;

  // Pass 2: attention gradients (dQa; dK, dV too in the fast mode).
  float dqa[E];
#pragma unroll
  for (int e = 0; e < E; ++e) dqa[e] = 0.f;
  if (lse_w != -INFINITY)
    sweep_grad<T, E>(K, V, sw, r.t, qa_s, do_s, scale, lse_w, alpha, alpha_y, D, vec, dqa, dk_acc,
                     dv_acc);
  for (int j = 0; j < k; ++j) {
    if (an[j] < 0 || g[j] == 0.f) continue;
    sweep_grad<T, E>(K, V, lo[j], hi[j], qa_s, do_s, scale, lam[j], g[j], g[j] * y[j], D, vec, dqa,
                     dk_acc, dv_acc);
  }
  T* dqa_row = static_cast<T*>(bp.dqa) + r.row * D;
  T* dqs_row = static_cast<T*>(bp.dqs) + r.row * D;
#pragma unroll
  for (int e = 0; e < E; ++e)
    if (lane * E + e < D) st(dqa_row + lane * E + e, dqa[e]), st(dqs_row + lane * E + e, dqs[e]);
}

// ---- deterministic dK/dV: index of pairs by anchor, then one warp per 32 keys ----

// The pairs of groups bg0 .. bg0 + n_bg - 1 (pair ids v0 .. v0 + n - 1): key (bg - bg0) Lkv + a,
// or n_bg Lkv (past every key) for an empty slot.
__global__ void pair_keys_kernel(SuperlinearParams p, int64_t bg0, int64_t n_bg, int64_t v0,
                                 int64_t n, uint32_t* keys, int32_t* vals) {
  const int64_t r = p.Hq / p.Hkv, none = n_bg * p.Lkv;
  for (int64_t x = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; x < n;
       x += int64_t(gridDim.x) * blockDim.x) {
    const int64_t v = v0 + x, row = v / p.cfg.k, h = (row / p.Lq) % p.Hq, b = row / (p.Lq * p.Hq);
    const int32_t a = p.anchors[v];
    keys[x] = uint32_t(a >= 0 ? (b * p.Hkv + h / r - bg0) * p.Lkv + a : none);
    vals[x] = int32_t(v);
  }
}

// offsets[x] = first sorted position whose key is >= x, for x in [0, n_keys].
__global__ void pair_offsets_kernel(const uint32_t* keys, int64_t n, int64_t n_keys,
                                    int32_t* offsets) {
  for (int64_t x = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; x <= n_keys;
       x += int64_t(gridDim.x) * blockDim.x) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      if (int64_t(keys[mid]) < x)
        lo = mid + 1;
      else
        hi = mid;
    }
    offsets[x] = int32_t(lo);
  }
}

template <class T, int E>
__global__ void __launch_bounds__(32)
    superlinear_bwd_keys_kernel(SuperlinearBackwardParams bp, Terms tm, KeyIndex ix, bool vec) {
  extern __shared__ float smem[];
  const SuperlinearParams& p = bp.fwd;
  const SuperlinearConfig& c = p.cfg;
  const int D = int(p.D), k = c.k, lane = lane_id();
  float* dk_s = smem;
  float* dv_s = dk_s + kKeyBlock * D;
  float* qa_s = dv_s + kKeyBlock * D;
  float* do_s = qa_s + D;
  const int64_t grp = blockIdx.x / ix.nblk, u0 = (blockIdx.x % ix.nblk) * kKeyBlock;
  const int64_t b = grp / p.Hkv, kvh = grp % p.Hkv, r = p.Hq / p.Hkv;
  const int64_t u_last = min(u0 + kKeyBlock - 1, p.Lkv - 1), kv_off = grp * p.Lkv * D;
  const T* K = static_cast<const T*>(p.k) + kv_off;
  const T* V = static_cast<const T*>(p.v) + kv_off;
  const T* QA = static_cast<const T*>(p.qa);
  const T* DO = static_cast<const T*>(bp.dout);
  for (int x = lane; x < 2 * kKeyBlock * D; x += 32) dk_s[x] = 0.f;
  const float scale = 1.f / sqrtf(float(D));
  auto doc = [&](int64_t t) { return p.doc_starts ? int64_t(p.doc_starts[b * p.Lkv + t]) : 0; };

  // One softmax term (lse, c1, c2) of query row `row` over its keys [lo, hi] inside the block.
  auto term = [&](int64_t row, int64_t lo, int64_t hi, float lse, float c1, float c2) {
    lo = max(lo, u0);
    hi = min(hi, u_last);
    if (lo > hi) return;
    __syncwarp();
    row_to_smem(QA + row * D, D, qa_s);
    row_to_smem(DO + row * D, D, do_s);
    __syncwarp();
    const int64_t u = u0 + lane;
    float dz = 0.f, pv = 0.f;
    if (u >= lo && u <= hi) {
      const float P = expf(dot_row(K + u * D, qa_s, D, vec) * scale - lse);
      dz = P * (c1 * dot_row(V + u * D, do_s, D, vec) - c2) * scale;
      pv = c1 * P;
    }
    float qa_c[E], do_c[E];
    load_lane_smem<E>(qa_s, D, qa_c);
    load_lane_smem<E>(do_s, D, do_c);
    for (int j = int(lo - u0); j <= int(hi - u0); ++j) {
      const float dzj = __shfl_sync(0xffffffffu, dz, j);
      const float pvj = __shfl_sync(0xffffffffu, pv, j);
      float* dkr = dk_s + j * D + lane * E;
      float* dvr = dv_s + j * D + lane * E;
#pragma unroll
      for (int e = 0; e < E; ++e)
        if (lane * E + e < D) {
          dkr[e] = fmaf(dzj, qa_c[e], dkr[e]);
          dvr[e] = fmaf(pvj, do_c[e], dvr[e]);
        }
    }
  };

  const float* lse_w = static_cast<const float*>(p.lse_w);
  if (ix.W > 0) {
    const int64_t t_lo = max(u0, p.q_start), t_hi = min(u_last + ix.W - 1, p.q_start + p.Lq - 1);
    for (int64_t t = t_lo; t <= t_hi; ++t) {
      const int64_t sw = sw_start(c, t, doc(t));
      if (sw > u_last) continue;
      for (int64_t h = kvh * r; h < (kvh + 1) * r; ++h) {
        const int64_t row = (b * p.Hq + h) * p.Lq + (t - p.q_start);
        if (lse_w[row] == -INFINITY) continue;
        term(row, sw, t, lse_w[row], tm.alpha[row], tm.alpha_y[row]);
      }
    }
  }

  const int32_t* off = ix.offsets + grp * p.Lkv;
  const int64_t a_lo = max(int64_t(0), u0 - ix.lenf_max);
  const int64_t a_hi = min(p.Lkv - 1, u_last + ix.lenb_max);
  for (int64_t a = a_lo; a <= a_hi; ++a)
    for (int32_t e = off[a]; e < off[a + 1]; ++e) {
      const int64_t v = ix.pairs[e];
      if (tm.c1[v] == 0.f) continue;
      const int64_t row = v / k, t = p.q_start + row % p.Lq, sb = doc(t);
      term(row, span_start(c, a, t, sb), span_end(c, a, t, sb), tm.lam[v], tm.c1[v], tm.c2[v]);
    }
  __syncwarp();

  const T* QS = static_cast<const T*>(p.qs);
  for (int64_t a = u0; a <= u_last; ++a)
    for (int32_t e = off[a]; e < off[a + 1]; ++e) {
      const int64_t v = ix.pairs[e];
      const float ds = tm.dscore[v];
      float q[E];
      load_lane<T, E>(QS + (v / k) * D, D, vec, q);
      float* dkr = dk_s + (a - u0) * D + lane * E;
#pragma unroll
      for (int e2 = 0; e2 < E; ++e2)
        if (lane * E + e2 < D) dkr[e2] = fmaf(ds, q[e2], dkr[e2]);
    }
  __syncwarp();

  T* dk = static_cast<T*>(bp.dk) + kv_off;
  T* dv = static_cast<T*>(bp.dv) + kv_off;
  for (int64_t u = u0; u <= u_last; ++u)
    for (int d = lane; d < D; d += 32) {
      st(dk + u * D + d, dk_s[(u - u0) * D + d]);
      st(dv + u * D + d, dv_s[(u - u0) * D + d]);
    }
}

template <class T>
__global__ void f32_to_kernel(const float* src, T* dst, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    st(dst + i, src[i]);
}

unsigned grid_1d(int64_t n, int threads = 256) {
  const int64_t blocks = (n + threads - 1) / threads;
  return unsigned(blocks < 132 * 16 ? (blocks > 0 ? blocks : 1) : 132 * 16);
}

template <class T, int E>
void launch_rows(const SuperlinearBackwardParams& bp, const Terms& tm, bool vec, cudaStream_t s) {
  const SuperlinearParams& p = bp.fwd;
  const size_t smem = size_t(kRowWarps) * 3 * size_t(p.D) * sizeof(float);
  superlinear_bwd_rows_kernel<T, E>
      <<<row_blocks(p.B * p.Hq * p.Lq), kRowWarps * 32, smem, s>>>(bp, tm, vec);
  SL_CUDA_LAUNCH_CHECK();
}

template <class T, int E>
void launch_keys(const SuperlinearBackwardParams& bp, const Terms& tm, const KeyIndex& ix, bool vec,
                 cudaStream_t s) {
  const SuperlinearParams& p = bp.fwd;
  const size_t smem = (2 * size_t(kKeyBlock) + 2) * size_t(p.D) * sizeof(float);
  SL_CUDA_CHECK(cudaFuncSetAttribute(superlinear_bwd_keys_kernel<T, E>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  const int64_t blocks = p.B * p.Hkv * ix.nblk;
  superlinear_bwd_keys_kernel<T, E><<<unsigned(blocks), 32, smem, s>>>(bp, tm, ix, vec);
  SL_CUDA_LAUNCH_CHECK();
}

template <class T>
void backward_typed(const SuperlinearBackwardParams& bp, int device, cudaStream_t s) {
  const SuperlinearParams& p = bp.fwd;
  const Device dev = Device::cuda(device);
  const bool vec = can_vectorise(p, {bp.dout});
  const int64_t rows = p.B * p.Hq * p.Lq, n = rows * p.cfg.k, kv = p.B * p.Hkv * p.Lkv * p.D;
  auto rows_pass = [&](const Terms& tm) {
    if (p.D <= 64)
      launch_rows<T, 2>(bp, tm, vec, s);
    else if (p.D <= 128)
      launch_rows<T, 4>(bp, tm, vec, s);
    else
      launch_rows<T, 8>(bp, tm, vec, s);
  };
  Terms tm{};
  if (!bp.deterministic) {
    Tensor acc;
    if constexpr (std::is_same_v<T, float>) {
      tm.dk_acc = static_cast<float*>(bp.dk);
      tm.dv_acc = static_cast<float*>(bp.dv);
    } else {
      acc = Tensor::empty({2, kv}, DType::F32, dev);
      tm.dk_acc = acc.data<float>();
      tm.dv_acc = tm.dk_acc + kv;
    }
    SL_CUDA_CHECK(cudaMemsetAsync(tm.dk_acc, 0, size_t(kv) * sizeof(float), s));
    SL_CUDA_CHECK(cudaMemsetAsync(tm.dv_acc, 0, size_t(kv) * sizeof(float), s));
    rows_pass(tm);
    if constexpr (!std::is_same_v<T, float>) {
      f32_to_kernel<T><<<grid_1d(kv), 256, 0, s>>>(tm.dk_acc, static_cast<T*>(bp.dk), kv);
      SL_CUDA_LAUNCH_CHECK();
      f32_to_kernel<T><<<grid_1d(kv), 256, 0, s>>>(tm.dv_acc, static_cast<T*>(bp.dv), kv);
      SL_CUDA_LAUNCH_CHECK();
    }
    return;
  }

  Tensor terms = Tensor::empty({4 * n + 2 * rows}, DType::F32, dev);
  tm.lam = terms.data<float>();
  tm.c1 = tm.lam + n;
  tm.c2 = tm.c1 + n;
  tm.dscore = tm.c2 + n;
  tm.alpha = tm.dscore + n;
  tm.alpha_y = tm.alpha + rows;
  rows_pass(tm);

  const AnchorIndex ai = anchor_index(p, device, s);
  const SuperlinearConfig& c = p.cfg;
  KeyIndex ix{ai.pairs,        ai.offsets,      (p.Lkv + kKeyBlock - 1) / kKeyBlock,
              len_b(c, p.Lkv), len_f(c, p.Lkv), window_len(c)};
  if (p.D <= 64)
    launch_keys<T, 2>(bp, tm, ix, vec, s);
  else if (p.D <= 128)
    launch_keys<T, 4>(bp, tm, ix, vec, s);
  else
    launch_keys<T, 8>(bp, tm, ix, vec, s);
}

}  // namespace

void key_offsets(const uint32_t* keys, int64_t n, int64_t n_keys, int32_t* offsets,
                 cudaStream_t s) {
  pair_offsets_kernel<<<grid_1d(n_keys + 1), 256, 0, s>>>(keys, n, n_keys, offsets);
  SL_CUDA_LAUNCH_CHECK();
}

AnchorIndex anchor_index(const SuperlinearParams& p, int device, cudaStream_t s, int64_t bg0,
                         int64_t n_bg) {
  const Device dev = Device::cuda(device);
  if (n_bg < 0) n_bg = p.B * p.Hkv - bg0;
  // A group's rows are its Hq / Hkv heads, consecutive in [B, Hq, Lq] order.
  const int64_t group_pairs = (p.Hq / p.Hkv) * p.Lq * p.cfg.k;
  const int64_t v0 = bg0 * group_pairs, n = n_bg * group_pairs, n_keys = n_bg * p.Lkv;
  AnchorIndex ai;
  ai.storage = Tensor::empty({4 * n + n_keys + 1}, DType::I32, dev);
  auto* keys_in = reinterpret_cast<uint32_t*>(ai.storage.data<int32_t>());
  auto* keys_out = keys_in + n;
  int32_t* vals_in = ai.storage.data<int32_t>() + 2 * n;
  int32_t* vals_out = vals_in + n;
  int32_t* offsets = vals_out + n;
  pair_keys_kernel<<<grid_1d(n), 256, 0, s>>>(p, bg0, n_bg, v0, n, keys_in, vals_in);
  SL_CUDA_LAUNCH_CHECK();
  int end_bit = 1;
  while (end_bit < 32 && (uint64_t(n_keys) >> end_bit) != 0) ++end_bit;
  size_t temp_bytes = 0;
  SL_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys_in, keys_out, vals_in,
                                                vals_out, n, 0, end_bit, s));
  Tensor temp = Tensor::empty({int64_t(temp_bytes / 8 + 1)}, DType::I64, dev);
  SL_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.data_ptr(), temp_bytes, keys_in, keys_out,
                                                vals_in, vals_out, n, 0, end_bit, s));
  key_offsets(keys_out, n, n_keys, offsets, s);
  ai.pairs = vals_out;
  ai.offsets = offsets;
  return ai;
}

}  // namespace slcuda

void superlinear_backward_cuda(const SuperlinearBackwardParams& bp, int device) {
  using namespace slcuda;
  const SuperlinearParams& p = bp.fwd;
  check_limits(p);
  SL_CHECK(p.stat_dtype == DType::F32)
      << kOp << ": CUDA statistics are f32, got " << dtype_name(p.stat_dtype);
  if (p.B * p.Hq * p.Lq == 0 && p.B * p.Hkv * p.Lkv == 0) return;
  cuda::set_device(device);
  cudaStream_t s = cuda::stream(device);
  if (p.B * p.Hq * p.Lq == 0) {  // no query: every gradient of K and V is zero
    const size_t bytes = size_t(p.B * p.Hkv * p.Lkv * p.D) * dtype_size(p.dtype);
    SL_CUDA_CHECK(cudaMemsetAsync(bp.dk, 0, bytes, s));
    SL_CUDA_CHECK(cudaMemsetAsync(bp.dv, 0, bytes, s));
    return;
  }
  if (spans_supported(p)) return backward_spans(bp, device);
  SL_DISPATCH_CUDA_FLOAT(p.dtype, kOp, T, backward_typed<T>(bp, device, s));
}

}  // namespace sl::kernels
