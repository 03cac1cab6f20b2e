// HybridLM: blocks built from the pattern letters, the pre-norm residual stream (Note [residual
// in fp32]), the LM head and the loss.
#include "layers/hybrid_lm.h"

#include <sstream>

#include "autograd/checkpoint.h"
#include "autograd/ops.h"
#include "layers/attention.h"
#include "layers/config_io.h"
#include "layers/mamba2.h"
#include "layers/mlp.h"
#include "layers/superlinear_attention.h"

namespace sl::layers {
namespace {

template <class M>
std::function<ag::Var(const ag::Var&, const SequenceInfo&)> bind(M& m) {
  return [&m](const ag::Var& x, const SequenceInfo& seq) { return m.forward(x, seq); };
}

// Thousands separators: 1234567 -> "1,234,567".
std::string grouped(int64_t n) {
  std::string s = std::to_string(n), out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i > 0 && (s.size() - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return out;
}

}  // namespace

HybridBlock::HybridBlock(const ModelConfig& cfg, char kind, Generator& gen)
    : kind_(kind), aux_in_loss_(cfg.moe.aux_loss_coef > 0) {
  norm_ = &register_module("norm", std::make_unique<RMSNorm>(cfg.d_model, cfg.norm_eps));
  switch (kind) {
    case 'M':
      mixer_ = bind(register_module("mixer", std::make_unique<Mamba2Mixer>(cfg, gen)));
      break;
    case '*':
      mixer_ = bind(register_module("mixer", std::make_unique<Attention>(cfg, gen)));
      break;
    case 'S':
      superlinear_ = &register_module("mixer", std::make_unique<SuperlinearAttention>(cfg, gen));
      mixer_ = bind(*superlinear_);
      break;
    case '-':
      mixer_ = bind(register_module(
          "mixer", std::make_unique<Mlp>(cfg.d_model, cfg.mlp.intermediate_size, cfg.mlp.activation,
                                         cfg.mlp.bias, cfg.init_std, gen)));
      break;
    case 'E':
      moe_ = &register_module("mixer", std::make_unique<Moe>(cfg, gen));
      mixer_ = bind(*moe_);
      break;
    default:
      SL_FAIL() << "HybridBlock: unknown block letter '" << kind << "'";
  }
}

const char* HybridBlock::mixer_name() const {
  switch (kind_) {
    case 'M':
      return "Mamba2Mixer";
    case '*':
      return "Attention";
    case 'S':
      return "SuperlinearAttention";
    case '-':
      return "Mlp";
    default:
      return "Moe";
  }
}

ag::Var HybridBlock::forward(const ag::Var& h, const SequenceInfo& seq) {
  aux_ = ag::Var();
  if (!recompute_) return ag::add(h, mixer_(norm_->forward(h), seq));
  auto block = [this, seq](const std::vector<ag::Var>& in) {
    return ag::add(in[0], mixer_(norm_->forward(in[0]), seq));
  };
  if (!moe_ || !aux_in_loss_) return ag::checkpoint(block, {h});
  std::vector<ag::Var> out = ag::checkpoint_outputs(
      [this, block](const std::vector<ag::Var>& in) {
        ag::Var y = block(in);
        return std::vector<ag::Var>{y, moe_->aux_loss()};
      },
      {h});
  aux_ = out[1];
  return out[0];
}

ag::Var HybridBlock::aux_loss() const {
  if (aux_.defined() || !moe_) return aux_;
  return moe_->aux_loss();
}

HybridBackbone::HybridBackbone(const ModelConfig& cfg, Generator& gen)
    : residual_in_fp32_(cfg.residual_in_fp32) {
  embeddings_ = &register_module(
      "embeddings", std::make_unique<Embedding>(cfg.vocab_size, cfg.d_model, cfg.init_std, gen));
  layers_ = &register_module("layers", std::make_unique<ModuleList<HybridBlock>>());
  for (char kind : cfg.pattern) layers_->append(std::make_unique<HybridBlock>(cfg, kind, gen));
  norm_f_ = &register_module("norm_f", std::make_unique<RMSNorm>(cfg.d_model, cfg.norm_eps));
}

ag::Var HybridBackbone::forward(const Tensor& ids, const SequenceInfo& seq) {
  SL_CHECK(ids.defined() && ids.dim() == 2)
      << "HybridLM: ids must be [B, T], got " << (ids.defined() ? ids.shape_str() : "undefined");
  ag::Var h = embeddings_->forward(ids);
  if (residual_in_fp32_ && h.dtype() != DType::F64) h = cast(h, DType::F32);
  for (int64_t i = 0; i < layers_->size(); ++i) h = (*layers_)[i].forward(h, seq);
  return norm_f_->forward(h);
}

HybridLM::HybridLM(const ModelConfig& cfg, Generator& gen) : cfg_(cfg) {
  Status s = validate_model_config(cfg);
  SL_CHECK(s.ok()) << "HybridLM: " << s.message();
  backbone_ = &register_module("backbone", std::make_unique<HybridBackbone>(cfg, gen));
  if (!cfg.tie_embeddings)
    lm_head_ = &register_module(
        "lm_head", std::make_unique<Linear>(cfg.d_model, cfg.vocab_size, false, cfg.init_std, gen));
}

void HybridLM::set_recompute(const std::string& kinds) {
  for (char k : kinds)
    SL_CHECK(std::string("M*S-E").find(k) != std::string::npos)
        << "HybridLM::set_recompute: '" << k << "' is not a block letter (M * S - E)";
  for (int64_t i = 0; i < backbone_->num_layers(); ++i)
    backbone_->layer(i).set_recompute(kinds.find(backbone_->layer(i).kind()) != std::string::npos);
}

void HybridLM::set_superlinear_keep_partials(bool on) {
  for (int64_t i = 0; i < backbone_->num_layers(); ++i)
    if (SuperlinearAttention* s = backbone_->layer(i).superlinear()) s->set_keep_partials(on);
}

ag::Var HybridLM::lm_head_weight() const {
  return lm_head_ ? lm_head_->weight() : backbone_->embeddings().weight();
}

ag::Var HybridLM::forward(const Tensor& ids, const SequenceInfo& seq) {
  return ag::linear(backbone_->forward(ids, seq), lm_head_weight());
}

LmLoss HybridLM::loss(const Tensor& ids, const Tensor& targets, const SequenceInfo& seq,
                      int64_t ignore_index) {
  SL_CHECK(targets.defined() && targets.shape() == ids.shape())
      << "HybridLM::loss: targets " << (targets.defined() ? targets.shape_str() : "undefined")
      << " must have the shape of ids " << ids.shape_str();
  ag::Var logits = forward(ids, seq);
  const int64_t n = ids.numel();
  LmLoss out;
  out.ce = ag::cross_entropy(ag::reshape(logits, {n, cfg_.vocab_size}), targets.reshape({n}),
                             ignore_index);
  for (int64_t i = 0; i < backbone_->num_layers(); ++i)
    if (ag::Var a = backbone_->layer(i).aux_loss(); a.defined())
      out.aux = out.aux.defined() ? ag::add(out.aux, a) : a;
  out.total = out.ce;
  if (out.aux.defined() && cfg_.moe.aux_loss_coef > 0) {
    // A tensor coefficient, not ag::scale: scale's alpha is a float, which would round the
    // coefficient of an f64 model.
    ag::Var coef(Tensor::full({}, cfg_.moe.aux_loss_coef, out.aux.dtype(), out.aux.device()));
    out.total = ag::add(out.ce, ag::mul(out.aux, coef));
  }
  return out;
}

std::string HybridLM::summary() const {
  std::ostringstream os;
  os << "HybridLM \"" << cfg_.pattern << "\": " << backbone_->num_layers() << " blocks, d_model "
     << cfg_.d_model << ", vocab " << cfg_.vocab_size
     << (cfg_.tie_embeddings ? ", tied embeddings" : "") << "\n";
  os << "  backbone.embeddings  " << grouped(backbone_->embeddings().num_parameters()) << "\n";
  for (int64_t i = 0; i < backbone_->num_layers(); ++i) {
    const HybridBlock& b = backbone_->layer(i);
    os << "  backbone.layers." << i << "  " << b.kind() << " " << b.mixer_name() << "  "
       << grouped(b.num_parameters()) << "\n";
  }
  os << "  backbone.norm_f  " << grouped(cfg_.d_model) << "\n";
  if (lm_head_) os << "  lm_head  " << grouped(lm_head_->num_parameters()) << "\n";
  os << "  total  " << grouped(num_parameters()) << " parameters\n";
  return os.str();
}

}  // namespace sl::layers
