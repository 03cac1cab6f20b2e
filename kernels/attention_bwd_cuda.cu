// CUDA flash attention backward (kernels/attention.h), deterministic: no atomics anywhere.
//
//   delta = rowsum(dO * O)                                    (one warp per row)
//   dK, dV: one block per (64 keys, KV head, batch row); 4 warps own 16 keys each and keep dK, dV
//           in registers while every query block of every query head of the KV group that can
//           see these keys streams through shared memory (Q, dO, lse, delta, row ranges):
//           S^T = K Q^T, P^T = exp(S^T - lse), dV += P^T dO, dP^T = V dO^T,
//           dS^T = P^T (dP^T - delta), dK += dS^T Q.
//   dQ:     one block per (64 queries, query head, batch row); 4 warps own 16 rows each and keep
//           dQ in registers while the key blocks stream through: S = Q K^T, P, dP = dO V^T,
//           dS = P (dP - delta), dQ += dS K.
// P and dP are recomputed in both kernels (7 tile products instead of FlashAttention-2's 5): the
// price of exact, run-to-run identical gradients without a dQ accumulation in fp32 atomics.
#include "kernels/attention.h"
#include "kernels/attention_cuda_common.cuh"

#include "core/cuda_context.h"

namespace sl::kernels {
namespace {

using namespace attn;

constexpr int kB = 64, kWarps = 4, kThreads = kWarps * 32;

template <class T>
__global__ void delta_kernel(const AttentionParams p) {
  const int64_t row = int64_t(blockIdx.x) * 8 + (threadIdx.x >> 5);  // (b, i, h) flattened
  const int lane = int(threadIdx.x) & 31;
  if (row >= p.B * p.Lq * p.Hq) return;
  const T* o = static_cast<const T*>(p.out) + row * p.D;
  const T* d = static_cast<const T*>(p.dout) + row * p.D;
  float acc = 0.f;
  for (int64_t c = lane; c < p.D; c += 32)
    acc += ScalarTraits<T>::to_compute(o[c]) * ScalarTraits<T>::to_compute(d[c]);
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
  if (lane == 0) {
    const int64_t h = row % p.Hq, bi = row / p.Hq, i = bi % p.Lq, b = bi / p.Lq;
    p.delta[(b * p.Hq + h) * p.Lq + i] = acc;
  }
}

template <int D>
constexpr int dkv_smem_bytes() {
  return (2 * kB + 4 * kB) * D * 2 + 2 * 4 * kB * 4;  // K, V, Q[2], dO[2], (lse, delta, lo, hi)[2]
}

template <class T, int D>
__global__ void __launch_bounds__(kThreads) attention_dkv_kernel(const AttentionParams p) {
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t s_k = smem_addr(smem), s_v = s_k + kB * D * 2;
  auto s_q = [&](int buf) { return s_v + uint32_t((1 + buf) * kB * D * 2); };
  auto s_do = [&](int buf) { return s_v + uint32_t((3 + buf) * kB * D * 2); };
  float* rowinfo = reinterpret_cast<float*>(smem + 6 * kB * D * 2);  // [2][4][kB]

  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;
  // x: (batch, KV head); y: key blocks, the first (seen by the most causal queries) first.
  const int g = int(blockIdx.x % p.Hkv), r = int(p.Hq / p.Hkv);
  const int64_t b = blockIdx.x / p.Hkv;
  const int k0 = int(blockIdx.y) * kB;
  const int kend = min(k0 + kB, int(p.Lk)) - 1;

  const uint16_t* kbase = static_cast<const uint16_t*>(p.k) + b * p.k_sb + g * p.k_sh;
  const uint16_t* vbase = static_cast<const uint16_t*>(p.v) + b * p.k_sb + g * p.k_sh;
  load_tile<kB, D, kThreads>(s_k, kbase + int64_t(k0) * p.k_st, p.k_st, int(p.Lk) - k0);
  load_tile<kB, D, kThreads>(s_v, vbase + int64_t(k0) * p.k_st, p.k_st, int(p.Lk) - k0);

  // Query blocks that can see keys k0..kend: causal rows start at t = k0; a block whose first
  // row already starts its range after kend ends the walk (lo is non-decreasing in t).
  const int i_begin = p.causal ? max(0, int(k0 - p.q_offset)) : 0;
  const int qb_begin = i_begin / kB, n_qb = int((p.Lq + kB - 1) / kB);
  auto block_live = [&](int qb) {
    return qb < n_qb && key_lo(p, b, p.q_offset + int64_t(qb) * kB) <= kend;
  };
  // (head, query block) pairs in order: head-major within the group.
  int n_live = 0;
  while (block_live(qb_begin + n_live)) ++n_live;
  const int n_items = n_live * r;

  auto issue = [&](int item, int buf) {
    const int h = g * r + item / n_live, qb = qb_begin + item % n_live;
    const int i0 = qb * kB, rows = min(kB, int(p.Lq) - i0);
    const uint16_t* qbase =
        static_cast<const uint16_t*>(p.q) + b * p.q_sb + int64_t(i0) * p.q_st + h * p.q_sh;
    const uint16_t* dobase =
        static_cast<const uint16_t*>(p.dout) + ((b * p.Lq + i0) * p.Hq + h) * p.D;
    load_tile<kB, D, kThreads>(s_q(buf), qbase, p.q_st, rows);
    load_tile<kB, D, kThreads>(s_do(buf), dobase, p.Hq * p.D, rows);
    float* info = rowinfo + buf * 4 * kB;
    for (int c = int(threadIdx.x); c < kB; c += kThreads) {
      const bool ok = c < rows;
      const int64_t t = p.q_offset + i0 + c;
      const int64_t idx = (b * p.Hq + h) * p.Lq + i0 + c;
      info[c] = ok ? p.lse[idx] * kLog2e : INFINITY;
      info[kB + c] = ok ? p.delta[idx] : 0.f;
      reinterpret_cast<int*>(info)[2 * kB + c] = ok ? key_lo(p, b, t) : 1;
      reinterpret_cast<int*>(info)[3 * kB + c] = ok ? key_hi(p, t) : 0;
    }
  };

  float dk[D / 8][4], dv[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[n][e] = dv[n][e] = 0.f;
  const float sl2 = p.scale * kLog2e;
  const int krow = warp * 16 + (lane >> 2);  // this thread's keys: k0 + krow, k0 + krow + 8

  if (n_items > 0) issue(0, 0);
  cp_async_commit();
  for (int it = 0; it < n_items; ++it) {
    const int buf = it & 1;
    cp_async_wait<0>();
    __syncthreads();
    if (it + 1 < n_items) issue(it + 1, buf ^ 1);
    cp_async_commit();
    const float* info = rowinfo + buf * 4 * kB;
    const int* qlo = reinterpret_cast<const int*>(info) + 2 * kB;
    const int* qhi = reinterpret_cast<const int*>(info) + 3 * kB;

    // S^T = K Q^T: 16 keys x 64 queries per warp.
    float s[kB / 8][4];
    mma_a_nk<T, D, kB>(s, s_k, warp * 16, s_q(buf), lane);
    // P^T = exp2(S^T sl2 - lse2[q]), zero outside each query's key range.
#pragma unroll
    for (int n = 0; n < kB / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int c = n * 8 + 2 * (lane & 3) + (e & 1);
        const int u = k0 + krow + 8 * (e >> 1);
        const bool ok = u >= qlo[c] && u <= qhi[c] && u < p.Lk;
        s[n][e] = ok ? fast_exp2(fmaf(s[n][e], sl2, -info[c])) : 0.f;
      }
    // dV += P^T dO.
    mma_acc_kn<T, D, kB>(dv, s, s_do(buf), lane);
    // dP^T = V dO^T, then dS^T = P^T (dP^T - delta[q]) in place.
    float dpt[kB / 8][4];
    mma_a_nk<T, D, kB>(dpt, s_v, warp * 16, s_do(buf), lane);
#pragma unroll
    for (int n = 0; n < kB / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int c = n * 8 + 2 * (lane & 3) + (e & 1);
        s[n][e] *= dpt[n][e] - info[kB + c];
      }
    // dK += dS^T Q.
    mma_acc_kn<T, D, kB>(dk, s, s_q(buf), lane);
  }
  cp_async_wait<0>();

#pragma unroll
  for (int j = 0; j < 2; ++j) {
    const int u = k0 + krow + 8 * j;
    if (u >= p.Lk) continue;
    T* dkrow = static_cast<T*>(p.dk) + ((b * p.Lk + u) * p.Hkv + g) * D;
    T* dvrow = static_cast<T*>(p.dv) + ((b * p.Lk + u) * p.Hkv + g) * D;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      const int c = n * 8 + 2 * (lane & 3);
      *reinterpret_cast<uint32_t*>(dkrow + c) =
          Mma<T>::pack(dk[n][2 * j] * p.scale, dk[n][2 * j + 1] * p.scale);
      *reinterpret_cast<uint32_t*>(dvrow + c) = Mma<T>::pack(dv[n][2 * j], dv[n][2 * j + 1]);
    }
  }
}

template <int D>
constexpr int dq_smem_bytes() {
  return (2 * kB + 4 * kB) * D * 2;  // Q, dO, K[2], V[2]
}

template <class T, int D>
__global__ void __launch_bounds__(kThreads) attention_dq_kernel(const AttentionParams p) {
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t s_q = smem_addr(smem), s_do = s_q + kB * D * 2;
  auto s_k = [&](int st) { return s_do + uint32_t((1 + st) * kB * D * 2); };
  auto s_v = [&](int st) { return s_do + uint32_t((3 + st) * kB * D * 2); };

  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;
  // x: (batch, head); y: query blocks from the last (Note [heaviest first], attention_cuda.cu).
  const int qb = int(gridDim.y) - 1 - int(blockIdx.y);
  const int h = int(blockIdx.x % p.Hq), g = h / int(p.Hq / p.Hkv);
  const int64_t b = blockIdx.x / p.Hq;
  const int i0 = qb * kB, rows = min(kB, int(p.Lq) - i0);
  const int64_t t_first = p.q_offset + i0, t_last = t_first + rows - 1;

  const uint16_t* qbase =
      static_cast<const uint16_t*>(p.q) + b * p.q_sb + int64_t(i0) * p.q_st + h * p.q_sh;
  const uint16_t* dobase = static_cast<const uint16_t*>(p.dout) + ((b * p.Lq + i0) * p.Hq + h) * D;
  const uint16_t* kbase = static_cast<const uint16_t*>(p.k) + b * p.k_sb + g * p.k_sh;
  const uint16_t* vbase = static_cast<const uint16_t*>(p.v) + b * p.k_sb + g * p.k_sh;

  int lo[2], hi[2];
  float lse2[2], delta[2];
#pragma unroll
  for (int j = 0; j < 2; ++j) {
    const int i = warp * 16 + (lane >> 2) + 8 * j;
    const bool ok = i < rows;
    const int64_t t = t_first + i, idx = (b * p.Hq + h) * p.Lq + i0 + i;
    lo[j] = ok ? key_lo(p, b, t) : 1;
    hi[j] = ok ? key_hi(p, t) : 0;
    lse2[j] = ok ? p.lse[idx] * kLog2e : INFINITY;
    delta[j] = ok ? p.delta[idx] : 0.f;
  }
  const int blk_lo = key_lo(p, b, t_first), blk_hi = key_hi(p, t_last);
  const int lo_max = key_lo(p, b, t_last), hi_min = key_hi(p, t_first);
  const int kb_begin = blk_lo / kB, kb_end = blk_hi / kB;

  load_tile<kB, D, kThreads>(s_q, qbase, p.q_st, rows);
  load_tile<kB, D, kThreads>(s_do, dobase, p.Hq * D, rows);
  load_tile<kB, D, kThreads>(s_k(0), kbase + int64_t(kb_begin) * kB * p.k_st, p.k_st,
                             int(p.Lk) - kb_begin * kB);
  load_tile<kB, D, kThreads>(s_v(0), vbase + int64_t(kb_begin) * kB * p.k_st, p.k_st,
                             int(p.Lk) - kb_begin * kB);
  cp_async_commit();

  float dq[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; ++n) dq[n][0] = dq[n][1] = dq[n][2] = dq[n][3] = 0.f;
  const float sl2 = p.scale * kLog2e;

  for (int kb = kb_begin; kb <= kb_end; ++kb) {
    const int stage = (kb - kb_begin) & 1;
    cp_async_wait<0>();
    __syncthreads();
    if (kb < kb_end) {
      const int nk = (kb + 1) * kB;
      load_tile<kB, D, kThreads>(s_k(stage ^ 1), kbase + int64_t(nk) * p.k_st, p.k_st,
                                 int(p.Lk) - nk);
      load_tile<kB, D, kThreads>(s_v(stage ^ 1), vbase + int64_t(nk) * p.k_st, p.k_st,
                                 int(p.Lk) - nk);
    }
    cp_async_commit();

    float s[kB / 8][4], dp[kB / 8][4];
    mma_scores_dp<T, D, kB>(s, dp, s_q, s_do, s_k(stage), s_v(stage), warp * 16, lane);
    const int k0 = kb * kB;
    const bool full = k0 >= lo_max && k0 + kB - 1 <= hi_min && k0 + kB <= p.Lk;
#pragma unroll
    for (int n = 0; n < kB / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int j = e >> 1, u = k0 + n * 8 + 2 * (lane & 3) + (e & 1);
        const bool ok = full || (u >= lo[j] && u <= hi[j] && u < p.Lk);
        const float pr = ok ? fast_exp2(fmaf(s[n][e], sl2, -lse2[j])) : 0.f;
        s[n][e] = pr * (dp[n][e] - delta[j]);
      }
    mma_acc_kn<T, D, kB>(dq, s, s_k(stage), lane);
  }
  cp_async_wait<0>();

#pragma unroll
  for (int j = 0; j < 2; ++j) {
    const int i = warp * 16 + (lane >> 2) + 8 * j;
    if (i >= rows) continue;
    T* dqrow = static_cast<T*>(p.dq) + ((b * p.Lq + i0 + i) * p.Hq + h) * D;
#pragma unroll
    for (int n = 0; n < D / 8; ++n)
      *reinterpret_cast<uint32_t*>(dqrow + n * 8 + 2 * (lane & 3)) =
          Mma<T>::pack(dq[n][2 * j] * p.scale, dq[n][2 * j + 1] * p.scale);
  }
}

template <class T, int D>
void launch_backward(const AttentionParams& p, cudaStream_t stream) {
  const int64_t rows = p.B * p.Lq * p.Hq;
  if (!p.delta_given) {
    delta_kernel<T><<<unsigned((rows + 7) / 8), 256, 0, stream>>>(p);
    SL_CUDA_LAUNCH_CHECK();
  }
  constexpr int smem_kv = dkv_smem_bytes<D>(), smem_q = dq_smem_bytes<D>();
  SL_CUDA_CHECK(cudaFuncSetAttribute(attention_dkv_kernel<T, D>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, smem_kv));
  SL_CUDA_CHECK(cudaFuncSetAttribute(attention_dq_kernel<T, D>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, smem_q));
  dim3 gkv(unsigned(p.B * p.Hkv), unsigned((p.Lk + kB - 1) / kB));
  attention_dkv_kernel<T, D><<<gkv, kThreads, smem_kv, stream>>>(p);
  SL_CUDA_LAUNCH_CHECK();
  dim3 gq(unsigned(p.B * p.Hq), unsigned((p.Lq + kB - 1) / kB));
  attention_dq_kernel<T, D><<<gq, kThreads, smem_q, stream>>>(p);
  SL_CUDA_LAUNCH_CHECK();
}

}  // namespace

void attention_backward_cuda(const AttentionParams& p, int device) {
  cuda::set_device(device);
  cudaStream_t stream = cuda::stream(device);
  SL_CHECK(p.Lq <= 65535 * 64 && p.Lk <= 65535 * 64)
      << "attention: at most " << 65535 * 64 << " queries and keys per call (the grid's y "
      << "dimension), got Lq " << p.Lq << ", Lk " << p.Lk << " (split the queries into chunks)";
  if (p.dtype == DType::BF16) {
    if (p.D == 64) return launch_backward<bf16, 64>(p, stream);
    return launch_backward<bf16, 128>(p, stream);
  }
  if (p.D == 64) return launch_backward<f16, 64>(p, stream);
  launch_backward<f16, 128>(p, stream);
}

}  // namespace sl::kernels
