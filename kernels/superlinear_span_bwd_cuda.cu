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
//   1. per chunk: tiles; y pass (S = Q K^T, dP = dO V^T, ys += rowsum(P dP)); rows: y_j and
//      dscore_j per pair (c1 and c2 follow, gate_coefs), alpha, alpha_y, dQs. Without a window,
//      set by set just before the set's pass 3 (Note [row terms per set]). When the forward kept
//      its partials (Note [kept partials] in kernels/superlinear.h) there is no y pass: rows
//      reads ys_j = <dO, O_j> from the kept span outputs and the window output from the kept one.
//   2. window backward (W > 0), after the window output for y (kept, or computed again).
//   3. per set of (batch, KV head) groups (Note [backward groups]): per chunk of its rows, the
//      dQ pass (one block per tile, dQ of each pair in registers, written per pair and summed
//      per row in slot order); the dK/dV pass, per chunk on the same tiles or, for long
//      sequences, per range of the set's key blocks on tiles of the pairs near the range (Note
//      [dK/dV by key range]): one block per 64-key block walks every tile whose footprint
//      covers the block, in tile order, keeping dK and dV in registers (S^T = K Q^T, dV += (c1
//      P)^T dO, dP^T = V dO^T, dK += dS^T Q), and adds them to f32 accumulators; then dK = acc +
//      routing (the pairs by anchor, a stable sort, summed in pair order) + window.
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
#include <thrust/iterator/counting_iterator.h>

#include <functional>

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

// The row terms (Note [row terms per set]) of pairs v0 .. and their rows v0 / k ..: the gate
// weight g[v - v0] and y[v - v0] of each pair (gate_coefs gives c1 and c2 from them), the row's
// ybar[row - v0 / k] = sum_j g_j y_j, so that dscore = g (y - ybar) (dscore_of); and the window's
// alpha and alpha_y.
struct RowTerms {
  float *g, *y;            // per pair
  float* ybar;             // per row
  float *alpha, *alpha_y;  // [rows], every row; null without a window
  int64_t v0;              // the first pair held (a whole row's: v0 % k == 0)
};

// dscore of pair v; rows_kernel's expression, so the same bits as the dQs it adds.
__device__ __forceinline__ float dscore_of(const RowTerms& rt, int k, int64_t v) {
  return rt.g[v - rt.v0] * (rt.y[v - rt.v0] - rt.ybar[v / k - rt.v0 / k]);
}

