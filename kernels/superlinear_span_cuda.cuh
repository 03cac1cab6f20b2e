// Internal to the tensor-core superlinear kernels (kernels/superlinear_span_cuda.cu forward,
// kernels/superlinear_span_bwd_cuda.cu and superlinear_span_bwd_tiles_cuda.cu backward): the
// (query, span) pair geometry, and the backward's tile builder that buckets one chunk of pairs by
// key-block footprint (Note [span buckets] in the forward). Not a public header. The two argument
// structs and the backward's tile launchers cross files; everything else has internal linkage (one
// copy per file).
//
// Note [span chunks]
// Pairs are processed in chunks of whole query rows ([B, Hq, Lq] order) of at most
// chunk_pairs() pairs, so per-pair buffers are bounded independently of L: 2M pairs (the
// backward), or, given a scratch budget in bytes and the bytes a pair needs, as many pairs as
// fit, from 512K up to a most (the forward's: 4M). The forward's budget is the larger of two:
// - a quarter of the size of K and V, so its workspace (the O(L k) metadata plus one chunk's
//   scratch) stays below K + V at 1M tokens even at GQA 8 (measured at 2M pairs: 1298 MiB
//   against 1024);
// - for short sequences, kForwardFloor = 1152 MiB less twice the metadata. Each chunk costs a
//   tile build (seven kernels) and a tail of its tile launch, and its tiles bucket fewer pairs:
//   at 64K GQA 8 the quarter of K + V gave six chunks of 512K pairs, and the forward took 4.98
//   ms against 4.30 in two chunks of 2M (H200); one chunk of 3.1M pairs (1.04 GB of scratch)
//   took 3.76 against 3.83 ms in two (2026-11-29). The floor shrinks by twice the metadata (40
//   bytes per query row and head, balanced preset), so that by 1M tokens (640 MiB of metadata
//   at 16 heads) it is gone and the quarter of K + V decides.
// SL_SPAN_CHUNK_PAIRS overrides the bound (a testing knob: the GPU tests force several chunks
// on small inputs).
#pragma once

#include <cub/cub.cuh>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/attention_cuda_common.cuh"
#include "kernels/superlinear_cuda_common.cuh"
#include "kernels/wgmma_cuda.cuh"

