// Hugging Face NemotronH checkpoints (layers/hf_checkpoint.h). The config is read against a
// table of transformers' defaults; weight names are normalised to ours before matching.
#include "layers/hf_checkpoint.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "layers/config_io.h"

namespace sl::layers {
namespace {

namespace fs = std::filesystem;

// Keys that do not change what the model computes (generation, bookkeeping, initialisation,
// kernel choice), or that are checked elsewhere.
const std::set<std::string> kIgnored = {
    "architectures", "model_type", "transformers_version", "torch_dtype", "dtype",
    "_name_or_path", "auto_map", "bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id",
    "decoder_start_token_id", "use_cache", "num_logits_to_keep", "max_position_embeddings",
    "output_hidden_states", "output_attentions", "return_dict", "use_mamba_kernels",
    "mamba_ssm_cache_dtype", "expand", "mamba_expand", "time_step_rank", "rescale_prenorm_residual",
    "num_hidden_layers", "moe_shared_expert_overlap", "mamba_proj_bias", "hidden_dropout",
    "tokenizer_class", "id2label", "label2id", "chunk_size_feed_forward", "is_encoder_decoder",
    "is_decoder", "add_cross_attention", "problem_type", "mtp_layers_block_type",
    "mtp_hybrid_override_pattern", "tie_encoder_decoder", "use_bfloat16", "torchscript",
    "output_router_logits"};

// Legacy names NemotronHConfig still accepts; the legacy value wins, as there.
const std::map<std::string, std::string> kAliases = {
    {"mamba_n_groups", "n_groups"},        {"mamba_d_conv", "conv_kernel"},
    {"mamba_dt_min", "time_step_min"},     {"mamba_dt_max", "time_step_max"},
    {"mamba_dt_limit", "time_step_limit"}, {"mamba_dt_init_floor", "time_step_floor"},
    {"mamba_conv_bias", "use_conv_bias"},  {"mamba_chunk_size", "chunk_size"},
    {"attention_head_dim", "head_dim"},    {"layer_types", "layers_block_type"},
    {"num_local_experts", "n_routed_experts"}};

class ConfigReader {
 public:
  ConfigReader(const YAML::Node& root, std::string file) : file_(std::move(file)) {
    for (const auto& kv : root) {
      std::string key = kv.first.as<std::string>();
      auto alias = kAliases.find(key);
      if (alias == kAliases.end()) {
        vals_.emplace(key, kv.second);  // a canonical key does not override an alias
      } else {
        vals_[alias->second] = kv.second;
        used_.insert(key);
      }
    }
  }

  bool present(const std::string& key) const { return vals_.count(key) > 0; }
  bool has(const std::string& key) const {
    auto it = vals_.find(key);
    return it != vals_.end() && !it->second.IsNull();
  }
  const YAML::Node* node(const std::string& key) {
    used_.insert(key);
    auto it = vals_.find(key);
    return it == vals_.end() || it->second.IsNull() ? nullptr : &it->second;
  }
  void fail(const std::string& key, const std::string& what) {
    if (error_.ok()) error_ = Status::InvalidArgument(file_ + ": " + key + ": " + what);
  }
  int64_t integer(const std::string& key, int64_t def) {
    const YAML::Node* n = node(key);
    if (!n) return def;
    try {
      return n->as<int64_t>();
    } catch (const YAML::Exception&) {
      fail(key, "expected an integer, got " + text(*n));
      return def;
    }
  }
  double real(const std::string& key, double def) {
    const YAML::Node* n = node(key);
    return n ? to_double(key, *n, def) : def;
  }
  bool boolean(const std::string& key, bool def) {
    const YAML::Node* n = node(key);
    if (!n) return def;
    try {
      return n->as<bool>();
    } catch (const YAML::Exception&) {
      fail(key, "expected true or false, got " + text(*n));
      return def;
    }
  }
  std::string string(const std::string& key, const std::string& def) {
    const YAML::Node* n = node(key);
    if (!n) return def;
    if (!n->IsScalar()) fail(key, "expected a string");
    return n->IsScalar() ? n->as<std::string>() : def;
  }
  // Python's json writes Infinity; transformers 5 writes {"__float__": "Infinity"}.
  double to_double(const std::string& key, const YAML::Node& n, double def) {
    if (n.IsMap() && n.size() == 1 && n["__float__"]) return to_double(key, n["__float__"], def);
    if (n.IsScalar()) {
      const std::string s = n.as<std::string>();
      if (s == "Infinity") return std::numeric_limits<double>::infinity();
      if (s == "-Infinity") return -std::numeric_limits<double>::infinity();
      if (s == "NaN") return std::numeric_limits<double>::quiet_NaN();
    }
    try {
      return n.as<double>();
    } catch (const YAML::Exception&) {
      fail(key, "expected a number, got " + text(n));
      return def;
    }
  }
  // Every key neither read nor ignored is an error.
  void check_unknown() {
    for (const auto& [key, v] : vals_)
      if (!used_.count(key) && !kIgnored.count(key))
        fail(key, "unknown key (not a NemotronHConfig field this loader understands)");
  }
  const Status& error() const { return error_; }

