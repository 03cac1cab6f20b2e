// The typed `model:` section of a configuration: one struct per block kind, defaults in one
// place. Names follow Hugging Face's NemotronHConfig where one exists (noted per field), so a
// config.json maps onto this struct field by field. Parsing and validation live in
// layers/config.cpp (unknown keys and bad values are errors naming the key, file and line).
#pragma once

#include <cstdint>
#include <limits>
#include <string>

#include "kernels/superlinear.h"

namespace sl::layers {

struct Mamba2Config {
  int64_t n_heads = 8;            // mamba_num_heads
  int64_t head_dim = 16;          // mamba_head_dim
  int64_t state_size = 16;        // ssm_state_size (N)
  int64_t n_groups = 1;           // n_groups (B and C shared by n_heads / n_groups heads)
  int64_t conv_kernel = 4;        // conv_kernel
  int64_t chunk_size = 64;        // chunk_size of the SSD algorithm
  bool use_conv_bias = true;      // use_conv_bias
  bool use_bias = false;          // use_bias (in_proj / out_proj)
  double dt_min = 0.001;          // time_step_min (initialisation of dt_bias)
  double dt_max = 0.1;            // time_step_max
  double dt_init_floor = 1e-4;    // time_step_floor
  double dt_limit_min = 0.0;      // time_step_limit: dt is clamped to [min, max] after softplus
  double dt_limit_max = std::numeric_limits<double>::infinity();
};

struct AttentionConfig {
  int64_t n_heads = 4;            // num_attention_heads
  int64_t n_kv_heads = 2;         // num_key_value_heads
  int64_t head_dim = 16;          // head_dim
  bool bias = false;              // attention_bias
  bool rope = false;              // Nemotron-H uses no positional encoding in attention
  double rope_theta = 10000.0;
  int64_t sliding_window = 0;     // 0: full causal attention
};

struct MlpConfig {
  int64_t intermediate_size = 128;  // intermediate_size
  std::string activation = "relu2"; // "relu2" (Nemotron-H) or "swiglu"
  bool bias = false;                // mlp_bias
};

struct MoeConfig {
  int64_t n_routed_experts = 4;          // n_routed_experts
  int64_t n_shared_experts = 1;          // n_shared_experts (0 or 1)
  int64_t top_k = 2;                     // num_experts_per_tok
  int64_t intermediate_size = 64;        // moe_intermediate_size
  int64_t shared_intermediate_size = 64; // moe_shared_expert_intermediate_size
  std::string score = "sigmoid";         // router scores: "softmax" or "sigmoid"
  bool norm_topk_prob = true;            // norm_topk_prob
  double routed_scaling_factor = 1.0;    // routed_scaling_factor
  double aux_loss_coef = 0.01;           // load-balancing loss weight (0: off)
};

struct ModelConfig {
  int64_t vocab_size = 256;
  int64_t d_model = 64;                  // hidden_size
  // One letter per block: M Mamba-2, * attention, - MLP, E mixture of experts, S superlinear
  // attention (hybrid_override_pattern).
  std::string pattern = "M*M-";
  double norm_eps = 1e-5;                // layer_norm_epsilon
  bool tie_embeddings = false;           // tie_word_embeddings
  double init_std = 0.02;                // initializer_range
  bool residual_in_fp32 = true;          // residual_in_fp32
  Mamba2Config mamba;
  AttentionConfig attention;
  MlpConfig mlp;
  MoeConfig moe;
  kernels::SuperlinearConfig superlinear = kernels::SuperlinearConfig::balanced();
  bool superlinear_allow_no_coverage = false;
};

}  // namespace sl::layers
