// The optimizer over a model's named parameters: AdamW or SGD with momentum, per-parameter state
// and, under mixed precision, f32 master weights.
//
// State is kept per parameter, in the model's parameter order, so it is checkpointed by name and
// can later be sharded per parameter: AdamW keeps exp_avg and exp_avg_sq, SGD a momentum buffer,
// both a step count. Each update is one fused kernel (kernels::adamw_step / kernels::sgd_step).
// With compute dtype bf16 the optimizer owns the f32 master copy of every parameter and the
// model's Var holds the bf16 copy that the kernel refreshes in the same pass; with f32 the master
// is the model's own tensor, updated in place.
//
// Which parameters train, their lr scale and weight decay: trainer/param_groups.h. A frozen
// parameter keeps its master weights (checkpointed) but no state and is never updated; create()
// turns its requires_grad off, so the backward pass computes no gradient for it (one made anyway,
// e.g. before create(), is ignored by step() and grad_norm() and dropped by zero_grad()).
//
// Checkpoint records (trainer/checkpoint.h): "param/<name>" (f32 master) for every parameter;
// for AdamW "adam/<name>/exp_avg", "adam/<name>/exp_avg_sq", "adam/<name>/step"; for SGD
// "sgd/<name>/momentum", "sgd/<name>/step"; the text "optimizer" holds the kind (a checkpoint
// without it was written by AdamW).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/variable.h"
#include "trainer/checkpoint.h"
#include "trainer/config.h"

namespace sl::trainer {

struct ParamState {
  std::string name;
  ag::Var param;        // the model's parameter (compute dtype)
  Tensor master;        // f32 weights (the same tensor as param.value() in f32 training)
  bool frozen = false;  // no state, never updated
  Tensor exp_avg;       // adamw: f32, master's shape
  Tensor exp_avg_sq;    // adamw
  Tensor momentum;      // sgd
  int64_t step = 0;     // updates taken
  double lr_scale = 1.0;
  double weight_decay = 0.0;
};

// True when `name` gets weight decay under cfg.no_decay.
bool decays(const std::string& name, const OptimizerConfig& cfg);

class Optimizer {
 public:
  // Parameters must be f32 and contiguous on their device; with compute == BF16 they are cast to
  // bf16 in place (the f32 values become the master weights). InvalidArgument for a freeze or
  // group glob that matches no parameter.
  static StatusOr<std::unique_ptr<Optimizer>> create(
      const std::vector<std::pair<std::string, ag::Var>>& params, const OptimizerConfig& cfg,
      const std::vector<std::string>& freeze, DType compute);

  const std::string& kind() const { return cfg_.kind; }
  // One update of every trainable parameter that has a gradient, the gradients multiplied by
  // grad_scale, at learning rate lr * the parameter's lr_scale.
  void step(double lr, double grad_scale);
  // sqrt(sum of every trainable gradient squared), in f32 on the device, one host read.
  // NaN/Inf propagate.
  double grad_norm() const;
  void zero_grad();
  // After the masters were overwritten (a checkpoint): refreshes the bf16 parameters.
  void sync_params();

  // Adds the master weights and the state of every parameter to *d.
  void save(CheckpointData* d) const;
  // Restores what save() wrote and refreshes the parameters. Corruption for missing or
  // mis-shaped records, InvalidArgument when the checkpoint was written by the other kind or a
  // parameter trainable now was frozen then; messages name `path`.
  Status load(const CheckpointData& ck, const std::string& path);

  std::vector<ParamState>& states() { return states_; }
  const std::vector<ParamState>& states() const { return states_; }
  ParamState* find(const std::string& name);

 private:
  Optimizer(const OptimizerConfig& cfg, DType compute) : cfg_(cfg), compute_(compute) {}

  OptimizerConfig cfg_;
  DType compute_;
  std::vector<ParamState> states_;
};

}  // namespace sl::trainer
