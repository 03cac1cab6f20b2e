// Tensor-core forward of superlinear attention (spec §13) for bf16 and D in {64, 128}:
//
//   1. search: anchors and gate scores of every query (kernels/superlinear_cuda.cu, search only);
//   2. window: banded flash attention once per query (kernels/attention.h with sliding_window W,
//      doc_start = doc_starts), giving O_w and lse_w;
//   3. spans, bucketed (Note [span buckets]): every kept (query, span) pair gets a footprint key,
//      pairs are sorted by it (CUB radix sort: histogram + prefix sum + scatter, stable), runs of
//      equal keys are cut into tiles of 64 pairs, and one block per tile runs the flash
//      forward's Q K^T / P V over the footprint's key blocks with each pair's own bounds, writing
//      the pair's normalised output and lse;
//   4. merge: per query, the spec §8 LSE merge of window and each span, then the gate.
//
// Note [span buckets]
// A span [st, en] covers key blocks kb0 = st / 64 .. en / 64 (nb blocks). Pairs with the same
// (batch, KV head, kb0, nb) read exactly the same K/V blocks, so 64 of them form a dense tile
// whose products are masked only where a pair's span starts or ends inside a block. The key is
// ((b * Hkv + g) * n_kb + kb0) << 8 | (nb - 1); empty slots get the all-ones key and sort last.
// Query heads of a GQA group share K/V, so their pairs share tiles.
//
// Memory: pairs are processed in chunks of query rows ([B, Hq, Lq] order) of at most kChunkPairs
// pairs, so the per-pair buffers (output rows in bf16, sort keys and indices) are bounded
// independently of L (Note [span memory] in the README's superlinear section). Every step is
// deterministic: the sort is stable, each pair is computed by one block, the merge sums in slot
// order. One host read per chunk (the tile count, to size the grid).
#include <cub/cub.cuh>

#include <cstdio>
#include <cstdlib>

#include "kernels/attention_cuda_common.cuh"
#include "kernels/superlinear_cuda_common.cuh"

namespace sl::kernels::slcuda {
namespace {

using namespace attn;

constexpr int kTile = 64, kBN = 64, kWarps = 4, kThreads = kWarps * 32;
constexpr int64_t kChunkPairs = int64_t(1) << 21;
constexpr uint64_t kEmptyKey = ~uint64_t(0);

struct SpanArgs {
  SuperlinearParams p;
  int64_t p0, n;    // this chunk's pairs: global ids p0 .. p0 + n - 1 (pair = row * k + slot)
  int64_t n_kb;     // key blocks per (batch, KV head)
  int key_bits;     // significant bits of a valid key
  uint64_t* keys;   // [n] footprint keys (then sorted)
  int32_t* idx;     // [n] local pair index (then sorted by key)
  int2* bounds;     // [n] span [st, en] per local pair
  uint16_t* os;     // [n, D] per-pair output, bf16
};

// Row geometry of a [B, Hq, Lq] row index.
struct Row {
  int64_t b, h, i, t, sb;
};
__device__ __forceinline__ Row locate_row(const SuperlinearParams& p, int64_t row) {
  Row r;
  r.i = row % p.Lq;
  r.h = (row / p.Lq) % p.Hq;
  r.b = row / (p.Lq * p.Hq);
  r.t = p.q_start + r.i;
  r.sb = p.doc_starts ? p.doc_starts[r.b * p.Lkv + r.t] : 0;
  return r;
}

__global__ void pair_keys_kernel(SpanArgs a) {
  const int64_t lp = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (lp >= a.n) return;
  const SuperlinearParams& p = a.p;
  const int64_t gp = a.p0 + lp, row = gp / p.cfg.k;
  const int32_t anchor = p.anchors[gp];
  a.idx[lp] = int32_t(lp);
  if (anchor < 0) {
    a.keys[lp] = kEmptyKey;
    return;
  }
  const Row r = locate_row(p, row);
  const int64_t st = span_start(p.cfg, anchor, r.t, r.sb), en = span_end(p.cfg, anchor, r.t, r.sb);
  a.bounds[lp] = make_int2(int(st), int(en));
  const int64_t kb0 = st / kBN, nb = en / kBN - kb0 + 1;
  const int64_t g = r.h / (p.Hq / p.Hkv);
  a.keys[lp] = (uint64_t((r.b * p.Hkv + g) * a.n_kb + kb0) << 8) | uint64_t(nb - 1);
}

// Tile starts: position i starts a tile when it is valid and (i - start of its run) % kTile == 0.
__global__ void tile_flags_kernel(const uint64_t* keys, int64_t n, int32_t* run_head) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  run_head[i] = (i == 0 || keys[i] != keys[i - 1]) ? int32_t(i) : 0;
}
__global__ void tile_marks_kernel(const uint64_t* keys, const int32_t* run_start, int64_t n,
                                  int32_t* mark) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  mark[i] = keys[i] != kEmptyKey && (i - run_start[i]) % kTile == 0;
}
__global__ void tile_scatter_kernel(const int32_t* mark, const int32_t* slot, int64_t n,
                                    int32_t* tile_start) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n && mark[i]) tile_start[slot[i]] = int32_t(i);
}