// Elements lane * E .. lane * E + E - 1 of a bf16 row, as floats, in one load (E = 2 or 4).
template <int E>
__device__ __forceinline__ void lane_elems(const uint16_t* row, int lane, float (&x)[E]) {
  static_assert(E == 2 || E == 4, "D = 64 or 128");
  uint32_t w[E / 2];
  if constexpr (E == 4) {
    const uint2 v = *reinterpret_cast<const uint2*>(row + lane * E);
    w[0] = v.x, w[1] = v.y;
  } else {
    w[0] = *reinterpret_cast<const uint32_t*>(row + lane * E);
  }
#pragma unroll
  for (int i = 0; i < E / 2; ++i)
    x[2 * i] = __uint_as_float(w[i] << 16), x[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
}

// Elements lane * E .. lane * E + E - 1 of an f32 row, in one load (E = 2 or 4).
template <int E>
__device__ __forceinline__ void lane_elems_f32(const float* row, int lane, float (&x)[E]) {
  static_assert(E == 2 || E == 4, "D = 64 or 128");
  if constexpr (E == 4) {
    const float4 v = *reinterpret_cast<const float4*>(row + lane * E);
    x[0] = v.x, x[1] = v.y, x[2] = v.z, x[3] = v.w;
  } else {
    const float2 v = *reinterpret_cast<const float2*>(row + lane * E);
    x[0] = v.x, x[1] = v.y;
  }
}
// x as bf16 into elements lane * E .. of a row, in one store (the rounding of to_bf16).
template <int E>
__device__ __forceinline__ void lane_store_bf16(uint16_t* row, int lane, const float (&x)[E]) {
  static_assert(E == 2 || E == 4, "D = 64 or 128");
  if constexpr (E == 4)
    *reinterpret_cast<uint2*>(row + lane * E) =
        make_uint2(Mma<bf16>::pack(x[0], x[1]), Mma<bf16>::pack(x[2], x[3]));
  else
    *reinterpret_cast<uint32_t*>(row + lane * E) = Mma<bf16>::pack(x[0], x[1]);
}

// Row terms of each query row of the chunk (one warp per row; lane per E = D / 32 elements):
// the gate from the saved scores or, without them, from scores computed again (Note [saved for
// backward] in kernels/superlinear.h); y_j from ys (this chunk's y pass) or, when the forward
// kept them, from the span outputs span_out [rows, k, D] (Note [kept partials]), and the window
// output; then alpha, alpha_y and dscore and dQs = sum_j dscore_j K[a_j].
// Five blocks per SM (__launch_bounds__; ptxas: 48 registers and a few spilled bytes, against 64
// and four blocks without the bound): H200, backward from kept partials (where this kernel is
// all of pass 1), 64K GQA 8 9.70 -> 9.45 ms, 64K GQA 1 11.41 -> 11.24 ms. The anchors' K rows
// are read for the scores and again for dQs (the second time from cache): holding them in
// registers between took 80 registers and three blocks per SM, and pass 1 about 0.8 ms longer
// at 64K (f5de829).
template <int D>
__global__ void __launch_bounds__(256, 5)
    rows_kernel(SpanArgs a, const uint16_t* dout, const uint16_t* ow, const float* ys,
                const uint16_t* span_out, RowTerms rt, uint16_t* dqs, int64_t row0, int64_t rows) {
  constexpr int E = D / 32;
  const int64_t row = chunk_row(row0, rows);
  if (row < 0) return;
  const SuperlinearParams& p = a.p;
  const int lane = int(threadIdx.x) & 31, k = p.cfg.k;
  const Row r = locate_row(p, row);
  const float lse_w = p.lse_w ? static_cast<const float*>(p.lse_w)[row] : -INFINITY;
  const uint16_t* kb =
      static_cast<const uint16_t*>(p.k) + (r.b * p.Hkv + r.h / (p.Hq / p.Hkv)) * p.Lkv * D;
  float dor[E], x[E];
  lane_elems<E>(dout + row * D, lane, dor);
  float yw = 0.f;
  if (ow) {
    lane_elems<E>(ow + ((r.b * p.Lq + r.i) * p.Hq + r.h) * D, lane, x);
#pragma unroll
    for (int e = 0; e < E; ++e) yw += dor[e] * x[e];
    yw = warp_sum(yw);
  }
  int32_t an[kMaxK];
  float g[kMaxK], y[kMaxK];
  if (p.scores) {
    row_gate(p, row, an, g);
  } else {  // the search's score <Qs, K[a_j]>, summed in another order (f32 either way)
    lane_elems<E>(static_cast<const uint16_t*>(p.qs) + row * D, lane, x);
    float sc[kMaxK];
#pragma unroll
    for (int j = 0; j < kMaxK; ++j) {
      an[j] = j < k ? p.anchors[row * k + j] : kNoAnchor;
      sc[j] = -INFINITY;
      if (an[j] < 0) continue;  // the same for the whole warp (one row)
      float kr[E];
      lane_elems<E>(kb + int64_t(an[j]) * D, lane, kr);
      float d = 0.f;
#pragma unroll
      for (int e = 0; e < E; ++e) d = fmaf(x[e], kr[e], d);
      sc[j] = warp_sum(d);
    }
    gate_weights(k, sc, an, g);
  }
  float ybar = 0.f, alpha = 0.f, alpha_y = 0.f;
#pragma unroll
  for (int j = 0; j < kMaxK; ++j) {
    y[j] = 0.f;
    if (j >= k) continue;
    const float lj = an[j] >= 0 ? static_cast<const float*>(p.lse_s)[row * k + j] : -INFINITY;
    const float lam = logaddexp(lse_w, lj);
    if (lam == -INFINITY) continue;
    const float ww = lse_w == -INFINITY ? 0.f : expf(lse_w - lam);
    const float wj = an[j] >= 0 ? expf(lj - lam) : 0.f;
    float ysj = 0.f;
    if (an[j] >= 0 && span_out) {
      lane_elems<E>(span_out + (row * k + j) * D, lane, x);
#pragma unroll
      for (int e = 0; e < E; ++e) ysj += dor[e] * x[e];
      ysj = warp_sum(ysj);
    } else if (an[j] >= 0) {
      ysj = ys[row * k + j - a.p0];
    }
    y[j] = ww * yw + wj * ysj;
    ybar += g[j] * y[j];
    alpha += g[j] * ww;
    alpha_y += g[j] * ww * y[j];
  }
  float dq[E];
#pragma unroll
  for (int e = 0; e < E; ++e) dq[e] = 0.f;
  if (lane == 0) rt.ybar[row - rt.v0 / k] = ybar;
#pragma unroll
  for (int j = 0; j < kMaxK; ++j) {
    if (j >= k) continue;
    if (lane == 0) rt.g[row * k + j - rt.v0] = g[j], rt.y[row * k + j - rt.v0] = y[j];
    if (an[j] < 0) continue;
    const float ds = g[j] * (y[j] - ybar);
    float kr[E];
    lane_elems<E>(kb + int64_t(an[j]) * D, lane, kr);
#pragma unroll
    for (int e = 0; e < E; ++e) dq[e] = fmaf(ds, kr[e], dq[e]);
  }
  if (lane == 0 && rt.alpha) rt.alpha[row] = alpha, rt.alpha_y[row] = alpha_y;
  lane_store_bf16<E>(dqs + row * D, lane, dq);
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
    lane_elems<E>(dq_w + ((r.b * p.Lq + r.i) * p.Hq + r.h) * D, lane, acc);
  }
  for (int j = 0; j < k; ++j) {
    if (p.anchors[row * k + j] < 0) continue;
    float x[E];
    lane_elems_f32<E>(dq_pair + (row * k + j - a.p0) * D, lane, x);
#pragma unroll
    for (int e = 0; e < E; ++e) acc[e] += x[e];
  }
  lane_store_bf16<E>(dqa + row * D, lane, acc);
}

