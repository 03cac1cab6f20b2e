// Mixture of experts: host-side top-k selection, gather / per-expert Mlp / scatter_add dispatch,
// and the dense reference (layers/moe.h, Note [MoE dispatch]).
#include "layers/moe.h"

#include <algorithm>
#include <numeric>

#include "autograd/ops.h"

namespace sl::layers {
namespace {

// f32 for the router's arithmetic (HF runs the router in f32); f64 keeps gradchecks exact.
DType router_dtype(DType x) {
  return x == DType::F64 ? DType::F64 : DType::F32;
}

Tensor host_vector_tensor(const std::vector<double>& v, const Dims& shape, DType dtype,
                          Device dev) {
  return Tensor::from_vector(v, shape).to(dtype).to(dev);
}

}  // namespace

TopkRouter::TopkRouter(int64_t d_model, int64_t n_experts, double init_std, Generator& gen) {
  weight_ = register_parameter(
      "weight", Tensor::randn({n_experts, d_model}, gen, DType::F32, Device::cpu(), 0, init_std));
  bias_ = register_parameter("e_score_correction_bias", Tensor::zeros({n_experts}, DType::F32));
}

Moe::Moe(const ModelConfig& cfg, Generator& gen) : cfg_(cfg.moe), d_model_(cfg.d_model) {
  const MoeConfig& m = cfg_;
  SL_CHECK(m.n_routed_experts > 0)
      << "Moe: n_routed_experts must be positive, got " << m.n_routed_experts;
  SL_CHECK(m.top_k >= 1 && m.top_k <= m.n_routed_experts)
      << "Moe: top_k " << m.top_k << " must be in [1, n_routed_experts = " << m.n_routed_experts
      << "]";
  SL_CHECK(m.n_shared_experts == 0 || m.n_shared_experts == 1)
      << "Moe: n_shared_experts must be 0 or 1, got " << m.n_shared_experts;
  SL_CHECK(m.score == "softmax" || m.score == "sigmoid")
      << "Moe: score must be \"softmax\" or \"sigmoid\", got \"" << m.score << "\"";
  experts_ = &register_module("experts", std::make_unique<ModuleList<Mlp>>());
  for (int64_t e = 0; e < m.n_routed_experts; ++e)
    experts_->append(std::make_unique<Mlp>(d_model_, m.intermediate_size, cfg.mlp.activation,
                                           cfg.mlp.bias, cfg.init_std, gen));
  gate_ = &register_module(
      "gate", std::make_unique<TopkRouter>(d_model_, m.n_routed_experts, cfg.init_std, gen));
  if (m.n_shared_experts == 1)
    shared_ = &register_module(
        "shared_experts",
        std::make_unique<Mlp>(d_model_, m.shared_intermediate_size, cfg.mlp.activation,
                              cfg.mlp.bias, cfg.init_std, gen));
}

MoeRouting Moe::route(const ag::Var& x2d) const {
  const int64_t n = x2d.size(0), ne = cfg_.n_routed_experts, k = cfg_.top_k;
  const DType rd = router_dtype(x2d.dtype());
  ag::Var logits = ag::linear(cast(x2d, rd), cast(gate_->weight(), rd));
  ag::Var s = cfg_.score == "softmax" ? ag::softmax(logits) : ag::sigmoid(logits);

  std::vector<double> hs =
      s.value().to(Device::cpu()).to(DType::F64).contiguous().to_vector<double>();
  std::vector<double> bias =
      gate_->e_score_correction_bias().value().to(Device::cpu()).to(DType::F64).to_vector<double>();
  MoeRouting r;
  r.choices.resize(size_t(n * k));
  r.counts.assign(size_t(ne), 0);
  std::vector<int64_t> order(static_cast<size_t>(ne));
  for (int64_t t = 0; t < n; ++t) {
    const double* row = hs.data() + t * ne;
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int64_t a, int64_t b) {
      double ca = row[a] + bias[size_t(a)], cb = row[b] + bias[size_t(b)];
      return ca > cb || (ca == cb && a < b);
    });
    for (int64_t j = 0; j < k; ++j) {
      r.choices[size_t(t * k + j)] = order[size_t(j)];
      ++r.counts[size_t(order[size_t(j)])];
    }
  }
  r.topk_index = Tensor::from_vector(r.choices, {n, k}).to(x2d.device());

  ag::Var w = ag::gather(s, 1, r.topk_index);
  if (cfg_.norm_topk_prob) w = ag::div(w, ag::add_scalar(ag::sum(w, 1, true), 1e-20));
  if (cfg_.routed_scaling_factor != 1.0)  // a tensor factor: ag::scale rounds alpha to f32
    w = ag::mul(w, ag::Var(Tensor::full({}, cfg_.routed_scaling_factor, w.dtype(), w.device())));
  r.topk_weight = w;
  r.probs = cfg_.score == "softmax" ? s : ag::div(s, ag::sum(s, 1, true));
  return r;
}

