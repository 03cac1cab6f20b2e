// Hugging Face NemotronH checkpoints: config.json <-> ModelConfig, and model.safetensors (or
// shards with model.safetensors.index.json) <-> the parameters of a HybridLM.
//
// Config: the keys of transformers' NemotronHConfig (and the legacy aliases it accepts:
// hybrid_override_pattern, mamba_n_groups, mamba_d_conv, mamba_dt_*, attention_head_dim, ...).
// A key missing from the file takes transformers' default (save_pretrained writes only the
// values that differ from the defaults). Keys that do not change the model's function
// (architectures, token ids, use_cache, initialisation-only settings, ...) are ignored; any other
// key, or a value this implementation does not support (e.g. moe_latent_size, mlp_hidden_act
// other than relu2, attention_dropout > 0), is InvalidArgument naming the file and the key.
// HF's NemotronH has no load-balancing loss, so moe.aux_loss_coef is 0 and moe.score "sigmoid".
//
// Weights: the released checkpoints' names are ours ("backbone.*", experts.{e}.up_proj.weight).
// Also accepted on load: transformers 5's runtime names ("model." for "backbone.", experts
// stacked as experts.up_proj [E, I, C] and experts.down_proj [E, C, I]) and
// "backbone.embedding.weight". Every parameter must be found with its shape, and every tensor of
// the files must be used; otherwise an error names the tensor.
//
// Note [differences from transformers] (5.24, found by the parity fixture, which avoids them):
// transformers clamps dt to [time_step_min, inf) and ignores time_step_limit, where we clamp at
// time_step_limit (default (0, inf)): outputs differ where softplus(dt) < time_step_min; it
// ignores residual_in_fp32 (its residual stays in the model dtype; ours is f32 when set, which
// matters only in bf16); its experts never have a bias and it builds exactly one shared expert,
// so other settings are refused on export.
//
// The one non-obvious decision: saving writes the released checkpoints' layout (what
// transformers' own save_pretrained writes back after its load-time conversion), with every
// config key written explicitly, so the directory loads in transformers and here alike; the MoE
// router (gate.weight and gate.e_score_correction_bias) stays f32 whatever `dtype`, as
// transformers keeps it (_keep_in_fp32_modules_strict).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/errors.h"
#include "layers/config.h"
#include "layers/hybrid_lm.h"
#include "layers/safetensors.h"

namespace sl::layers {

// config.json text -> ModelConfig (validated). `file` names the file in messages.
StatusOr<ModelConfig> parse_hf_config(const std::string& json_text, const std::string& file);
// Reads <dir>/config.json.
StatusOr<ModelConfig> read_hf_config(const std::string& dir);
// ModelConfig -> config.json text. InvalidArgument naming the model key when the config has no
// NemotronH equivalent (an 'S' block, RoPE, a sliding window, attention bias, swiglu, softmax
// router scores, no shared expert, biased experts). `dtype` is recorded as "dtype".
StatusOr<std::string> hf_config_json(const ModelConfig& cfg, DType dtype);

// True when dir holds a config.json (a Hugging Face model directory).
bool is_hf_model_dir(const std::string& dir);

// Copies the tensors of `weights` (read from `where`) into the model's parameters, converted to
// each parameter's dtype and device (f32, bf16, f16 or f64 in the file).
Status load_hf_weights(HybridLM& model, const SafetensorsData& weights, const std::string& where);
// The model of <dir> (config.json and its safetensors), built on `device` in `dtype`.
StatusOr<std::unique_ptr<HybridLM>> load_hf_model(const std::string& dir,
                                                  Device device = Device::cpu(),
                                                  DType dtype = DType::F32);

// Writes <dir>/config.json and the weights in `dtype` (model.safetensors, or shards of at most
// max_shard_bytes). The directory is created if needed.
Status save_hf_model(const HybridLM& model, const std::string& dir, DType dtype,
                     int64_t max_shard_bytes = 5'000'000'000);

}  // namespace sl::layers