// ---- dK/dV by key range (Note [dK/dV by key range]) ----

// The set-local block y = (bg - bg0) n_kb + a / 64 of pair v's anchor a, -1 for an empty slot.
__device__ __forceinline__ int64_t anchor_block(const SuperlinearParams& p, int64_t bg0,
                                                int64_t n_kb, int64_t v) {
  const int32_t a = p.anchors[v];
  if (a < 0) return -1;
  const int64_t row = v / p.cfg.k, h = (row / p.Lq) % p.Hq, b = row / (p.Lq * p.Hq);
  return (b * p.Hkv + h / (p.Hq / p.Hkv) - bg0) * n_kb + a / kBN;
}

// Pairs per anchor block: hist[y] += 1 for each pair of the set (global ids v0 .. v0 + n - 1)
// anchored in block y (anchor_block). Integer atomics: the counts are exact.
__global__ void anchor_blocks_kernel(SuperlinearParams p, int64_t bg0, int64_t n_kb, int64_t v0,
                                     int64_t n, int32_t* hist) {
  for (int64_t x = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; x < n;
       x += int64_t(gridDim.x) * blockDim.x) {
    const int64_t y = anchor_block(p, bg0, n_kb, v0 + x);
    if (y >= 0) atomicAdd(hist + y, 1);
  }
}

// Selects the pairs anchored in blocks [wy0, wy1) (DeviceSelect::If, stable).
struct AnchoredIn {
  SuperlinearParams p;
  int64_t bg0, n_kb, wy0, wy1;
  __device__ bool operator()(int32_t v) const {
    const int64_t y = anchor_block(p, bg0, n_kb, v);
    return y >= wy0 && y < wy1;
  }
};

// Sort keys of the selected pairs: the anchor's key counted from the window's first block.
__global__ void window_keys_kernel(SuperlinearParams p, int64_t bg0, int64_t n_kb, int64_t wy0,
                                   const int32_t* sel, int64_t n, uint32_t* keys) {
  const int64_t x = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (x >= n) return;
  const int64_t v = sel[x];
  keys[x] = uint32_t((anchor_block(p, bg0, n_kb, v) - wy0) * kBN + p.anchors[v] % kBN);
}