namespace sl::kernels::slcuda {

// One chunk's pairs and tiles, as the span kernels read them.
struct SpanArgs {
  SuperlinearParams p;
  int64_t p0, n;         // this chunk's pairs: global ids p0 .. p0 + n - 1 (pair = row * k + slot)
  const int32_t* pairs;  // or, when not null, the global ids pairs[0 .. n - 1] (pair_id)
  int64_t n_kb;          // key blocks per (batch, KV head)
  int64_t kb_stride;     // n_kb rounded up to a multiple of 2^kMaxRunShift: the keys' group stride
  int run_shift;         // runs (tile buckets) span 2^run_shift first blocks (Note [wide runs])
  uint64_t* keys;        // [n] footprint keys, sorted
  int32_t* idx;          // [n] local pair index, sorted by key
  int2* bounds;          // [n] span [st, en] per local pair (unsorted, by local index)
  const int32_t* tile_start;  // [tiles] first sorted position of each tile
  const uint64_t* tile_key;   // [tiles] footprint of each tile (first block, blocks), ascending
  const int32_t* tile_count;  // [1] the number of tiles, on the device (Note [tile count])
  // The forward's build (Note [forward tile build] in kernels/superlinear_span_cuda.cu), which
  // sets these instead of idx and bounds: per sorted position, the pair's record (local id,
  // span start, span end, query row - p0 / k), and per tile its number of pairs.
  const int4* recs = nullptr;
  const int32_t* tile_nrows = nullptr;
};

// Note [slot tables] (kernels/superlinear_span_bwd_tiles_cuda.cu): one entry per tile row.
// Each array has tiles * 64 entries; the five terms are separate arrays (Note [dK/dV
// registers]).
struct SlotTable {
  int32_t* row;      // query row of the pair, -1 for padding
  int32_t* lp;       // local pair id, -1 for padding
  float* lse2;       // lse_s log2(e); padding: inf
  float *c1, *c2;    // the gate terms (0 before they exist, and for padding)
  int32_t *lo, *hi;  // span bounds; padding: 1, 0 (empty)
  // Per tile (tiles entries): the largest lo and the smallest hi of its pairs (Note [inside
  // blocks]); a key block inside [x, y] is inside every pair's span.
  int2* inside;
};

// The backward's tile passes (kernels/superlinear_span_bwd_tiles_cuda.cu), D in {64, 128}:
// - the slot table of a chunk's tiles: c1, c2 from g[v - y_v0] and y[v - y_v0] of pair v
//   (gate_coefs); y null: c1 = c2 = 0;
// - the y pass: ys[lp] = sum_u P_u dP_u;
// - the dQ pass: dq_pair[lp] = sum_u P_u (c1 dP_u - c2) K_u / sqrt(D), f32;
// - the dK/dV pass: adds dK / sqrt(D) and dV of the chunk's tiles to the f32 accumulators
//   [n_y * 64, D] of the key blocks y0 .. y0 + n_y - 1, block y being block y % n_kb of group
//   bg0 + y / n_kb; with `store` it writes them instead (0 + its sum; every row of every block,
//   reached by a tile or not: Note [first writer stores] in kernels/superlinear_span_bwd_cuda.cu).
void bwd_slot_table(const SpanArgs& a, int64_t n_tiles, const float* g, const float* y,
                    int64_t y_v0, const SlotTable& st, cudaStream_t s);
void bwd_y_tiles(const SpanArgs& a, const SlotTable& st, const uint16_t* dout, int64_t n_tiles,
                 float* ys, cudaStream_t s);
void bwd_dq_tiles(const SpanArgs& a, const SlotTable& st, const uint16_t* dout, int64_t n_tiles,
                  float* dq_pair, cudaStream_t s);
void bwd_dkv(const SpanArgs& a, const SlotTable& st, const uint16_t* dout, int64_t n_tiles,
             int max_nb, int64_t bg0, int64_t y0, int64_t n_y, float* dk_acc, float* dv_acc,
             bool store, cudaStream_t s);

namespace {

constexpr int kTile = 64, kBN = 64, kWarps = 4, kThreads = kWarps * 32;
constexpr uint64_t kEmptyKey = ~uint64_t(0);
constexpr int kMaxRunShift = 3;                         // runs of 8 first blocks (Note [wide runs])
constexpr int64_t kForwardFloor = int64_t(1152) << 20;  // Note [span chunks]
constexpr int64_t kForwardMostPairs = int64_t(1) << 22;

inline int64_t chunk_pairs(int64_t budget_bytes = 0, int64_t bytes_per_pair = 1,
                           int64_t most = int64_t(1) << 21) {
  const char* env = std::getenv("SL_SPAN_CHUNK_PAIRS");
  const int64_t v = env ? std::atoll(env) : 0;
  if (v > 0) return v;
  const int64_t least = int64_t(1) << 19;
  if (budget_bytes <= 0) return most;
  return std::min(most, std::max(least, budget_bytes / bytes_per_pair));
}

// The global pair id of a chunk's local pair lp.
__device__ __forceinline__ int64_t pair_id(const SpanArgs& a, int64_t lp) {
  return a.pairs ? int64_t(a.pairs[lp]) : a.p0 + lp;
}

// Row geometry of a [B, Hq, Lq] row index.
struct Row {
  int64_t b, h, i, t, sb;
};
__device__ __forceinline__ Row locate_row(const SuperlinearParams& p, int64_t row) {
  Row r;
  const int64_t bh = row / p.Lq;  // b * Hq + h
  r.i = row - bh * p.Lq;
  r.b = bh / p.Hq;
  r.h = bh - r.b * p.Hq;
  r.t = p.q_start + r.i;
  r.sb = p.doc_starts ? p.doc_starts[r.b * p.Lkv + r.t] : 0;
  return r;
}

// The query row of this warp in a chunk of rows row0 .. row0 + rows - 1 (one warp per row), or
// -1 past its end.
__device__ __forceinline__ int64_t chunk_row(int64_t row0, int64_t rows) {
  const int64_t w = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  return w < rows ? row0 + w : -1;
}

// A row's slots (anchor, kNoAnchor past k) and their gate weights (spec §8) from the forward's
// anchors and scores: what the merge and the backward's row terms start from.
__device__ __forceinline__ void row_gate(const SuperlinearParams& p, int64_t row,
                                         int32_t (&an)[kMaxK], float (&g)[kMaxK]) {
  const int k = p.cfg.k;
  float sc[kMaxK];
#pragma unroll
  for (int j = 0; j < kMaxK; ++j) {
    an[j] = j < k ? p.anchors[row * k + j] : kNoAnchor;
    sc[j] = j < k ? static_cast<const float*>(p.scores)[row * k + j] : -INFINITY;
  }
  gate_weights(k, sc, an, g);
}

// A pair's or a tile's footprint from its key: key = ((b * Hkv + g) * kb_stride + kb0) << 8 |
// (nb - 1).
struct Footprint {
  int64_t bg;  // b * Hkv + g
  int kb0, nb;
};
__device__ __forceinline__ Footprint footprint(uint64_t key, int64_t kb_stride) {
  const int64_t bk = int64_t(key >> 8);
  return {bk / kb_stride, int(bk % kb_stride), int(key & 255u) + 1};
}

__global__ void pair_keys_kernel(SpanArgs a, uint64_t* keys, int32_t* idx) {
  const int64_t lp = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (lp >= a.n) return;
  const SuperlinearParams& p = a.p;
  const int64_t gp = pair_id(a, lp), row = gp / p.cfg.k;
  const int32_t anchor = p.anchors[gp];
  idx[lp] = int32_t(lp);
  if (anchor < 0) {
    keys[lp] = kEmptyKey;
    return;
  }
  const Row r = locate_row(p, row);
  const int64_t st = span_start(p.cfg, anchor, r.t, r.sb), en = span_end(p.cfg, anchor, r.t, r.sb);
  a.bounds[lp] = make_int2(int(st), int(en));
  const int64_t kb0 = st / kBN, nb = en / kBN - kb0 + 1;
  const int64_t g = r.h / (p.Hq / p.Hkv);
  keys[lp] = (uint64_t((r.b * p.Hkv + g) * a.kb_stride + kb0) << 8) | uint64_t(nb - 1);
}

// Pairs of one run share (b, KV head, kb0 >> shift) (Note [wide runs]): the key without its
// block count and its first block's low bits. kb_stride is a multiple of 2^shift, so a run
// never straddles two groups.
__device__ __forceinline__ bool same_run(uint64_t x, uint64_t y, int shift) {
  return (x >> (8 + shift)) == (y >> (8 + shift));
}

// Note [range mask]
// The span mask of one 64-key block k0 .. k0 + 63 for this thread's two rows j of the m16n8
// accumulator layout (keys k0 + c, c = n * 8 + 2 (lane % 4) + e): nothing where every row of the
// warp has the whole block inside its span [lo[j], hi[j]]; else row j's keys are inside where bit
// c - 2 (lane % 4) of the 64-bit range [a, b] is set (the lane's offset folded into a and b once),
// and each score outside becomes `fill` (-inf before a softmax, 0 after the exp): one bit test
// and a select per score. Against two compares per score this took the forward's tiles at 64K
// GQA 8 from 2.08 to 2.05 ms (H200, experiments/results/2026-11-28-h200-90f81ea-span-tile-
// variants.md), and in the backward's y pass ~170 of ~740 SASS instructions per key block went.
__device__ __forceinline__ void mask_outside_spans(float (&s)[kBN / 8][4], const int (&lo)[2],
                                                   const int (&hi)[2], int k0, int lane,
                                                   float fill) {
  const bool inside =
      (k0 >= lo[0]) & (k0 + kBN - 1 <= hi[0]) & (k0 >= lo[1]) & (k0 + kBN - 1 <= hi[1]);
  if (__all_sync(0xffffffffu, inside)) return;
#pragma unroll
  for (int j = 0; j < 2; ++j) {
    const int a = max(lo[j] - k0 - 2 * (lane & 3), 0), b = min(hi[j] - k0 - 2 * (lane & 3), 63);
    const uint64_t r = a > b ? 0ull : (~0ull << a) & (~0ull >> (63 - b));
    const uint32_t rl = uint32_t(r), rh = uint32_t(r >> 32);
#pragma unroll
    for (int n = 0; n < kBN / 8; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const uint32_t w = n < 4 ? rl : rh;
        s[n][2 * j + e] = (w >> ((n % 4) * 8 + e)) & 1u ? s[n][2 * j + e] : fill;
      }
  }
}

// Tile starts: position i starts a tile when it is valid and (i - start of its run) % kTile == 0.
__global__ void tile_flags_kernel(const uint64_t* keys, int64_t n, int shift, int32_t* run_head) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  run_head[i] = (i == 0 || !same_run(keys[i], keys[i - 1], shift)) ? int32_t(i) : 0;
}
__global__ void tile_marks_kernel(const uint64_t* keys, const int32_t* run_start, int64_t n,
                                  int32_t* mark) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  mark[i] = keys[i] != kEmptyKey && (i - run_start[i]) % kTile == 0;
}
__global__ void tile_scatter_kernel(const int32_t* mark, const int32_t* slot, int64_t n,
                                    int32_t* tile_start, int32_t* count) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n && mark[i]) tile_start[slot[i]] = int32_t(i);
  if (i == n - 1) *count = slot[i] + mark[i];
}
// A tile's footprint, for the backward's tile builder (the forward's reads its records instead:
// tile_key_recs_kernel): from its first pair's block (the smallest: keys ascend) to the last
// block any of its pairs reaches. Tile keys ascend: a tile that starts at the block its predecessor
// starts at holds only pairs of that block, with block counts at least the predecessor's. One
// warp per tile, two of its up to 64 pairs per lane (a thread per tile, looping over them, took
// 24 of the 230 us of a 2M-pair chunk's build at 64K GQA 8, H200).
__global__ void tile_key_kernel(const uint64_t* keys, int64_t n, const int32_t* tile_start,
                                const int32_t* count, int shift, uint64_t* tile_key) {
  const int64_t t = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = int(threadIdx.x) & 31;
  if (t >= *count) return;  // warp-uniform
  const int64_t s0 = tile_start[t];
  const uint64_t k0 = keys[s0];
  // Blocks as (key >> 8) = bg * kb_stride + kb0: one past a pair's last block is that + nb. The
  // run's pairs are contiguous, so a filter by run is the loop that stops at the run's end.
  const uint64_t first = k0 >> 8;
  uint64_t end = first + (k0 & 255u) + 1;
  for (int r = lane; r < kTile; r += 32) {
    const int64_t q = s0 + r;
    if (q >= n) break;
    const uint64_t kq = keys[q];
    if (same_run(kq, k0, shift)) end = max(end, (kq >> 8) + (kq & 255u) + 1);
  }
#pragma unroll
  for (int x = 16; x > 0; x /= 2) end = max(end, __shfl_xor_sync(0xffffffffu, end, x));
  if (lane == 0) tile_key[t] = (first << 8) | (end - first - 1);
}

