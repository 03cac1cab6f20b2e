// AdamW over a model's named parameters, with per-parameter state and, under mixed precision,
// f32 master weights.
//
// State is kept per parameter (name, exp_avg, exp_avg_sq, step), in the model's parameter order,
// so it is checkpointed by name and can later be sharded per parameter. Each update is one fused
// kernels::adamw_step. With compute dtype bf16 the optimizer owns the f32 master copy of every
// parameter and the model's Var holds the bf16 copy that adamw_step refreshes in the same pass;
// with f32 the master is the model's own tensor, updated in place.
//
// Weight decay groups by name: a parameter whose dotted name matches one of
// OptimizerConfig::no_decay (fnmatch globs) gets weight_decay 0.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "autograd/variable.h"
#include "trainer/config.h"

namespace sl::trainer {

struct ParamState {
  std::string name;
  ag::Var param;        // the model's parameter (compute dtype)
  Tensor master;        // f32 weights (the same tensor as param.value() in f32 training)
  Tensor exp_avg;       // f32, master's shape
  Tensor exp_avg_sq;    // f32
  int64_t step = 0;     // updates taken
  double weight_decay;  // 0 for the no_decay group
};

// True when `name` gets weight decay under cfg.no_decay.
bool decays(const std::string& name, const OptimizerConfig& cfg);

class AdamW {
 public:
  // Parameters must be f32 and contiguous on their device; with compute == BF16 they are cast to
  // bf16 in place (the f32 values become the master weights).
  AdamW(const std::vector<std::pair<std::string, ag::Var>>& params, const OptimizerConfig& cfg,
        DType compute);

  // One update of every parameter that has a gradient, the gradients multiplied by grad_scale.
  void step(double lr, double grad_scale);
  // sqrt(sum of every gradient squared), in f32 on the device, one host read. NaN/Inf propagate.
  double grad_norm() const;
  void zero_grad();
  // After the masters were overwritten (a checkpoint): refreshes the bf16 parameters.
  void sync_params();

  std::vector<ParamState>& states() { return states_; }
  const std::vector<ParamState>& states() const { return states_; }
  ParamState* find(const std::string& name);

 private:
  OptimizerConfig cfg_;
  DType compute_;
  std::vector<ParamState> states_;
};

}  // namespace sl::trainer
