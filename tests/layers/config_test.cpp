// The `model:` section: a full file parses into the typed struct, to_yaml round-trips, and every
// kind of bad input is an InvalidArgument naming the key (and the value, file and line).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "layers/config_io.h"

namespace sl::layers {
namespace {

StatusOr<ModelConfig> parse(const std::string& text) {
  return parse_model_config(YAML::Load(text), "cfg.yaml");
}

// The message of a failed parse; "" (and a test failure) if it parsed.
std::string error_of(const std::string& text) {
  StatusOr<ModelConfig> r = parse(text);
  EXPECT_FALSE(r.ok()) << text;
  if (r.ok()) return "";
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
  return r.status().message();
}

#define EXPECT_CONTAINS(s, part) \
  EXPECT_NE((s).find(part), std::string::npos) << "'" << (s) << "' lacks '" << (part) << "'"

const char* kFull = R"(vocab_size: 1000
d_model: 96
pattern: "*M-ES"
norm_eps: 1.0e-6
tie_embeddings: true
init_std: 0.01
residual_in_fp32: false
mamba:
  n_heads: 6
  head_dim: 8
  state_size: 32
  n_groups: 2
  conv_kernel: 3
  chunk_size: 32
  use_conv_bias: false
  use_bias: true
  dt_min: 0.002
  dt_max: 0.2
  dt_init_floor: 0.0001
  dt_limit_min: 0.0
  dt_limit_max: .inf
attention:
  n_heads: 6
  n_kv_heads: 3
  head_dim: 0
  bias: true
  rope: true
  rope_theta: 500000
  sliding_window: 128
mlp: {intermediate_size: 200, activation: swiglu, bias: true}
moe:
  n_routed_experts: 16
  n_shared_experts: 0
  top_k: 4
  intermediate_size: 48
  shared_intermediate_size: 80
  score: softmax
  norm_topk_prob: false
  routed_scaling_factor: 2.5
  aux_loss_coef: 0.001
superlinear:
  preset: upscaled
  k: 2
  allow_no_coverage: false
)";

TEST(Config, ParsesEveryField) {
  StatusOr<ModelConfig> r = parse(kFull);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const ModelConfig& c = r.value();
  EXPECT_EQ(c.vocab_size, 1000);
  EXPECT_EQ(c.d_model, 96);
  EXPECT_EQ(c.pattern, "*M-ES");
  EXPECT_EQ(c.norm_eps, 1e-6);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_EQ(c.init_std, 0.01);
  EXPECT_FALSE(c.residual_in_fp32);
  EXPECT_EQ(c.mamba.n_heads, 6);
  EXPECT_EQ(c.mamba.n_groups, 2);
  EXPECT_EQ(c.mamba.conv_kernel, 3);
  EXPECT_FALSE(c.mamba.use_conv_bias);
  EXPECT_TRUE(c.mamba.use_bias);
  EXPECT_EQ(c.mamba.dt_max, 0.2);
  EXPECT_TRUE(std::isinf(c.mamba.dt_limit_max));
  EXPECT_EQ(c.attention.head_dim, 16);  // 0: d_model / n_heads
  EXPECT_EQ(c.attention.n_kv_heads, 3);
  EXPECT_TRUE(c.attention.rope);
  EXPECT_EQ(c.attention.rope_theta, 500000.0);
  EXPECT_EQ(c.attention.sliding_window, 128);
  EXPECT_EQ(c.mlp.activation, "swiglu");
  EXPECT_EQ(c.mlp.intermediate_size, 200);
  EXPECT_EQ(c.moe.n_routed_experts, 16);
  EXPECT_EQ(c.moe.top_k, 4);
  EXPECT_EQ(c.moe.score, "softmax");
  EXPECT_FALSE(c.moe.norm_topk_prob);
  EXPECT_EQ(c.moe.routed_scaling_factor, 2.5);
  EXPECT_EQ(c.moe.aux_loss_coef, 0.001);
  kernels::SuperlinearConfig up = kernels::SuperlinearConfig::upscaled();
  EXPECT_EQ(c.superlinear.p_inv, up.p_inv);
  EXPECT_EQ(c.superlinear.p, up.p);
  EXPECT_EQ(c.superlinear.s, up.s);
  EXPECT_EQ(c.superlinear.k, 2);
}

TEST(Config, EmptySectionGivesDefaultsAndToYamlRoundTrips) {
  StatusOr<ModelConfig> d = parse_model_config(YAML::Node(), "none.yaml");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d.value().pattern, ModelConfig().pattern);
  EXPECT_EQ(d.value().d_model, ModelConfig().d_model);
  for (const char* text : {kFull, ""}) {
    ModelConfig c = parse(text).value();
    std::string y = to_yaml(c);
    StatusOr<ModelConfig> back = parse(y);
    ASSERT_TRUE(back.ok()) << back.status().ToString() << "\n" << y;
    EXPECT_EQ(to_yaml(back.value()), y);
    EXPECT_EQ(back.value().norm_eps, c.norm_eps);
    EXPECT_EQ(back.value().mamba.dt_min, c.mamba.dt_min);
    EXPECT_EQ(back.value().superlinear.q, c.superlinear.q);
  }
  // Nested under a parent key with an indent.
  ModelConfig c = parse(kFull).value();
  YAML::Node root = YAML::Load("model:\n" + to_yaml(c, 2));
  EXPECT_EQ(to_yaml(parse_model_config(root["model"], "x").value()), to_yaml(c));
}

