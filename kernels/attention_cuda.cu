// CUDA flash attention forward (kernels/attention.h) and the doc_start scan.
//
// One block per (128 queries, query head, batch row); 4 warps, each owning 32 query rows (two
// m-tiles sharing every K and V fragment they load; FwdTile keeps the 8 x 16 variant for the
// benchmark's comparison). Key blocks of 64 stream through a two-stage cp.async pipeline
// (Note [swizzled tiles], kernels/attention_cuda_common.cuh); per key block a warp computes
// S = Q K^T (16 x 64), masks only when the block straddles a row's key range, updates the
// online softmax in the log2 domain, and accumulates O += P V with P re-used from registers.
// Blocks are launched heaviest first across all heads (Note [heaviest first]).
#include "kernels/attention.h"
#include "kernels/attention_cuda_common.cuh"

#include "core/cuda_context.h"

namespace sl::kernels {
namespace {

using namespace attn;

// Tile shape of the forward: W warps, each owning MT m-tiles of 16 query rows (one ldmatrix of
// a K or V fragment feeds MT products, so shared-memory reads per FLOP fall as 1 / MT).
template <int W, int MT, int BN>
struct FwdTile {
  static constexpr int kMT = MT, kThreads = W * 32, kBM = W * MT * 16, kBN = BN;
};

template <class Tile, int D>
constexpr int fwd_smem_bytes() {
  return (Tile::kBM + 4 * Tile::kBN) * D * 2;  // Q, K[2], V[2]
}

template <class T, int D, class Tile>
__global__ void __launch_bounds__(Tile::kThreads, 2) attention_fwd_kernel(const AttentionParams p) {
  constexpr int kBM = Tile::kBM, kBN = Tile::kBN, kMT = Tile::kMT, kThreads = Tile::kThreads;
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t sq = smem_addr(smem);
  // Stage s of K and V (computed, not indexed: a run-time index would put an array on the stack).
  auto sk = [&](int st) { return sq + uint32_t((kBM + st * kBN) * D * 2); };
  auto sv = [&](int st) { return sq + uint32_t((kBM + (2 + st) * kBN) * D * 2); };

  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;
  // Note [heaviest first]: x enumerates (batch, head), y the query blocks from the last (which
  // sees the most keys under a causal mask); blocks start in x-then-y order, so every head's
  // heavy blocks go first and the light ones fill the tail.
  const int qb = int(gridDim.y) - 1 - int(blockIdx.y);
  const int h = int(blockIdx.x % p.Hq), g = h / int(p.Hq / p.Hkv);
  const int64_t b = blockIdx.x / p.Hq;
  const int q0 = qb * kBM;
  const int rows = min(kBM, int(p.Lq) - q0);
  const int64_t t_first = p.q_offset + q0, t_last = p.q_offset + q0 + rows - 1;
  const int wrow = warp * kMT * 16;  // first row of this warp

  const uint16_t* qbase = static_cast<const uint16_t*>(p.q) + b * p.q_sb + q0 * p.q_st + h * p.q_sh;
  const uint16_t* kbase = static_cast<const uint16_t*>(p.k) + b * p.k_sb + g * p.k_sh;
  const uint16_t* vbase = static_cast<const uint16_t*>(p.v) + b * p.k_sb + g * p.k_sh;

  const int blk_lo = key_lo(p, b, t_first), blk_hi = key_hi(p, t_last);
  const int lo_max = key_lo(p, b, t_last), hi_min = key_hi(p, t_first);
  const int kb_begin = blk_lo / kBN, kb_end = blk_hi / kBN;

  load_tile<kBM, D, kThreads>(sq, qbase, p.q_st, rows);
  load_tile<kBN, D, kThreads>(sk(0), kbase + int64_t(kb_begin) * kBN * p.k_st, p.k_st,
                              int(p.Lk) - kb_begin * kBN);
  load_tile<kBN, D, kThreads>(sv(0), vbase + int64_t(kb_begin) * kBN * p.k_st, p.k_st,
                              int(p.Lk) - kb_begin * kBN);
  cp_async_commit();

  float o[kMT][D / 8][4];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int n = 0; n < D / 8; ++n) o[mt][n][0] = o[mt][n][1] = o[mt][n][2] = o[mt][n][3] = 0.f;
  float m[kMT][2], l[kMT][2];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) m[mt][0] = m[mt][1] = -INFINITY, l[mt][0] = l[mt][1] = 0.f;
  const float sl2 = p.scale * kLog2e;

