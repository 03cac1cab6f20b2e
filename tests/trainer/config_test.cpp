// Training configuration: defaults, --set overrides, the resolved YAML read back to the same
// config, and errors naming the key with its file and line (or its --set argument).
#include "trainer/config.h"

#include <gtest/gtest.h>

namespace sl::trainer {
namespace {

std::string error_of(const std::string& text, const std::vector<std::string>& overrides = {}) {
  StatusOr<TrainConfig> c = parse_train_config(text, "cfg.yaml", overrides);
  EXPECT_FALSE(c.ok()) << "accepted:\n" << text;
  return c.ok() ? "" : c.status().message();
}

#define EXPECT_HAS(msg, part) \
  EXPECT_NE((msg).find(part), std::string::npos) << "'" << (msg) << "' lacks '" << (part) << "'"

TEST(TrainConfig, EmptyGivesTheDefaults) {
  StatusOr<TrainConfig> c = parse_train_config("", "cfg.yaml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  TrainConfig d;
  EXPECT_EQ(c.value().steps, d.steps);
  EXPECT_EQ(c.value().optimizer.lr, d.optimizer.lr);
  EXPECT_EQ(c.value().model.d_model, d.model.d_model);
  EXPECT_EQ(c.value().device, "auto");
}

TEST(TrainConfig, ResolvedYamlReadsBackToTheSameConfig) {
  const std::string text =
      "model:\n  d_model: 32\n  pattern: \"*M\"\n"
      "data: {task: copy, copy_len: 5}\n"
      "optimizer: {lr: 1.5e-3, no_decay: [\"*bias\"]}\n"
      "schedule: {kind: wsd, warmup_steps: 3, decay_fraction: 0.25}\n"
      "checkpoint: {dir: /tmp/x, every: 4}\n"
      "debug: {nan_grad_steps: [1, 3]}\n"
      "steps: 17\nseq_len: 16\nseed: 99\n";
  StatusOr<TrainConfig> a = parse_train_config(text, "cfg.yaml");
  ASSERT_TRUE(a.ok()) << a.status().message();
  std::string yaml = to_yaml(a.value());
  StatusOr<TrainConfig> b = parse_train_config(yaml, "resolved.yaml");
  ASSERT_TRUE(b.ok()) << b.status().message() << "\n" << yaml;
  EXPECT_EQ(to_yaml(b.value()), yaml);
  EXPECT_EQ(b.value().model.pattern, "*M");
  EXPECT_EQ(b.value().optimizer.no_decay, std::vector<std::string>{"*bias"});
  EXPECT_EQ(b.value().debug.nan_grad_steps, (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(b.value().schedule.kind, "wsd");
  EXPECT_EQ(b.value().seed, 99u);
}

TEST(TrainConfig, OverridesApply) {
  StatusOr<TrainConfig> c =
      parse_train_config("steps: 10\noptimizer:\n  lr: 1.0e-3\n", "cfg.yaml",
                         {"steps=5", "optimizer.lr=2e-3", "model.pattern=*M-",
                          "schedule.kind=linear", "debug.nan_grad_steps=[2, 4]"});
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c.value().steps, 5);
  EXPECT_EQ(c.value().optimizer.lr, 2e-3);
  EXPECT_EQ(c.value().model.pattern, "*M-");
  EXPECT_EQ(c.value().schedule.kind, "linear");
  EXPECT_EQ(c.value().debug.nan_grad_steps, (std::vector<int64_t>{2, 4}));
}

TEST(TrainConfig, UnknownKeyNamesKeyFileAndLine) {
  std::string m = error_of("steps: 3\noptimizer:\n  lr: 1.0e-3\n  lrr: 2\n");
  EXPECT_HAS(m, "cfg.yaml:4");
  EXPECT_HAS(m, "optimizer.lrr");
  EXPECT_HAS(m, "unknown key");
  m = error_of("stepz: 3\n");
  EXPECT_HAS(m, "cfg.yaml:1: stepz: unknown key");
  m = error_of("steps: 3\nmodel:\n  d_model: 32\n  d_modle: 3\n");
  EXPECT_HAS(m, "cfg.yaml:4");
  EXPECT_HAS(m, "model.d_modle");
}

TEST(TrainConfig, BadValuesNameKeyFileAndLine) {
  std::string m = error_of("seed: 1\nsteps: -4\n");
  EXPECT_HAS(m, "cfg.yaml:2: steps:");
  m = error_of("optimizer:\n  lr: fast\n");
  EXPECT_HAS(m, "cfg.yaml:2: optimizer.lr:");
  EXPECT_HAS(m, "is not a number");
  m = error_of("schedule:\n  kind: exponential\n");
  EXPECT_HAS(m, "cfg.yaml:2: schedule.kind:");
  m = error_of("\n\ndevice: tpu\n");
  EXPECT_HAS(m, "cfg.yaml:3: device:");
  m = error_of("precision: fp8\n");
  EXPECT_HAS(m, "cfg.yaml:1: precision:");
  m = error_of("optimizer:\n  beta2: 1.0\n");
  EXPECT_HAS(m, "cfg.yaml:2: optimizer.beta2:");
  m = error_of("seq_len: 16\ndata:\n  n_pairs: 12\n");  // 12 pairs do not fit 16 tokens
  EXPECT_HAS(m, "cfg.yaml:3: data.n_pairs:");
  m = error_of("optimizer:\n  no_decay: norm\n");
  EXPECT_HAS(m, "cfg.yaml:2: optimizer.no_decay:");
  m = error_of("optimizer: 3\n");
  EXPECT_HAS(m, "cfg.yaml:1: optimizer: expected a mapping");
  m = error_of("model:\n  attention:\n    n_heads: 0\n");
  EXPECT_HAS(m, "cfg.yaml:3: model.attention.n_heads");
  m = error_of("steps: [3\n");
  EXPECT_HAS(m, "cfg.yaml:");
}

TEST(TrainConfig, BadOverridesNameTheArgument) {
  std::string m = error_of("steps: 3\n", {"optimizer.lrr=1"});
  EXPECT_HAS(m, "--set optimizer.lrr=1");
  EXPECT_HAS(m, "unknown key");
  m = error_of("steps: 3\n", {"stepss=4"});
  EXPECT_HAS(m, "--set stepss=4");
  m = error_of("steps: 3\n", {"steps=-1"});
  EXPECT_HAS(m, "--set steps=-1: steps:");
  m = error_of("steps: 3\n", {"model.d_model=wide"});
  EXPECT_HAS(m, "--set model.d_model=wide: model.d_model");
  m = error_of("steps: 3\n", {"model.widht=4"});
  EXPECT_HAS(m, "--set model.widht=4: model.widht");
  m = error_of("steps: 3\n", {"steps"});
  EXPECT_HAS(m, "--set steps: expected key=value");
  m = error_of("steps: 3\n", {"steps.x=1"});
  EXPECT_HAS(m, "--set steps.x=1: steps is not a section");
}

TEST(TrainConfig, MissingFileIsAnIoError) {
  StatusOr<TrainConfig> c = load_train_config("/nonexistent/dir/cfg.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Status::Code::kIoError);
  EXPECT_HAS(c.status().message(), "/nonexistent/dir/cfg.yaml");
}

TEST(TrainConfig, RepositoryConfigsParse) {
  const std::string root = std::string(__FILE__).substr(0, std::string(__FILE__).rfind("/tests/"));
  for (const char* f : {"/configs/quickstart.yaml", "/configs/tiny_hybrid.yaml"}) {
    StatusOr<TrainConfig> c = load_train_config(root + f);
    EXPECT_TRUE(c.ok()) << f << ": " << c.status().message();
  }
}

}  // namespace
}  // namespace sl::trainer