// The window (spec §5) as banded flash attention (kernels/attention.h) over the op's [B, H, L, D]
// tensors: causal, sliding window W, packed documents, queries from q_start. Outputs, lse and
// the backward fields are left for the caller.
inline AttentionParams window_params(const SuperlinearParams& p) {
  AttentionParams ap;
  ap.dtype = DType::BF16;
  ap.B = p.B, ap.Lq = p.Lq, ap.Lk = p.Lkv, ap.Hq = p.Hq, ap.Hkv = p.Hkv, ap.D = p.D;
  ap.causal = true, ap.window = window_len(p.cfg), ap.q_offset = p.q_start;
  ap.scale = 1.f / sqrtf(float(p.D));
  ap.q = p.qa, ap.k = p.k, ap.v = p.v;
  ap.q_sb = p.Hq * p.Lq * p.D, ap.q_st = p.D, ap.q_sh = p.Lq * p.D;
  ap.k_sb = p.Hkv * p.Lkv * p.D, ap.k_st = p.D, ap.k_sh = p.Lkv * p.D;
  ap.doc_start = p.doc_starts;
  return ap;
}

// Whether the span kernels with a wgmma variant run it (Note [wgmma span tiles] in
// kernels/superlinear_span_cuda.cu): a 9.x device, a build with sm_90a code, and SL_SPAN_WGMMA
// not "0" (a testing knob that selects the mma.sync kernels).
inline bool span_wgmma_enabled(int device) {
#if defined(SL_CUDA_SM90A)
  const char* env = std::getenv("SL_SPAN_WGMMA");
  if (env && std::string(env) == "0") return false;
  int major = 0;
  SL_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  return major == 9;
#else
  (void)device;
  return false;
#endif
}

