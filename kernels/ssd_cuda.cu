// CUDA chunked SSD scan, forward (Note [chunked SSD] in kernels/ssd.h), in five launches:
//   1. cumsum:        cs = inclusive cumsum of dt * A inside each chunk, seg = last reset in chunk
//   2. bmm:           CB[t, s] = Cm_t . Bm_s per (chunk, group), lower triangle only
//   3. chunk_state:   the state each chunk adds, sum_s exp(cs_end - cs_s) dt_s x_s (outer) Bm_s
//   4. state_passing: sequential over chunks, S_in of every chunk and the final state
//   5. chunk_scan:    y = exp(cs_t) Cm_t S_in + sum_{s<=t} CB L dt_s x_s + D x
// Cumulative sums, states and accumulators are f32. The matmul-shaped steps share one 64x64
// output tile routine (tile_gemm) with f32 FMA; loaders apply the decays, masks and dtype
// conversions while staging operands in shared memory (kernels/ssd_cuda_common.cuh). The one
// non-obvious decision: chunk states are overwritten in place by the entering states (step 4),
// so the forward needs one [B, chunks, H, P, N] f32 buffer and no second pass over it; the
// backward (kernels/ssd_backward_cuda.cu) reruns steps 1-4 through ssd_chunk_states_cuda.
#include "kernels/ssd_cuda_common.cuh"

namespace sl::kernels {
namespace ssd_cuda {
namespace {

// ---- 1. cumsum: one thread per (b, h, chunk); cs [B, H, T] f32, seg [B, T] i32 ----
template <class T>
__global__ void ssd_cumsum_kernel(SsdDims d, const T* dt, const T* A, const int32_t* seq, float* cs,
                                  int32_t* seg) {
  const int64_t n = d.B * d.H * d.nc;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = i % d.nc, h = (i / d.nc) % d.H, b = i / (d.nc * d.H);
    const int64_t t0 = c * d.Q, t1 = min(t0 + d.Q, d.T);
    const float a = ld(A, h);
    float run = 0.f;
    int32_t last = -1;
    for (int64_t t = t0; t < t1; ++t) {
      run += ld(dt, (b * d.T + t) * d.H + h) * a;
      cs[(b * d.H + h) * d.T + t] = run;
      if (h == 0) {
        if (is_reset(seq, b, d.T, t)) last = int32_t(t - t0);
        seg[b * d.T + t] = last;
      }
    }
  }
}

// ---- 2. CB [B, nc, G, Q, Q] f32 = Cm Bm^T per chunk and group; grid (B*nc*G, t tiles, s tiles)
template <class T>
__global__ void ssd_bmm_kernel(SsdDims d, const T* Bm, const T* Cm, float* CB) {
  if (blockIdx.z > blockIdx.y) return;  // strictly above the diagonal: never read
  const int64_t g = blockIdx.x % d.G, c = (blockIdx.x / d.G) % d.nc, b = blockIdx.x / (d.G * d.nc);
  const int64_t t0 = c * d.Q, L = min(d.Q, d.T - t0);
  const int64_t r0 = int64_t(blockIdx.y) * kTile, s0 = int64_t(blockIdx.z) * kTile;
  float acc[4][4] = {};
  auto row = [&](const T* M, int64_t t, int64_t n) {
    return t < L ? ld(M, ((b * d.T + t0 + t) * d.G + g) * d.N + n) : 0.f;
  };
  tile_gemm(
      acc, d.N, [&](int r, int64_t n) { return row(Cm, r0 + r, n); },
      [&](int r, int64_t n) { return row(Bm, s0 + r, n); });
  float* out = CB + ((b * d.nc + c) * d.G + g) * d.Q * d.Q;
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) {
      const int64_t t = r0 + ty * 4 + i, s = s0 + tx * 4 + j;
      if (t < L && s < L) out[t * d.Q + s] = acc[i][j];
    }
}

// ---- 3. chunk states [B, nc, H, P, N] f32; grid (B*nc*H, P tiles, N tiles) ----
template <class T>
__global__ void ssd_chunk_state_kernel(SsdDims d, const T* x, const T* dt, const T* Bm,
                                       const float* cs, const int32_t* seg, float* states) {
  __shared__ float w[kMaxChunk];
  const int64_t h = blockIdx.x % d.H, c = (blockIdx.x / d.H) % d.nc, b = blockIdx.x / (d.H * d.nc);
  const int64_t t0 = c * d.Q, L = min(d.Q, d.T - t0), g = h / d.hpg;
  const float* csb = cs + (b * d.H + h) * d.T + t0;
  const int32_t first = seg[b * d.T + t0 + L - 1];
  for (int64_t s = threadIdx.x; s < L; s += blockDim.x)
    w[s] = s >= first ? expf(csb[L - 1] - csb[s]) * ld(dt, (b * d.T + t0 + s) * d.H + h) : 0.f;
  __syncthreads();
  const int64_t p0 = int64_t(blockIdx.y) * kTile, n0 = int64_t(blockIdx.z) * kTile;
  float acc[4][4] = {};
  tile_gemm(
      acc, L,
      [&](int r, int64_t s) {
        return p0 + r < d.P ? ld(x, ((b * d.T + t0 + s) * d.H + h) * d.P + p0 + r) * w[s] : 0.f;
      },
      [&](int r, int64_t s) {
        return n0 + r < d.N ? ld(Bm, ((b * d.T + t0 + s) * d.G + g) * d.N + n0 + r) : 0.f;
      });
  float* out = states + ((b * d.nc + c) * d.H + h) * d.P * d.N;
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) {
      const int64_t p = p0 + ty * 4 + i, n = n0 + tx * 4 + j;
      if (p < d.P && n < d.N) out[p * d.N + n] = acc[i][j];
    }
}

