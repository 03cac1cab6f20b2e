// Tensor-core backward of superlinear attention (spec §9) for bf16 and D in {64, 128}, on the
// forward's tiles (kernels/superlinear_span_cuda.cu: pairs bucketed by key-block footprint).
//
// With P_u = exp(<Qa, K_u> / sqrt(D) - lse_j) the normalised softmax of span j alone (lse_s
// saved by the forward), ww_j = e^{lse_w - lam_j}, wj_j = e^{lse_j - lam_j}, lam_j =
// logaddexp(lse_w, lse_j), the forward is O = sum_j g_j (ww_j O_w + wj_j O_j) (spec §8). So:
//   y_j = <dO, ww_j O_w + wj_j O_j>, ys_j = <dO, O_j> = sum_u P_u <dO, V_u>;
//   dscore_j = g_j (y_j - sum_m g_m y_m); dQs = sum_j dscore_j K[a_j]; dK[a_j] += dscore_j Qs;
//   span j: dS_u = P_u (c1 <dO, V_u> - c2) with c1 = g_j wj_j, c2 = g_j wj_j y_j;
//           dQa += dS K / sqrt(D), dK_u += dS_u Qa / sqrt(D), dV_u += c1 P_u dO;
//   window: the same with P relative to lse_w, c1 = alpha = sum_j g_j ww_j and c2 = alpha_y =
//           sum_j g_j ww_j y_j, i.e. flash attention's backward with dO scaled by alpha and
//           delta = alpha_y (kernels/attention.h, delta_given).
//
// Passes (chunks of query rows, Note [span chunks]; the tile kernels are in
// kernels/superlinear_span_bwd_tiles_cuda.cu):
//   1. per chunk: tiles; y pass (S = Q K^T, dP = dO V^T, ys += rowsum(P dP)); rows: gate terms,
//      c1, c2, dscore, alpha, alpha_y, dQs. When the forward kept its partials (Note [kept
//      partials] in kernels/superlinear.h) there is no y pass: rows reads ys_j = <dO, O_j> from
//      the kept span outputs and the window output from the kept one.
//   2. window backward (W > 0), after the window output for y (kept, or computed again).
//   3. per set of (batch, KV head) groups (Note [backward groups]), per chunk of its rows: dQ
//      pass (one block per tile, dQ of each pair in registers, written per pair and summed per
//      row in slot order); dK/dV pass: one block per 64-key block of each group of the set walks
//      every tile of the chunk whose footprint covers the block, in tile order, keeping dK and
//      dV in registers (S^T = K Q^T, dV += (c1 P)^T dO, dP^T = V dO^T, dK += dS^T Q), then adds
//      them to the set's f32 accumulators: each key is written by one block per chunk. After
//      the set's chunks: dK = acc + routing (pairs by anchor: a stable sort, summed in pair
//      order) + window.
// No floating-point atomics anywhere: the result is bitwise reproducible run to run, so the fast
// mode (bp.deterministic = false) takes the same path on this kernel family.
//
// Note [fused dQ, measured and dropped]
// Flash attention 2 folds the dQ pass into the dK/dV pass: each block stores its dS tile in
// shared memory and adds dS K to dQ with atomics, five tile products instead of seven. Tried
// here as the fast mode (H200, bf16, D = 128, 16 heads, session 5): the dK/dV pass with dQ took
// 921 ms at 1M GQA 1 against 955 for the two passes apart (dq 327 + dkv 628), the backward from
// kept partials 955 against 972 ms at 1M GQA 8, but 20.0 against 18.7 ms at 64K GQA 8. The extra
// barrier per tile and the atomics (64 x D floats per tile and 64-key block, twice flash
// attention's per key with its 128-key blocks) cost about as much as the two products saved.
// Variants were slower still: float4 atomics after lane-pair shuffles with pairs that miss the
// block skipped (936 ms), and warps skipping tiles whose spans miss their 16 keys (the plain
// dK/dV pass went from 573 to 607 ms at 1M GQA 8: 280 B of spills instead of 224 at D = 128).
// Neither was kept; a fused dQ needs larger key blocks (128, eight warps) to pay.
#include "kernels/superlinear_span_cuda.cuh"

