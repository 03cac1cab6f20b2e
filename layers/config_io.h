// Reading, checking and printing the typed `model:` configuration (layers/config.h).
//
// YAML layout: the ModelConfig fields at the top level of the section, and one nested mapping
// per block kind, with the struct's field names as keys:
//
//   model:
//     vocab_size: 256
//     d_model: 64
//     pattern: "M*M-ME"          # quote it: a leading '*' is a YAML alias
//     mamba: {n_heads: 8, head_dim: 16, ...}
//     attention: {n_heads: 4, n_kv_heads: 2, head_dim: 0, ...}   # head_dim 0: d_model / n_heads
//     mlp: {intermediate_size: 128, activation: relu2}
//     moe: {n_routed_experts: 4, top_k: 2, score: sigmoid, ...}
//     superlinear: {preset: balanced, k: 2, allow_no_coverage: false}  # preset first, then keys
//
// Absent keys keep the struct defaults. Errors are Status values (InvalidArgument) whose message
// starts "file:line: model.<key>:" — an unknown key, a value of the wrong type, or a value that
// validate_model_config rejects (the line is the key's own; a defaulted key reports the file).
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>

#include "core/errors.h"
#include "layers/config.h"
#include "layers/yaml_section.h"

namespace sl::layers {

// Parses the contents of a `model:` section (a mapping; null gives the defaults). `file` only
// names the source in messages. The result is resolved (attention.head_dim 0 replaced) and valid.
StatusOr<ModelConfig> parse_model_config(const YAML::Node& node, const std::string& file);
// The same within a larger parse (the training config): origins and --set overrides come from
// `ctx`, and the error, if any, is also left there.
StatusOr<ModelConfig> parse_model_config(const YAML::Node& node, yaml::ParseContext* ctx);

// Reads a YAML file and parses its top-level `model:` section (missing: an error).
StatusOr<ModelConfig> load_model_config(const std::string& path);

// Every rule the parser enforces, on a config built in code: sizes positive, pattern letters in
// "M*-ES", mamba n_groups dividing n_heads, attention n_kv_heads dividing n_heads, even head_dim
// with RoPE, 1 <= moe.top_k <= n_routed_experts, n_shared_experts 0 or 1, known activation and
// score names, and kernels::validate for the superlinear settings. Message: "model.<key>: ...".
Status validate_model_config(const ModelConfig& cfg);

// The resolved config as YAML that parse_model_config reads back to the same config (every field,
// doubles in shortest round-trip form), each line prefixed by `indent` spaces.
std::string to_yaml(const ModelConfig& cfg, int indent = 0);

}  // namespace sl::layers
