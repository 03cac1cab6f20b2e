// init_from / convert_attention: weights from the Hugging Face fixture and from one of our
// checkpoints, the attention-to-superlinear conversion (Qs = Q, pattern '*' -> 'S'), and
// architecture mismatches and bad values named by key.
#include "trainer/init_from.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "layers/config_io.h"
#include "layers/hf_checkpoint.h"
#include "trainer/checkpoint.h"
#include "trainer/config.h"

namespace sl::trainer {
namespace {

namespace fs = std::filesystem;

std::string fixture_dir() {
  const std::string file = __FILE__;
  return file.substr(0, file.rfind("/tests/")) + "/tests/fixtures/nemotron_h_tiny";
}

layers::ModelConfig fixture_config() {
  StatusOr<layers::ModelConfig> c = layers::read_hf_config(fixture_dir());
  SL_CHECK(c.ok()) << c.status().message();
  return c.value();
}

std::vector<float> values(const ag::Var& v) {
  return v.value().to(DType::F32).to_vector<float>();
}

TEST(InitFrom, HuggingFaceDirectory) {
  layers::ModelConfig c = fixture_config();
  c.moe.aux_loss_coef = 0.01;  // does not change the function: allowed to differ
  Generator gen(3);
  layers::HybridLM model(c, gen);
  StatusOr<std::string> r = init_model_from(fixture_dir(), "", &model);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_NE(r.value().find("Hugging Face"), std::string::npos);
  StatusOr<std::unique_ptr<layers::HybridLM>> ref = layers::load_hf_model(fixture_dir());
  ASSERT_TRUE(ref.ok()) << ref.status().message();
  for (const auto& [name, p] : ref.value()->named_parameters())
    EXPECT_EQ(values(model.find_parameter(name)), values(p)) << name;
}

TEST(InitFrom, ConvertsAttentionToSuperlinearWithQsFromQ) {
  layers::ModelConfig c = fixture_config();
  ASSERT_TRUE(convert_attention_pattern("superlinear", &c).ok());
  EXPECT_EQ(c.pattern, "MS-ME");
  Generator gen(4);
  layers::HybridLM model(c, gen);
  StatusOr<std::string> r = init_model_from(fixture_dir(), "superlinear", &model);
  ASSERT_TRUE(r.ok()) << r.status().message();
  StatusOr<layers::SafetensorsData> file = layers::read_safetensors_dir(fixture_dir());
  ASSERT_TRUE(file.ok());
  const std::string q = "backbone.layers.1.mixer.q_proj.weight";
  const std::vector<float> want = file.value().find(q)->to_vector<float>();
  EXPECT_EQ(values(model.find_parameter(q)), want);
  EXPECT_EQ(values(model.find_parameter("backbone.layers.1.mixer.qs_proj.weight")), want);
  EXPECT_EQ(values(model.find_parameter("backbone.layers.1.mixer.k_proj.weight")),
            file.value().find("backbone.layers.1.mixer.k_proj.weight")->to_vector<float>());
  // Without the conversion the pattern does not match the source.
  Generator gen2(5);
  layers::HybridLM other(c, gen2);
  StatusOr<std::string> bad = init_model_from(fixture_dir(), "", &other);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("model.pattern"), std::string::npos)
      << bad.status().message();
}

TEST(InitFrom, ArchitectureMismatchNamesTheKey) {
  layers::ModelConfig c = fixture_config();
  c.moe.routed_scaling_factor = 2.0;
  Generator gen(6);
  layers::HybridLM model(c, gen);
  StatusOr<std::string> r = init_model_from(fixture_dir(), "", &model);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("model.moe.routed_scaling_factor"), std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find(fixture_dir()), std::string::npos);
}

TEST(InitFrom, OurCheckpointFileAndDirectory) {
  const std::string dir =
      (fs::temp_directory_path() / ("sl_init_from_" + std::to_string(::getpid()))).string();
  fs::remove_all(dir);
  layers::ModelConfig c = fixture_config();
  Generator gen(7);
  layers::HybridLM source(c, gen);
  CheckpointData d;
  for (const auto& [name, p] : source.named_parameters()) d.add("param/" + name, p.value());
  d.add("adam/whatever", Tensor::zeros({2}, DType::F32));
  d.texts["model_config"] = layers::to_yaml(c);
  ASSERT_TRUE(write_checkpoint(checkpoint_path(dir, 5), d).ok());
  for (const std::string& from : {checkpoint_path(dir, 5), dir}) {
    Generator g2(8);
    layers::HybridLM model(c, g2);
    StatusOr<std::string> r = init_model_from(from, "", &model);
    ASSERT_TRUE(r.ok()) << r.status().message();
    for (const auto& [name, p] : source.named_parameters())
      EXPECT_EQ(values(model.find_parameter(name)), values(p)) << name;
  }
  fs::remove_all(dir);
  Generator g3(9);
  layers::HybridLM model(c, g3);
  EXPECT_FALSE(init_model_from(dir, "", &model).ok());
}

TEST(InitFrom, ConfigKeys) {
  StatusOr<TrainConfig> c = parse_train_config(
      "init_from: /some/where\nconvert_attention: superlinear\nmodel:\n  pattern: \"M*-*\"\n",
      "t.yaml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c.value().init_from, "/some/where");
  EXPECT_EQ(c.value().model.pattern, "MS-S");
  StatusOr<TrainConfig> again = parse_train_config(to_yaml(c.value()), "resolved.yaml");
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(again.value().model.pattern, "MS-S");
  EXPECT_EQ(again.value().convert_attention, "superlinear");
  StatusOr<TrainConfig> bad = parse_train_config("convert_attention: linear\n", "t.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("convert_attention"), std::string::npos)
      << bad.status().message();
  EXPECT_NE(bad.status().message().find("t.yaml:1"), std::string::npos) << bad.status().message();
}

}  // namespace
}  // namespace sl::trainer
