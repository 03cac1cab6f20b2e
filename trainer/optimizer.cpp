// AdamW / SGD over named parameters (trainer/optimizer.h).
#include "trainer/optimizer.h"

#include <fnmatch.h>

#include <cmath>

#include "kernels/adamw.h"
#include "kernels/elementwise.h"
#include "kernels/reduce.h"
#include "kernels/sgd.h"
#include "trainer/param_groups.h"

namespace sl::trainer {
namespace {

Tensor i64s(const std::vector<int64_t>& v) {
  return Tensor::from_vector(v, {int64_t(v.size())});
}

}  // namespace

bool decays(const std::string& name, const OptimizerConfig& cfg) {
  for (const std::string& pattern : cfg.no_decay)
    if (fnmatch(pattern.c_str(), name.c_str(), 0) == 0) return false;
  return true;
}

StatusOr<std::unique_ptr<Optimizer>> Optimizer::create(
    const std::vector<std::pair<std::string, ag::Var>>& params, const OptimizerConfig& cfg,
    const std::vector<std::string>& freeze, DType compute) {
  SL_CHECK(compute == DType::F32 || compute == DType::BF16)
      << "Optimizer: compute dtype must be f32 or bf16, got " << dtype_name(compute);
  SL_CHECK(cfg.kind == "adamw" || cfg.kind == "sgd")
      << "Optimizer: unknown kind '" << cfg.kind << "'";
  std::vector<std::string> names;
  for (const auto& [name, var] : params) names.push_back(name);
  StatusOr<std::vector<ParamRule>> rules = resolve_param_rules(names, cfg, freeze);
  if (!rules.ok()) return rules.status();
  std::unique_ptr<Optimizer> opt(new Optimizer(cfg, compute));
  for (size_t i = 0; i < params.size(); ++i) {
    auto [name, var] = params[i];
    const Tensor v = var.value();
    SL_CHECK(v.dtype() == DType::F32 && v.is_contiguous())
        << "Optimizer: parameter '" << name << "' must be contiguous f32, got " << v.str();
    ParamState s;
    s.name = name;
    s.param = var;
    s.master = v;
    if (compute == DType::BF16) var.set_value(v.to(DType::BF16));
    const ParamRule& r = rules.value()[i];
    s.frozen = r.frozen;
    var.set_requires_grad(!s.frozen);
    s.lr_scale = r.lr_scale;
    s.weight_decay = r.weight_decay;
    if (!s.frozen && cfg.kind == "adamw") {
      s.exp_avg = Tensor::zeros(v.shape(), DType::F32, v.device());
      s.exp_avg_sq = Tensor::zeros(v.shape(), DType::F32, v.device());
    } else if (!s.frozen) {
      s.momentum = Tensor::zeros(v.shape(), DType::F32, v.device());
    }
    opt->states_.push_back(std::move(s));
  }
  return opt;
}

void Optimizer::step(double lr, double grad_scale) {
  for (ParamState& s : states_) {
    if (s.frozen || !s.param.grad().defined()) continue;
    const Tensor grad = s.param.grad().contiguous();
    const Tensor param_bf16 = compute_ == DType::BF16 ? s.param.value() : Tensor();
    ++s.step;
    if (cfg_.kind == "sgd") {
      kernels::SgdParams p;
      p.param = s.master;
      p.grad = grad;
      p.momentum_buf = s.momentum;
      p.param_bf16 = param_bf16;
      p.lr = lr * s.lr_scale;
      p.momentum = cfg_.momentum;
      p.weight_decay = s.weight_decay;
      p.nesterov = cfg_.nesterov;
      p.grad_scale = grad_scale;
      kernels::sgd_step(p);
      continue;
    }
    kernels::AdamWParams p;
    p.param = s.master;
    p.grad = grad;
    p.exp_avg = s.exp_avg;
    p.exp_avg_sq = s.exp_avg_sq;
    p.param_bf16 = param_bf16;
    p.lr = lr * s.lr_scale;
    p.beta1 = cfg_.beta1;
    p.beta2 = cfg_.beta2;
    p.eps = cfg_.eps;
    p.weight_decay = s.weight_decay;
    p.step = s.step;
    p.grad_scale = grad_scale;
    kernels::adamw_step(p);
  }
}

double Optimizer::grad_norm() const {
  Tensor total;
  for (const ParamState& s : states_) {
    const Tensor& g = s.param.grad();
    if (s.frozen || !g.defined()) continue;
    Tensor g32 = g.to(DType::F32);
    Tensor sq = kernels::sum_all(kernels::mul(g32, g32));
    total = total.defined() ? kernels::add(total, sq) : sq;
  }
  return total.defined() ? std::sqrt(total.item()) : 0.0;
}

void Optimizer::zero_grad() {
  for (ParamState& s : states_) s.param.zero_grad();
}

void Optimizer::sync_params() {
  if (compute_ == DType::BF16)
    for (ParamState& s : states_) {
      Tensor dst = s.param.value();
      dst.copy_(s.master);
    }
}

ParamState* Optimizer::find(const std::string& name) {
  for (ParamState& s : states_)
    if (s.name == name) return &s;
  return nullptr;
}

void Optimizer::save(CheckpointData* d) const {
  const std::string prefix = cfg_.kind == "sgd" ? "sgd/" : "adam/";
  for (const ParamState& s : states_) {
    d->add("param/" + s.name, s.master);
    if (s.frozen) continue;
    if (cfg_.kind == "sgd") {
      d->add(prefix + s.name + "/momentum", s.momentum);
    } else {
      d->add(prefix + s.name + "/exp_avg", s.exp_avg);
      d->add(prefix + s.name + "/exp_avg_sq", s.exp_avg_sq);
    }
    d->add(prefix + s.name + "/step", i64s({s.step}));
  }
  d->texts["optimizer"] = cfg_.kind;
}

Status Optimizer::load(const CheckpointData& ck, const std::string& path) {
  auto it = ck.texts.find("optimizer");
  const std::string stored = it == ck.texts.end() ? "adamw" : it->second;
  if (stored != cfg_.kind)
    return Status::InvalidArgument(
        path + ": written with optimizer.kind " + stored + ", but optimizer.kind is " + cfg_.kind +
        "; its optimizer state cannot be used (start fresh with --set " +
        "checkpoint.resume=none, use another checkpoint.dir, or set optimizer.kind=" + stored +
        ")");
  const std::string prefix = cfg_.kind == "sgd" ? "sgd/" : "adam/";
  for (ParamState& s : states_) {
    std::vector<std::pair<std::string, Tensor*>> records = {{"param/" + s.name, &s.master}};
    if (!s.frozen) {
      if (!ck.find(prefix + s.name + "/step") && ck.find("param/" + s.name))
        return Status::InvalidArgument(path + ": parameter '" + s.name +
                                       "' has no optimizer state (was it frozen?); it is "
                                       "trainable now (check `freeze`)");
      if (cfg_.kind == "sgd") {
        records.emplace_back(prefix + s.name + "/momentum", &s.momentum);
      } else {
        records.emplace_back(prefix + s.name + "/exp_avg", &s.exp_avg);
        records.emplace_back(prefix + s.name + "/exp_avg_sq", &s.exp_avg_sq);
      }
    }
    for (auto& [name, dst] : records) {
      StatusOr<Tensor> t = ck.get(name, s.master.shape(), DType::F32, path);
      if (!t.ok()) return t.status();
      dst->copy_(t.value());
    }
    if (s.frozen) continue;
    StatusOr<Tensor> st = ck.get(prefix + s.name + "/step", {1}, DType::I64, path);
    if (!st.ok()) return st.status();
    s.step = st.value().to_vector<int64_t>()[0];
  }
  sync_params();
  return Status::Ok();
}

}  // namespace sl::trainer
