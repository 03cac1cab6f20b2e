// Hugging Face NemotronH checkpoints: config.json fields (aliases, defaults, Infinity) onto
// ModelConfig and back, errors naming the key, a save/load round trip in f32, bf16 and shards,
// transformers 5's runtime names (model.*, stacked experts), and every missing, extra or
// misshapen tensor named.
#include "layers/hf_checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "layers/config_io.h"
#include "tests/layers/tiny_model.h"

namespace sl::layers {
namespace {

namespace fs = std::filesystem;

ModelConfig tiny() {
  ModelConfig c = test::tiny_hybrid("M*-E", 40);
  c.init_std = ModelConfig().init_std;
  c.moe.aux_loss_coef = 0.0;
  c.moe.routed_scaling_factor = 2.5;
  return c;
}

class HfCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() /
            ("sl_hf_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_;
};

void expect_error(const StatusOr<ModelConfig>& r, const std::vector<std::string>& parts) {
  ASSERT_FALSE(r.ok());
  for (const std::string& p : parts)
    EXPECT_NE(r.status().message().find(p), std::string::npos)
        << "'" << p << "' not in: " << r.status().message();
}

TEST(HfConfig, ReadsAReleasedStyleConfig) {
  // The shape of NVIDIA's config.json files: legacy names, ignored keys, Infinity.
  const std::string json = R"({
    "architectures": ["NemotronHForCausalLM"], "model_type": "nemotron_h",
    "auto_map": {"AutoConfig": "configuration_nemotron_h.NemotronHConfig"},
    "hybrid_override_pattern": "M-M*-ME", "num_hidden_layers": 7,
    "vocab_size": 1000, "hidden_size": 64, "tie_word_embeddings": true,
    "initializer_range": 0.01, "layer_norm_epsilon": 1e-06, "rms_norm_eps": 1e-06,
    "residual_in_fp32": false, "mamba_num_heads": 8, "mamba_head_dim": 16,
    "ssm_state_size": 32, "mamba_n_groups": 4, "mamba_d_conv": 3, "mamba_chunk_size": 32,
    "use_conv_bias": false, "use_bias": true, "mamba_proj_bias": true,
    "time_step_min": 0.002, "time_step_max": 0.2, "time_step_floor": 0.0002,
    "time_step_limit": [0.0, Infinity], "mamba_hidden_act": "silu", "output_router_logits": false,
    "num_attention_heads": 8, "num_key_value_heads": 4, "attention_head_dim": 16,
    "attention_bias": false, "attention_dropout": 0.0, "sliding_window": null,
    "intermediate_size": 256, "mlp_hidden_act": "relu2", "mlp_bias": false,
    "n_routed_experts": 6, "n_shared_experts": 1, "num_experts_per_tok": 3,
    "moe_intermediate_size": 48, "moe_shared_expert_intermediate_size": 80,
    "norm_topk_prob": false, "routed_scaling_factor": 2.5, "n_group": 1, "topk_group": 1,
    "moe_latent_size": null, "torch_dtype": "bfloat16", "transformers_version": "4.55.0",
    "use_cache": true, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
    "max_position_embeddings": 8192, "rescale_prenorm_residual": true, "time_step_rank": 256,
    "expand": 2, "use_mamba_kernels": true, "hidden_dropout": 0.0, "num_logits_to_keep": 1})";
  StatusOr<ModelConfig> r = parse_hf_config(json, "config.json");
  ASSERT_TRUE(r.ok()) << r.status().message();
  const ModelConfig& c = r.value();
  EXPECT_EQ(c.pattern, "M-M*-ME");
  EXPECT_EQ(c.vocab_size, 1000);
  EXPECT_EQ(c.d_model, 64);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_DOUBLE_EQ(c.init_std, 0.01);
  EXPECT_DOUBLE_EQ(c.norm_eps, 1e-6);
  EXPECT_FALSE(c.residual_in_fp32);
  EXPECT_EQ(c.mamba.n_heads, 8);
  EXPECT_EQ(c.mamba.head_dim, 16);
  EXPECT_EQ(c.mamba.state_size, 32);
  EXPECT_EQ(c.mamba.n_groups, 4);
  EXPECT_EQ(c.mamba.conv_kernel, 3);
  EXPECT_EQ(c.mamba.chunk_size, 32);
  EXPECT_FALSE(c.mamba.use_conv_bias);
  EXPECT_TRUE(c.mamba.use_bias);
  EXPECT_DOUBLE_EQ(c.mamba.dt_min, 0.002);
  EXPECT_DOUBLE_EQ(c.mamba.dt_max, 0.2);
  EXPECT_DOUBLE_EQ(c.mamba.dt_init_floor, 0.0002);
  EXPECT_EQ(c.mamba.dt_limit_min, 0.0);
  EXPECT_TRUE(std::isinf(c.mamba.dt_limit_max));
  EXPECT_EQ(c.attention.n_heads, 8);
  EXPECT_EQ(c.attention.n_kv_heads, 4);
  EXPECT_EQ(c.attention.head_dim, 16);
  EXPECT_FALSE(c.attention.rope);
  EXPECT_EQ(c.mlp.intermediate_size, 256);
  EXPECT_EQ(c.mlp.activation, "relu2");
  EXPECT_EQ(c.moe.n_routed_experts, 6);
  EXPECT_EQ(c.moe.top_k, 3);
  EXPECT_EQ(c.moe.intermediate_size, 48);
  EXPECT_EQ(c.moe.shared_intermediate_size, 80);
  EXPECT_FALSE(c.moe.norm_topk_prob);
  EXPECT_DOUBLE_EQ(c.moe.routed_scaling_factor, 2.5);
  EXPECT_EQ(c.moe.score, "sigmoid");
  EXPECT_EQ(c.moe.aux_loss_coef, 0.0);
}