inline unsigned blocks_for(int64_t n, int per = 256) {
  return unsigned((n + per - 1) / per);
}

// Debugging knob: SL_SPAN_PROFILE=1 prints a pass's stage times (ms, summed over chunks) to
// stderr per call. Off: no events, no syncs.
class StageTimer {
 public:
  StageTimer(cudaStream_t s, const char* what, std::vector<const char*> names)
      : s_(s),
        on_(std::getenv("SL_SPAN_PROFILE") != nullptr),
        what_(what),
        names_(std::move(names)),
        ms_(names_.size(), 0.f) {
    if (on_) start_.record(s_);
  }
  void mark(int stage) {  // stage 1..n: the end of that stage
    if (!on_) return;
    end_.record(s_);
    end_.synchronize();
    ms_[size_t(stage - 1)] += end_.elapsed_ms(start_);
    start_.record(s_);
  }
  ~StageTimer() {
    if (!on_) return;
    std::string line = std::string("superlinear ") + what_ + " stages (ms):";
    char buf[64];
    for (size_t i = 0; i < names_.size(); ++i) {
      std::snprintf(buf, sizeof buf, " %s %.3f", names_[i], double(ms_[i]));
      line += buf;
    }
    std::fprintf(stderr, "%s\n", line.c_str());
  }