// ---- 4. state passing: one thread per (b, h, p, n), sequential over chunks ----
// On exit states[b, c] holds S_in of chunk c; final = S_out of the last chunk.
__global__ void ssd_state_passing_kernel(SsdDims d, const float* cs, const int32_t* seg,
                                         const float* init, float* states, float* final_state) {
  const int64_t PN = d.P * d.N, n = d.B * d.H * PN;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t e = i % PN, h = (i / PN) % d.H, b = i / (PN * d.H);
    float run = init ? init[i] : 0.f;
    for (int64_t c = 0; c < d.nc; ++c) {
      const int64_t end = min((c + 1) * d.Q, d.T) - 1;
      const float decay = seg[b * d.T + end] < 0 ? expf(cs[(b * d.H + h) * d.T + end]) : 0.f;
      float* s = states + ((b * d.nc + c) * d.H + h) * PN + e;
      const float add = *s;
      *s = run;
      run = decay * run + add;
    }
    final_state[i] = run;
  }
}

// ---- 5. chunk scan: y; grid (B*nc*H, t tiles, P tiles) ----
template <class T>
__global__ void ssd_chunk_scan_kernel(SsdDims d, const T* x, const T* dt, const T* Cm, const T* D,
                                      const float* cs, const int32_t* seg, const float* CB,
                                      const float* states, T* y) {
  __shared__ float css[kMaxChunk], dts[kMaxChunk];
  __shared__ int32_t segs[kMaxChunk];
  const int64_t h = blockIdx.x % d.H, c = (blockIdx.x / d.H) % d.nc, b = blockIdx.x / (d.H * d.nc);
  const int64_t t0 = c * d.Q, L = min(d.Q, d.T - t0), g = h / d.hpg;
  for (int64_t s = threadIdx.x; s < L; s += blockDim.x) {
    css[s] = cs[(b * d.H + h) * d.T + t0 + s];
    dts[s] = ld(dt, (b * d.T + t0 + s) * d.H + h);
    segs[s] = seg[b * d.T + t0 + s];
  }
  __syncthreads();
  const int64_t r0 = int64_t(blockIdx.y) * kTile, p0 = int64_t(blockIdx.z) * kTile;
  if (r0 >= L) return;
  const float* Sin = states + ((b * d.nc + c) * d.H + h) * d.P * d.N;
  const float* cb = CB + ((b * d.nc + c) * d.G + g) * d.Q * d.Q;
  float acc[4][4] = {};
  tile_gemm(
      acc, d.N,
      [&](int r, int64_t n) {
        return r0 + r < L ? ld(Cm, ((b * d.T + t0 + r0 + r) * d.G + g) * d.N + n) : 0.f;
      },
      [&](int r, int64_t n) { return p0 + r < d.P ? Sin[(p0 + r) * d.N + n] : 0.f; });
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
  for (int i = 0; i < 4; ++i) {
    const int64_t t = r0 + ty * 4 + i;
    const float f = t < L && segs[t] < 0 ? expf(css[t]) : 0.f;
    for (int j = 0; j < 4; ++j) acc[i][j] *= f;
  }
  const int64_t kmax = min(r0 + kTile, L);
  tile_gemm(
      acc, kmax,
      [&](int r, int64_t s) {
        const int64_t t = r0 + r;
        if (t >= L || s > t || s < segs[t]) return 0.f;
        return cb[t * d.Q + s] * expf(css[t] - css[s]) * dts[s];
      },
      [&](int r, int64_t s) {
        return p0 + r < d.P ? ld(x, ((b * d.T + t0 + s) * d.H + h) * d.P + p0 + r) : 0.f;
      });
  const float Dh = ld(D, h);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) {
      const int64_t t = r0 + ty * 4 + i, p = p0 + tx * 4 + j;
      if (t >= L || p >= d.P) continue;
      const int64_t o = ((b * d.T + t0 + t) * d.H + h) * d.P + p;
      y[o] = ScalarTraits<T>::from_compute(acc[i][j] + Dh * ld(x, o));
    }
}

}  // namespace