TEST(HfConfig, MissingKeysTakeTransformersDefaults) {
  StatusOr<ModelConfig> r = parse_hf_config(
      R"({"layers_block_type": ["linear_attention", "full_attention", "mlp", "moe", "mamba"],
          "time_step_limit": [0.01, {"__float__": "Infinity"}], "num_key_value_heads": null})",
      "config.json");
  ASSERT_TRUE(r.ok()) << r.status().message();
  const ModelConfig& c = r.value();
  EXPECT_EQ(c.pattern, "M*-EM");
  EXPECT_EQ(c.vocab_size, 131072);
  EXPECT_EQ(c.d_model, 4096);
  EXPECT_EQ(c.mamba.n_heads, 128);
  EXPECT_EQ(c.mamba.state_size, 128);
  EXPECT_EQ(c.mamba.n_groups, 8);
  EXPECT_EQ(c.mamba.chunk_size, 128);
  EXPECT_EQ(c.attention.n_heads, 32);
  EXPECT_EQ(c.attention.n_kv_heads, 32);  // null: one KV head per query head
  EXPECT_EQ(c.attention.head_dim, 128);
  EXPECT_EQ(c.moe.intermediate_size, 7688);
  EXPECT_DOUBLE_EQ(c.mamba.dt_limit_min, 0.01);
  EXPECT_TRUE(std::isinf(c.mamba.dt_limit_max));
  EXPECT_FALSE(c.residual_in_fp32);
}

TEST(HfConfig, UnknownAndUnsupportedValuesNameTheKey) {
  expect_error(parse_hf_config(R"({"hidden_size": 64, "frobnicate": 1})", "x/config.json"),
               {"x/config.json", "frobnicate", "unknown"});
  expect_error(parse_hf_config(R"({"mlp_hidden_act": "silu"})", "c.json"),
               {"mlp_hidden_act", "silu"});
  expect_error(parse_hf_config(R"({"moe_latent_size": 64})", "c.json"), {"moe_latent_size"});
  expect_error(parse_hf_config(R"({"attention_bias": true})", "c.json"), {"attention_bias"});
  expect_error(parse_hf_config(R"({"n_group": 2})", "c.json"), {"n_group"});
  expect_error(parse_hf_config(R"({"sliding_window": 128})", "c.json"), {"sliding_window"});
  expect_error(parse_hf_config(R"({"num_nextn_predict_layers": 1})", "c.json"),
               {"num_nextn_predict_layers"});
  expect_error(parse_hf_config(R"({"hidden_size": "big"})", "c.json"), {"hidden_size", "big"});
  expect_error(parse_hf_config(R"({"hybrid_override_pattern": "M*X"})", "c.json"),
               {"hybrid_override_pattern", "'X'"});
  expect_error(parse_hf_config(R"({"layers_block_type": ["mamba", "conv"]})", "c.json"),
               {"layers_block_type", "conv"});
  expect_error(parse_hf_config(R"({"model_type": "llama"})", "c.json"), {"model_type", "llama"});
  expect_error(parse_hf_config(R"({"hidden_size": 64,)", "c.json"), {"c.json", "JSON"});
  expect_error(parse_hf_config(R"({"num_attention_heads": 6, "num_key_value_heads": 4})", "c.json"),
               {"c.json", "n_kv_heads"});
}