TEST(Config, UnknownKeyNamesKeyFileAndLine) {
  std::string m = error_of("d_model: 64\nmamba:\n  n_heads: 8\n  n_head: 4\n");
  EXPECT_CONTAINS(m, "cfg.yaml:4: model.mamba.n_head: unknown key");
  EXPECT_CONTAINS(m, "n_heads");  // the list of known keys
  EXPECT_CONTAINS(error_of("d_model: 64\nlayers: 3\n"), "cfg.yaml:2: model.layers: unknown key");
  EXPECT_CONTAINS(error_of("superlinear:\n  preset: balanced\n  window: 3\n"),
                  "cfg.yaml:3: model.superlinear.window: unknown key");
}

TEST(Config, WrongTypesNameKeyAndValue) {
  EXPECT_CONTAINS(error_of("d_model: sixty\n"),
                  "cfg.yaml:1: model.d_model: 'sixty' is not an integer");
  EXPECT_CONTAINS(error_of("\nmoe:\n  norm_topk_prob: maybe\n"),
                  "cfg.yaml:3: model.moe.norm_topk_prob: 'maybe' is not a boolean");
  EXPECT_CONTAINS(error_of("mlp: 3\n"), "cfg.yaml:1: model.mlp: expected a mapping");
  EXPECT_CONTAINS(error_of("pattern: [M, E]\n"), "model.pattern: expected a single value");
}

TEST(Config, BadValuesNameKeyValueAndLine) {
  std::string m = error_of("d_model: 64\npattern: \"MEX*\"\n");
  EXPECT_CONTAINS(m, "cfg.yaml:2: model.pattern: 'X' at position 2");
  EXPECT_CONTAINS(error_of("d_model: -8\n"), "cfg.yaml:1: model.d_model: -8 must be positive");
  EXPECT_CONTAINS(
      error_of("attention:\n  n_heads: 4\n  n_kv_heads: 3\n"),
      "cfg.yaml:3: model.attention.n_kv_heads: 3 does not divide attention.n_heads = 4");
  EXPECT_CONTAINS(error_of("d_model: 64\nattention:\n  n_heads: 6\n  head_dim: 0\n"),
                  "cfg.yaml:3: model.attention.n_heads: 6 does not divide d_model = 64");
  EXPECT_CONTAINS(error_of("moe:\n  n_routed_experts: 4\n  top_k: 5\n"),
                  "cfg.yaml:3: model.moe.top_k: 5 must be in [1, moe.n_routed_experts = 4]");
  EXPECT_CONTAINS(error_of("moe:\n  score: relu\n"), "cfg.yaml:2: model.moe.score: \"relu\"");
  EXPECT_CONTAINS(error_of("mlp:\n  activation: gelu\n"), "model.mlp.activation: \"gelu\"");
  EXPECT_CONTAINS(error_of("mamba:\n  n_heads: 6\n  n_groups: 4\n"),
                  "cfg.yaml:3: model.mamba.n_groups: 4 does not divide mamba.n_heads = 6");
  EXPECT_CONTAINS(error_of("moe:\n  n_shared_experts: 2\n"), "model.moe.n_shared_experts: 2");
  // Superlinear settings go through kernels::validate: p + q < 1 breaks coverage.
  EXPECT_CONTAINS(error_of("superlinear:\n  p_inv: 3\n  q: 0.5\n"),
                  "cfg.yaml:2: model.superlinear: superlinear config (p=1/3 q=0.5");
  EXPECT_TRUE(parse("superlinear:\n  p_inv: 3\n  q: 0.5\n  allow_no_coverage: true\n").ok());
  EXPECT_CONTAINS(error_of("superlinear:\n  preset: fast\n"),
                  "cfg.yaml:2: model.superlinear.preset: \"fast\"");
  // A value that is invalid only by its default names the file without a line.
  ModelConfig c;
  c.moe.top_k = 9;
  Status s = validate_model_config(c);
  EXPECT_FALSE(s.ok());
  EXPECT_CONTAINS(s.message(), "model.moe.top_k: 9");
}

TEST(Config, LoadFileReadsModelSection) {
  std::string path = ::testing::TempDir() + "/lyr1_config_test.yaml";
  {
    std::ofstream f(path);
    f << "train:\n  steps: 3\nmodel:\n  d_model: 32\n  bogus: 1\n";
  }
  StatusOr<ModelConfig> r = load_model_config(path);
  ASSERT_FALSE(r.ok());
  EXPECT_CONTAINS(r.status().message(), path + ":5: model.bogus: unknown key");
  {
    std::ofstream f(path);
    f << "model:\n  d_model: 32\n";
  }
  ASSERT_TRUE(load_model_config(path).ok());
  EXPECT_EQ(load_model_config(path).value().d_model, 32);
  EXPECT_EQ(load_model_config(path + ".missing").status().code(), Status::Code::kIoError);
}

TEST(Config, ShippedTinyHybridParses) {
  std::string here = __FILE__;  // <root>/tests/layers/config_test.cpp
  std::string root = here.substr(0, here.rfind("/tests/layers/"));
  StatusOr<ModelConfig> r = load_model_config(root + "/configs/tiny_hybrid.yaml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r.value().d_model, 64);
}

}  // namespace
}  // namespace sl::layers
