// Kernel sandbox (STYLE 10): the superlinear search, the stage that takes three quarters of the
// tensor-core forward (experiments/results/2026-11-28-h100-c3b776b-parity-train-attention.md).
// Each (query head, candidate) reads one K row, so the search streams ~L^1.5 rows from memory.
//
//   per head      the lane search (kernels::slcuda::launch_search_lanes): one warp per query
//                 head, lane per candidate, each lane reads its candidate's K row;
//   group-shared  one warp per (query, up to 4 heads of one KV group): each lane reads its
//                 candidate's row once and scores it against every head's Qs, so a GQA-r model
//                 reads each row r / 4 ... r times less often;
//   mma           the tensor-core search (kernels/superlinear_search_mma.cu, what launch_search
//                 runs for bf16 unless SL_SEARCH_KERNEL=lanes): one warp per (query, up to 8 heads
//                 of a group), 16 gathered K rows x 8 heads per mma.m16n8k16.
//
// Per head and group-shared sum a dot product in the same order (element d into partial d % 4,
// d increasing, then (p0 + p1) + (p2 + p3)) and insert into the top-k in lane order, so their
// anchors and scores must be identical. The mma search sums in the tensor core's order: its scores
// differ in the last bits, and so may its anchors where two candidates nearly tie; the table
// gives the rows whose anchors differ and the largest score difference where they agree.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <type_traits>
#include <vector>

#include "experiments/bench_util.h"
#include "kernels/superlinear_cuda_common.cuh"

using namespace sl;
using namespace sl::kernels;

