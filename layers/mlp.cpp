// Nemotron-H MLP (relu²) and SwiGLU, composed from Linear and the autograd activations.
#include "layers/mlp.h"

#include "autograd/ops.h"

namespace sl::layers {

Mlp::Mlp(int64_t d_model, int64_t intermediate_size, const std::string& activation, bool bias,
         double init_std, Generator& gen) {
  SL_CHECK(activation == "relu2" || activation == "swiglu")
      << "Mlp: activation must be \"relu2\" or \"swiglu\", got \"" << activation << "\"";
  if (activation == "swiglu")
    gate_proj_ = &register_module(
        "gate_proj", std::make_unique<Linear>(d_model, intermediate_size, bias, init_std, gen));
  up_proj_ = &register_module(
      "up_proj", std::make_unique<Linear>(d_model, intermediate_size, bias, init_std, gen));
  down_proj_ = &register_module(
      "down_proj", std::make_unique<Linear>(intermediate_size, d_model, bias, init_std, gen));
}

ag::Var Mlp::forward(const ag::Var& x) const {
  ag::Var h = up_proj_->forward(x);
  h = gate_proj_ ? ag::mul(ag::silu(gate_proj_->forward(x)), h) : ag::relu2(h);
  return down_proj_->forward(h);
}

}  // namespace sl::layers