TEST(HfConfig, WrittenConfigReadsBackToTheSameModel) {
  ModelConfig c = tiny();
  c.mamba.dt_limit_min = 0.001;
  c.norm_eps = 1e-6;
  c.tie_embeddings = true;
  StatusOr<std::string> json = hf_config_json(c, DType::BF16);
  ASSERT_TRUE(json.ok()) << json.status().message();
  EXPECT_NE(json.value().find("\"bfloat16\""), std::string::npos);
  StatusOr<ModelConfig> back = parse_hf_config(json.value(), "config.json");
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(to_yaml(back.value()), to_yaml(c));
}

TEST(HfConfig, ConfigsWithoutAnHfEquivalentAreRefused) {
  auto refused = [](ModelConfig c, const std::string& key) {
    StatusOr<std::string> j = hf_config_json(c, DType::F32);
    ASSERT_FALSE(j.ok()) << key;
    EXPECT_NE(j.status().message().find(key), std::string::npos) << j.status().message();
  };
  ModelConfig c = tiny();
  c.pattern = "M*S";
  refused(c, "model.pattern");
  c = tiny();
  c.attention.rope = true;
  refused(c, "model.attention.rope");
  c = tiny();
  c.mlp.activation = "swiglu";
  refused(c, "model.mlp.activation");
  c = tiny();
  c.moe.score = "softmax";
  refused(c, "model.moe.score");
}

void expect_same_parameters(const HybridLM& a, const HybridLM& b, DType rounded_to) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    ASSERT_EQ(pa[i].first, pb[i].first);
    const bool f32_kept = pa[i].first.find(".gate.") != std::string::npos;
    Tensor want = pa[i].second.value().to(f32_kept ? DType::F32 : rounded_to).to(DType::F32);
    EXPECT_EQ(pb[i].second.value().to(DType::F32).to_vector<float>(), want.to_vector<float>())
        << pa[i].first;
  }
}

std::unique_ptr<HybridLM> random_model(const ModelConfig& c, uint64_t seed) {
  Generator gen(seed);
  auto m = std::make_unique<HybridLM>(c, gen);
  // A non-zero correction bias, so that a bias left at zero shows.
  for (auto& [name, p] : m->named_parameters())
    if (name.find("e_score_correction_bias") != std::string::npos) {
      Tensor v = p.value();
      v.copy_(Tensor::randn(v.shape(), gen));
    }
  return m;
}

TEST_F(HfCheckpointTest, SaveLoadRoundTripF32Bf16AndShards) {
  auto m = random_model(tiny(), 7);
  ASSERT_TRUE(save_hf_model(*m, dir_, DType::F32).ok());
  EXPECT_TRUE(is_hf_model_dir(dir_));
  EXPECT_TRUE(fs::exists(fs::path(dir_) / "model.safetensors"));
  StatusOr<std::unique_ptr<HybridLM>> back = load_hf_model(dir_);
  ASSERT_TRUE(back.ok()) << back.status().message();
  expect_same_parameters(*m, *back.value(), DType::F32);
  EXPECT_EQ(to_yaml(back.value()->config()), to_yaml(m->config()));

  ASSERT_TRUE(save_hf_model(*m, dir_, DType::BF16).ok());
  StatusOr<std::vector<SafetensorsEntry>> h =
      read_safetensors_header((fs::path(dir_) / "model.safetensors").string());
  ASSERT_TRUE(h.ok()) << h.status().message();
  for (const SafetensorsEntry& e : h.value())
    EXPECT_EQ(e.dtype, e.name.find(".gate.") != std::string::npos ? DType::F32 : DType::BF16)
        << e.name;
  back = load_hf_model(dir_);
  ASSERT_TRUE(back.ok()) << back.status().message();
  expect_same_parameters(*m, *back.value(), DType::BF16);

  ASSERT_TRUE(save_hf_model(*m, dir_, DType::F32, 4096).ok());
  EXPECT_TRUE(fs::exists(fs::path(dir_) / "model.safetensors.index.json"));
  back = load_hf_model(dir_);
  ASSERT_TRUE(back.ok()) << back.status().message();
  expect_same_parameters(*m, *back.value(), DType::F32);
}

