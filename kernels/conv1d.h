// Causal depthwise conv1d followed by SiLU, as Mamba-2 / Nemotron-H apply it to xBC (channels Cc,
// kernel width W, typically 4), channels last:
//
//   z[b, t, c] = bias[c] + sum_{k=0}^{W-1} w[c, k] * x[b, t - (W-1) + k, c],   y = silu(z),
//
// with x at negative times read from init_state[b, c, W-1 + u] (u = -(W-1) .. -1) when one is
// given (chunked prefill: the last W-1 inputs of the previous chunk), and zero otherwise.
// Packed sequences: seq_idx [B, T] (i32 document ids) follows Note [document resets] in
// kernels/ssd.h — a tap at time u contributes to t only when no document starts in (u, t], i.e.
// seq_idx is equal at every step from u to t; taps before time 0 (the init_state) count as the
// document of position 0.
//
// Backward, with dz = dy * silu'(z) = dy * sigmoid(z) * (1 + z * (1 - sigmoid(z))) (z is
// recomputed, nothing is saved): dx[u] = sum of dz[t] * w[c, k] over the taps reading u,
// dw[c, k] = sum_{b,t} dz[b, t, c] * x[tap], dbias[c] = sum_{b,t} dz[b, t, c], and d_init_state
// like dx for the taps reading the state.
//
// The one non-obvious decision: dw and dbias are reduced in a fixed order on the GPU (per-block
// partial sums over fixed row ranges, then a second pass adding the partials in order) so two
// runs give the same bits.
//
// x, w, bias, init_state, y, dy and every gradient share one dtype (f32/bf16 on CUDA; f64/f16 too
// on the CPU); accumulation in f32 (f64 for f64). Inputs are made contiguous.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace sl::kernels {

struct Conv1dParams {
  DType dtype = DType::F32;
  int64_t batch = 0, seqlen = 0, channels = 0, width = 0;  // B, T, Cc, W
  const void* x = nullptr;           // [B, T, Cc]
  const void* w = nullptr;           // [Cc, W]
  const void* bias = nullptr;        // [Cc]
  const void* init_state = nullptr;  // [B, Cc, W-1] or null
  const int32_t* seq_idx = nullptr;  // [B, T] or null
  void* y = nullptr;                 // [B, T, Cc]
  // backward
  const void* dy = nullptr;
  void* dx = nullptr;
  void* dw = nullptr;
  void* dbias = nullptr;
  void* d_init_state = nullptr;  // or null
};

struct Conv1dGrads {
  Tensor dx, dw, dbias;
  Tensor d_init_state;  // undefined when no init_state was given
};

// init_state and seq_idx may be undefined Tensors.
Tensor causal_conv1d_silu_forward(const Tensor& x, const Tensor& w, const Tensor& bias,
                                  const Tensor& init_state, const Tensor& seq_idx);
Conv1dGrads causal_conv1d_silu_backward(const Tensor& dy, const Tensor& x, const Tensor& w,
                                        const Tensor& bias, const Tensor& init_state,
                                        const Tensor& seq_idx);

void conv1d_forward_cpu(const Conv1dParams& p);
void conv1d_backward_cpu(const Conv1dParams& p);
#if SL_WITH_CUDA
void conv1d_forward_cuda(const Conv1dParams& p, int device);
void conv1d_backward_cuda(const Conv1dParams& p, int device);
#endif

}  // namespace sl::kernels