// One warp per key of blocks y0 .. y0 + n_y - 1 (local key x = (y - y0) 64 + u % 64): dK = acc
// + sum over the pairs anchored at the key (sorted positions offsets[o] .. offsets[o + 1] - 1,
// in pair order, o = x, or (bg - bg0) Lkv + u for anchor_index's offsets: by_group) of dscore
// Qs (dscore_of) + window; dV = acc + window. Each lane reads and writes its E elements of a
// row in one access (Note [finish vectors]).
//
// Note [finish vectors]
// Here, in dq_rows_kernel and in rows_kernel's dQs, each lane's E = D / 32 elements were read
// as E scalar f32 (or bf16) loads and written as E two-byte stores per row; now one 16- or
// 8-byte access each (lane_elems, lane_elems_f32, lane_store_bf16), the same sums in the same
// order and the same rounding. H200, session 21 (A/B in one call): finish 0.861 -> 0.811 ms at
// 64K GQA 1, 16.4 -> 15.6 at 1M GQA 1; ties at GQA 8 (0.500 / 0.504, 13.2 / 13.4).
template <int D>
__global__ void finish_range_kernel(SuperlinearParams p, int64_t bg0, int64_t n_kb, int64_t y0,
                                    int64_t n_y, const float* dk_acc, const float* dv_acc,
                                    const int32_t* pairs, const int32_t* offsets, bool by_group,
                                    RowTerms rt, const uint16_t* dk_w, const uint16_t* dv_w,
                                    uint16_t* dk, uint16_t* dv) {
  constexpr int E = D / 32;
  const int64_t x = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (x >= n_y * kBN) return;
  const int64_t y = y0 + x / kBN, bg = bg0 + y / n_kb, u = (y % n_kb) * kBN + x % kBN;
  if (u >= p.Lkv) return;
  const int lane = int(threadIdx.x) & 31, k = p.cfg.k;
  const int64_t b = bg / p.Hkv, g = bg % p.Hkv, w = bg * p.Lkv + u;
  float dkx[E], dvx[E];
  lane_elems_f32<E>(dk_acc + x * D, lane, dkx);
  lane_elems_f32<E>(dv_acc + x * D, lane, dvx);
  const uint16_t* qs = static_cast<const uint16_t*>(p.qs);
  const int64_t o = by_group ? (bg - bg0) * p.Lkv + u : x;
  for (int32_t i = offsets[o]; i < offsets[o + 1]; ++i) {
    const int64_t v = pairs[i];
    const float ds = dscore_of(rt, k, v);
    float q[E];
    lane_elems<E>(qs + (v / k) * D, lane, q);
#pragma unroll
    for (int e = 0; e < E; ++e) dkx[e] = fmaf(ds, q[e], dkx[e]);
  }
  if (dk_w) {
    const int64_t off = ((b * p.Lkv + u) * p.Hkv + g) * D;
    float wk[E], wv[E];
    lane_elems<E>(dk_w + off, lane, wk);
    lane_elems<E>(dv_w + off, lane, wv);
#pragma unroll
    for (int e = 0; e < E; ++e) dkx[e] += wk[e], dvx[e] += wv[e];
  }
  lane_store_bf16<E>(dk + w * D, lane, dkx);
  lane_store_bf16<E>(dv + w * D, lane, dvx);
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

// Note [dK/dV by key range]
// Each key's dK and dV are summed in registers by one block per 64-key block over the tiles that
// cover it, then written once to a small f32 accumulator and finished (routing, window, bf16).
// The tiles come from the pairs near the blocks' range, not from chunks of query rows: a chunk
// of rows reaches every key of its group, so accumulating over such chunks needed f32 dK and dV
// for a whole group (1 GiB at 1M tokens, D = 128). Per set of groups:
// - anchor_blocks_kernel counts pairs per anchor block; the host reads the counts and cuts the
//   set's blocks into ranges [y0, y1) of at most max_blocks blocks whose pairs fit one tile
//   chunk where they can;
// - a pair anchored in block ya reaches blocks ya - cb .. ya + cf (cb, cf: the longest spans
//   behind and ahead of an anchor, in blocks), so a range needs the pairs anchored in
//   [y0 - cf, y1 + cb): a stable DeviceSelect over the set's pairs, then a stable radix sort by
//   anchor, whose offsets also index the routing term dscore Qs of each key;
// - the sorted pairs go to the tile builder in slices of at most range_slice_pairs() (a range
//   with more pairs than that, e.g. every query anchoring on one block, takes several slices,
//   each adding to the accumulators), then the dK/dV pass over the range's blocks, then the
//   finish.
// Every step is stable or exact, so the result is bitwise reproducible. The accumulators take
// range_acc_bytes(); the selection about 16 bytes per selected pair. With ranges, the chunks of
// rows shrink so that the dQ pass's f32 rows take range_dq_bytes() (chunks of 256K pairs at
// D = 128 instead of 2M).
//
// The three sizes trade time for memory. H200, balanced, D = 128, 1M tokens, GQA 8, backward ms
// and workspace MiB (experiments/range_sizes_probe.sh sets them through SL_RANGE_DQ_MIB,
// SL_RANGE_SLICE_PAIRS and SL_RANGE_ACC_MIB; results/2026-11-28-h200-range-sizes.md),
// dQ MiB / slice pairs / accumulator MiB:
//   256 / 2M / 128: 612 ms, 1303 MiB    256 / 2M / 32: 625, 1164    256 / 1M / 32: 650, 1054
//   192 / 1M / 32: 654, 994             128 / 2M / 32: 673, 1033    128 / 1M / 32: 692, 929
// Smaller accumulators cost little (more ranges, each a selection and a sort); smaller slices
// and chunks of rows cost more, since fewer pairs fill fewer tiles. 128 / 1M / 32 (the
// defaults) keep the backward's workspace 9% under K + V = 1024 MiB there.
//
// Ranges cost time: each builds its tiles again (the dQ pass's chunks of rows cannot serve), and
// a range's dK/dV launch is a few waves of unequal blocks. H200, balanced, D = 128, 16 heads,
// backward ms with ranges everywhere against the whole set at once: 64K GQA 1 15.2 / 12.9, 64K
// GQA 8 12.1 / 11.0, 1M GQA 8 595 / 536. So a set whose f32 accumulators and routing index
// together fit in max(kWholeSetBytes, (K + V) / 2) takes them whole, as one range whose dK/dV pass
// runs per chunk of rows on the dQ pass's tiles; only longer sets (1M tokens at GQA 8: 1.4 GiB)
// take ranges. SL_DKV_RANGE_BLOCKS forces ranges of at most that many blocks (a testing knob:
// the GPU tests force ranges of one and of three blocks).
//
// Note [first writer stores]
// The f32 accumulators were cleared (a memset) before the first dK/dV launch of a set or range,
// which then read those zeros back: at 64K GQA 1 about 1 GiB written and 1 GiB read for
// nothing, since that first launch (every block of the set or range, Note [dK/dV by key range])
// is also the only one there when a set is one chunk of rows. Now the first launch stores 0 +
// its sum (the same bits as adding to a cleared row) into every row of its blocks, including
// blocks no tile reaches; later launches add. Only a set or range where no launch had tiles is
// still cleared, for the finish. H200, session 21 (A/B in one call): dK/dV 4.236 -> 3.970 ms at
// 64K GQA 1, 3.538 -> 3.509 at 64K GQA 8, backward 11.80 -> 11.45; ties at 1M (239.5 / 239.8
// GQA 1, 331.0 / 332.1 GQA 8), where the first launch is one of several chunks of rows.
constexpr int64_t kWholeSetBytes = int64_t(1) << 30;

// A size of the ranges: its default, or the sandbox's setting of environment variable `name`.
inline int64_t range_size(const char* name, int64_t dflt) {
  const char* env = std::getenv(name);
  const int64_t v = env ? std::atoll(env) : 0;
  return v > 0 ? v : dflt;
}
inline int64_t range_acc_bytes() {
  return range_size("SL_RANGE_ACC_MIB", 32) << 20;
}
inline int64_t range_dq_bytes() {
  return range_size("SL_RANGE_DQ_MIB", 128) << 20;
}
inline int64_t range_slice_pairs() {
  return range_size("SL_RANGE_SLICE_PAIRS", int64_t(1) << 20);
}

inline int64_t forced_range_blocks() {
  const char* env = std::getenv("SL_DKV_RANGE_BLOCKS");
  return env ? std::max<int64_t>(0, std::atoll(env)) : 0;
}

class DkvRanges {
 public:
  // Whether sets of set_groups groups are taken whole (above).
  static bool whole_sets(const SuperlinearParams& p, int64_t set_groups, int64_t n_kb) {
    const int64_t set_pairs = set_groups * (p.Hq / p.Hkv) * p.Lq * p.cfg.k;
    const int64_t kv_bytes = 2 * p.B * p.Hkv * p.Lkv * p.D * 2;
    return forced_range_blocks() == 0 && set_groups * n_kb * kBN * p.D * 8 + 16 * set_pairs <=
                                             std::max(kWholeSetBytes, kv_bytes / 2);
  }

  // Adds (or, with its last argument, writes: Note [first writer stores]) a slice's dK and dV
  // to the range's accumulators; false when the slice has no tiles (nothing launched).
  using Dkv = std::function<bool(const int32_t*, int64_t, int64_t, int64_t, float*, float*, bool)>;
  using Finish = std::function<void(const int32_t*, const int32_t*, bool, int64_t, int64_t,
                                    const float*, const float*)>;

  DkvRanges(const SuperlinearParams& p, bool whole, int64_t set_groups, int64_t n_kb, int64_t cap,
            Device dev)
      : p_(p), dev_(dev), n_kb_(n_kb), cap_(cap), whole_(whole) {
    cb_ = (len_b(p.cfg, p.Lkv) + kBN - 1) / kBN;
    cf_ = (len_f(p.cfg, p.Lkv) + kBN - 1) / kBN;
    const int64_t set_blocks = set_groups * n_kb, forced = forced_range_blocks();
    max_blocks_ = whole_ ? set_blocks
                  : forced
                      ? std::min(forced, set_blocks)
                      : std::clamp<int64_t>(range_acc_bytes() / (kBN * p.D * 8), 1, set_blocks);
    acc_ = Tensor::empty({2 * max_blocks_ * kBN * p.D}, DType::F32, dev);
    if (whole_) return;
    hist_ = Tensor::empty({set_groups * n_kb}, DType::I32, dev);
    offsets_ = Tensor::empty({(max_blocks_ + cb_ + cf_) * kBN + 1}, DType::I32, dev);
    count_ = Tensor::empty({1}, DType::I64, dev);
  }

  // Whether sets are taken whole: then the caller's first dK/dV launch of a set writes the
  // accumulators and later chunks add to them (blocks 0 .. n_bg n_kb - 1 of the set; Note [first
  // writer stores]; clear only where no chunk had tiles), and run only finishes.
  bool whole() const { return whole_; }
  float* dk_acc() { return acc_.data<float>(); }
  float* dv_acc() { return acc_.data<float>() + max_blocks_ * kBN * p_.D; }
  void clear(cudaStream_t s) {
    SL_CUDA_CHECK(cudaMemsetAsync(acc_.data_ptr(), 0, size_t(acc_.numel()) * 4, s));
  }

  void run(int64_t bg0, int64_t n_bg, cudaStream_t s, const Dkv& dkv, const Finish& finish) {
    if (whole_) {  // the set's routing index, as the whole-set path always had
      const AnchorIndex ai = anchor_index(p_, dev_.index, s, bg0, n_bg);
      finish(ai.pairs, ai.offsets, true, 0, n_bg * n_kb_, dk_acc(), dv_acc());
      return;
    }
    const int64_t nb = n_bg * n_kb_, group_pairs = (p_.Hq / p_.Hkv) * p_.Lq * p_.cfg.k;
    const int64_t v0 = bg0 * group_pairs, n = n_bg * group_pairs;
    int32_t* hist = hist_.data<int32_t>();
    SL_CUDA_CHECK(cudaMemsetAsync(hist, 0, size_t(nb) * 4, s));
    anchor_blocks_kernel<<<blocks_for(std::min<int64_t>(n, int64_t(1) << 22)), 256, 0, s>>>(
        p_, bg0, n_kb_, v0, n, hist);
    SL_CUDA_LAUNCH_CHECK();
    std::vector<int64_t> prefix(size_t(nb) + 1, 0);
    {
      std::vector<int32_t> h(static_cast<size_t>(nb));
      SL_CUDA_CHECK(cudaMemcpyAsync(h.data(), hist, size_t(nb) * 4, cudaMemcpyDeviceToHost, s));
      SL_CUDA_CHECK(cudaStreamSynchronize(s));
      for (int64_t y = 0; y < nb; ++y) prefix[size_t(y) + 1] = prefix[size_t(y)] + h[size_t(y)];
    }
    // Pairs anchored in the window of blocks [y0, y1).
    auto window = [&](int64_t y0, int64_t y1) {
      return std::pair<int64_t, int64_t>(std::max<int64_t>(0, y0 - cf_), std::min(nb, y1 + cb_));
    };
    auto count = [&](int64_t y0, int64_t y1) {
      const auto [w0, w1] = window(y0, y1);
      return prefix[size_t(w1)] - prefix[size_t(w0)];
    };
    float* dk_acc = this->dk_acc();
    float* dv_acc = this->dv_acc();
    for (int64_t y0 = 0; y0 < nb;) {
      int64_t y1 = y0 + 1;
      while (y1 < nb && y1 - y0 < max_blocks_ && count(y0, y1 + 1) <= cap_) ++y1;
      const auto [w0, w1] = window(y0, y1);
      const int64_t n_sel = count(y0, y1), n_y = y1 - y0;
      const int32_t* sorted = select(bg0, v0, n, w0, w1, n_sel, s);
      bool fresh = true;  // Note [first writer stores]
      for (int64_t off = 0; off < n_sel; off += cap_)
        if (dkv(sorted + off, std::min(cap_, n_sel - off), y0, n_y, dk_acc, dv_acc, fresh))
          fresh = false;
      if (fresh) {  // no slice had tiles: the finish reads zeros
        const size_t acc_bytes = size_t(n_y * kBN * p_.D) * 4;
        SL_CUDA_CHECK(cudaMemsetAsync(dk_acc, 0, acc_bytes, s));
        SL_CUDA_CHECK(cudaMemsetAsync(dv_acc, 0, acc_bytes, s));
      }
      finish(sorted, offsets_.data<int32_t>() + (y0 - w0) * kBN, false, y0, n_y, dk_acc, dv_acc);
      y0 = y1;
    }
  }

 private:
  // The n_sel pairs of the set anchored in blocks [w0, w1), sorted by anchor (stable), with
  // offsets_ over the window's keys; returns the sorted pair ids.
  const int32_t* select(int64_t bg0, int64_t v0, int64_t n, int64_t w0, int64_t w1, int64_t n_sel,
                        cudaStream_t s) {
    const int64_t n_keys = (w1 - w0) * kBN;
    grow(n_sel);
    int32_t* sel = sel_.data<int32_t>();
    int32_t* vals = sel + sel_cap_;
    uint32_t* keys = reinterpret_cast<uint32_t*>(vals + sel_cap_);
    uint32_t* keys_sorted = keys + sel_cap_;
    if (n_sel > 0) {
      const AnchoredIn pred{p_, bg0, n_kb_, w0, w1};
      const thrust::counting_iterator<int32_t> ids{static_cast<int32_t>(v0)};
      size_t bytes = 0;
      SL_CUDA_CHECK(
          cub::DeviceSelect::If(nullptr, bytes, ids, sel, count_.data<int64_t>(), n, pred, s));
      temp(bytes);
      SL_CUDA_CHECK(cub::DeviceSelect::If(temp_.data_ptr(), bytes, ids, sel, count_.data<int64_t>(),
                                          n, pred, s));
      window_keys_kernel<<<blocks_for(n_sel), 256, 0, s>>>(p_, bg0, n_kb_, w0, sel, n_sel, keys);
      SL_CUDA_LAUNCH_CHECK();
      int end_bit = 1;
      while (end_bit < 32 && (uint64_t(n_keys) >> end_bit) != 0) ++end_bit;
      bytes = 0;
      SL_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, bytes, keys, keys_sorted, sel, vals,
                                                    n_sel, 0, end_bit, s));
      temp(bytes);
      SL_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp_.data_ptr(), bytes, keys, keys_sorted, sel,
                                                    vals, n_sel, 0, end_bit, s));
    }
    key_offsets(keys_sorted, n_sel, n_keys, offsets_.data<int32_t>(), s);
    return vals;
  }
  void grow(int64_t n) {
    if (n <= sel_cap_ && sel_.defined()) return;
    sel_cap_ = std::max<int64_t>(n, 1);
    sel_ = Tensor::empty({4 * sel_cap_}, DType::I32, dev_);
  }
  void temp(size_t bytes) {
    if (temp_.defined() && size_t(temp_.numel()) * 4 >= bytes) return;
    temp_ = scratch(int64_t(bytes), dev_);
  }

  SuperlinearParams p_;
  Device dev_;
  int64_t n_kb_, cap_;
  bool whole_;
  int64_t cb_ = 0, cf_ = 0, max_blocks_ = 1, sel_cap_ = 0;
  Tensor acc_, hist_, offsets_, count_, sel_, temp_;
};

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

  // Note [backward groups]
  // Only the rows of a (batch, KV head) group bg = b Hkv + g (its Hq / Hkv heads, consecutive
  // in [B, Hq, Lq] order) reach that group's keys, through their spans and their anchors. So
  // chunks (Note [span chunks]) never straddle two sets of groups: a set is as many whole
  // consecutive groups as one chunk of chunk_pairs() pairs holds, or one group cut into equal
  // chunks when a group alone holds more. Pass 3 runs set by set: the set's dQ, and its dK and
  // dV for the whole set at once or by key range (Note [dK/dV by key range]). Short sequences
  // keep few, full chunks (64K, GQA 1: two sets of 10 and 6 groups).
  const int64_t group_rows = (p.Hq / p.Hkv) * p.Lq, n_groups = p.B * p.Hkv;
  const int64_t n_kb = (p.Lkv + kBN - 1) / kBN;
  int64_t max_rows = std::max<int64_t>(1, chunk_pairs() / k);
  // Note [dK/dV by key range]: sets too long to take whole take ranges of up to range_cap pairs
  // per slice, and chunks of rows whose f32 dQ rows fit range_dq_bytes().
  const bool whole =
      DkvRanges::whole_sets(p, std::clamp<int64_t>(max_rows / group_rows, 1, n_groups), n_kb);
  const int64_t range_cap = std::min(max_rows * k, range_slice_pairs());
  if (!whole) max_rows = std::clamp<int64_t>(range_dq_bytes() / (k * D * 4), 1, max_rows);
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
  SpanTiles tiles(p, whole ? cap : std::max(cap, range_cap), dev);
  Tensor ys = span_out ? Tensor() : Tensor::empty({cap}, DType::F32, dev),
         dq_pair = Tensor::empty({cap * D}, DType::F32, dev);
  float* ys_ptr = span_out ? nullptr : ys.data<float>();
  uint16_t* dqs = static_cast<uint16_t*>(bp.dqs);

  // Note [slot tables]: 28 bytes per tile row and 8 per tile, sized per chunk from its tile
  // count.
  Tensor slot_mem;
  auto slot_table = [&](const SpanArgs& a, int64_t n_tiles, const RowTerms* rt) {
    const int64_t slots = n_tiles * kTile, words = slots * 7 + 2 * n_tiles;
    if (slot_mem.numel() < words) slot_mem = Tensor::empty({words}, DType::I32, dev);
    int32_t* base = slot_mem.data<int32_t>();
    float* f = reinterpret_cast<float*>(base);
    SlotTable st{base,
                 base + slots,
                 f + 2 * slots,
                 f + 3 * slots,
                 f + 4 * slots,
                 base + 5 * slots,
                 base + 6 * slots,
                 reinterpret_cast<int2*>(base + 7 * slots)};
    bwd_slot_table(a, n_tiles, rt ? rt->g : nullptr, rt ? rt->y : nullptr, rt ? rt->v0 : 0, st, s);
    return st;
  };

  // Note [row terms per set]
  // Pass 1 keeps, per pair, the gate weight g_j and y_j, and per row ybar = sum_j g_j y_j: the slot
  // tables compute c1 and c2 from them and the forward's lse (gate_coefs), the finish dscore = g (y
  // - ybar) (dscore_of). So pass 3 reads no gate scores, and the forward need not keep them (Note
  // [saved for backward] in kernels/superlinear.h); c1, c2 and dscore stored (before 4f0b94e) took
  // 12 bytes per pair, 576 MiB at 1M tokens and 16 heads; these take 9.3 at k = 3. Without a
  // window, nothing needs the terms across sets, so pass 1 runs set by set just before the set's
  // pass 3 and they are held for one set's pairs (224 MiB at 1M GQA 8, where a set is one group of
  // 8 heads). With a window, the window's backward needs alpha and alpha_y of every row before any
  // set's pass 3, so pass 1 runs over every row first and the terms are held for all pairs.
  // Measured and dropped (723e63b): the gate computed again from the scores in the finish instead
  // of stored: the finish went from 0.45 to 0.71 ms at 64K GQA 8, and from 0.80 to 1.35 ms at 64K
  // GQA 1 (H200), where the backward's margin over 100 TFLOP/s is small.
  const bool terms_per_set = W == 0;
  const int64_t term_pairs = terms_per_set ? set_rows * k : n;
  Tensor terms =
      Tensor::empty({2 * term_pairs + term_pairs / k + (W > 0 ? 2 * rows : 0)}, DType::F32, dev);
  RowTerms rt;
  rt.g = terms.data<float>();
  rt.y = rt.g + term_pairs;
  rt.ybar = rt.y + term_pairs;
  rt.alpha = W > 0 ? rt.ybar + term_pairs / k : nullptr;
  rt.alpha_y = W > 0 ? rt.alpha + rows : nullptr;
  rt.v0 = 0;

  // Pass 1 over sets [set0, set1): the gate terms, after the y pass over the chunk's tiles
  // unless the span outputs were kept (then the tiles are built in pass 3 only).
  SpanArgs a{};
  a.p = p;
  int64_t n_tiles = 0;
  bool built = false;  // `a` holds the tiles of the last chunk
  auto pass1 = [&](int64_t set0, int64_t set1) {
    for (int64_t ci = set0 * per_set; ci < set1 * per_set; ++ci) {
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
      rows_kernel<D><<<blocks_for(nrows, 8), 256, 0, s>>>(a, dout, ow_ptr, ys_ptr, span_out, rt,
                                                          dqs, row0, nrows);
      SL_CUDA_LAUNCH_CHECK();
    }
    timer.mark(2);
  };
  if (!terms_per_set) pass1(0, n_sets);

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
  // chunk in `a`, so that chunk is not built again. Then the set's dK and dV by key range.
  DkvRanges ranges(p, whole, set_groups, n_kb, range_cap, dev);
  bool last = built;
  for (int64_t set = n_sets - 1; set >= 0; --set) {
    const int64_t bg0 = set * set_groups, n_bg = set_size(set);
    if (terms_per_set) {
      rt.v0 = set * set_rows * k;
      pass1(set, set + 1);
      last = built;
    }
    bool fresh = true;  // Note [first writer stores]: the set's accumulators not yet written
    for (int64_t c = per_set - 1; c >= 0; --c) {
      const auto [row0, nrows] = chunk_rows(set, c);
      if (!last) n_tiles = tiles.build(p, row0 * k, nrows * k, a, s);
      last = false;
      SlotTable st{};
      if (n_tiles > 0) {
        st = slot_table(a, n_tiles, &rt);
        bwd_dq_tiles(a, st, dout, n_tiles, dq_pair.data<float>(), s);
      }
      dq_rows_kernel<D><<<blocks_for(nrows, 8), 256, 0, s>>>(
          a, dq_pair.data<float>(), dq_w, static_cast<uint16_t*>(bp.dqa), row0, nrows);
      SL_CUDA_LAUNCH_CHECK();
      timer.mark(4);
      if (ranges.whole() && n_tiles > 0) {
        bwd_dkv(a, st, dout, n_tiles, tiles.max_nb(), bg0, 0, n_bg * tiles.n_kb(), ranges.dk_acc(),
                ranges.dv_acc(), fresh, s);
        fresh = false;
      }
      timer.mark(5);
    }
    if (ranges.whole() && fresh) ranges.clear(s);
    ranges.run(
        bg0, n_bg, s,
        [&](const int32_t* list, int64_t n_list, int64_t y0, int64_t n_y, float* dk_acc,
            float* dv_acc, bool store) {
          const int64_t nt = tiles.build(p, 0, n_list, a, s, list);
          if (nt == 0) return false;
          const SlotTable st = slot_table(a, nt, &rt);
          bwd_dkv(a, st, dout, nt, tiles.max_nb(), bg0, y0, n_y, dk_acc, dv_acc, store, s);
          return true;
        },
        [&](const int32_t* pairs, const int32_t* offsets, bool by_group, int64_t y0, int64_t n_y,
            const float* dk_acc, const float* dv_acc) {
          timer.mark(5);
          finish_range_kernel<D><<<blocks_for(n_y * kBN, 8), 256, 0, s>>>(
              p, bg0, tiles.n_kb(), y0, n_y, dk_acc, dv_acc, pairs, offsets, by_group, rt, dk_w,
              dv_w, static_cast<uint16_t*>(bp.dk), static_cast<uint16_t*>(bp.dv));
          SL_CUDA_LAUNCH_CHECK();
          timer.mark(6);
        });
  }
}

}  // namespace

void backward_spans(const SuperlinearBackwardParams& bp, int device) {
  cudaStream_t s = cuda::stream(device);
  if (bp.fwd.D == 64) return run_backward<64>(bp, device, s);
  run_backward<128>(bp, device, s);
}

}  // namespace sl::kernels::slcuda