void Moe::set_aux(const MoeRouting& r) {
  const int64_t ne = cfg_.n_routed_experts;
  const double total = double(r.choices.size());
  std::vector<double> f(static_cast<size_t>(ne));
  for (int64_t e = 0; e < ne; ++e) f[size_t(e)] = double(r.counts[size_t(e)]) / total;
  ag::Var fe(host_vector_tensor(f, {ne}, r.probs.dtype(), r.probs.device()));
  aux_ = ag::scale(ag::sum_all(ag::mul(ag::mean(r.probs, 0), fe)), double(ne));
  counts_ = r.counts;
}

ag::Var Moe::flatten(const ag::Var& x) const {
  SL_CHECK(x.defined() && x.dim() >= 2 && x.size(-1) == d_model_)
      << "Moe: input must be [..., " << d_model_ << "], got "
      << (x.defined() ? x.value().shape_str() : "undefined");
  return ag::reshape(x, {x.value().numel() / d_model_, d_model_});
}

ag::Var Moe::finish(const ag::Var& routed, const ag::Var& x2d, const ag::Var& x) {
  ag::Var out = cast(routed, x.dtype());
  if (shared_) out = ag::add(out, shared_->forward(x2d));
  return ag::reshape(out, x.shape());
}

ag::Var Moe::forward(const ag::Var& x, const SequenceInfo&) {
  ag::Var x2 = flatten(x);
  const int64_t n = x2.size(0), ne = cfg_.n_routed_experts, k = cfg_.top_k, nk = n * k;
  MoeRouting r = route(x2);
  set_aux(r);

  std::vector<int64_t> offset(size_t(ne + 1), 0);
  for (int64_t e = 0; e < ne; ++e) offset[size_t(e + 1)] = offset[size_t(e)] + r.counts[size_t(e)];
  std::vector<int64_t> token(static_cast<size_t>(nk)), slot(static_cast<size_t>(nk)),
      fill(offset.begin(), offset.end() - 1);
  for (int64_t i = 0; i < nk; ++i) {
    int64_t pos = fill[size_t(r.choices[size_t(i)])]++;
    token[size_t(pos)] = i / k;
    slot[size_t(pos)] = i;
  }
  const Device dev = x.device();
  Tensor token_index = Tensor::from_vector(token, {nk, 1}).to(dev).expand({nk, d_model_});
  Tensor slot_index = Tensor::from_vector(slot, {nk}).to(dev);

  ag::Var xs = ag::gather(x2, 0, token_index);
  std::vector<ag::Var> ys;
  for (int64_t e = 0; e < ne; ++e) {
    int64_t lo = offset[size_t(e)], hi = offset[size_t(e + 1)];
    if (hi > lo) ys.push_back(expert(e).forward(ag::slice(xs, 0, lo, hi)));
  }
  ag::Var y = ys.size() == 1 ? ys[0] : ag::concat(ys, 0);
  ag::Var w = ag::gather(ag::reshape(r.topk_weight, {nk}), 0, slot_index);
  ag::Var yw = ag::mul(y, ag::reshape(w, {nk, 1}));
  ag::Var zeros(Tensor::zeros({n, d_model_}, yw.dtype(), dev));
  return finish(ag::scatter_add(zeros, 0, token_index, yw), x2, x);
}

ag::Var Moe::forward_dense(const ag::Var& x) {
  ag::Var x2 = flatten(x);
  const int64_t n = x2.size(0), ne = cfg_.n_routed_experts;
  MoeRouting r = route(x2);
  set_aux(r);
  ag::Var zeros(Tensor::zeros({n, ne}, r.topk_weight.dtype(), x.device()));
  ag::Var gates = ag::scatter_add(zeros, 1, r.topk_index, r.topk_weight);
  ag::Var out;
  for (int64_t e = 0; e < ne; ++e) {
    ag::Var term = ag::mul(expert(e).forward(x2), ag::slice(gates, 1, e, e + 1));
    out = out.defined() ? ag::add(out, term) : term;
  }
  return finish(out, x2, x);
}

}  // namespace sl::layers