template <int D>
constexpr int span_smem_bytes() {
  return (kTile + 4 * kBN) * D * 2 + kTile * int(sizeof(int2)) + kTile * 4;
}

// One tile: up to 64 pairs with one footprint; warp w owns pairs 16 w .. 16 w + 15.
template <int D>
__global__ void __launch_bounds__(kThreads, 2)
    span_tile_kernel(SpanArgs a, const int32_t* tile_start) {
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t sq = smem_addr(smem);
  auto sk = [&](int st) { return sq + uint32_t((kTile + st * kBN) * D * 2); };
  auto sv = [&](int st) { return sq + uint32_t((kTile + (2 + st) * kBN) * D * 2); };
  int2* sbound = reinterpret_cast<int2*>(smem + (kTile + 4 * kBN) * D * 2);
  int32_t* slp = reinterpret_cast<int32_t*>(sbound + kTile);

  const SuperlinearParams& p = a.p;
  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;
  const int64_t s0 = tile_start[blockIdx.x];
  const uint64_t key = a.keys[s0];
  const int nb = int(key & 255u) + 1;
  const int64_t bk = int64_t(key >> 8);
  const int kb0 = int(bk % a.n_kb);
  const int64_t bg = bk / a.n_kb;  // b * Hkv + g
  int rows = 0;
  {
    const int64_t q = s0 + threadIdx.x;
    const bool same = threadIdx.x < kTile && q < a.n && a.keys[q] == key;
    rows = __syncthreads_count(same);  // runs are contiguous, so these are the first `rows`
  }
  for (int r = int(threadIdx.x); r < kTile; r += kThreads) {
    const int32_t lp = r < rows ? a.idx[s0 + r] : -1;
    slp[r] = lp;
    sbound[r] = lp >= 0 ? a.bounds[lp] : make_int2(1, 0);
  }
  __syncthreads();

  // Gathered Q rows: pair lp reads qa[row of (p0 + lp)].
  const uint16_t* qa = static_cast<const uint16_t*>(p.qa);
  for (int c = int(threadIdx.x); c < kTile * (D / 8); c += kThreads) {
    const int r = c / (D / 8), chunk = c % (D / 8);
    const int32_t lp = slp[r];
    const uint16_t* src = qa + (lp >= 0 ? ((a.p0 + lp) / p.cfg.k) * D + chunk * 8 : 0);
    cp_async16(sq + tile_offset<D>(r, chunk), src, lp >= 0);
  }
  const uint16_t* kbase = static_cast<const uint16_t*>(p.k) + bg * p.Lkv * D;
  const uint16_t* vbase = static_cast<const uint16_t*>(p.v) + bg * p.Lkv * D;
  load_tile<kBN, D, kThreads>(sk(0), kbase + int64_t(kb0) * kBN * D, D, int(p.Lkv) - kb0 * kBN);
  load_tile<kBN, D, kThreads>(sv(0), vbase + int64_t(kb0) * kBN * D, D, int(p.Lkv) - kb0 * kBN);
  cp_async_commit();

  int lo[2], hi[2];
#pragma unroll
  for (int j = 0; j < 2; ++j) {
    const int2 bd = sbound[warp * 16 + (lane >> 2) + 8 * j];
    lo[j] = bd.x;
    hi[j] = bd.y;
  }
  float o[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  const float sl2 = rsqrtf(float(D)) * kLog2e;

  for (int kb = kb0; kb < kb0 + nb; ++kb) {
    const int stage = (kb - kb0) & 1;
    cp_async_wait<0>();
    __syncthreads();
    if (kb + 1 < kb0 + nb) {
      const int nk = (kb + 1) * kBN;
      load_tile<kBN, D, kThreads>(sk(stage ^ 1), kbase + int64_t(nk) * D, D, int(p.Lkv) - nk);
      load_tile<kBN, D, kThreads>(sv(stage ^ 1), vbase + int64_t(nk) * D, D, int(p.Lkv) - nk);
    }
    cp_async_commit();

    float s[kBN / 8][4];
#pragma unroll
    for (int n = 0; n < kBN / 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t af[4];
      load_a<D>(af, sq, warp * 16, kk, lane);
#pragma unroll
      for (int np = 0; np < kBN / 16; ++np) {
        uint32_t bf[4];
        load_b_nk<D>(bf, sk(stage), np * 16, kk, lane);
        Mma<bf16>::run(s[2 * np], af, bf[0], bf[1]);
        Mma<bf16>::run(s[2 * np + 1], af, bf[2], bf[3]);
      }
    }
    const int k0 = kb * kBN;
    const bool inside = k0 >= lo[0] && k0 + kBN - 1 <= hi[0] && k0 >= lo[1] &&
                        k0 + kBN - 1 <= hi[1];
    if (!__all_sync(0xffffffffu, inside)) {
#pragma unroll
      for (int n = 0; n < kBN / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int u = k0 + n * 8 + 2 * (lane & 3) + (e & 1);
          if (u < lo[e >> 1] || u > hi[e >> 1]) s[n][e] = -INFINITY;
        }
    }
    float alpha[2];
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      float mx = -INFINITY;
#pragma unroll
      for (int n = 0; n < kBN / 8; ++n) mx = fmaxf(mx, fmaxf(s[n][2 * j], s[n][2 * j + 1]));
      mx = quad_max(mx) * sl2;
      const float m_new = fmaxf(m[j], mx);
      const float base = m_new == -INFINITY ? 0.f : m_new;
      alpha[j] = fast_exp2(m[j] - base);
      m[j] = m_new;
      float sum = 0.f;
#pragma unroll
      for (int n = 0; n < kBN / 8; ++n) {
        s[n][2 * j] = fast_exp2(fmaf(s[n][2 * j], sl2, -base));
        s[n][2 * j + 1] = fast_exp2(fmaf(s[n][2 * j + 1], sl2, -base));
        sum += s[n][2 * j] + s[n][2 * j + 1];
      }
      l[j] = l[j] * alpha[j] + sum;
    }
    if (!__all_sync(0xffffffffu, alpha[0] == 1.f && alpha[1] == 1.f)) {
#pragma unroll
      for (int n = 0; n < D / 8; ++n) {
        o[n][0] *= alpha[0];
        o[n][1] *= alpha[0];
        o[n][2] *= alpha[1];
        o[n][3] *= alpha[1];
      }
    }
#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk) {
      uint32_t pa[4];
      pa[0] = Mma<bf16>::pack(s[2 * kk][0], s[2 * kk][1]);
      pa[1] = Mma<bf16>::pack(s[2 * kk][2], s[2 * kk][3]);
      pa[2] = Mma<bf16>::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      pa[3] = Mma<bf16>::pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        uint32_t bf[4];
        load_b_kn<D>(bf, sv(stage), kk * 16, dp * 16, lane);
        Mma<bf16>::run(o[2 * dp], pa, bf[0], bf[1]);
        Mma<bf16>::run(o[2 * dp + 1], pa, bf[2], bf[3]);
      }
    }
  }
  cp_async_wait<0>();

