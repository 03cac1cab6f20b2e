// Model FLOPs per token and the device peak (trainer/flops.h).
#include "trainer/flops.h"

#include <algorithm>

#include "kernels/superlinear.h"

#if SL_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace sl::trainer {

FlopsPerToken model_flops_per_token(const layers::HybridLM& model, int64_t T) {
  const layers::ModelConfig& c = model.config();
  FlopsPerToken f;
  const double expert_share = double(c.moe.top_k) / double(c.moe.n_routed_experts);
  double n_mm = 0;
  for (const auto& [name, p] : model.named_parameters()) {
    if (p.dim() != 2 || name == "backbone.embeddings.weight") continue;
    double n = double(p.value().numel());
    n_mm += name.find(".experts.") != std::string::npos ? n * expert_share : n;
  }
  if (c.tie_embeddings) n_mm += double(c.vocab_size) * double(c.d_model);
  f.matmul_params = int64_t(n_mm + 0.5);
  f.matmul = 6 * n_mm;

  const layers::AttentionConfig& a = c.attention;
  double ctx = 0;
  const int64_t window = a.sliding_window > 0 ? a.sliding_window : T;
  for (int64_t t = 0; t < T; ++t) ctx += double(std::min(t + 1, window));
  ctx /= double(T);
  const double hd = double(a.n_heads) * double(a.head_dim);
  double superlinear = 0;
  if (c.pattern.find('S') != std::string::npos) {
    kernels::SuperlinearWork w = kernels::superlinear_work(c.superlinear, T, 0);
    superlinear = 6 * hd * (double(w.total_search) + 2 * double(w.total_keys)) / double(T);
  }

  const layers::Mamba2Config& m = c.mamba;
  const double H = double(m.n_heads), P = double(m.head_dim), N = double(m.state_size);
  const double G = double(m.n_groups), half = (double(std::min(m.chunk_size, T)) + 1) / 2;
  const double conv_channels = H * P + 2 * G * N;
  const double mamba =
      6 * (double(m.conv_kernel) * conv_channels + G * N * half + H * P * half + 2 * H * P * N);

  for (char kind : c.pattern) {
    if (kind == '*') f.attention += 12 * hd * ctx;
    if (kind == 'S') f.attention += superlinear;
    if (kind == 'M') f.ssd += mamba;
  }
  return f;
}

double peak_tflops_for(const std::string& name) {
  auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
  if (has("H200")) return 989;
  if (has("H100") && (has("SXM") || has("HBM3"))) return 989;
  return 0;
}

std::string device_name(Device device) {
#if SL_WITH_CUDA
  cudaDeviceProp prop{};
  if (device.is_cuda() && cudaGetDeviceProperties(&prop, device.index) == cudaSuccess)
    return prop.name;
#else
  (void)device;
#endif
  return "";
}

double resolve_peak_tflops(double configured, Device device) {
  return configured > 0 ? configured : peak_tflops_for(device_name(device));
}

}  // namespace sl::trainer
