// Rotary position embedding (RoPE), rotate-half convention (Llama / GPT-NeoX): within each head
// vector of D values the first R ("rotary_dim", default D) are rotated in pairs (i, i + R/2),
// i < R/2, by the angle pos * inv_freq[i], inv_freq[i] = theta^(-2i/R); values R..D-1 pass through:
//   y[i]       = x[i] * cos - x[i + R/2] * sin
//   y[i + R/2] = x[i + R/2] * cos + x[i] * sin
// The backward is the rotation by the negative angle.
//
// Layout: x [B, T, H, D] (made contiguous). Positions are start + t, or positions[b, t] from an
// i32/i64 tensor [B, T] on x's device.
//
// The one non-obvious decision: inv_freq is computed once on the host in double and travels in
// the parameters; the angle is float(pos) * float(inv_freq[i]) in f32 and cos/sin are evaluated
// in double and rounded to float, so CPU and GPU use the same angles and (but for a double-ulp
// difference in the platforms' sin/cos, ~1 in 2^28 values) the same cos/sin. f64 tensors (CPU)
// do everything in double.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace sl::kernels {

constexpr int kRopeMaxHalf = 256;  // rotary_dim <= 512

struct RopeOptions {
  double theta = 10000.0;
  int64_t rotary_dim = 0;  // 0: the whole head dimension D; else even and <= D
  int64_t start = 0;       // first position when `positions` is undefined
  Tensor positions;        // optional [B, T] i32/i64
};

struct RopeParams {
  const void* x = nullptr;  // [b, t, h, d]
  void* y = nullptr;
  DType dtype = DType::F32;
  int64_t b = 0, t = 0, h = 0, d = 0, rot = 0;
  int64_t start = 0;
  const void* positions = nullptr;  // [b, t] or null
  DType pos_dtype = DType::I64;
  bool inverse = false;  // rotate by -angle (the backward)
  double inv_freq[kRopeMaxHalf];
};

Tensor rope_forward(const Tensor& x, const RopeOptions& opt = {});
Tensor rope_backward(const Tensor& dy, const RopeOptions& opt = {});

void rope_cpu(const RopeParams& p);
#if SL_WITH_CUDA
void rope_cuda(const RopeParams& p, int device);
#endif

}  // namespace sl::kernels