#pragma unroll
  for (int j = 0; j < 2; ++j) {
    const float lj = quad_sum(l[j]);
    const int r = warp * 16 + (lane >> 2) + 8 * j;
    const int32_t lp = slp[r];
    if (lp < 0) continue;
    const float inv = lj > 0.f ? 1.f / lj : 0.f;
    uint16_t* orow = a.os + int64_t(lp) * D;
#pragma unroll
    for (int n = 0; n < D / 8; ++n)
      *reinterpret_cast<uint32_t*>(orow + n * 8 + 2 * (lane & 3)) =
          Mma<bf16>::pack(o[n][2 * j] * inv, o[n][2 * j + 1] * inv);
    if ((lane & 3) == 0)
      static_cast<float*>(p.lse_s)[a.p0 + lp] =
          lj > 0.f ? (m[j] + __log2f(lj)) * 0.6931471805599453f : -INFINITY;
  }
}

// Merge (spec §8): one warp per query row of the chunk; lane per dimension (E = D / 32).
template <int D>
__global__ void merge_kernel(SpanArgs a, const uint16_t* ow, int64_t row0, int64_t rows) {
  constexpr int E = D / 32;
  const int64_t w = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (w >= rows) return;
  const SuperlinearParams& p = a.p;
  const int lane = int(threadIdx.x) & 31, k = p.cfg.k;
  const int64_t row = row0 + w;
  const Row r = locate_row(p, row);
  const float lse_w = static_cast<const float*>(p.lse_w)[row];
  float sc[kMaxK], g[kMaxK];
  int32_t an[kMaxK];
#pragma unroll
  for (int j = 0; j < kMaxK; ++j) {
    an[j] = j < k ? p.anchors[row * k + j] : kNoAnchor;
    sc[j] = j < k ? static_cast<const float*>(p.scores)[row * k + j] : -INFINITY;
  }
  gate_weights(k, sc, an, g);
  float owv[E], out[E];
#pragma unroll
  for (int e = 0; e < E; ++e) {
    out[e] = 0.f;
    owv[e] = ow ? __uint_as_float(uint32_t(ow[((r.b * p.Lq + r.i) * p.Hq + r.h) * D + lane * E + e])
                                  << 16)
                : 0.f;
  }
  float* lse_s = static_cast<float*>(p.lse_s) + row * k;
  for (int j = 0; j < k; ++j) {
    float lj = -INFINITY;
    if (an[j] >= 0) {
      lj = lse_s[j];
    } else if (lane == 0) {
      lse_s[j] = -INFINITY;
    }
    const float lam = logaddexp(lse_w, lj);
    if (lam == -INFINITY) continue;
    const float ww = lse_w == -INFINITY ? 0.f : expf(lse_w - lam);
    const float wj = an[j] >= 0 ? expf(lj - lam) : 0.f;
    const uint16_t* osr = a.os + (row * k + j - a.p0) * D;
#pragma unroll
    for (int e = 0; e < E; ++e) {
      const float osv = an[j] >= 0 ? __uint_as_float(uint32_t(osr[lane * E + e]) << 16) : 0.f;
      out[e] += g[j] * (ww * owv[e] + wj * osv);
    }
  }
  uint16_t* o = static_cast<uint16_t*>(p.out) + row * D;
#pragma unroll
  for (int e = 0; e < E; ++e) {
    const __nv_bfloat16 v = __float2bfloat16_rn(out[e]);
    o[lane * E + e] = *reinterpret_cast<const uint16_t*>(&v);
  }
}

