// Model FLOPs per trained token and MFU (model FLOPs utilisation): the one place the formula lives.
//
// Training FLOPs per token = 3 x forward (backward = 2 x forward), forward = 2 x multiply-adds:
//
//   6 * N_mm                                 every matmul weight: the 2-D weights of the model,
//                                            lm_head included (counted once more when tied to the
//                                            embedding), the embedding lookup excluded; a routed
//                                            expert's weights times top_k / n_routed_experts
//   + per attention block '*':  12 H D ctx   QK^T and AV over ctx = mean over t < T of the keys
//                                            query t sees: min(t + 1, sliding_window or T)
//   + per superlinear block 'S': 6 H D (search + 2 keys) / T
//                                            search scores and attended keys (window + kept spans)
//                                            per query, from kernels::superlinear_work over T
//   + per Mamba-2 block 'M':    6 (K Cc + G N c + H P c + 2 H P N)
//                                            depthwise conv (K taps over Cc = H P + 2 G N
//                                            channels), the SSD intra-chunk scores C B^T (per
//                                            group) and their product with X (per head) over the
//                                            causal half of a chunk, c = (Q + 1) / 2 with
//                                            Q = min(chunk_size, T), the chunk state B^T X and its
//                                            read-out C h (per head)
//
// Elementwise work (norms, activations, gates, softmax, the inter-chunk state recurrence) is left
// out, as is usual for MFU. T is the training sequence length.
//
// The one non-obvious decision: MFU is always against the bf16 dense tensor-core peak of the
// device (989 TFLOP/s for H100 SXM and H200) unless logging.peak_tflops says otherwise, whatever
// the run's precision; for other devices (and the CPU) MFU is not reported.
#pragma once

#include <cstdint>
#include <string>

#include "core/device.h"
#include "layers/hybrid_lm.h"

namespace sl::trainer {

struct FlopsPerToken {
  int64_t matmul_params = 0;  // N_mm above
  double matmul = 0;          // 6 * N_mm
  double attention = 0;       // the '*' and 'S' terms
  double ssd = 0;             // the 'M' terms
  double total() const { return matmul + attention + ssd; }
};

FlopsPerToken model_flops_per_token(const layers::HybridLM& model, int64_t seq_len);

// The bf16 dense peak in TFLOP/s of a device from its name ("NVIDIA H100 80GB HBM3", ...), or 0
// when unknown.
double peak_tflops_for(const std::string& device_name);
// The CUDA device's name ("" for the CPU or a CPU-only build).
std::string device_name(Device device);
// logging.peak_tflops when > 0, else peak_tflops_for(device_name(device)); 0: no MFU.
double resolve_peak_tflops(double configured, Device device);

}  // namespace sl::trainer