 private:
  static std::string text(const YAML::Node& n) {
    if (n.IsScalar()) return "\"" + n.as<std::string>() + "\"";
    return n.IsSequence() ? "a list" : "an object";
  }

  std::string file_;
  std::map<std::string, YAML::Node> vals_;
  std::set<std::string> used_;
  Status error_;
};

// "linear_attention" / "mamba" -> 'M', ... (the names of transformers 5 and of older versions).
char block_letter(const std::string& type) {
  if (type == "linear_attention" || type == "mamba") return 'M';
  if (type == "full_attention" || type == "attention") return '*';
  if (type == "mlp") return '-';
  if (type == "moe") return 'E';
  return 0;
}

std::string num(double v) {
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  std::string s = buf;
  if (s.find_first_of(".eE") == std::string::npos) s += ".0";
  return s;
}

const char* torch_dtype(DType t) {
  switch (t) {
    case DType::BF16:
      return "bfloat16";
    case DType::F16:
      return "float16";
    case DType::F64:
      return "float64";
    default:
      return "float32";
  }
}

// A file name -> our parameter name ("model." -> "backbone.", "embedding" -> "embeddings").
std::string canonical(const std::string& name) {
  std::string n = name;
  if (n.rfind("model.", 0) == 0) n = "backbone." + n.substr(6);
  if (n == "backbone.embedding.weight") n = "backbone.embeddings.weight";
  return n;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

StatusOr<ModelConfig> parse_hf_config(const std::string& json_text, const std::string& file) {
  YAML::Node root;
  try {
    root = YAML::Load(json_text);
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(file + ":" + std::to_string(e.mark.line + 1) +
                                   ": not valid JSON: " + e.msg);
  }
  if (!root.IsMap()) return Status::InvalidArgument(file + ": not a JSON object");
  ConfigReader r(root, file);
  ModelConfig c;
  const std::string type = r.string("model_type", "nemotron_h");
  if (type != "nemotron_h")
    r.fail("model_type", "\"" + type + "\" is not \"nemotron_h\"");

  // Layers: layers_block_type, else hybrid_override_pattern, else transformers' default.
  if (const YAML::Node* list = r.node("layers_block_type")) {
    c.pattern.clear();
    if (!list->IsSequence()) r.fail("layers_block_type", "expected a list of layer types");
    for (size_t i = 0; list->IsSequence() && i < list->size(); ++i) {
      std::string t = (*list)[i].IsScalar() ? (*list)[i].as<std::string>() : "";
      char l = block_letter(t);
      if (!l) r.fail("layers_block_type", "\"" + t + "\" at position " + std::to_string(i) +
                                              " is not mamba/linear_attention, attention/"
                                              "full_attention, mlp or moe");
      c.pattern += l;
    }
    r.node("hybrid_override_pattern");
  } else if (r.has("hybrid_override_pattern")) {
    c.pattern = r.string("hybrid_override_pattern", "");
    for (size_t i = 0; i < c.pattern.size(); ++i)
      if (std::string("M*-E").find(c.pattern[i]) == std::string::npos)
        r.fail("hybrid_override_pattern", "'" + std::string(1, c.pattern[i]) + "' at position " +
                                              std::to_string(i) + " is not one of M * - E");
  } else {
    c.pattern = "ME*-";
  }

  c.vocab_size = r.integer("vocab_size", 131072);
  c.d_model = r.integer("hidden_size", 4096);
  c.tie_embeddings = r.boolean("tie_word_embeddings", false);
  c.init_std = r.real("initializer_range", 0.02);
  c.norm_eps = r.real("layer_norm_epsilon", 1e-5);
  if (r.has("rms_norm_eps") && r.real("rms_norm_eps", c.norm_eps) != c.norm_eps)
    r.fail("rms_norm_eps", "differs from layer_norm_epsilon, which NemotronH's norms use");
  r.node("rms_norm_eps");
  c.residual_in_fp32 = r.boolean("residual_in_fp32", false);

  Mamba2Config& m = c.mamba;
  m.n_heads = r.integer("mamba_num_heads", 128);
  m.head_dim = r.integer("mamba_head_dim", 64);
  m.state_size = r.integer("ssm_state_size", 128);
  m.n_groups = r.integer("n_groups", 8);
  m.conv_kernel = r.integer("conv_kernel", 4);
  m.chunk_size = r.integer("chunk_size", 128);
  m.use_conv_bias = r.boolean("use_conv_bias", true);
  m.use_bias = r.boolean("use_bias", false);
  m.dt_min = r.real("time_step_min", 0.001);
  m.dt_max = r.real("time_step_max", 0.1);
  m.dt_init_floor = r.real("time_step_floor", 1e-4);
  m.dt_limit_min = 0.0;
  m.dt_limit_max = std::numeric_limits<double>::infinity();
  if (const YAML::Node* lim = r.node("time_step_limit")) {
    if (!lim->IsSequence() || lim->size() != 2) {
      r.fail("time_step_limit", "expected [min, max]");
    } else {
      m.dt_limit_min = r.to_double("time_step_limit", (*lim)[0], 0.0);
      m.dt_limit_max = r.to_double("time_step_limit", (*lim)[1], m.dt_limit_max);
    }
  }
  if (std::string act = r.string("mamba_hidden_act", "silu"); act != "silu")
    r.fail("mamba_hidden_act", "\"" + act + "\" is not supported (only \"silu\")");

  AttentionConfig& a = c.attention;
  a.n_heads = r.integer("num_attention_heads", 32);
  // null means "as many as query heads" and "hidden_size / num_attention_heads".
  r.node("num_key_value_heads");
  r.node("head_dim");
  a.n_kv_heads = r.present("num_key_value_heads") && !r.has("num_key_value_heads")
                     ? a.n_heads
                     : r.integer("num_key_value_heads", 8);
  a.head_dim = r.present("head_dim") && !r.has("head_dim") && a.n_heads > 0
                   ? c.d_model / a.n_heads
                   : r.integer("head_dim", 128);
  if (r.boolean("attention_bias", false)) r.fail("attention_bias", "true is not supported");
  if (r.real("attention_dropout", 0.0) != 0.0)
    r.fail("attention_dropout", "dropout is not supported (must be 0)");
  if (r.has("sliding_window"))
    r.fail("sliding_window", "NemotronH attention with a sliding window is not supported");
  r.node("sliding_window");
  a.bias = false;
  a.rope = false;
  a.sliding_window = 0;

  c.mlp.intermediate_size = r.integer("intermediate_size", 21504);
  c.mlp.activation = r.string("mlp_hidden_act", "relu2");
  if (c.mlp.activation != "relu2")
    r.fail("mlp_hidden_act", "\"" + c.mlp.activation + "\" is not supported (only \"relu2\")");
  c.mlp.bias = r.boolean("mlp_bias", false);

  MoeConfig& e = c.moe;
  e.n_routed_experts = r.integer("n_routed_experts", 8);
  e.n_shared_experts = r.integer("n_shared_experts", 1);
  if (e.n_shared_experts != 1)
    r.fail("n_shared_experts", std::to_string(e.n_shared_experts) +
                                   " is not supported (NemotronH builds exactly one)");
  e.top_k = r.integer("num_experts_per_tok", 2);
  e.intermediate_size = r.integer("moe_intermediate_size", 7688);
  e.shared_intermediate_size = r.integer("moe_shared_expert_intermediate_size", 7688);
  e.norm_topk_prob = r.boolean("norm_topk_prob", true);
  e.routed_scaling_factor = r.real("routed_scaling_factor", 1.0);
  e.score = "sigmoid";
  e.aux_loss_coef = 0.0;
  if (r.has("moe_latent_size")) r.fail("moe_latent_size", "latent MoE projections are not supported");
  r.node("moe_latent_size");
  if (int64_t g = r.integer("n_group", 1); g != 1)
    r.fail("n_group", std::to_string(g) + " is not supported (only 1)");
  if (int64_t g = r.integer("topk_group", 1); g != 1)
    r.fail("topk_group", std::to_string(g) + " is not supported (only 1)");
  if (int64_t n = r.integer("num_nextn_predict_layers", 0); n != 0)
    r.fail("num_nextn_predict_layers", "multi-token prediction layers are not supported");
  if (c.mlp.bias && c.pattern.find('E') != std::string::npos)
    r.fail("mlp_bias", "true with MoE layers is not supported (our experts would get biases)");
  r.check_unknown();
  if (!r.error().ok()) return r.error();
  if (Status s = validate_model_config(c); !s.ok())
    return Status::InvalidArgument(file + ": " + s.message());
  return c;
}

StatusOr<ModelConfig> read_hf_config(const std::string& dir) {
  const std::string path = (fs::path(dir) / "config.json").string();
  std::ifstream in(path);
  if (!in) return Status::IoError(path + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_hf_config(ss.str(), path);
}

bool is_hf_model_dir(const std::string& dir) {
  return fs::is_directory(dir) && fs::exists(fs::path(dir) / "config.json");
}

StatusOr<std::string> hf_config_json(const ModelConfig& c, DType dtype) {
  auto bad = [](const std::string& key, const std::string& what) {
    return Status::InvalidArgument("model." + key + ": " + what +
                                   " has no Hugging Face NemotronH equivalent");
  };
  if (c.pattern.find('S') != std::string::npos) return bad("pattern", "'S' (superlinear attention)");
  const bool has_attn = c.pattern.find('*') != std::string::npos;
  const bool has_moe = c.pattern.find('E') != std::string::npos;
  const bool has_mlp = c.pattern.find('-') != std::string::npos;
  if (has_attn && c.attention.rope) return bad("attention.rope", "RoPE");
  if (has_attn && c.attention.sliding_window > 0) return bad("attention.sliding_window", "a window");
  if (has_attn && c.attention.bias) return bad("attention.bias", "an attention bias");
  if ((has_mlp || has_moe) && c.mlp.activation != "relu2")
    return bad("mlp.activation", "\"" + c.mlp.activation + "\"");
  if (has_moe && c.moe.score != "sigmoid") return bad("moe.score", "\"" + c.moe.score + "\"");
  if (has_moe && c.moe.n_shared_experts != 1) return bad("moe.n_shared_experts", "0");
  if (has_moe && c.mlp.bias) return bad("mlp.bias", "a bias in routed experts");
  auto b = [](bool v) { return v ? "true" : "false"; };
  std::ostringstream os;
  os << "{\n"
     << "  \"architectures\": [\"NemotronHForCausalLM\"],\n"
     << "  \"model_type\": \"nemotron_h\",\n"
     << "  \"dtype\": \"" << torch_dtype(dtype) << "\",\n"
     << "  \"hybrid_override_pattern\": " << json_quote(c.pattern) << ",\n"
     << "  \"num_hidden_layers\": " << c.pattern.size() << ",\n"
     << "  \"vocab_size\": " << c.vocab_size << ",\n"
     << "  \"hidden_size\": " << c.d_model << ",\n"
     << "  \"tie_word_embeddings\": " << b(c.tie_embeddings) << ",\n"
     << "  \"initializer_range\": " << num(c.init_std) << ",\n"
     << "  \"layer_norm_epsilon\": " << num(c.norm_eps) << ",\n"
     << "  \"residual_in_fp32\": " << b(c.residual_in_fp32) << ",\n"
     << "  \"mamba_num_heads\": " << c.mamba.n_heads << ",\n"
     << "  \"mamba_head_dim\": " << c.mamba.head_dim << ",\n"
     << "  \"ssm_state_size\": " << c.mamba.state_size << ",\n"
     << "  \"n_groups\": " << c.mamba.n_groups << ",\n"
     << "  \"conv_kernel\": " << c.mamba.conv_kernel << ",\n"
     << "  \"chunk_size\": " << c.mamba.chunk_size << ",\n"
     << "  \"use_conv_bias\": " << b(c.mamba.use_conv_bias) << ",\n"
     << "  \"use_bias\": " << b(c.mamba.use_bias) << ",\n"
     << "  \"mamba_proj_bias\": " << b(c.mamba.use_bias) << ",\n"
     << "  \"mamba_hidden_act\": \"silu\",\n"
     << "  \"time_step_min\": " << num(c.mamba.dt_min) << ",\n"
     << "  \"time_step_max\": " << num(c.mamba.dt_max) << ",\n"
     << "  \"time_step_floor\": " << num(c.mamba.dt_init_floor) << ",\n"
     << "  \"time_step_limit\": [" << num(c.mamba.dt_limit_min) << ", "
     << num(c.mamba.dt_limit_max) << "],\n"
     << "  \"num_attention_heads\": " << c.attention.n_heads << ",\n"
     << "  \"num_key_value_heads\": " << c.attention.n_kv_heads << ",\n"
     << "  \"head_dim\": " << c.attention.head_dim << ",\n"
     << "  \"attention_bias\": false,\n"
     << "  \"attention_dropout\": 0.0,\n"
     << "  \"intermediate_size\": " << c.mlp.intermediate_size << ",\n"
     << "  \"mlp_hidden_act\": \"relu2\",\n"
     << "  \"mlp_bias\": " << b(c.mlp.bias) << ",\n"
     << "  \"n_routed_experts\": " << c.moe.n_routed_experts << ",\n"
     << "  \"n_shared_experts\": 1,\n"
     << "  \"num_experts_per_tok\": " << c.moe.top_k << ",\n"
     << "  \"moe_intermediate_size\": " << c.moe.intermediate_size << ",\n"
     << "  \"moe_shared_expert_intermediate_size\": " << c.moe.shared_intermediate_size << ",\n"
     << "  \"norm_topk_prob\": " << b(c.moe.norm_topk_prob) << ",\n"
     << "  \"routed_scaling_factor\": " << num(c.moe.routed_scaling_factor) << ",\n"
     << "  \"n_group\": 1,\n"
     << "  \"topk_group\": 1,\n"
     << "  \"use_mamba_kernels\": true,\n"
     << "  \"use_cache\": true\n"
     << "}\n";
  return os.str();
}

Status load_hf_weights(HybridLM& model, const SafetensorsData& weights, const std::string& where) {
  auto err = [&](const std::string& tensor, const std::string& what) {
    return Status::InvalidArgument(where + ": tensor '" + tensor + "': " + what);
  };
  struct Source {
    std::string file_name;
    Tensor t;
    bool used = false;
  };
  std::map<std::string, Source> by_name;
  std::map<std::string, std::string> stacked_from;  // our name -> stacked file name
  for (const auto& [fname, t] : weights.tensors) {
    std::string name = canonical(fname);
    const bool up = ends_with(name, ".mixer.experts.up_proj");
    if (up || ends_with(name, ".mixer.experts.down_proj")) {
      if (t.dim() != 3) return err(fname, "stacked experts must be [E, out, in], got " + t.shape_str());
      for (int64_t e = 0; e < t.size(0); ++e) {
        std::string n = name.substr(0, name.size() - (up ? 7 : 9)) + std::to_string(e) +
                        (up ? ".up_proj.weight" : ".down_proj.weight");
        by_name[n] = Source{fname, t.select(0, e), false};
        stacked_from[n] = fname;
      }
      continue;
    }
    if (by_name.count(name)) return err(fname, "appears twice (also as '" + by_name[name].file_name + "')");
    by_name[name] = Source{fname, t, false};
  }
  for (const auto& [name, p] : model.named_parameters()) {
    auto it = by_name.find(name);
    if (it == by_name.end()) return err(name, "not found (expected " + p.value().shape_str() + ")");
    Source& s = it->second;
    if (!dtype_is_float(s.t.dtype()))
      return err(s.file_name, std::string("has dtype ") + safetensors_dtype_name(s.t.dtype()) +
                                  ", expected a float dtype");
    if (s.t.shape() != p.value().shape())
      return err(s.file_name, "shape " + s.t.shape_str() + ", expected " + p.value().shape_str() +
                                  " for " + name);
    Tensor dst = p.value();
    dst.copy_(s.t);
    s.used = true;
  }
  if (model.config().tie_embeddings) {
    auto it = by_name.find("lm_head.weight");
    if (it != by_name.end()) {
      Tensor emb = model.backbone().embeddings().weight().value().to(Device::cpu(), DType::F32);
      Tensor head = it->second.t.to(DType::F32);
      if (head.shape() != emb.shape() || head.to_vector<float>() != emb.to_vector<float>())
        return err(it->second.file_name, "differs from the embeddings, but tie_word_embeddings is true");
      it->second.used = true;
    }
  }
  for (const auto& [name, s] : by_name) {
    if (!s.used) {
      auto st = stacked_from.find(name);
      return err(s.file_name, st == stacked_from.end()
                                  ? "is not a parameter of the model"
                                  : "holds more experts than n_routed_experts = " +
                                        std::to_string(model.config().moe.n_routed_experts));
    }
  }
  return Status::Ok();
}

StatusOr<std::unique_ptr<HybridLM>> load_hf_model(const std::string& dir, Device device,
                                                  DType dtype) {
  StatusOr<ModelConfig> cfg = read_hf_config(dir);
  if (!cfg.ok()) return cfg.status();
  StatusOr<SafetensorsData> weights = read_safetensors_dir(dir);
  if (!weights.ok()) return weights.status();
  Generator gen(0);
  auto model = std::make_unique<HybridLM>(cfg.value(), gen);
  model->to(device, dtype);
  if (Status s = load_hf_weights(*model, weights.value(), dir); !s.ok()) return s;
  return model;
}

Status save_hf_model(const HybridLM& model, const std::string& dir, DType dtype,
                     int64_t max_shard_bytes) {
  if (!dtype_is_float(dtype))
    return Status::InvalidArgument(std::string("save_hf_model: dtype ") + dtype_name(dtype) +
                                   " is not a float dtype");
  StatusOr<std::string> json = hf_config_json(model.config(), dtype);
  if (!json.ok()) return json.status();
  SafetensorsData data;
  data.metadata["format"] = "pt";
  for (const auto& [name, p] : model.named_parameters()) {
    const bool keep_f32 =
        ends_with(name, ".gate.e_score_correction_bias") || ends_with(name, ".gate.weight");
    data.add(name, p.value().to(Device::cpu()).to(keep_f32 ? DType::F32 : dtype));
  }
  StatusOr<std::vector<std::string>> files = write_safetensors_dir(dir, data, max_shard_bytes);
  if (!files.ok()) return files.status();
  return write_file_atomic((fs::path(dir) / "config.json").string(), json.value());
}

}  // namespace sl::layers
