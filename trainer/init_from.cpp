// init_from / convert_attention (trainer/init_from.h): the source's config is compared with
// ours, its weights are gathered under our names (plus Qs := Q for converted blocks) and handed
// to the Hugging Face loader, which checks every name and shape.
#include "trainer/init_from.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <sstream>
#include <vector>

#include "layers/config_io.h"
#include "layers/hf_checkpoint.h"
#include "trainer/checkpoint.h"

namespace sl::trainer {
namespace {

namespace fs = std::filesystem;

template <class T>
std::string str(const T& v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

// Adds <layer>.mixer.qs_proj.* as copies of q_proj.* for every S block the source lacks them in.
void add_qs_from_q(const layers::ModelConfig& cfg, layers::SafetensorsData* w) {
  for (size_t i = 0; i < cfg.pattern.size(); ++i) {
    if (cfg.pattern[i] != 'S') continue;
    for (const char* part : {"weight", "bias"}) {
      const std::string base = "layers." + std::to_string(i) + ".mixer.";
      for (const char* prefix : {"backbone.", "model."}) {
        const Tensor* q = w->find(prefix + base + "q_proj." + part);
        const std::string qs = prefix + base + "qs_proj." + part;
        if (q && !w->find(qs)) {
          w->add(qs, q->clone());
          break;
        }
      }
    }
  }
}

}  // namespace

Status convert_attention_pattern(const std::string& mode, layers::ModelConfig* m) {
  if (mode.empty()) return Status::Ok();
  if (mode != "superlinear")
    return Status::InvalidArgument("\"" + mode + "\" is not one of \"\", \"superlinear\"");
  for (char& ch : m->pattern)
    if (ch == '*') ch = 'S';
  return layers::validate_model_config(*m);
}

std::string architecture_difference(const layers::ModelConfig& a, const layers::ModelConfig& b) {
  std::vector<std::tuple<std::string, std::string, std::string>> f = {
      {"vocab_size", str(a.vocab_size), str(b.vocab_size)},
      {"d_model", str(a.d_model), str(b.d_model)},
      {"pattern", a.pattern, b.pattern},
      {"norm_eps", str(a.norm_eps), str(b.norm_eps)},
      {"tie_embeddings", str(a.tie_embeddings), str(b.tie_embeddings)},
      {"mamba.n_heads", str(a.mamba.n_heads), str(b.mamba.n_heads)},
      {"mamba.head_dim", str(a.mamba.head_dim), str(b.mamba.head_dim)},
      {"mamba.state_size", str(a.mamba.state_size), str(b.mamba.state_size)},
      {"mamba.n_groups", str(a.mamba.n_groups), str(b.mamba.n_groups)},
      {"mamba.conv_kernel", str(a.mamba.conv_kernel), str(b.mamba.conv_kernel)},
      {"mamba.use_conv_bias", str(a.mamba.use_conv_bias), str(b.mamba.use_conv_bias)},
      {"mamba.use_bias", str(a.mamba.use_bias), str(b.mamba.use_bias)},
      {"mamba.dt_limit_min", str(a.mamba.dt_limit_min), str(b.mamba.dt_limit_min)},
      {"mamba.dt_limit_max", str(a.mamba.dt_limit_max), str(b.mamba.dt_limit_max)},
      {"attention.n_heads", str(a.attention.n_heads), str(b.attention.n_heads)},
      {"attention.n_kv_heads", str(a.attention.n_kv_heads), str(b.attention.n_kv_heads)},
      {"attention.head_dim", str(a.attention.head_dim), str(b.attention.head_dim)},
      {"attention.bias", str(a.attention.bias), str(b.attention.bias)},
      {"attention.rope", str(a.attention.rope), str(b.attention.rope)},
      {"attention.sliding_window", str(a.attention.sliding_window),
       str(b.attention.sliding_window)},
      {"mlp.intermediate_size", str(a.mlp.intermediate_size), str(b.mlp.intermediate_size)},
      {"mlp.activation", a.mlp.activation, b.mlp.activation},
      {"mlp.bias", str(a.mlp.bias), str(b.mlp.bias)},
      {"moe.n_routed_experts", str(a.moe.n_routed_experts), str(b.moe.n_routed_experts)},
      {"moe.n_shared_experts", str(a.moe.n_shared_experts), str(b.moe.n_shared_experts)},
      {"moe.top_k", str(a.moe.top_k), str(b.moe.top_k)},
      {"moe.intermediate_size", str(a.moe.intermediate_size), str(b.moe.intermediate_size)},
      {"moe.shared_intermediate_size", str(a.moe.shared_intermediate_size),
       str(b.moe.shared_intermediate_size)},
      {"moe.score", a.moe.score, b.moe.score},
      {"moe.norm_topk_prob", str(a.moe.norm_topk_prob), str(b.moe.norm_topk_prob)},
      {"moe.routed_scaling_factor", str(a.moe.routed_scaling_factor),
       str(b.moe.routed_scaling_factor)}};
  const bool uses_attn = a.pattern.find_first_of("*S") != std::string::npos;
  const bool uses_moe = a.pattern.find('E') != std::string::npos;
  const bool uses_mamba = a.pattern.find('M') != std::string::npos;
  const bool uses_mlp = a.pattern.find_first_of("-E") != std::string::npos;
  for (const auto& [key, x, y] : f) {
    if ((key.rfind("attention.", 0) == 0 && !uses_attn) ||
        (key.rfind("moe.", 0) == 0 && !uses_moe) || (key.rfind("mamba.", 0) == 0 && !uses_mamba) ||
        (key.rfind("mlp.", 0) == 0 && !uses_mlp))
      continue;
    if (x != y) return "model." + key + ": " + x + " here, " + y + " in the source";
  }
  return "";
}

StatusOr<std::string> init_model_from(const std::string& path,
                                      const std::string& convert_attention,
                                      layers::HybridLM* model) {
  const bool convert = convert_attention == "superlinear";
  layers::ModelConfig source;
  layers::SafetensorsData weights;
  std::string what;
  if (layers::is_hf_model_dir(path)) {
    StatusOr<layers::ModelConfig> c = layers::read_hf_config(path);
    if (!c.ok()) return c.status();
    source = c.value();
    StatusOr<layers::SafetensorsData> w = layers::read_safetensors_dir(path);
    if (!w.ok()) return w.status();
    weights = std::move(w).value();
    what = "Hugging Face model " + path;
  } else {
    CheckpointData ck;
    std::string file = path;
    if (fs::is_directory(path)) {
      std::vector<std::string> warnings;
      StatusOr<std::string> p = latest_valid_checkpoint(path, &ck, &warnings);
      if (!p.ok())
        return Status::NotFound("init_from " + path +
                                ": neither a Hugging Face directory (config.json) nor a "
                                "directory with a valid checkpoint");
      file = p.value();
    } else {
      StatusOr<CheckpointData> d = read_checkpoint(path);
      if (!d.ok()) return d.status();
      ck = std::move(d).value();
    }
    auto text = ck.texts.find("model_config");
    if (text == ck.texts.end()) return Status::Corruption(file + ": no model_config record");
    YAML::Node node;
    try {
      node = YAML::Load(text->second);
    } catch (const YAML::Exception& e) {
      return Status::Corruption(file + ": model_config record is not YAML: " + e.msg);
    }
    StatusOr<layers::ModelConfig> c = layers::parse_model_config(node, file + " (model_config)");
    if (!c.ok()) return c.status();
    source = c.value();
    for (const auto& [name, t] : ck.tensors)
      if (name.rfind("param/", 0) == 0) weights.add(name.substr(6), t);
    what = "checkpoint " + file;
  }
  if (convert)
    for (char& ch : source.pattern)
      if (ch == '*') ch = 'S';
  std::string diff = architecture_difference(model->config(), source);
  if (!diff.empty())
    return Status::InvalidArgument("init_from " + path + ": " + diff +
                                   (convert ? " (after convert_attention: superlinear)" : ""));
  if (convert) add_qs_from_q(model->config(), &weights);
  if (Status s = layers::load_hf_weights(*model, weights, path); !s.ok()) return s;
  return "initialised from " + what +
         (convert ? " (attention converted to superlinear, Qs = Q)" : "");
}

}  // namespace sl::trainer
