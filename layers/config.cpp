// Parsing, validation and printing of the `model:` section (layers/config_io.h). One
// yaml::Section per mapping records which keys it consumed and where each one came from, so
// unknown keys and invalid values are reported with the key's own file:line (or --set argument).
#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cmath>
#include <map>
#include <optional>
#include <sstream>

#include "layers/config_io.h"
#include "layers/yaml_section.h"

namespace sl::layers {
namespace {

struct Invalid {
  std::string key;  // dotted, below "model."
  std::string message;
};

std::string fmt(double v) {
  if (std::isinf(v)) return v > 0 ? ".inf" : "-.inf";
  if (std::isnan(v)) return ".nan";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), v);
  std::string s(buf, res.ptr);
  // Keep it a float in YAML's eyes (and to a reader): "1" -> "1.0".
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

template <class T>
std::string str(const T& v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

std::optional<Invalid> positive(const std::string& key, double v) {
  if (v > 0) return std::nullopt;
  return Invalid{key, str(v) + " must be positive"};
}

std::optional<Invalid> find_invalid(const ModelConfig& c) {
  for (auto [key, v] : {std::pair<const char*, double>{"vocab_size", double(c.vocab_size)},
                        {"d_model", double(c.d_model)},
                        {"norm_eps", c.norm_eps},
                        {"init_std", c.init_std}})
    if (auto e = positive(key, v)) return e;
  if (c.pattern.empty()) return Invalid{"pattern", "must name at least one block"};
  for (size_t i = 0; i < c.pattern.size(); ++i)
    if (std::string("M*-ES").find(c.pattern[i]) == std::string::npos) {
      // Streamed, not concatenated: GCC 12 warns falsely (-Wrestrict) on '"'" + string(1, ch)'.
      std::ostringstream msg;
      msg << "'" << c.pattern[i] << "' at position " << i << " of \"" << c.pattern
          << "\" is not a block letter (M Mamba-2, * attention, - MLP, E mixture of experts, "
             "S superlinear attention)";
      return Invalid{"pattern", msg.str()};
    }

  const Mamba2Config& m = c.mamba;
  for (auto [key, v] : {std::pair<const char*, double>{"mamba.n_heads", double(m.n_heads)},
                        {"mamba.head_dim", double(m.head_dim)},
                        {"mamba.state_size", double(m.state_size)},
                        {"mamba.n_groups", double(m.n_groups)},
                        {"mamba.conv_kernel", double(m.conv_kernel)},
                        {"mamba.chunk_size", double(m.chunk_size)},
                        {"mamba.dt_min", m.dt_min},
                        {"mamba.dt_max", m.dt_max}})
    if (auto e = positive(key, v)) return e;
  if (m.n_heads % m.n_groups != 0)
    return Invalid{"mamba.n_groups",
                   str(m.n_groups) + " does not divide mamba.n_heads = " + str(m.n_heads)};
  if (m.dt_min > m.dt_max)
    return Invalid{"mamba.dt_min",
                   str(m.dt_min) + " is larger than mamba.dt_max = " + str(m.dt_max)};
  if (m.dt_init_floor < 0) return Invalid{"mamba.dt_init_floor", str(m.dt_init_floor) + " < 0"};
  if (m.dt_limit_min < 0 || m.dt_limit_min > m.dt_limit_max)
    return Invalid{"mamba.dt_limit_min", str(m.dt_limit_min) + " must be in [0, dt_limit_max = " +
                                             fmt(m.dt_limit_max) + "]"};

  const AttentionConfig& a = c.attention;
  for (auto [key, v] : {std::pair<const char*, double>{"attention.n_heads", double(a.n_heads)},
                        {"attention.n_kv_heads", double(a.n_kv_heads)},
                        {"attention.head_dim", double(a.head_dim)},
                        {"attention.rope_theta", a.rope_theta}})
    if (auto e = positive(key, v)) return e;
  if (a.n_heads % a.n_kv_heads != 0)
    return Invalid{"attention.n_kv_heads",
                   str(a.n_kv_heads) + " does not divide attention.n_heads = " + str(a.n_heads)};
  if (a.rope && a.head_dim % 2 != 0)
    return Invalid{"attention.head_dim", str(a.head_dim) + " must be even with rope"};
  if (a.sliding_window < 0)
    return Invalid{"attention.sliding_window", str(a.sliding_window) + " < 0"};

  if (auto e = positive("mlp.intermediate_size", double(c.mlp.intermediate_size))) return e;
  if (c.mlp.activation != "relu2" && c.mlp.activation != "swiglu")
    return Invalid{"mlp.activation",
                   "\"" + c.mlp.activation + "\" is not one of \"relu2\", \"swiglu\""};

  const MoeConfig& e = c.moe;
  for (auto [key, v] :
       {std::pair<const char*, double>{"moe.n_routed_experts", double(e.n_routed_experts)},
        {"moe.intermediate_size", double(e.intermediate_size)},
        {"moe.shared_intermediate_size", double(e.shared_intermediate_size)},
        {"moe.routed_scaling_factor", e.routed_scaling_factor}})
    if (auto err = positive(key, v)) return err;
  if (e.top_k < 1 || e.top_k > e.n_routed_experts)
    return Invalid{"moe.top_k", str(e.top_k) + " must be in [1, moe.n_routed_experts = " +
                                    str(e.n_routed_experts) + "]"};
  if (e.n_shared_experts != 0 && e.n_shared_experts != 1)
    return Invalid{"moe.n_shared_experts", str(e.n_shared_experts) + " must be 0 or 1"};
  if (e.score != "softmax" && e.score != "sigmoid")
    return Invalid{"moe.score", "\"" + e.score + "\" is not one of \"softmax\", \"sigmoid\""};
  if (e.aux_loss_coef < 0) return Invalid{"moe.aux_loss_coef", str(e.aux_loss_coef) + " < 0"};

  Status s = kernels::validate(c.superlinear, c.superlinear_allow_no_coverage);
  if (!s.ok()) return Invalid{"superlinear", s.message()};
  return std::nullopt;
}

void read_superlinear(yaml::ParseContext* ctx, const YAML::Node& node, ModelConfig* c) {
  yaml::Section s(ctx, node, "model.superlinear");
  std::string preset;
  s.get("preset", &preset);
  if (preset == "balanced") {
    c->superlinear = kernels::SuperlinearConfig::balanced();
  } else if (preset == "upscaled") {
    c->superlinear = kernels::SuperlinearConfig::upscaled();
  } else if (!preset.empty()) {
    ctx->invalid("model.superlinear.preset",
                 "\"" + preset + "\" is not one of \"balanced\", \"upscaled\"");
  }
  kernels::SuperlinearConfig& sl = c->superlinear;
  s.get("p_inv", &sl.p_inv);
  s.get("p", &sl.p);
  s.get("q", &sl.q);
  s.get("s", &sl.s);
  s.get("k", &sl.k);
  s.get("f_b", &sl.f_b);
  s.get("f_f", &sl.f_f);
  s.get("allow_no_coverage", &c->superlinear_allow_no_coverage);
  s.finish();
}

}  // namespace

Status validate_model_config(const ModelConfig& cfg) {
  if (auto e = find_invalid(cfg))
    return Status::InvalidArgument("model." + e->key + ": " + e->message);
  return Status::Ok();
}

StatusOr<ModelConfig> parse_model_config(const YAML::Node& node, const std::string& file) {
  yaml::ParseContext ctx;
  ctx.file = file;
  return parse_model_config(node, &ctx);
}

StatusOr<ModelConfig> parse_model_config(const YAML::Node& node, yaml::ParseContext* ctx_ptr) {
  yaml::ParseContext& ctx = *ctx_ptr;
  ModelConfig c;
  yaml::Section top(&ctx, node, "model");
  top.get("vocab_size", &c.vocab_size);
  top.get("d_model", &c.d_model);
  top.get("pattern", &c.pattern);
  top.get("norm_eps", &c.norm_eps);
  top.get("tie_embeddings", &c.tie_embeddings);
  top.get("init_std", &c.init_std);
  top.get("residual_in_fp32", &c.residual_in_fp32);

  yaml::Section m(&ctx, top.child("mamba"), "model.mamba");
  m.get("n_heads", &c.mamba.n_heads);
  m.get("head_dim", &c.mamba.head_dim);
  m.get("state_size", &c.mamba.state_size);
  m.get("n_groups", &c.mamba.n_groups);
  m.get("conv_kernel", &c.mamba.conv_kernel);
  m.get("chunk_size", &c.mamba.chunk_size);
  m.get("use_conv_bias", &c.mamba.use_conv_bias);
  m.get("use_bias", &c.mamba.use_bias);
  m.get("dt_min", &c.mamba.dt_min);
  m.get("dt_max", &c.mamba.dt_max);
  m.get("dt_init_floor", &c.mamba.dt_init_floor);
  m.get("dt_limit_min", &c.mamba.dt_limit_min);
  m.get("dt_limit_max", &c.mamba.dt_limit_max);
  m.finish();

  yaml::Section a(&ctx, top.child("attention"), "model.attention");
  a.get("n_heads", &c.attention.n_heads);
  a.get("n_kv_heads", &c.attention.n_kv_heads);
  a.get("head_dim", &c.attention.head_dim);
  a.get("bias", &c.attention.bias);
  a.get("rope", &c.attention.rope);
  a.get("rope_theta", &c.attention.rope_theta);
  a.get("sliding_window", &c.attention.sliding_window);
  a.finish();

  yaml::Section p(&ctx, top.child("mlp"), "model.mlp");
  p.get("intermediate_size", &c.mlp.intermediate_size);
  p.get("activation", &c.mlp.activation);
  p.get("bias", &c.mlp.bias);
  p.finish();

  yaml::Section e(&ctx, top.child("moe"), "model.moe");
  e.get("n_routed_experts", &c.moe.n_routed_experts);
  e.get("n_shared_experts", &c.moe.n_shared_experts);
  e.get("top_k", &c.moe.top_k);
  e.get("intermediate_size", &c.moe.intermediate_size);
  e.get("shared_intermediate_size", &c.moe.shared_intermediate_size);
  e.get("score", &c.moe.score);
  e.get("norm_topk_prob", &c.moe.norm_topk_prob);
  e.get("routed_scaling_factor", &c.moe.routed_scaling_factor);
  e.get("aux_loss_coef", &c.moe.aux_loss_coef);
  e.finish();

  read_superlinear(&ctx, top.child("superlinear"), &c);
  top.finish();
  if (!ctx.error.ok()) return ctx.error;

  if (c.attention.head_dim == 0 && c.attention.n_heads > 0) {
    if (c.d_model % c.attention.n_heads != 0)
      ctx.invalid("model.attention.n_heads",
                  str(c.attention.n_heads) + " does not divide d_model = " + str(c.d_model) +
                      " (attention.head_dim 0 means d_model / n_heads)");
    else
      c.attention.head_dim = c.d_model / c.attention.n_heads;
  }
  if (!ctx.error.ok()) return ctx.error;
  if (auto bad = find_invalid(c)) {
    ctx.invalid("model." + bad->key, bad->message);
    return ctx.error;
  }
  return c;
}

StatusOr<ModelConfig> load_model_config(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    return Status::IoError(path + ": cannot open");
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(path + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  if (!root.IsMap() || !root["model"])
    return Status::InvalidArgument(path + ": no `model:` section");
  return parse_model_config(root["model"], path);
}

std::string to_yaml(const ModelConfig& c, int indent) {
  std::ostringstream os;
  const std::string pad(size_t(indent), ' ');
  auto b = [](bool v) { return v ? "true" : "false"; };
  auto q = [](const std::string& s) { return "\"" + s + "\""; };
  os << pad << "vocab_size: " << c.vocab_size << "\n"
     << pad << "d_model: " << c.d_model << "\n"
     << pad << "pattern: " << q(c.pattern) << "\n"
     << pad << "norm_eps: " << fmt(c.norm_eps) << "\n"
     << pad << "tie_embeddings: " << b(c.tie_embeddings) << "\n"
     << pad << "init_std: " << fmt(c.init_std) << "\n"
     << pad << "residual_in_fp32: " << b(c.residual_in_fp32) << "\n";
  const std::string in = pad + "  ";
  const Mamba2Config& m = c.mamba;
  os << pad << "mamba:\n"
     << in << "n_heads: " << m.n_heads << "\n"
     << in << "head_dim: " << m.head_dim << "\n"
     << in << "state_size: " << m.state_size << "\n"
     << in << "n_groups: " << m.n_groups << "\n"
     << in << "conv_kernel: " << m.conv_kernel << "\n"
     << in << "chunk_size: " << m.chunk_size << "\n"
     << in << "use_conv_bias: " << b(m.use_conv_bias) << "\n"
     << in << "use_bias: " << b(m.use_bias) << "\n"
     << in << "dt_min: " << fmt(m.dt_min) << "\n"
     << in << "dt_max: " << fmt(m.dt_max) << "\n"
     << in << "dt_init_floor: " << fmt(m.dt_init_floor) << "\n"
     << in << "dt_limit_min: " << fmt(m.dt_limit_min) << "\n"
     << in << "dt_limit_max: " << fmt(m.dt_limit_max) << "\n";
  const AttentionConfig& a = c.attention;
  os << pad << "attention:\n"
     << in << "n_heads: " << a.n_heads << "\n"
     << in << "n_kv_heads: " << a.n_kv_heads << "\n"
     << in << "head_dim: " << a.head_dim << "\n"
     << in << "bias: " << b(a.bias) << "\n"
     << in << "rope: " << b(a.rope) << "\n"
     << in << "rope_theta: " << fmt(a.rope_theta) << "\n"
     << in << "sliding_window: " << a.sliding_window << "\n";
  os << pad << "mlp:\n"
     << in << "intermediate_size: " << c.mlp.intermediate_size << "\n"
     << in << "activation: " << q(c.mlp.activation) << "\n"
     << in << "bias: " << b(c.mlp.bias) << "\n";
  const MoeConfig& e = c.moe;
  os << pad << "moe:\n"
     << in << "n_routed_experts: " << e.n_routed_experts << "\n"
     << in << "n_shared_experts: " << e.n_shared_experts << "\n"
     << in << "top_k: " << e.top_k << "\n"
     << in << "intermediate_size: " << e.intermediate_size << "\n"
     << in << "shared_intermediate_size: " << e.shared_intermediate_size << "\n"
     << in << "score: " << q(e.score) << "\n"
     << in << "norm_topk_prob: " << b(e.norm_topk_prob) << "\n"
     << in << "routed_scaling_factor: " << fmt(e.routed_scaling_factor) << "\n"
     << in << "aux_loss_coef: " << fmt(e.aux_loss_coef) << "\n";
  const kernels::SuperlinearConfig& s = c.superlinear;
  os << pad << "superlinear:\n"
     << in << "p_inv: " << s.p_inv << "\n"
     << in << "p: " << fmt(s.p) << "\n"
     << in << "q: " << fmt(s.q) << "\n"
     << in << "s: " << s.s << "\n"
     << in << "k: " << s.k << "\n"
     << in << "f_b: " << fmt(s.f_b) << "\n"
     << in << "f_f: " << fmt(s.f_f) << "\n"
     << in << "allow_no_coverage: " << b(c.superlinear_allow_no_coverage) << "\n";
  return os.str();
}

}  // namespace sl::layers