namespace {

constexpr int kHeadsPerWarp = 4;

// bf16 rows, D a multiple of 8, 16-byte aligned (checked by the harness).
template <int D>
__global__ void __launch_bounds__(128) search_group_kernel(SuperlinearParams p) {
  extern __shared__ float smem[];
  const int lane = int(threadIdx.x) & 31, wib = int(threadIdx.x) >> 5;
  const int64_t r = p.Hq / p.Hkv, chunks = (r + kHeadsPerWarp - 1) / kHeadsPerWarp;
  const int64_t w = int64_t(blockIdx.x) * 4 + wib;
  if (w >= p.B * p.Hkv * p.Lq * chunks) return;
  const int64_t c = w % chunks, i = (w / chunks) % p.Lq, g = (w / (chunks * p.Lq)) % p.Hkv,
                b = w / (chunks * p.Lq * p.Hkv);
  const int64_t h0 = g * r + c * kHeadsPerWarp;
  const int nh = int(min(int64_t(kHeadsPerWarp), r - c * kHeadsPerWarp));
  float* q = smem + wib * kHeadsPerWarp * D;  // [head][D]
  const bf16* qs = static_cast<const bf16*>(p.qs);
  for (int e = lane; e < kHeadsPerWarp * D; e += 32) {
    const int hh = e / D, d = e % D;
    q[e] = hh < nh ? bf16_to_float(qs[((b * p.Hq + h0 + hh) * p.Lq + i) * D + d]) : 0.f;
  }
  __syncwarp();
  const SuperlinearConfig& cfg = p.cfg;
  const int k = cfg.k;
  const int64_t t = p.q_start + i, sb = p.doc_starts ? p.doc_starts[b * p.Lkv + t] : 0;
  const bf16* K = static_cast<const bf16*>(p.k) + (b * p.Hkv + g) * p.Lkv * D;

  float bs[kHeadsPerWarp][slcuda::kMaxK];
  int32_t ba[kHeadsPerWarp][slcuda::kMaxK];
#pragma unroll
  for (int hh = 0; hh < kHeadsPerWarp; ++hh)
#pragma unroll
    for (int j = 0; j < slcuda::kMaxK; ++j) bs[hh][j] = -INFINITY, ba[hh][j] = kNoAnchor;

  const int64_t n = num_candidates(cfg, t + 1 - sb);
  for (int64_t c0 = 0; c0 < n; c0 += 32) {
    const bool ok = c0 + lane < n;
    const int32_t a = ok ? int32_t(candidate_anchor(cfg, t, c0 + lane)) : kNoAnchor;
    float acc[kHeadsPerWarp][4];
#pragma unroll
    for (int hh = 0; hh < kHeadsPerWarp; ++hh)
      acc[hh][0] = acc[hh][1] = acc[hh][2] = acc[hh][3] = 0.f;
    if (ok) {
      const uint4* row = reinterpret_cast<const uint4*>(K + int64_t(a) * D);
#pragma unroll 4
      for (int d = 0; d < D; d += 8) {
        const uint4 v = row[d / 8];
        float x[8];
        const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          x[2 * e] = __uint_as_float(words[e] << 16);
          x[2 * e + 1] = __uint_as_float(words[e] & 0xffff0000u);
        }
#pragma unroll
        for (int hh = 0; hh < kHeadsPerWarp; ++hh)
#pragma unroll
          for (int e = 0; e < 8; e += 4) {
            acc[hh][0] = fmaf(q[hh * D + d + e + 0], x[e + 0], acc[hh][0]);
            acc[hh][1] = fmaf(q[hh * D + d + e + 1], x[e + 1], acc[hh][1]);
            acc[hh][2] = fmaf(q[hh * D + d + e + 2], x[e + 2], acc[hh][2]);
            acc[hh][3] = fmaf(q[hh * D + d + e + 3], x[e + 3], acc[hh][3]);
          }
      }
    }
    // One head's top-k update; called with compile-time head indices so bs / ba stay in
    // registers (a loop over heads around the ballot loop does not unroll).
    auto update = [&](auto hh_c) {
      constexpr int hh = decltype(hh_c)::value;
      if (hh >= nh) return;
      const float s = ok ? (acc[hh][0] + acc[hh][1]) + (acc[hh][2] + acc[hh][3]) : -INFINITY;
      float ws = -INFINITY;
      int32_t wa = kNoAnchor;
#pragma unroll
      for (int j = 0; j < slcuda::kMaxK; ++j)
        if (j == k - 1) ws = bs[hh][j], wa = ba[hh][j];
      unsigned mask = __ballot_sync(0xffffffffu, ok && slcuda::ranks_before(s, a, ws, wa));
      while (mask) {
        const int src = __ffs(mask) - 1;
        mask &= mask - 1;
        slcuda::topk_insert(k, __shfl_sync(0xffffffffu, s, src), __shfl_sync(0xffffffffu, a, src),
                            bs[hh], ba[hh]);
      }
    };
    static_assert(kHeadsPerWarp == 4, "update is called for heads 0..3");
    update(std::integral_constant<int, 0>{});
    update(std::integral_constant<int, 1>{});
    update(std::integral_constant<int, 2>{});
    update(std::integral_constant<int, 3>{});
  }
  if (lane != 0) return;
#pragma unroll
  for (int hh = 0; hh < kHeadsPerWarp; ++hh) {
    if (hh >= nh) continue;
    const int64_t row = ((b * p.Hq + h0 + hh) * p.Lq + i) * k;
#pragma unroll
    for (int j = 0; j < slcuda::kMaxK; ++j)
      if (j < k) {
        p.anchors[row + j] = ba[hh][j];
        static_cast<float*>(p.scores)[row + j] = bs[hh][j];
      }
  }
}

void launch_group(const SuperlinearParams& p, cudaStream_t s) {
  const int64_t r = p.Hq / p.Hkv, chunks = (r + kHeadsPerWarp - 1) / kHeadsPerWarp;
  const int64_t warps = p.B * p.Hkv * p.Lq * chunks;
  const size_t smem = size_t(4) * kHeadsPerWarp * 128 * sizeof(float);
  search_group_kernel<128><<<unsigned((warps + 3) / 4), 128, smem, s>>>(p);
  SL_CUDA_LAUNCH_CHECK();
}

