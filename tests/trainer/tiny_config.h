// The tiny hybrid the trainer tests train ("M*-", d_model 16, 32 tokens, on the CPU, synthetic
// recall): its model, data and device sections as YAML. A test appends the keys it varies
// (optimizer, logging, steps, batch_size, seq_len, ...) and parses the whole with
// parse_train_config.
#pragma once

#include <string>

namespace sl::test {

inline std::string tiny_config(const std::string& more) {
  return R"(
model:
  vocab_size: 32
  d_model: 16
  pattern: "M*-"
  mamba: {n_heads: 2, head_dim: 8, state_size: 8, chunk_size: 8}
  attention: {n_heads: 2, n_kv_heads: 1, head_dim: 8}
  mlp: {intermediate_size: 32}
data: {task: assoc_recall, n_pairs: 3, n_keys: 8, n_values: 8}
device: cpu
)" + more;
}

}  // namespace sl::test