  for (int kb = kb_begin; kb <= kb_end; ++kb) {
    const int stage = (kb - kb_begin) & 1;
    cp_async_wait<0>();
    __syncthreads();
    if (kb < kb_end) {
      const int nk = (kb + 1) * kBN;
      load_tile<kBN, D, kThreads>(sk(stage ^ 1), kbase + int64_t(nk) * p.k_st, p.k_st,
                                  int(p.Lk) - nk);
      load_tile<kBN, D, kThreads>(sv(stage ^ 1), vbase + int64_t(nk) * p.k_st, p.k_st,
                                  int(p.Lk) - nk);
    }
    cp_async_commit();

    float s[kMT][kBN / 8][4];
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
      for (int n = 0; n < kBN / 8; ++n) s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t a[kMT][4];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) load_a<D>(a[mt], sq, wrow + 16 * mt, kk, lane);
#pragma unroll
      for (int np = 0; np < kBN / 16; ++np) {
        uint32_t bf[4];
        load_b_nk<D>(bf, sk(stage), np * 16, kk, lane);
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          Mma<T>::run(s[mt][2 * np], a[mt], bf[0], bf[1]);
          Mma<T>::run(s[mt][2 * np + 1], a[mt], bf[2], bf[3]);
        }
      }
    }

    const int k0 = kb * kBN;
    const bool full = k0 >= lo_max && k0 + kBN - 1 <= hi_min && k0 + kBN <= p.Lk;
    if (!full) {  // the few blocks on a row's range bounds; ranges recomputed, not kept live
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          // Row wrow + 16 mt + lane / 4 + 8 j; rows past the end get an empty range.
          const int i = wrow + 16 * mt + (lane >> 2) + 8 * j;
          const int64_t t = p.q_offset + q0 + i;
          const int lo = i < rows ? key_lo(p, b, t) : 1, hi = i < rows ? key_hi(p, t) : 0;
#pragma unroll
          for (int n = 0; n < kBN / 8; ++n)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const int u = k0 + n * 8 + 2 * (lane & 3) + e;
              if (u < lo || u > hi || u >= p.Lk) s[mt][n][2 * j + e] = -INFINITY;
            }
        }
    }

    // Online softmax, log2 domain: m is the running max of s * sl2.
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt) {
      float alpha[2];
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        float mx = -INFINITY;
#pragma unroll
        for (int n = 0; n < kBN / 8; ++n)
          mx = fmaxf(mx, fmaxf(s[mt][n][2 * j], s[mt][n][2 * j + 1]));
        mx = quad_max(mx) * sl2;
        const float m_new = fmaxf(m[mt][j], mx);
        const float base = m_new == -INFINITY ? 0.f : m_new;
        alpha[j] = fast_exp2(m[mt][j] - base);
        m[mt][j] = m_new;
        float sum = 0.f;
#pragma unroll
        for (int n = 0; n < kBN / 8; ++n) {
          s[mt][n][2 * j] = fast_exp2(fmaf(s[mt][n][2 * j], sl2, -base));
          s[mt][n][2 * j + 1] = fast_exp2(fmaf(s[mt][n][2 * j + 1], sl2, -base));
          sum += s[mt][n][2 * j] + s[mt][n][2 * j + 1];
        }
        l[mt][j] = l[mt][j] * alpha[j] + sum;
      }
      // Once a row's maximum has settled (most key blocks of a long row) alpha is 1: skip the
      // rescale when it is 1 for the whole warp (a uniform branch).
      if (!__all_sync(0xffffffffu, alpha[0] == 1.f && alpha[1] == 1.f)) {
#pragma unroll
        for (int n = 0; n < D / 8; ++n) {
          o[mt][n][0] *= alpha[0];
          o[mt][n][1] *= alpha[0];
          o[mt][n][2] *= alpha[1];
          o[mt][n][3] *= alpha[1];
        }
      }
    }

