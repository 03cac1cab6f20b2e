// CUDA flash attention forward (kernels/attention.h) and the doc_start scan.
//
// One block per (128 queries, query head, batch row); 8 warps, each owning 16 query rows whose Q
// fragments stay in registers. Key blocks of 64 stream through a two-stage cp.async pipeline
// (Note [swizzled tiles], kernels/attention_cuda_common.cuh); per key block a warp computes
// S = Q K^T (16 x 64), masks only when the block straddles a row's key range, updates the
// online softmax in the log2 domain, and accumulates O += P V with P re-used from registers.
// Blocks are launched heaviest first (causal: the last query blocks see the most keys).
#include "kernels/attention.h"
#include "kernels/attention_cuda_common.cuh"

#include "core/cuda_context.h"

namespace sl::kernels {
namespace {

using namespace attn;

constexpr int kBM = 128, kBN = 64, kWarps = 8, kThreads = kWarps * 32;

template <int D>
constexpr int fwd_smem_bytes() {
  return (kBM + 4 * kBN) * D * 2;  // Q, K[2], V[2]
}

template <class T, int D>
__global__ void __launch_bounds__(kThreads, 2) attention_fwd_kernel(const AttentionParams p) {
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t sq = smem_addr(smem);
  // Stage s of K and V (computed, not indexed: a run-time index would put an array on the stack).
  auto sk = [&](int st) { return sq + uint32_t((kBM + st * kBN) * D * 2); };
  auto sv = [&](int st) { return sq + uint32_t((kBM + (2 + st) * kBN) * D * 2); };

  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;
  const int qb = int(gridDim.x) - 1 - int(blockIdx.x);
  const int h = int(blockIdx.y), g = h / int(p.Hq / p.Hkv);
  const int64_t b = blockIdx.z;
  const int q0 = qb * kBM;
  const int rows = min(kBM, int(p.Lq) - q0);
  const int64_t t_first = p.q_offset + q0, t_last = p.q_offset + q0 + rows - 1;

  const uint16_t* qbase = static_cast<const uint16_t*>(p.q) + b * p.q_sb + q0 * p.q_st + h * p.q_sh;
  const uint16_t* kbase = static_cast<const uint16_t*>(p.k) + b * p.k_sb + g * p.k_sh;
  const uint16_t* vbase = static_cast<const uint16_t*>(p.v) + b * p.k_sb + g * p.k_sh;

  // This thread's two rows and their key ranges.
  int lo[2], hi[2];
#pragma unroll
  for (int j = 0; j < 2; ++j) {
    const int i = warp * 16 + (lane >> 2) + 8 * j;
    const int64_t t = p.q_offset + q0 + i;
    if (i < rows) {
      lo[j] = key_lo(p, b, t);
      hi[j] = key_hi(p, t);
    } else {
      lo[j] = 1;
      hi[j] = 0;  // empty
    }
  }
  const int blk_lo = key_lo(p, b, t_first), blk_hi = key_hi(p, t_last);
  const int lo_max = key_lo(p, b, t_last), hi_min = key_hi(p, t_first);
  const int kb_begin = blk_lo / kBN, kb_end = blk_hi / kBN;

  load_tile<kBM, D, kThreads>(sq, qbase, p.q_st, rows);
  load_tile<kBN, D, kThreads>(sk(0), kbase + int64_t(kb_begin) * kBN * p.k_st, p.k_st,
                              int(p.Lk) - kb_begin * kBN);
  load_tile<kBN, D, kThreads>(sv(0), vbase + int64_t(kb_begin) * kBN * p.k_st, p.k_st,
                              int(p.Lk) - kb_begin * kBN);
  cp_async_commit();

  // Q fragments live in registers for D = 64; for D = 128 they are re-read from shared memory
  // per key block, which keeps the kernel within 128 registers (two blocks per SM).
  constexpr bool kQRegs = D <= 64;
  uint32_t qf[kQRegs ? D / 16 : 1][4];
  float o[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  const float sl2 = p.scale * kLog2e;

  for (int kb = kb_begin; kb <= kb_end; ++kb) {
    const int stage = (kb - kb_begin) & 1;
    cp_async_wait<0>();
    __syncthreads();
    if (kQRegs && kb == kb_begin) {
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) load_a<D>(qf[kQRegs ? kk : 0], sq, warp * 16, kk, lane);
    }
    if (kb < kb_end) {
      const int nk = (kb + 1) * kBN;
      load_tile<kBN, D, kThreads>(sk(stage ^ 1), kbase + int64_t(nk) * p.k_st, p.k_st,
                                  int(p.Lk) - nk);
      load_tile<kBN, D, kThreads>(sv(stage ^ 1), vbase + int64_t(nk) * p.k_st, p.k_st,
                                  int(p.Lk) - nk);
    }
    cp_async_commit();

    float s[kBN / 8][4];
#pragma unroll
    for (int n = 0; n < kBN / 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      if (!kQRegs) load_a<D>(qf[0], sq, warp * 16, kk, lane);
      const uint32_t(&a)[4] = qf[kQRegs ? kk : 0];
#pragma unroll
      for (int np = 0; np < kBN / 16; ++np) {
        uint32_t bf[4];
        load_b_nk<D>(bf, sk(stage), np * 16, kk, lane);
        Mma<T>::run(s[2 * np], a, bf[0], bf[1]);
        Mma<T>::run(s[2 * np + 1], a, bf[2], bf[3]);
      }
    }

    const int k0 = kb * kBN;
    const bool full = k0 >= lo_max && k0 + kBN - 1 <= hi_min && k0 + kBN <= p.Lk;
    if (!full) {
#pragma unroll
      for (int n = 0; n < kBN / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int u = k0 + n * 8 + 2 * (lane & 3) + (e & 1);
          const int j = e >> 1;
          if (u < lo[j] || u > hi[j] || u >= p.Lk) s[n][e] = -INFINITY;
        }
    }

    // Online softmax, log2 domain: m is the running max of s * sl2.
    float alpha[2];
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      float mx = -INFINITY;
#pragma unroll
      for (int n = 0; n < kBN / 8; ++n) mx = fmaxf(mx, fmaxf(s[n][2 * j], s[n][2 * j + 1]));
      mx = quad_max(mx) * sl2;
      const float m_new = fmaxf(m[j], mx);
      const float base = m_new == -INFINITY ? 0.f : m_new;
      alpha[j] = exp2f(m[j] - base);
      m[j] = m_new;
      float sum = 0.f;
#pragma unroll
      for (int n = 0; n < kBN / 8; ++n) {
        s[n][2 * j] = exp2f(fmaf(s[n][2 * j], sl2, -base));
        s[n][2 * j + 1] = exp2f(fmaf(s[n][2 * j + 1], sl2, -base));
        sum += s[n][2 * j] + s[n][2 * j + 1];
      }
      l[j] = l[j] * alpha[j] + sum;
    }
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      o[n][0] *= alpha[0];
      o[n][1] *= alpha[0];
      o[n][2] *= alpha[1];
      o[n][3] *= alpha[1];
    }

#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk) {
      uint32_t pa[4];
      pa[0] = Mma<T>::pack(s[2 * kk][0], s[2 * kk][1]);
      pa[1] = Mma<T>::pack(s[2 * kk][2], s[2 * kk][3]);
      pa[2] = Mma<T>::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      pa[3] = Mma<T>::pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        uint32_t bf[4];
        load_b_kn<D>(bf, sv(stage), kk * 16, dp * 16, lane);
        Mma<T>::run(o[2 * dp], pa, bf[0], bf[1]);
        Mma<T>::run(o[2 * dp + 1], pa, bf[2], bf[3]);
      }
    }
  }

  // Finish: O / l, lse = (m + log2 l) ln 2.