 private:
  cudaStream_t s_;
  bool on_;
  const char* what_;
  std::vector<const char*> names_;
  std::vector<float> ms_;
  cuda::Event start_, end_;
};

// Note [wide runs]: runs of 2^kMaxRunShift first blocks, or SL_SPAN_RUN_BLOCKS = 1, 2, 4 or 8.
inline int span_run_shift() {
  const char* env = std::getenv("SL_SPAN_RUN_BLOCKS");
  if (!env) return kMaxRunShift;
  for (int shift = 0; shift <= kMaxRunShift; ++shift)
    if (std::string(env) == std::to_string(1 << shift)) return shift;
  SL_FAIL() << kOp << ": SL_SPAN_RUN_BLOCKS=" << env << " is not 1, 2, 4 or 8";
  return 0;
}

// Key blocks per (batch, KV head) group rounded up to whole runs (Note [wide runs]): the keys'
// group stride.
inline int64_t span_kb_stride(const SuperlinearParams& p) {
  const int64_t n_kb = (p.Lkv + kBN - 1) / kBN;
  return (n_kb + (1 << kMaxRunShift) - 1) >> kMaxRunShift << kMaxRunShift;
}

// The most key blocks a tile can reach: a pair covers at most max_span / 64 + 2 blocks, and a
// tile of a wide run up to 2^kMaxRunShift - 1 more. At most 256 (the key's block-count field).
inline int span_max_nb(const SuperlinearParams& p) {
  const int64_t max_span = len_b(p.cfg, p.Lkv) + len_f(p.cfg, p.Lkv) + 1;
  const int64_t max_nb = max_span / kBN + 2 + (1 << kMaxRunShift) - 1;
  SL_CHECK(max_nb <= 256) << kOp << ": spans of up to " << max_span
                          << " keys exceed the tensor-core path's 256 key blocks per span";
  return int(max_nb);
}