#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk) {
      uint32_t pa[kMT][4];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        pa[mt][0] = Mma<T>::pack(s[mt][2 * kk][0], s[mt][2 * kk][1]);
        pa[mt][1] = Mma<T>::pack(s[mt][2 * kk][2], s[mt][2 * kk][3]);
        pa[mt][2] = Mma<T>::pack(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
        pa[mt][3] = Mma<T>::pack(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
      }
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        uint32_t bf[4];
        load_b_kn<D>(bf, sv(stage), kk * 16, dp * 16, lane);
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          Mma<T>::run(o[mt][2 * dp], pa[mt], bf[0], bf[1]);
          Mma<T>::run(o[mt][2 * dp + 1], pa[mt], bf[2], bf[3]);
        }
      }
    }
  }

  // Finish: O / l, lse = (m + log2 l) ln 2.
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const float lj = quad_sum(l[mt][j]);
      const int i = wrow + 16 * mt + (lane >> 2) + 8 * j;
      if (i >= rows) continue;
      const float inv = lj > 0.f ? 1.f / lj : 0.f;
      T* orow = static_cast<T*>(p.out) + ((b * p.Lq + q0 + i) * p.Hq + h) * D;
#pragma unroll
      for (int n = 0; n < D / 8; ++n) {
        const uint32_t v = Mma<T>::pack(o[mt][n][2 * j] * inv, o[mt][n][2 * j + 1] * inv);
        *reinterpret_cast<uint32_t*>(orow + n * 8 + 2 * (lane & 3)) = v;
      }
      if ((lane & 3) == 0)
        p.lse[(b * p.Hq + h) * p.Lq + q0 + i] =
            lj > 0.f ? (m[mt][j] + log2f(lj)) * 0.6931471805599453f : -INFINITY;
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

template <class T, int D, class Tile>
void launch_forward(const AttentionParams& p, cudaStream_t stream) {
  constexpr int smem = fwd_smem_bytes<Tile, D>();
  SL_CUDA_CHECK(cudaFuncSetAttribute(attention_fwd_kernel<T, D, Tile>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  dim3 grid(unsigned(p.B * p.Hq), unsigned((p.Lq + Tile::kBM - 1) / Tile::kBM));
  attention_fwd_kernel<T, D, Tile><<<grid, Tile::kThreads, smem, stream>>>(p);
  SL_CUDA_LAUNCH_CHECK();
}

template <class Tile>
void forward_with(const AttentionParams& p, cudaStream_t stream) {
  if (p.dtype == DType::BF16) {
    if (p.D == 64) return launch_forward<bf16, 64, Tile>(p, stream);
    return launch_forward<bf16, 128, Tile>(p, stream);
  }
  if (p.D == 64) return launch_forward<f16, 64, Tile>(p, stream);
  launch_forward<f16, 128, Tile>(p, stream);
}

}  // namespace

namespace attn {
void forward_variant(const AttentionParams& p, int device, int variant) {
  cuda::set_device(device);
  SL_CHECK(p.Lq <= 65535 * 64 && p.Lk <= 65535 * 64)
      << "attention: at most " << 65535 * 64 << " queries and keys per call (the grid's y "
      << "dimension), got Lq " << p.Lq << ", Lk " << p.Lk << " (split the queries into chunks)";
  cudaStream_t stream = cuda::stream(device);
  if (variant == 0) return forward_with<FwdTile<4, 2, 64>>(p, stream);
  if (variant == 1) return forward_with<FwdTile<8, 1, 64>>(p, stream);
  forward_with<FwdTile<4, 2, 32>>(p, stream);
}
}  // namespace attn

void attention_forward_cuda(const AttentionParams& p, int device) {
  attn::forward_variant(p, device, 0);
}

void doc_start_cuda(const int32_t* seq_idx, int32_t* doc_start, int64_t B, int64_t T,
                    int device) {
  cuda::set_device(device);
  doc_start_kernel<<<unsigned(B), kScanThreads, 0, cuda::stream(device)>>>(seq_idx, doc_start, T);
  SL_CUDA_LAUNCH_CHECK();
}

}  // namespace sl::kernels