#pragma unroll
  for (int j = 0; j < 2; ++j) {
    l[j] = quad_sum(l[j]);
    const int i = warp * 16 + (lane >> 2) + 8 * j;
    if (i >= rows) continue;
    const float inv = l[j] > 0.f ? 1.f / l[j] : 0.f;
    T* orow = static_cast<T*>(p.out) + ((b * p.Lq + q0 + i) * p.Hq + h) * D;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      const uint32_t v = Mma<T>::pack(o[n][2 * j] * inv, o[n][2 * j + 1] * inv);
      *reinterpret_cast<uint32_t*>(orow + n * 8 + 2 * (lane & 3)) = v;
    }
    if ((lane & 3) == 0)
      p.lse[(b * p.Hq + h) * p.Lq + q0 + i] =
          l[j] > 0.f ? (m[j] + log2f(l[j])) * 0.6931471805599453f : -INFINITY;
  }
}

// doc_start along each row: one block per batch row; each thread scans a contiguous chunk, the
// chunk maxima are scanned across the block, then each chunk is rescanned with its carry.
constexpr int kScanThreads = 1024;
__global__ void doc_start_kernel(const int32_t* seq, int32_t* out, int64_t T) {
  __shared__ int32_t carry[kScanThreads];
  const int64_t b = blockIdx.x;
  const int64_t per = (T + kScanThreads - 1) / kScanThreads;
  const int64_t begin = int64_t(threadIdx.x) * per, end = min(T, begin + per);
  const int32_t* s = seq + b * T;
  int32_t local = 0;
  for (int64_t t = begin; t < end; ++t)
    if (t > 0 && s[t] != s[t - 1]) local = int32_t(t);
  carry[threadIdx.x] = local;
  __syncthreads();
  for (int off = 1; off < kScanThreads; off <<= 1) {  // inclusive max-scan of the chunk maxima
    const int32_t v = threadIdx.x >= unsigned(off) ? carry[threadIdx.x - off] : 0;
    __syncthreads();
    carry[threadIdx.x] = max(carry[threadIdx.x], v);
    __syncthreads();
  }
  int32_t run = threadIdx.x > 0 ? carry[threadIdx.x - 1] : 0;
  for (int64_t t = begin; t < end; ++t) {
    if (t > 0 && s[t] != s[t - 1]) run = int32_t(t);
    out[b * T + t] = run;
  }
}

