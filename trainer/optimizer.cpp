// AdamW over named parameters (trainer/optimizer.h).
#include "trainer/optimizer.h"

#include <fnmatch.h>

#include <cmath>

#include "kernels/adamw.h"
#include "kernels/elementwise.h"
#include "kernels/reduce.h"

namespace sl::trainer {

bool decays(const std::string& name, const OptimizerConfig& cfg) {
  for (const std::string& pattern : cfg.no_decay)
    if (fnmatch(pattern.c_str(), name.c_str(), 0) == 0) return false;
  return true;
}

AdamW::AdamW(const std::vector<std::pair<std::string, ag::Var>>& params, const OptimizerConfig& cfg,
             DType compute)
    : cfg_(cfg), compute_(compute) {
  SL_CHECK(compute == DType::F32 || compute == DType::BF16)
      << "AdamW: compute dtype must be f32 or bf16, got " << dtype_name(compute);
  for (auto [name, var] : params) {
    const Tensor v = var.value();
    SL_CHECK(v.dtype() == DType::F32 && v.is_contiguous())
        << "AdamW: parameter '" << name << "' must be contiguous f32, got " << v.str();
    ParamState s;
    s.name = name;
    s.param = var;
    s.master = v;
    if (compute == DType::BF16) var.set_value(v.to(DType::BF16));
    s.exp_avg = Tensor::zeros(v.shape(), DType::F32, v.device());
    s.exp_avg_sq = Tensor::zeros(v.shape(), DType::F32, v.device());
    s.weight_decay = decays(name, cfg) ? cfg.weight_decay : 0.0;
    states_.push_back(std::move(s));
  }
}

void AdamW::step(double lr, double grad_scale) {
  for (ParamState& s : states_) {
    if (!s.param.grad().defined()) continue;
    kernels::AdamWParams p;
    p.param = s.master;
    p.grad = s.param.grad().contiguous();
    p.exp_avg = s.exp_avg;
    p.exp_avg_sq = s.exp_avg_sq;
    if (compute_ == DType::BF16) p.param_bf16 = s.param.value();
    p.lr = lr;
    p.beta1 = cfg_.beta1;
    p.beta2 = cfg_.beta2;
    p.eps = cfg_.eps;
    p.weight_decay = s.weight_decay;
    p.step = ++s.step;
    p.grad_scale = grad_scale;
    kernels::adamw_step(p);
  }
}

double AdamW::grad_norm() const {
  Tensor total;
  for (const ParamState& s : states_) {
    const Tensor& g = s.param.grad();
    if (!g.defined()) continue;
    Tensor g32 = g.to(DType::F32);
    Tensor sq = kernels::sum_all(kernels::mul(g32, g32));
    total = total.defined() ? kernels::add(total, sq) : sq;
  }
  return total.defined() ? std::sqrt(total.item()) : 0.0;
}

void AdamW::zero_grad() {
  for (ParamState& s : states_) s.param.zero_grad();
}

void AdamW::sync_params() {
  if (compute_ == DType::BF16)
    for (ParamState& s : states_) {
      Tensor dst = s.param.value();
      dst.copy_(s.master);
    }
}

ParamState* AdamW::find(const std::string& name) {
  for (ParamState& s : states_)
    if (s.name == name) return &s;
  return nullptr;
}

}  // namespace sl::trainer
