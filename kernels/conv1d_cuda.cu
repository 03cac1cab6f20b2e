// CUDA causal depthwise conv1d + SiLU (formulas in kernels/conv1d.h). Channels last, so one
// thread per (b, t, c) with c fastest keeps every tap load coalesced. Backward: dz = dy * silu'(z)
// into an f32 buffer, then dx (and d_init_state) gather the W outputs that read each input, and
// dw/dbias are reduced deterministically (fixed row ranges per block, then the partials added in
// order by a second kernel).
#include "core/cuda_context.h"
#include "kernels/conv1d.h"
#include "kernels/dispatch.h"

namespace sl::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxWidth = 16;  // dw partials live in registers
constexpr int kRowsPerSplit = 512;

struct Dev {
  int64_t B, T, C, W;
  const int32_t* seq;
  bool has_state;
};

__device__ __forceinline__ bool reset_at(const Dev& d, int64_t b, int64_t t) {
  return d.seq && t >= 1 && d.seq[b * d.T + t] != d.seq[b * d.T + t - 1];
}

template <class T>
__device__ __forceinline__ float tap(const Dev& d, const T* x, const T* state, int64_t b,
                                     int64_t u, int64_t c) {
  if (u >= 0) return ScalarTraits<T>::to_compute(x[(b * d.T + u) * d.C + c]);
  return ScalarTraits<T>::to_compute(state[(b * d.C + c) * (d.W - 1) + (d.W - 1 + u)]);
}

// z at (b, t, c): taps from the newest back, stopping at a document start or the missing state.
template <class T>
__device__ float pre_activation(const Dev& d, const T* x, const T* w, const T* bias,
                                const T* state, int64_t b, int64_t t, int64_t c) {
  float z = ScalarTraits<T>::to_compute(bias[c]);
  for (int64_t k = d.W - 1; k >= 0; --k) {
    const int64_t u = t - (d.W - 1) + k;
    if (u < 0 && !d.has_state) break;
    z += ScalarTraits<T>::to_compute(w[c * d.W + k]) * tap(d, x, state, b, u, c);
    if (reset_at(d, b, u)) break;
  }
  return z;
}

template <class T>
__global__ void conv1d_forward_kernel(Dev d, const T* x, const T* w, const T* bias,
                                      const T* state, T* y) {
  const int64_t n = d.B * d.T * d.C;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = i % d.C, bt = i / d.C, t = bt % d.T, b = bt / d.T;
    const float z = pre_activation(d, x, w, bias, state, b, t, c);
    y[i] = ScalarTraits<T>::from_compute(z / (1.f + expf(-z)));
  }
}

template <class T>
__global__ void conv1d_dz_kernel(Dev d, const T* x, const T* w, const T* bias, const T* state,
                                 const T* dy, float* dz) {
  const int64_t n = d.B * d.T * d.C;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = i % d.C, bt = i / d.C, t = bt % d.T, b = bt / d.T;
    const float z = pre_activation(d, x, w, bias, state, b, t, c);
    const float sg = 1.f / (1.f + expf(-z));
    dz[i] = ScalarTraits<T>::to_compute(dy[i]) * sg * (1.f + z * (1.f - sg));
  }
}

// Gradient of the input at time u (u < 0: the incoming state): the outputs t = u .. u + W-1
// that read it, stopping at the first document start after u.
template <class T>
__device__ float input_grad(const Dev& d, const T* w, const float* dz, int64_t b, int64_t u,
                            int64_t c) {
  float acc = 0.f;
  const int64_t t0 = u > 0 ? u : 0;
  for (int64_t t = t0; t <= u + d.W - 1 && t < d.T; ++t) {
    if (t > t0 && reset_at(d, b, t)) break;
    acc += dz[(b * d.T + t) * d.C + c] * ScalarTraits<T>::to_compute(w[c * d.W + (u - t + d.W - 1)]);
  }
  return acc;
}

template <class T>
__global__ void conv1d_dx_kernel(Dev d, const T* w, const float* dz, T* dx) {
  const int64_t n = d.B * d.T * d.C;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = i % d.C, bt = i / d.C, u = bt % d.T, b = bt / d.T;
    dx[i] = ScalarTraits<T>::from_compute(input_grad(d, w, dz, b, u, c));
  }
}

template <class T>
__global__ void conv1d_dstate_kernel(Dev d, const T* w, const float* dz, T* dstate) {
  const int64_t S = d.W - 1, n = d.B * d.C * S;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = i % S, bc = i / S, c = bc % d.C, b = bc / d.C;
    dstate[i] = ScalarTraits<T>::from_compute(input_grad(d, w, dz, b, j - S, c));
  }
}