__global__ void fill_kernel(float* x, int64_t n, float v) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] = v;
}

// Debugging knob: SL_SPAN_PROFILE=1 prints the forward's stage times (ms) to stderr per call:
// search, window, pair keys + sort + tiles, span tiles, merge. Off: no events, no syncs.
class StageTimer {
 public:
  explicit StageTimer(cudaStream_t s) : s_(s), on_(std::getenv("SL_SPAN_PROFILE") != nullptr) {
    if (on_) start_.record(s_);
  }
  void mark(int stage) {  // stage 1..5: the end of that stage
    if (!on_) return;
    end_.record(s_);
    end_.synchronize();
    ms_[stage - 1] += end_.elapsed_ms(start_);
    start_.record(s_);
  }
  ~StageTimer() {
    if (on_)
      std::fprintf(stderr,
                   "superlinear forward stages (ms): search %.3f window %.3f sort %.3f tiles %.3f "
                   "merge %.3f\n",
                   ms_[0], ms_[1], ms_[2], ms_[3], ms_[4]);
  }

 private:
  cudaStream_t s_;
  bool on_;
  cuda::Event start_, end_;
  float ms_[5] = {0, 0, 0, 0, 0};
};

unsigned blocks_for(int64_t n, int per = 256) {
  return unsigned((n + per - 1) / per);
}

