// The tiny hybrid model configuration the layer, autograd and checkpoint tests build: every
// block kind small enough for finite differences (d_model 16, 4 Mamba heads of 8 with 2 groups,
// 4/2 attention heads of 4, 4 experts of 12 with a shared expert of 10). Tests change the few
// fields they vary (vocabulary, aux loss, ...) on the returned value.
#pragma once

#include <string>

#include "layers/config.h"

namespace sl::test {

inline layers::ModelConfig tiny_hybrid(const std::string& pattern, int64_t vocab_size = 32) {
  layers::ModelConfig c;
  c.vocab_size = vocab_size;
  c.d_model = 16;
  c.pattern = pattern;
  c.init_std = 0.1;
  c.mamba.n_heads = 4;
  c.mamba.head_dim = 8;
  c.mamba.state_size = 8;
  c.mamba.n_groups = 2;
  c.mamba.chunk_size = 8;
  c.attention.n_heads = 4;
  c.attention.n_kv_heads = 2;
  c.attention.head_dim = 4;
  c.mlp.intermediate_size = 24;
  c.moe.n_routed_experts = 4;
  c.moe.top_k = 2;
  c.moe.intermediate_size = 12;
  c.moe.shared_intermediate_size = 10;
  c.moe.aux_loss_coef = 0.05;
  return c;
}

}  // namespace sl::test