namespace sl::kernels::slcuda {
namespace {

using namespace attn;

__device__ __forceinline__ float bf16_at(const uint16_t* x, int64_t i) {
  return __uint_as_float(uint32_t(x[i]) << 16);
}
__device__ __forceinline__ uint16_t to_bf16(float v) {
  const __nv_bfloat16 b = __float2bfloat16_rn(v);
  return *reinterpret_cast<const uint16_t*>(&b);
}

struct RowTerms {
  float2* coef;            // [rows * k] (c1, c2) per pair
  float* dscore;           // [rows * k]
  float *alpha, *alpha_y;  // [rows]; null without a window
};

// Gate terms of each query row of the chunk (one warp per row; lane per E = D / 32 elements):
// y_j from ys (this chunk's y pass) or, when the forward kept them, from the span outputs
// span_out [rows, k, D] (Note [kept partials]), and the window output; then dscore, c1, c2,
// alpha, alpha_y and dQs.
template <int D>
__global__ void rows_kernel(SpanArgs a, const uint16_t* dout, const uint16_t* ow, const float* ys,
                            const uint16_t* span_out, RowTerms rt, uint16_t* dqs, int64_t row0,
                            int64_t rows) {
  constexpr int E = D / 32;
  const int64_t row = chunk_row(row0, rows);
  if (row < 0) return;
  const SuperlinearParams& p = a.p;
  const int lane = int(threadIdx.x) & 31, k = p.cfg.k;
  const Row r = locate_row(p, row);
  const float lse_w = static_cast<const float*>(p.lse_w)[row];
  const uint16_t* dorow = dout + row * D;
  float yw = 0.f;
  if (ow) {
    const uint16_t* owrow = ow + ((r.b * p.Lq + r.i) * p.Hq + r.h) * D;
#pragma unroll
    for (int e = 0; e < E; ++e) yw += bf16_at(dorow, lane * E + e) * bf16_at(owrow, lane * E + e);
    yw = warp_sum(yw);
  }
  float g[kMaxK], y[kMaxK], wj[kMaxK];
  int32_t an[kMaxK];
  row_gate(p, row, an, g);
  float ybar = 0.f, alpha = 0.f, alpha_y = 0.f;
#pragma unroll
  for (int j = 0; j < kMaxK; ++j) {
    y[j] = wj[j] = 0.f;
    if (j >= k) continue;
    const float lj = an[j] >= 0 ? static_cast<const float*>(p.lse_s)[row * k + j] : -INFINITY;
    const float lam = logaddexp(lse_w, lj);
    if (lam == -INFINITY) continue;
    const float ww = lse_w == -INFINITY ? 0.f : expf(lse_w - lam);
    wj[j] = an[j] >= 0 ? expf(lj - lam) : 0.f;
    float ysj = 0.f;
    if (an[j] >= 0 && span_out) {
      const uint16_t* osrow = span_out + (row * k + j) * D;
#pragma unroll
      for (int e = 0; e < E; ++e)
        ysj += bf16_at(dorow, lane * E + e) * bf16_at(osrow, lane * E + e);
      ysj = warp_sum(ysj);
    } else if (an[j] >= 0) {
      ysj = ys[row * k + j - a.p0];
    }
    y[j] = ww * yw + wj[j] * ysj;
    ybar += g[j] * y[j];
    alpha += g[j] * ww;
    alpha_y += g[j] * ww * y[j];
  }
  float dq[E];
#pragma unroll
  for (int e = 0; e < E; ++e) dq[e] = 0.f;
  const uint16_t* kb =
      static_cast<const uint16_t*>(p.k) + (r.b * p.Hkv + r.h / (p.Hq / p.Hkv)) * p.Lkv * D;
#pragma unroll
  for (int j = 0; j < kMaxK; ++j) {
    if (j >= k) continue;
    const float ds = an[j] >= 0 ? g[j] * (y[j] - ybar) : 0.f;
    if (lane == 0) {
      rt.dscore[row * k + j] = ds;
      rt.coef[row * k + j] = make_float2(g[j] * wj[j], g[j] * wj[j] * y[j]);
    }
    if (an[j] < 0) continue;
#pragma unroll
    for (int e = 0; e < E; ++e)
      dq[e] = fmaf(ds, bf16_at(kb, int64_t(an[j]) * D + lane * E + e), dq[e]);
  }
  if (lane == 0 && rt.alpha) rt.alpha[row] = alpha, rt.alpha_y[row] = alpha_y;
#pragma unroll
  for (int e = 0; e < E; ++e) dqs[row * D + lane * E + e] = to_bf16(dq[e]);
}

// dQa of each row of the chunk: its pairs' dQ in slot order, plus the window's (one warp per row).
template <int D>
__global__ void dq_rows_kernel(SpanArgs a, const float* dq_pair, const uint16_t* dq_w,
                               uint16_t* dqa, int64_t row0, int64_t rows) {
  constexpr int E = D / 32;
  const int64_t row = chunk_row(row0, rows);
  if (row < 0) return;
  const SuperlinearParams& p = a.p;
  const int lane = int(threadIdx.x) & 31, k = p.cfg.k;
  float acc[E];
#pragma unroll
  for (int e = 0; e < E; ++e) acc[e] = 0.f;
  if (dq_w) {
    const Row r = locate_row(p, row);
    const uint16_t* src = dq_w + ((r.b * p.Lq + r.i) * p.Hq + r.h) * D;
#pragma unroll
    for (int e = 0; e < E; ++e) acc[e] = bf16_at(src, lane * E + e);
  }
  for (int j = 0; j < k; ++j) {
    if (p.anchors[row * k + j] < 0) continue;
    const float* src = dq_pair + (row * k + j - a.p0) * D + lane * E;
#pragma unroll
    for (int e = 0; e < E; ++e) acc[e] += src[e];
  }
#pragma unroll
  for (int e = 0; e < E; ++e) dqa[row * D + lane * E + e] = to_bf16(acc[e]);
}

// ---- the final dK, dV: accumulators + routing (dK[a] += dscore Qs, pairs by anchor) + window ----

// One warp per key x = (bg - bg0) Lkv + u of the groups bg0 .. bg0 + n_bg - 1: dK = acc + sum
// over the pairs anchored at u of dscore Qs + window; dV = acc + window. acc and the anchor
// index are those groups'.
template <int D>
__global__ void finish_kernel(SuperlinearParams p, int64_t bg0, int64_t n_bg, const float* dk_acc,
                              const float* dv_acc, const int32_t* pairs, const int32_t* offsets,
                              const float* dscore, const uint16_t* dk_w, const uint16_t* dv_w,
                              uint16_t* dk, uint16_t* dv) {
  constexpr int E = D / 32;
  const int64_t x0 = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (x0 >= n_bg * p.Lkv) return;
  const int lane = int(threadIdx.x) & 31, k = p.cfg.k;
  const int64_t w = bg0 * p.Lkv + x0, u = w % p.Lkv, bg = w / p.Lkv, b = bg / p.Hkv, g = bg % p.Hkv;
  float x[E], y[E];
#pragma unroll
  for (int e = 0; e < E; ++e) {
    x[e] = dk_acc[x0 * D + lane * E + e];
    y[e] = dv_acc[x0 * D + lane * E + e];
  }
  const uint16_t* qs = static_cast<const uint16_t*>(p.qs);
  for (int32_t i = offsets[x0]; i < offsets[x0 + 1]; ++i) {
    const int64_t v = pairs[i];
    const float ds = dscore[v];
    const uint16_t* q = qs + (v / k) * D + lane * E;
#pragma unroll
    for (int e = 0; e < E; ++e) x[e] = fmaf(ds, bf16_at(q, e), x[e]);
  }
  if (dk_w) {
    const int64_t off = ((b * p.Lkv + u) * p.Hkv + g) * D + lane * E;
#pragma unroll
    for (int e = 0; e < E; ++e) x[e] += bf16_at(dk_w, off + e), y[e] += bf16_at(dv_w, off + e);
  }
#pragma unroll
  for (int e = 0; e < E; ++e) {
    dk[w * D + lane * E + e] = to_bf16(x[e]);
    dv[w * D + lane * E + e] = to_bf16(y[e]);
  }
}

// alpha * dO in the window attention's [B, Lq, Hq, D] layout.
template <int D>
__global__ void window_dout_kernel(SuperlinearParams p, const uint16_t* dout, const float* alpha,
                                   uint16_t* dst) {
  const int64_t x = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (x >= p.B * p.Hq * p.Lq * D) return;
  const int64_t row = x / D, d = x % D;
  const Row r = locate_row(p, row);
  dst[((r.b * p.Lq + r.i) * p.Hq + r.h) * D + d] = to_bf16(alpha[row] * bf16_at(dout, x));
}

template <int D>
void run_backward(const SuperlinearBackwardParams& bp, int device, cudaStream_t s) {
  const SuperlinearParams& p = bp.fwd;
  const Device dev = Device::cuda(device);
  StageTimer timer(s, "backward", {"window fwd", "y pass", "window bwd", "dq", "dkv", "finish"});
  const int64_t rows = p.B * p.Hq * p.Lq, k = p.cfg.k, n = rows * k;
  const int64_t n_keys = p.B * p.Hkv * p.Lkv;
  const uint16_t* dout = static_cast<const uint16_t*>(bp.dout);
  const int64_t W = window_len(p.cfg);

  // The window's output (for y): kept by the forward (Note [kept partials]) or computed again,
  // with its own lse copy (the saved one stays untouched).
  Tensor ow, lse_tmp;
  const uint16_t* ow_ptr = static_cast<const uint16_t*>(p.window_out);
  if (W > 0 && !ow_ptr) {
    ow = Tensor::empty({p.B, p.Lq, p.Hq, D}, DType::BF16, dev);
    lse_tmp = Tensor::empty({rows}, DType::F32, dev);
    AttentionParams ap = window_params(p);
    ap.out = ow.data_ptr();
    ap.lse = lse_tmp.data<float>();
    attention_forward_cuda(ap, device);
    ow_ptr = static_cast<const uint16_t*>(ow.data_ptr());
  }
  timer.mark(1);

  Tensor terms = Tensor::empty({3 * n + (W > 0 ? 2 * rows : 0)}, DType::F32, dev);
  RowTerms rt;
  rt.coef = reinterpret_cast<float2*>(terms.data<float>());
  rt.dscore = terms.data<float>() + 2 * n;
  rt.alpha = W > 0 ? rt.dscore + n : nullptr;
  rt.alpha_y = W > 0 ? rt.alpha + rows : nullptr;

  // Note [backward groups]
  // Only the rows of a (batch, KV head) group bg = b Hkv + g (its Hq / Hkv heads, consecutive
  // in [B, Hq, Lq] order) reach that group's keys, through their spans and their anchors. So
  // chunks (Note [span chunks]) never straddle two sets of groups: a set is as many whole
  // consecutive groups as one chunk of chunk_pairs() pairs holds, or one group cut into equal
  // chunks when a group alone holds more. Pass 3 runs set by set, with the f32 dK/dV
  // accumulators and the routing index (anchor_index) of one set's keys at a time, each set's
  // dK and dV final before the next starts. At 1M tokens and 16 KV heads of D = 128 the
  // accumulators alone were 16 GiB for all groups at once, twice K + V; now they are 1 GiB
  // (one group). Short sequences keep few, full chunks (64K, GQA 1: two sets of 10 and 6 groups).
  const int64_t group_rows = (p.Hq / p.Hkv) * p.Lq, n_groups = p.B * p.Hkv;
  const int64_t max_rows = std::max<int64_t>(1, chunk_pairs() / k);
  const int64_t set_groups = std::clamp<int64_t>(max_rows / group_rows, 1, n_groups);
  const int64_t n_sets = (n_groups + set_groups - 1) / set_groups;
  const int64_t set_rows = set_groups * group_rows;
  const int64_t per_set = (set_rows + max_rows - 1) / max_rows;  // chunks per set
  const int64_t rows_per_chunk = (set_rows + per_set - 1) / per_set;
  const int64_t cap = rows_per_chunk * k;
  auto set_size = [&](int64_t set) { return std::min(set_groups, n_groups - set * set_groups); };
  // First row and rows of chunk c of a set. Only the last set can be smaller, and only when a
  // set holds several groups, i.e. one chunk: no chunk is empty.
  auto chunk_rows = [&](int64_t set, int64_t c) {
    const int64_t first = c * rows_per_chunk, in_set = set_size(set) * group_rows;
    return std::pair<int64_t, int64_t>(set * set_rows + first,
                                       std::min(rows_per_chunk, in_set - first));
  };
  const auto* span_out = static_cast<const uint16_t*>(p.span_out);
  SpanTiles tiles(p, cap, dev);
  Tensor ys = span_out ? Tensor() : Tensor::empty({cap}, DType::F32, dev),
         dq_pair = Tensor::empty({cap * D}, DType::F32, dev);
  float* ys_ptr = span_out ? nullptr : ys.data<float>();
  uint16_t* dqs = static_cast<uint16_t*>(bp.dqs);

  // Note [slot tables]: 28 bytes per tile row, sized per chunk from its tile count.
  Tensor slot_mem;
  auto slot_table = [&](const SpanArgs& a, int64_t n_tiles, const float2* coef) {
    const int64_t slots = n_tiles * kTile;
    if (slot_mem.numel() < slots * 7) slot_mem = Tensor::empty({slots * 7}, DType::I32, dev);
    int32_t* base = slot_mem.data<int32_t>();
    float* f = reinterpret_cast<float*>(base);
    SlotTable st{base,          base + slots,     f + 2 * slots,   f + 3 * slots,
                 f + 4 * slots, base + 5 * slots, base + 6 * slots};
    bwd_slot_table(a, n_tiles, coef, st, s);
    return st;
  };

  // Pass 1: the gate terms, after the y pass over the chunk's tiles unless the span outputs
  // were kept (then the tiles are built in pass 3 only).
  SpanArgs a{};
  a.p = p;
  int64_t n_tiles = 0;
  bool built = false;  // `a` holds the tiles of the last chunk
  for (int64_t ci = 0; ci < n_sets * per_set; ++ci) {
    const auto [row0, nrows] = chunk_rows(ci / per_set, ci % per_set);
    if (!span_out) {
      n_tiles = tiles.build(p, row0 * k, nrows * k, a, s);
      built = true;
      if (n_tiles > 0) {
        const SlotTable st = slot_table(a, n_tiles, nullptr);
        bwd_y_tiles(a, st, dout, n_tiles, ys_ptr, s);
      }
    } else {
      a.p0 = row0 * k, a.n = nrows * k;  // all rows_kernel reads of `a` besides p
    }
    rows_kernel<D><<<blocks_for(nrows, 8), 256, 0, s>>>(a, dout, ow_ptr, ys_ptr, span_out, rt, dqs,
                                                        row0, nrows);
    SL_CUDA_LAUNCH_CHECK();
  }
  timer.mark(2);

  // Window: flash attention's backward with dO scaled by alpha and delta = alpha_y.
  Tensor win;
  const uint16_t *dq_w = nullptr, *dk_w = nullptr, *dv_w = nullptr;
  if (W > 0) {
    const int64_t nq = rows * D, nkv = n_keys * D;
    win = Tensor::empty({2 * nq + 2 * nkv}, DType::BF16, dev);
    uint16_t* base = reinterpret_cast<uint16_t*>(win.data_ptr());
    window_dout_kernel<D><<<blocks_for(nq), 256, 0, s>>>(p, dout, rt.alpha, base);
    SL_CUDA_LAUNCH_CHECK();
    AttentionParams ap = window_params(p);
    ap.lse = static_cast<float*>(p.lse_w);
    ap.dout = base;
    ap.delta = rt.alpha_y;
    ap.delta_given = true;
    ap.dq = base + nq;
    ap.dk = base + 2 * nq;
    ap.dv = base + 2 * nq + nkv;
    attention_backward_cuda(ap, device);
    dq_w = base + nq, dk_w = base + 2 * nq, dv_w = base + 2 * nq + nkv;
  }
  timer.mark(3);

  // Set by set (Note [backward groups]), last chunk first: pass 1 left the tiles of the last
  // chunk in `a`, so that chunk is not built again.
  Tensor acc = Tensor::empty({2 * set_groups * p.Lkv * D}, DType::F32, dev);
  float* dk_acc = acc.data<float>();
  float* dv_acc = dk_acc + set_groups * p.Lkv * D;
  bool last = built;
  for (int64_t set = n_sets - 1; set >= 0; --set) {
    const int64_t bg0 = set * set_groups, n_bg = set_size(set);
    SL_CUDA_CHECK(cudaMemsetAsync(acc.data_ptr(), 0, size_t(acc.numel()) * 4, s));
    for (int64_t c = per_set - 1; c >= 0; --c) {
      const auto [row0, nrows] = chunk_rows(set, c);
      if (!last) n_tiles = tiles.build(p, row0 * k, nrows * k, a, s);
      last = false;
      SlotTable st{};
      if (n_tiles > 0) {
        st = slot_table(a, n_tiles, rt.coef);
        bwd_dq_tiles(a, st, dout, n_tiles, dq_pair.data<float>(), s);
      }
      dq_rows_kernel<D><<<blocks_for(nrows, 8), 256, 0, s>>>(
          a, dq_pair.data<float>(), dq_w, static_cast<uint16_t*>(bp.dqa), row0, nrows);
      SL_CUDA_LAUNCH_CHECK();
      timer.mark(4);
      if (n_tiles > 0) bwd_dkv(a, st, dout, n_tiles, tiles.max_nb(), bg0, n_bg, dk_acc, dv_acc, s);
      timer.mark(5);
    }
    // Routing: the set's pairs by anchor (a stable sort), summed per key in that order.
    const AnchorIndex ai = anchor_index(p, device, s, bg0, n_bg);
    finish_kernel<D><<<blocks_for(n_bg * p.Lkv, 8), 256, 0, s>>>(
        p, bg0, n_bg, dk_acc, dv_acc, ai.pairs, ai.offsets, rt.dscore, dk_w, dv_w,
        static_cast<uint16_t*>(bp.dk), static_cast<uint16_t*>(bp.dv));
    SL_CUDA_LAUNCH_CHECK();
    timer.mark(6);
  }
}

}  // namespace

void backward_spans(const SuperlinearBackwardParams& bp, int device) {
  cudaStream_t s = cuda::stream(device);
  if (bp.fwd.D == 64) return run_backward<64>(bp, device, s);
  run_backward<128>(bp, device, s);
}

}  // namespace sl::kernels::slcuda