// Note [tile count]
// The forward does not read the number of tiles back: a host read waits for the stream, and at
// one read per chunk the GPU idled while the host queued the next kernels. It launches this
// bound's blocks instead, and those past a.tile_count return at once. The bound: a run of c
// pairs makes ceil(c / 64) <= c / 64 + 1 tiles, so tiles <= n / 64 + runs, and a run is one
// (batch, KV head) group's block range >> run_shift, of which a chunk of whole rows p0 .. p0 +
// n - 1 touches at most min(groups, its (batch, head) rows) x (kb_stride >> run_shift).
inline int64_t span_tile_bound(const SuperlinearParams& p, int64_t kb_stride, int64_t p0, int64_t n,
                               int shift) {
  const int64_t k = p.cfg.k, bh0 = p0 / k / p.Lq, bh1 = (p0 + n - 1) / k / p.Lq;
  const int64_t groups = std::min(p.B * p.Hkv, bh1 - bh0 + 1);
  return std::min(n, n / kTile + groups * (kb_stride >> shift) + 1);
}

// Buckets chunks of pairs into tiles for the backward; owns the per-pair scratch of one chunk
// (about 52 bytes per pair plus CUB's temporary storage). The sort is stable, so a tile's pairs
// come in one order run after run, and so do the dK/dV sums over them. (The forward, whose
// outputs do not depend on that order, buckets by counting: Note [forward tile build].)
class SpanTiles {
 public:
  SpanTiles(const SuperlinearParams& p, int64_t cap, Device dev)
      : cap_(std::max<int64_t>(cap, 1)),
        n_kb_((p.Lkv + kBN - 1) / kBN),
        kb_stride_(span_kb_stride(p)),
        max_nb_(span_max_nb(p)) {
    key_bits_ = 8;
    while ((uint64_t(1) << (key_bits_ - 8)) <= uint64_t(p.B * p.Hkv * kb_stride_)) ++key_bits_;
    SL_CHECK(key_bits_ < 64) << kOp << ": " << p.B * p.Hkv << " KV groups of " << kb_stride_
                             << " key blocks exceed the 56 bits of a footprint key's blocks";
    keys_ = scratch(cap_ * 8, dev), keys_sorted_ = scratch(cap_ * 8, dev);
    idx_ = scratch(cap_ * 4, dev), idx_sorted_ = scratch(cap_ * 4, dev);
    bounds_ = scratch(cap_ * 8, dev);
    head_ = scratch(cap_ * 4, dev), run_start_ = scratch(cap_ * 4, dev);
    mark_ = scratch(cap_ * 4, dev), slot_ = scratch(cap_ * 4, dev);
    tile_start_ = scratch(cap_ * 4, dev), tile_key_ = scratch(cap_ * 8, dev);
    count_ = scratch(4, dev);
    size_t sort_bytes = 0, max_bytes = 0, sum_bytes = 0;
    SL_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, (uint64_t*)nullptr,
                                                  (uint64_t*)nullptr, (int32_t*)nullptr,
                                                  (int32_t*)nullptr, cap_, 0, key_bits_));
    SL_CUDA_CHECK(cub::DeviceScan::InclusiveScan(nullptr, max_bytes, (int32_t*)nullptr,
                                                 (int32_t*)nullptr, ::cuda::maximum<int32_t>(),
                                                 cap_));
    SL_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, sum_bytes, (int32_t*)nullptr,
                                                (int32_t*)nullptr, cap_));
    temp_ = scratch(int64_t(std::max(sort_bytes, std::max(max_bytes, sum_bytes))), dev);
  }
  int64_t n_kb() const { return n_kb_; }
  int max_nb() const { return max_nb_; }

  // Pairs p0 .. p0 + n - 1 (whole query rows), or with `pairs` the n pairs pairs[0 .. n - 1]
  // (any pairs, e.g. those near a key range; p0 unused): fills a (keys, idx sorted; bounds;
  // tile_start, tile_key, tile_count) and returns the number of tiles (one host read, which
  // waits for the stream).
  int64_t build(const SuperlinearParams& p, int64_t p0, int64_t n, SpanArgs& a, cudaStream_t s,
                const int32_t* pairs = nullptr) {
    SL_CHECK(n <= cap_) << kOp << ": chunk of " << n << " pairs exceeds the tile builder's "
                        << cap_;
    a.p = p;
    a.p0 = pairs ? 0 : p0;
    a.pairs = pairs;
    a.n = n;
    a.n_kb = n_kb_;
    a.kb_stride = kb_stride_;
    a.run_shift = span_run_shift();
    a.bounds = reinterpret_cast<int2*>(bounds_.data_ptr());
    uint64_t* keys = reinterpret_cast<uint64_t*>(keys_.data_ptr());
    pair_keys_kernel<<<blocks_for(n), 256, 0, s>>>(a, keys, idx_.data<int32_t>());
    SL_CUDA_LAUNCH_CHECK();
    // Empty slots carry all ones: within key_bits they still sort after every valid key, and the
    // sorted keys keep all 64 bits.
    uint64_t* ks = reinterpret_cast<uint64_t*>(keys_sorted_.data_ptr());
    size_t tb = temp_bytes();
    SL_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp_.data_ptr(), tb, keys, ks,
                                                  idx_.data<int32_t>(), idx_sorted_.data<int32_t>(),
                                                  n, 0, key_bits_, s));
    a.keys = ks;
    a.idx = idx_sorted_.data<int32_t>();
    tile_flags_kernel<<<blocks_for(n), 256, 0, s>>>(ks, n, a.run_shift, head_.data<int32_t>());
    SL_CUDA_LAUNCH_CHECK();
    tb = temp_bytes();
    SL_CUDA_CHECK(cub::DeviceScan::InclusiveScan(temp_.data_ptr(), tb, head_.data<int32_t>(),
                                                 run_start_.data<int32_t>(),
                                                 ::cuda::maximum<int32_t>(), n, s));
    tile_marks_kernel<<<blocks_for(n), 256, 0, s>>>(ks, run_start_.data<int32_t>(), n,
                                                    mark_.data<int32_t>());
    SL_CUDA_LAUNCH_CHECK();
    tb = temp_bytes();
    SL_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(temp_.data_ptr(), tb, mark_.data<int32_t>(),
                                                slot_.data<int32_t>(), n, s));
    int32_t* count = count_.data<int32_t>();
    tile_scatter_kernel<<<blocks_for(n), 256, 0, s>>>(mark_.data<int32_t>(), slot_.data<int32_t>(),
                                                      n, tile_start_.data<int32_t>(), count);
    SL_CUDA_LAUNCH_CHECK();
    a.tile_start = tile_start_.data<int32_t>();
    a.tile_count = count;
    const int64_t n_tiles = read_count(count, s);
    uint64_t* tk = reinterpret_cast<uint64_t*>(tile_key_.data_ptr());
    if (n_tiles > 0) {
      tile_key_kernel<<<blocks_for(n_tiles * 32), 256, 0, s>>>(ks, n, a.tile_start, count,
                                                               a.run_shift, tk);
      SL_CUDA_LAUNCH_CHECK();
    }
    a.tile_key = tk;
    return n_tiles;
  }

 private:
  size_t temp_bytes() const { return size_t(temp_.numel()) * 4; }

  // The tile count on the device, read once the stream gets there.
  static int64_t read_count(const int32_t* count, cudaStream_t s) {
    int32_t c = 0;
    SL_CUDA_CHECK(cudaMemcpyAsync(&c, count, 4, cudaMemcpyDeviceToHost, s));
    SL_CUDA_CHECK(cudaStreamSynchronize(s));
    return c;
  }

  int64_t cap_, n_kb_, kb_stride_;
  int max_nb_, key_bits_ = 8;
  Tensor keys_, keys_sorted_, idx_, idx_sorted_, bounds_, head_, run_start_, mark_, slot_,
      tile_start_, tile_key_, count_, temp_;
};

}  // namespace
}  // namespace sl::kernels::slcuda