ChunkStates ssd_chunk_states_cuda(const SsdParams& p, int device, float* final_state) {
  SL_CHECK(p.chunk <= kMaxChunk) << "ssd_scan: the CUDA kernels take chunk_size <= " << kMaxChunk
                                 << ", got " << p.chunk;
  cuda::set_device(device);
  cudaStream_t s = cuda::stream(device);
  const SsdDims d = dims_of(p);
  SL_CHECK(d.B * d.nc * d.H < (int64_t(1) << 31) && tiles(d.P) <= 65535 && tiles(d.N) <= 65535)
      << "ssd_scan: grid too large for B = " << d.B << ", T = " << d.T << ", H = " << d.H;
  ChunkStates r;
  r.cs = scratch({d.B, d.H, d.T}, DType::F32, device);
  r.seg = scratch({d.B, d.T}, DType::I32, device);
  r.CB = scratch({d.B, d.nc, d.G, d.Q, d.Q}, DType::F32, device);
  r.states = scratch({d.B, d.nc, d.H, d.P, d.N}, DType::F32, device);
  SL_DISPATCH_CUDA_FLOAT(p.dtype, "ssd_scan", T, {
    const T* x = static_cast<const T*>(p.x);
    const T* dt = static_cast<const T*>(p.dt);
    const T* Bm = static_cast<const T*>(p.Bm);
    ssd_cumsum_kernel<T><<<grid_for(d.B * d.H * d.nc), kThreads, 0, s>>>(
        d, dt, static_cast<const T*>(p.A), p.seq_idx, r.cs.data<float>(), r.seg.data<int32_t>());
    SL_CUDA_LAUNCH_CHECK();
    ssd_bmm_kernel<T>
        <<<dim3(unsigned(d.B * d.nc * d.G), unsigned(tiles(d.Q)), unsigned(tiles(d.Q))), kThreads,
           0, s>>>(d, Bm, static_cast<const T*>(p.Cm), r.CB.data<float>());
    SL_CUDA_LAUNCH_CHECK();
    ssd_chunk_state_kernel<T>
        <<<dim3(unsigned(d.B * d.nc * d.H), unsigned(tiles(d.P)), unsigned(tiles(d.N))), kThreads,
           0, s>>>(d, x, dt, Bm, r.cs.data<float>(), r.seg.data<int32_t>(), r.states.data<float>());
    SL_CUDA_LAUNCH_CHECK();
  });
  ssd_state_passing_kernel<<<grid_for(d.B * d.H * d.P * d.N), kThreads, 0, s>>>(
      d, r.cs.data<float>(), r.seg.data<int32_t>(), static_cast<const float*>(p.init_state),
      r.states.data<float>(), final_state);
  SL_CUDA_LAUNCH_CHECK();
  return r;
}

}  // namespace ssd_cuda

void ssd_forward_cuda(const SsdParams& p, int device) {
  using namespace ssd_cuda;
  ChunkStates st = ssd_chunk_states_cuda(p, device, static_cast<float*>(p.final_state));
  cudaStream_t s = cuda::stream(device);
  const SsdDims d = dims_of(p);
  SL_DISPATCH_CUDA_FLOAT(p.dtype, "ssd_scan", T, {
    ssd_chunk_scan_kernel<T>
        <<<dim3(unsigned(d.B * d.nc * d.H), unsigned(tiles(d.Q)), unsigned(tiles(d.P))), kThreads,
           0, s>>>(d, static_cast<const T*>(p.x), static_cast<const T*>(p.dt),
                   static_cast<const T*>(p.Cm), static_cast<const T*>(p.D), st.cs.data<float>(),
                   st.seg.data<int32_t>(), st.CB.data<float>(), st.states.data<float>(),
                   static_cast<T*>(p.y));
    SL_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace sl::kernels