template <class T, int D>
void launch_forward(const AttentionParams& p, cudaStream_t stream) {
  constexpr int smem = fwd_smem_bytes<D>();
  SL_CUDA_CHECK(cudaFuncSetAttribute(attention_fwd_kernel<T, D>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  dim3 grid(unsigned((p.Lq + kBM - 1) / kBM), unsigned(p.Hq), unsigned(p.B));
  attention_fwd_kernel<T, D><<<grid, kThreads, smem, stream>>>(p);
  SL_CUDA_LAUNCH_CHECK();
}

}  // namespace

void attention_forward_cuda(const AttentionParams& p, int device) {
  cuda::set_device(device);
  cudaStream_t stream = cuda::stream(device);
  SL_CHECK(p.Lq < (int64_t(1) << 31) && p.Lk < (int64_t(1) << 31))
      << "attention: sequence lengths must fit int32";
  if (p.dtype == DType::BF16) {
    if (p.D == 64) return launch_forward<bf16, 64>(p, stream);
    return launch_forward<bf16, 128>(p, stream);
  }
  if (p.D == 64) return launch_forward<f16, 64>(p, stream);
  launch_forward<f16, 128>(p, stream);
}

void doc_start_cuda(const int32_t* seq_idx, int32_t* doc_start, int64_t B, int64_t T,
                    int device) {
  cuda::set_device(device);
  doc_start_kernel<<<unsigned(B), kScanThreads, 0, cuda::stream(device)>>>(seq_idx, doc_start, T);
  SL_CUDA_LAUNCH_CHECK();
}

}  // namespace sl::kernels