TEST_F(HfCheckpointTest, LoadsTransformersRuntimeNames) {
  auto m = random_model(tiny(), 8);
  ASSERT_TRUE(save_hf_model(*m, dir_, DType::F32).ok());
  const std::string file = (fs::path(dir_) / "model.safetensors").string();
  StatusOr<SafetensorsData> d = read_safetensors(file);
  ASSERT_TRUE(d.ok());
  // model.* names, experts stacked as [E, out, in].
  SafetensorsData runtime;
  std::vector<Tensor> up, down;
  const std::string prefix = "backbone.layers.3.mixer.experts.";
  for (const auto& [name, t] : d.value().tensors) {
    if (name.rfind(prefix, 0) == 0) {
      (name.find("up_proj") != std::string::npos ? up : down).push_back(t);
      continue;
    }
    std::string n = name.rfind("backbone.", 0) == 0 ? "model." + name.substr(9) : name;
    if (n == "model.embeddings.weight") n = "model.embedding.weight";
    runtime.add(n, t);
  }
  ASSERT_EQ(up.size(), 4u);
  auto stack = [](const std::vector<Tensor>& ts) {
    Tensor out = Tensor::empty({int64_t(ts.size()), ts[0].size(0), ts[0].size(1)}, DType::F32);
    for (size_t e = 0; e < ts.size(); ++e) out.select(0, int64_t(e)).copy_(ts[e]);
    return out;
  };
  runtime.add("model.layers.3.mixer.experts.up_proj", stack(up));
  runtime.add("model.layers.3.mixer.experts.down_proj", stack(down));
  ASSERT_TRUE(write_safetensors(file, runtime).ok());
  StatusOr<std::unique_ptr<HybridLM>> back = load_hf_model(dir_);
  ASSERT_TRUE(back.ok()) << back.status().message();
  expect_same_parameters(*m, *back.value(), DType::F32);
}

TEST_F(HfCheckpointTest, MissingExtraAndMisshapenTensorsAreNamed) {
  auto m = random_model(tiny(), 9);
  ASSERT_TRUE(save_hf_model(*m, dir_, DType::F32).ok());
  const std::string file = (fs::path(dir_) / "model.safetensors").string();
  StatusOr<SafetensorsData> d = read_safetensors(file);
  ASSERT_TRUE(d.ok());
  auto load_error = [&](const SafetensorsData& data) {
    EXPECT_TRUE(write_safetensors(file, data).ok());
    StatusOr<std::unique_ptr<HybridLM>> r = load_hf_model(dir_);
    EXPECT_FALSE(r.ok());
    return r.ok() ? std::string() : r.status().message();
  };
  SafetensorsData missing = d.value();
  missing.tensors.erase(missing.tensors.begin() + 3);
  const std::string gone = d.value().tensors[3].first;
  std::string msg = load_error(missing);
  EXPECT_NE(msg.find("'" + gone + "'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not found"), std::string::npos) << msg;

  SafetensorsData extra = d.value();
  extra.add("backbone.layers.0.mixer.mystery", Tensor::zeros({2}, DType::F32));
  msg = load_error(extra);
  EXPECT_NE(msg.find("backbone.layers.0.mixer.mystery"), std::string::npos) << msg;

  SafetensorsData shape = d.value();
  shape.tensors[0].second = Tensor::zeros({3, 3}, DType::F32);
  msg = load_error(shape);
  EXPECT_NE(msg.find(shape.tensors[0].first), std::string::npos) << msg;
  EXPECT_NE(msg.find("[3, 3]"), std::string::npos) << msg;

  SafetensorsData ints = d.value();
  ints.tensors[0].second = Tensor::zeros(d.value().tensors[0].second.shape(), DType::I32);
  msg = load_error(ints);
  EXPECT_NE(msg.find("I32"), std::string::npos) << msg;
}

}  // namespace
}  // namespace sl::layers