// Block (32, 8): 32 channels, rows [split * kRowsPerSplit, ...) of the flattened (b, t). Writes
// partial[split][c][0..W) (dw) and partial[split][c][W] (dbias).
template <class T>
__global__ void conv1d_dw_partial_kernel(Dev d, const T* x, const T* state, const float* dz,
                                         float* partial) {
  __shared__ float red[8][32][kMaxWidth + 1];
  const int64_t c = blockIdx.x * 32 + threadIdx.x;
  const int64_t r0 = int64_t(blockIdx.y) * kRowsPerSplit;
  const int64_t r1 = min(r0 + kRowsPerSplit, d.B * d.T);
  float acc[kMaxWidth + 1];
  for (int k = 0; k <= kMaxWidth; ++k) acc[k] = 0.f;
  if (c < d.C) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += blockDim.y) {
      const int64_t b = r / d.T, t = r % d.T;
      const float g = dz[r * d.C + c];
      acc[d.W] += g;
      for (int64_t k = d.W - 1; k >= 0; --k) {
        const int64_t u = t - (d.W - 1) + k;
        if (u < 0 && !d.has_state) break;
        acc[k] += g * tap(d, x, state, b, u, c);
        if (reset_at(d, b, u)) break;
      }
    }
  }
  for (int k = 0; k <= d.W; ++k) red[threadIdx.y][threadIdx.x][k] = acc[k];
  __syncthreads();
  if (threadIdx.y == 0 && c < d.C) {
    for (int k = 0; k <= d.W; ++k) {
      float s = 0.f;
      for (int j = 0; j < 8; ++j) s += red[j][threadIdx.x][k];
      partial[(int64_t(blockIdx.y) * d.C + c) * (d.W + 1) + k] = s;
    }
  }
}

template <class T>
__global__ void conv1d_dw_finish_kernel(Dev d, const float* partial, int splits, T* dw, T* dbias) {
  const int64_t n = d.C * (d.W + 1);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float s = 0.f;
    for (int j = 0; j < splits; ++j) s += partial[int64_t(j) * n + i];
    const int64_t c = i / (d.W + 1), k = i % (d.W + 1);
    if (k < d.W) dw[c * d.W + k] = ScalarTraits<T>::from_compute(s);
    else dbias[c] = ScalarTraits<T>::from_compute(s);
  }
}

int grid_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return int(blocks < 132 * 32 ? blocks : 132 * 32);
}

Dev dev_of(const Conv1dParams& p) {
  return Dev{p.batch, p.seqlen, p.channels, p.width, p.seq_idx, p.init_state != nullptr};
}

// A device buffer from the caching allocator, released at scope exit.
Tensor scratch(int64_t n, int device) {
  return Tensor::empty({n}, DType::F32, Device::cuda(device));
}

}  // namespace

void conv1d_forward_cuda(const Conv1dParams& p, int device) {
  cuda::set_device(device);
  cudaStream_t s = cuda::stream(device);
  const Dev d = dev_of(p);
  SL_DISPATCH_CUDA_FLOAT(p.dtype, "causal_conv1d_silu", T, {
    conv1d_forward_kernel<T><<<grid_for(d.B * d.T * d.C), kThreads, 0, s>>>(
        d, static_cast<const T*>(p.x), static_cast<const T*>(p.w),
        static_cast<const T*>(p.bias), static_cast<const T*>(p.init_state),
        static_cast<T*>(p.y));
    SL_CUDA_LAUNCH_CHECK();
  });
}

void conv1d_backward_cuda(const Conv1dParams& p, int device) {
  SL_CHECK(p.width <= kMaxWidth) << "causal_conv1d_silu: the CUDA backward supports W <= "
                                 << kMaxWidth << ", got W = " << p.width;
  cuda::set_device(device);
  cudaStream_t s = cuda::stream(device);
  const Dev d = dev_of(p);
  const int64_t n = d.B * d.T * d.C;
  const int64_t splits64 = (d.B * d.T + kRowsPerSplit - 1) / kRowsPerSplit;
  SL_CHECK(splits64 <= 65535) << "causal_conv1d_silu: B * T = " << d.B * d.T << " too large";
  const int splits = int(splits64);
  Tensor dz = scratch(n, device);
  Tensor partial = scratch(int64_t(splits) * d.C * (d.W + 1), device);
  SL_DISPATCH_CUDA_FLOAT(p.dtype, "causal_conv1d_silu", T, {
    const T* x = static_cast<const T*>(p.x);
    const T* w = static_cast<const T*>(p.w);
    const T* state = static_cast<const T*>(p.init_state);
    conv1d_dz_kernel<T><<<grid_for(n), kThreads, 0, s>>>(
        d, x, w, static_cast<const T*>(p.bias), state, static_cast<const T*>(p.dy),
        dz.data<float>());
    SL_CUDA_LAUNCH_CHECK();
    conv1d_dx_kernel<T><<<grid_for(n), kThreads, 0, s>>>(d, w, dz.data<float>(),
                                                         static_cast<T*>(p.dx));
    SL_CUDA_LAUNCH_CHECK();
    if (p.d_init_state && d.W > 1) {
      conv1d_dstate_kernel<T><<<grid_for(d.B * d.C * (d.W - 1)), kThreads, 0, s>>>(
          d, w, dz.data<float>(), static_cast<T*>(p.d_init_state));
      SL_CUDA_LAUNCH_CHECK();
    }
    const dim3 grid(unsigned((d.C + 31) / 32), unsigned(splits));
    conv1d_dw_partial_kernel<T><<<grid, dim3(32, 8), 0, s>>>(d, x, state, dz.data<float>(),
                                                            partial.data<float>());
    SL_CUDA_LAUNCH_CHECK();
    conv1d_dw_finish_kernel<T><<<grid_for(d.C * (d.W + 1)), kThreads, 0, s>>>(
        d, partial.data<float>(), splits, static_cast<T*>(p.dw), static_cast<T*>(p.dbias));
    SL_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace sl::kernels