// Bytes of scratch as an int32 tensor on the device (freed with the tensor).
Tensor scratch(int64_t bytes, Device dev) {
  return Tensor::empty({std::max<int64_t>(1, (bytes + 3) / 4)}, DType::I32, dev);
}

template <int D>
void run_spans(const SuperlinearParams& p, int device, cudaStream_t s, StageTimer& timer) {
  const Device dev = Device::cuda(device);
  const int64_t rows = p.B * p.Hq * p.Lq, k = p.cfg.k;
  const int64_t n_kb = (p.Lkv + kBN - 1) / kBN;
  int key_bits = 8;
  while ((uint64_t(1) << (key_bits - 8)) <= uint64_t(p.B * p.Hkv * n_kb)) ++key_bits;
  const int64_t max_span = len_b(p.cfg, p.Lkv) + len_f(p.cfg, p.Lkv) + 1;
  SL_CHECK(max_span / kBN + 2 <= 256 && key_bits < 64)
      << kOp << ": spans of up to " << max_span << " keys exceed the tensor-core path's 256 key "
      << "blocks per span";

  // Window first: O_w [B, Lq, Hq, D] and lse_w.
  const int64_t W = window_len(p.cfg);
  Tensor ow;
  if (W > 0) {
    ow = Tensor::empty({p.B, p.Lq, p.Hq, D}, DType::BF16, dev);
    AttentionParams ap;
    ap.dtype = DType::BF16;
    ap.B = p.B, ap.Lq = p.Lq, ap.Lk = p.Lkv, ap.Hq = p.Hq, ap.Hkv = p.Hkv, ap.D = D;
    ap.causal = true, ap.window = W, ap.q_offset = p.q_start;
    ap.scale = 1.f / sqrtf(float(D));
    ap.q = p.qa, ap.k = p.k, ap.v = p.v;
    ap.q_sb = p.Hq * p.Lq * D, ap.q_st = D, ap.q_sh = p.Lq * D;
    ap.k_sb = p.Hkv * p.Lkv * D, ap.k_st = D, ap.k_sh = p.Lkv * D;
    ap.doc_start = p.doc_starts;
    ap.out = ow.data_ptr();
    ap.lse = static_cast<float*>(p.lse_w);
    attention_forward_cuda(ap, device);
  } else {
    fill_kernel<<<blocks_for(rows), 256, 0, s>>>(static_cast<float*>(p.lse_w), rows, -INFINITY);
    SL_CUDA_LAUNCH_CHECK();
  }
  timer.mark(2);

  const int64_t rows_per_chunk = std::max<int64_t>(1, kChunkPairs / k);
  const int64_t cap = std::min(rows, rows_per_chunk) * k;
  Tensor keys = scratch(cap * 8, dev), keys_sorted = scratch(cap * 8, dev);
  Tensor idx = scratch(cap * 4, dev), idx_sorted = scratch(cap * 4, dev);
  Tensor bounds = scratch(cap * 8, dev), os = scratch(cap * D * 2, dev);
  Tensor head = scratch(cap * 4, dev), run_start = scratch(cap * 4, dev);
  Tensor mark = scratch(cap * 4, dev), slot = scratch(cap * 4, dev);
  Tensor tile_start = scratch(cap * 4, dev);
  size_t sort_bytes = 0, max_bytes = 0, sum_bytes = 0;
  SL_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, (uint64_t*)nullptr,
                                                (uint64_t*)nullptr, (int32_t*)nullptr,
                                                (int32_t*)nullptr, cap, 0, key_bits, s));
  SL_CUDA_CHECK(cub::DeviceScan::InclusiveScan(nullptr, max_bytes, (int32_t*)nullptr,
                                               (int32_t*)nullptr, ::cuda::maximum<int32_t>(), cap,
                                               s));
  SL_CUDA_CHECK(
      cub::DeviceScan::ExclusiveSum(nullptr, sum_bytes, (int32_t*)nullptr, (int32_t*)nullptr, cap, s));
  Tensor temp = scratch(int64_t(std::max(sort_bytes, std::max(max_bytes, sum_bytes))), dev);
  const size_t temp_bytes = size_t(temp.numel()) * 4;

  constexpr int smem = span_smem_bytes<D>();
  SL_CUDA_CHECK(cudaFuncSetAttribute(span_tile_kernel<D>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  for (int64_t row0 = 0; row0 < rows; row0 += rows_per_chunk) {
    const int64_t nrows = std::min(rows_per_chunk, rows - row0);
    SpanArgs a;
    a.p = p;
    a.p0 = row0 * k;
    a.n = nrows * k;
    a.n_kb = n_kb;
    a.key_bits = key_bits;
    a.keys = reinterpret_cast<uint64_t*>(keys.data_ptr());
    a.idx = idx.data<int32_t>();
    a.bounds = reinterpret_cast<int2*>(bounds.data_ptr());
    a.os = reinterpret_cast<uint16_t*>(os.data_ptr());
    pair_keys_kernel<<<blocks_for(a.n), 256, 0, s>>>(a);
    SL_CUDA_LAUNCH_CHECK();
    // Empty slots carry all ones: within key_bits they still sort after every valid key.
    size_t tb = temp_bytes;
    uint64_t* ks = reinterpret_cast<uint64_t*>(keys_sorted.data_ptr());
    SL_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.data_ptr(), tb, a.keys, ks, a.idx,
                                                  idx_sorted.data<int32_t>(), a.n, 0, key_bits,
                                                  s));
    // The sort reads key_bits bits, but the sorted keys keep all 64: empty slots stay kEmptyKey.
    a.keys = ks;
    a.idx = idx_sorted.data<int32_t>();
    tile_flags_kernel<<<blocks_for(a.n), 256, 0, s>>>(ks, a.n, head.data<int32_t>());
    SL_CUDA_LAUNCH_CHECK();
    tb = temp_bytes;
    SL_CUDA_CHECK(cub::DeviceScan::InclusiveScan(temp.data_ptr(), tb, head.data<int32_t>(),
                                                 run_start.data<int32_t>(),
                                                 ::cuda::maximum<int32_t>(), a.n, s));
    tile_marks_kernel<<<blocks_for(a.n), 256, 0, s>>>(ks, run_start.data<int32_t>(), a.n,
                                                      mark.data<int32_t>());
    SL_CUDA_LAUNCH_CHECK();
    tb = temp_bytes;
    SL_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(temp.data_ptr(), tb, mark.data<int32_t>(),
                                                slot.data<int32_t>(), a.n, s));
    tile_scatter_kernel<<<blocks_for(a.n), 256, 0, s>>>(mark.data<int32_t>(),
                                                        slot.data<int32_t>(), a.n,
                                                        tile_start.data<int32_t>());
    SL_CUDA_LAUNCH_CHECK();
    int32_t last_slot = 0, last_mark = 0;
    SL_CUDA_CHECK(cudaMemcpyAsync(&last_slot, slot.data<int32_t>() + a.n - 1, 4,
                                  cudaMemcpyDeviceToHost, s));
    SL_CUDA_CHECK(cudaMemcpyAsync(&last_mark, mark.data<int32_t>() + a.n - 1, 4,
                                  cudaMemcpyDeviceToHost, s));
    SL_CUDA_CHECK(cudaStreamSynchronize(s));
    const int64_t tiles = int64_t(last_slot) + last_mark;
    timer.mark(3);
    if (tiles > 0) {
      span_tile_kernel<D><<<unsigned(tiles), kThreads, smem, s>>>(a, tile_start.data<int32_t>());
      SL_CUDA_LAUNCH_CHECK();
    }
    timer.mark(4);
    merge_kernel<D><<<blocks_for(nrows, 8), 256, 0, s>>>(
        a, W > 0 ? reinterpret_cast<const uint16_t*>(ow.data_ptr()) : nullptr, row0, nrows);
    SL_CUDA_LAUNCH_CHECK();
    timer.mark(5);
  }
}

}  // namespace

bool spans_supported(const SuperlinearParams& p) {
  return p.dtype == DType::BF16 && (p.D == 64 || p.D == 128) && p.Lkv <= 65535 * 64 &&
         p.Lkv < (int64_t(1) << 31);
}

void forward_spans(const SuperlinearParams& p, int device) {
  cudaStream_t s = cuda::stream(device);
  StageTimer timer(s);
  launch_search(p, s);
  timer.mark(1);
  if (p.D == 64) return run_spans<64>(p, device, s, timer);
  run_spans<128>(p, device, s, timer);
}

}  // namespace sl::kernels::slcuda
