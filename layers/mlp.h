// The feed-forward block, Hugging Face NemotronHMLP and its SwiGLU variant:
//
//   relu2:   y = down_proj(relu(up_proj(x))^2)                       (Nemotron-H, no gate)
//   swiglu:  y = down_proj(silu(gate_proj(x)) * up_proj(x))           (Llama / Mixtral naming)
//
// Parameters, in registration order: [gate_proj.weight], up_proj.weight, down_proj.weight (and
// their .bias with bias). Also the expert and shared-expert MLP of the MoE block (layers/moe.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "layers/linear.h"

namespace sl::layers {

class Mlp : public Module {
 public:
  // activation: "relu2" or "swiglu" (anything else is an sl::Error naming it).
  Mlp(int64_t d_model, int64_t intermediate_size, const std::string& activation, bool bias,
      double init_std, Generator& gen);
  // x [..., d_model] -> [..., d_model].
  ag::Var forward(const ag::Var& x) const;
  ag::Var forward(const ag::Var& x, const SequenceInfo&) const { return forward(x); }

  bool gated() const { return gate_proj_ != nullptr; }

 private:
  Linear* gate_proj_ = nullptr;
  Linear* up_proj_ = nullptr;
  Linear* down_proj_ = nullptr;
};

}  // namespace sl::layers