// Rows ([B, Hq, L]) whose anchors differ, and the largest |score difference| over slots whose
// anchors agree.
struct Diff {
  int64_t rows = 0;
  double max_abs = 0;
};
Diff compare(const Tensor& a0, const Tensor& s0, const Tensor& a1, const Tensor& s1, int k) {
  const std::vector<int32_t> x0 = a0.to(Device::cpu()).to_vector<int32_t>();
  const std::vector<int32_t> x1 = a1.to(Device::cpu()).to_vector<int32_t>();
  const std::vector<float> y0 = s0.to(Device::cpu()).to_vector<float>();
  const std::vector<float> y1 = s1.to(Device::cpu()).to_vector<float>();
  Diff d;
  for (size_t row = 0; row * k < x0.size(); ++row) {
    bool same = true;
    for (int j = 0; j < k; ++j) {
      const size_t e = row * k + j;
      if (x0[e] != x1[e]) {
        same = false;
      } else if (x0[e] >= 0) {
        d.max_abs = std::max(d.max_abs, std::fabs(double(y0[e]) - double(y1[e])));
      }
    }
    d.rows += !same;
  }
  return d;
}

}  // namespace

int main() {
  const Device gpu = Device::cuda(0);
  cudaStream_t s = cuda::stream(0);
  const int64_t B = 1, Hq = 16, D = 128;
  const SuperlinearConfig cfg = SuperlinearConfig::balanced();
  std::printf("# superlinear search sandbox, %s, %s, B=%lld Hq=%lld D=%lld bf16\n\n",
              bench::device_name().c_str(), cfg.str().c_str(), (long long)B, (long long)Hq,
              (long long)D);
  std::printf(
      "| L | Hkv | per head ms | group-shared ms | mma ms | group speed-up | mma speed-up | group "
      "identical | mma rows differing | mma max abs score diff |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
  for (int64_t L : {int64_t(16) << 10, int64_t(64) << 10, int64_t(128) << 10}) {
    for (int64_t Hkv : {int64_t(16), int64_t(2)}) {
      Generator gen(7);
      Tensor qs = Tensor::randn({B, Hq, L, D}, gen, DType::BF16, gpu, 0, 0.088);
      Tensor k = Tensor::randn({B, Hkv, L, D}, gen, DType::BF16, gpu);
      Tensor anchors[3], scores[3];
      SuperlinearParams p{};
      p.qa = qs.data_ptr();
      p.qs = qs.data_ptr();
      p.k = k.data_ptr();
      p.v = k.data_ptr();
      p.dtype = DType::BF16;
      p.stat_dtype = DType::F32;
      p.B = B, p.Hq = Hq, p.Hkv = Hkv, p.Lq = L, p.Lkv = L, p.D = D, p.q_start = 0;
      p.cfg = cfg;
      SL_CHECK(slcuda::search_mma_supported(p)) << "the mma search must apply here";
      float ms[3];
      for (int v = 0; v < 3; ++v) {
        anchors[v] = Tensor::empty({B, Hq, L, cfg.k}, DType::I32, gpu);
        scores[v] = Tensor::empty({B, Hq, L, cfg.k}, DType::F32, gpu);
        p.anchors = anchors[v].data<int32_t>();
        p.scores = scores[v].data_ptr();
        auto run = [&] {
          if (v == 0) slcuda::launch_search_lanes(p, s);
          if (v == 1) launch_group(p, s);
          if (v == 2) slcuda::launch_search_mma(p, s);
        };
        run();
        ms[v] = bench::time_ms(run, 2, 10);
      }
      const Diff group = compare(anchors[0], scores[0], anchors[1], scores[1], cfg.k);
      const Diff mma = compare(anchors[0], scores[0], anchors[2], scores[2], cfg.k);
      std::printf("| %lldK | %lld | %.3f | %.3f | %.3f | %.2f | %.2f | %s | %lld | %.3g |\n",
                  (long long)(L >> 10), (long long)Hkv, ms[0], ms[1], ms[2], ms[0] / ms[1],
                  ms[0] / ms[2], group.rows == 0 && group.max_abs == 0 ? "yes" : "NO",
                  (long long)mma.rows, mma.max_abs);
      std::fflush(stdout);
    }
  }
  return 0;
}
