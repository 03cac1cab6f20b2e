// Mamba-2 SSD (state-space duality) scan: the selective state-space recurrence of Mamba-2 /
// Nemotron-H, forward and backward, computed either sequentially (the CPU oracle) or by the
// chunked SSD algorithm (CPU reference and CUDA kernels).
//
// Shapes (per sequence b; head h reads group g = h / (H / G)):
//   x [B, T, H, P]   dt [B, T, H] (already softplus'ed and clamped)   A [H] (negative)
//   Bm, Cm [B, T, G, N]   D [H]   init_state [B, H, P, N] (optional)   seq_idx [B, T] i32 (opt.)
// Recurrence, S_t [P, N] per (b, h), with a_t = exp(dt_t * A_h):
//   S_t = a_t * S_{t-1} + dt_t * x_t (outer) Bm_t,    y_t = S_t Cm_t + D_h * x_t,
// S_{-1} = init_state (zero when absent); outputs y [B, T, H, P] and final_state = S_{T-1}.
//
// Packed sequences (Note [document resets]): seq_idx holds a document id per position, as in
// mamba. The state flows from t-1 into t only when seq_idx[b, t] == seq_idx[b, t-1]; where the id
// changes (a document start) a_t is replaced by 0, so nothing of the earlier document reaches t.
// Position 0 is never a reset: an init_state always flows into position 0 and on to the end of
// the first document. A caller whose chunk starts a new document passes no init_state (or zeros)
// for that row. The same rule is used by kernels/conv1d.h.
//
// Chunked algorithm (Note [chunked SSD]), chunks of Q positions [t0, t0 + Q), with cs_i the
// inclusive cumulative sum of dt * A inside the chunk and seg_i the last reset <= i in the chunk:
//   y_i   = sum_{seg_i <= j <= i} (Cm_i . Bm_j) exp(cs_i - cs_j) dt_j x_j          (intra-chunk)
//         + [no reset <= i] exp(cs_i) S_in Cm_i + D x_i                          (inter-chunk)
//   S_out = [no reset in chunk] exp(cs_end) S_in + sum_{j >= seg_end} exp(cs_end - cs_j) dt_j
//           x_j (outer) Bm_j
// Cumulative sums, states and every accumulation are f32 (f64 for f64 inputs).
//
// Dtypes: x, dt, A, Bm, Cm, D, y, dy and every input gradient share one dtype (f32/bf16 on CUDA;
// f64/f16 too on the CPU); init_state, final_state, d_final_state and d_init_state are the state
// dtype: f32, or f64 for f64 inputs. Inputs are made contiguous. The CUDA path always runs the
// chunked algorithm; `sequential` is a CPU-only choice. Reductions (dA, dD, dBm/dCm over the heads
// of a group) are done in a fixed order on both devices: results are deterministic.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace sl::kernels {

struct SsdOptions {
  int64_t chunk_size = 128;  // Q of the chunked algorithm
  bool sequential = false;   // CPU only: the plain recurrence (the oracle)
};

struct SsdParams {
  DType dtype = DType::F32;  // of x, dt, A, Bm, Cm, D, y, dy and the input gradients
  int64_t batch = 0, seqlen = 0, heads = 0, head_dim = 0, groups = 0, state = 0;  // B T H P G N
  int64_t chunk = 128;
  bool sequential = false;
  const void* x = nullptr;
  const void* dt = nullptr;
  const void* A = nullptr;
  const void* Bm = nullptr;
  const void* Cm = nullptr;
  const void* D = nullptr;
  const void* init_state = nullptr;  // state dtype, or null
  const int32_t* seq_idx = nullptr;  // or null
  void* y = nullptr;
  void* final_state = nullptr;  // state dtype
  // backward
  const void* dy = nullptr;
  const void* d_final_state = nullptr;  // state dtype, or null (zero)
  void* dx = nullptr;
  void* ddt = nullptr;
  void* dA = nullptr;
  void* dBm = nullptr;
  void* dCm = nullptr;
  void* dD = nullptr;
  void* d_init_state = nullptr;  // state dtype, or null when not wanted
};

struct SsdResult {
  Tensor y;            // [B, T, H, P], x's dtype
  Tensor final_state;  // [B, H, P, N], state dtype
};
struct SsdGrads {
  Tensor dx, ddt, dA, dBm, dCm, dD;  // shapes and dtype of the inputs
  Tensor d_init_state;               // undefined when no init_state was given
};

// The state dtype for inputs of dtype t: f64 for f64, else f32.
DType ssd_state_dtype(DType t);

// init_state and seq_idx may be undefined Tensors.
SsdResult ssd_forward(const Tensor& x, const Tensor& dt, const Tensor& A, const Tensor& Bm,
                      const Tensor& Cm, const Tensor& D, const Tensor& init_state,
                      const Tensor& seq_idx, const SsdOptions& opt = {});
// d_final_state may be undefined (no gradient reaches the final state).
SsdGrads ssd_backward(const Tensor& dy, const Tensor& d_final_state, const Tensor& x,
                      const Tensor& dt, const Tensor& A, const Tensor& Bm, const Tensor& Cm,
                      const Tensor& D, const Tensor& init_state, const Tensor& seq_idx,
                      const SsdOptions& opt = {});

void ssd_forward_cpu(const SsdParams& p);
void ssd_backward_cpu(const SsdParams& p);
#if SL_WITH_CUDA
void ssd_forward_cuda(const SsdParams& p, int device);
void ssd_backward_cuda(const SsdParams& p, int device);
#endif

}  // namespace sl::kernels
