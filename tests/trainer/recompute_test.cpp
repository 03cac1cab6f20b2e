// The `recompute:` key (layers/recompute.h): what it resolves to, its errors naming the key, the
// benchmark config, and a training run with every block recomputed following the loss trajectory
// of a plain run bit for bit on the CPU (every block kind, gradient accumulation). Also its
// counterpart superlinear_keep_partials, as far as the CPU sees it (config and model flag).
#include "layers/recompute.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "layers/hybrid_lm.h"
#include "layers/superlinear_attention.h"
#include "trainer/config.h"
#include "trainer/train.h"

namespace sl::trainer {
namespace {

namespace fs = std::filesystem;

#define EXPECT_HAS(msg, part) \
  EXPECT_NE((msg).find(part), std::string::npos) << "'" << (msg) << "' lacks '" << (part) << "'"

TEST(RecomputeKinds, Resolves) {
  EXPECT_EQ(layers::recompute_kinds("none", "M*S-E").value(), "");
  EXPECT_EQ(layers::recompute_kinds("all", "MM*-M*").value(), "M*-");
  EXPECT_EQ(layers::recompute_kinds("S*", "M*S-E").value(), "S*");
  EXPECT_EQ(layers::recompute_kinds("MM", "M-").value(), "M");
}

TEST(RecomputeKinds, ConfigErrorsNameTheKey) {
  const std::string text = "model: {pattern: \"M*-\"}\nrecompute: \"MS\"\n";
  StatusOr<TrainConfig> c = parse_train_config(text, "r.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_HAS(c.status().message(), "r.yaml:2");
  EXPECT_HAS(c.status().message(), "recompute");
  EXPECT_HAS(c.status().message(), "'S'");
  EXPECT_HAS(c.status().message(), "M*-");

  c = parse_train_config("model: {pattern: \"M-\"}\n", "r.yaml", {"recompute=Mx"});
  ASSERT_FALSE(c.ok());
  EXPECT_HAS(c.status().message(), "--set recompute=Mx");
  EXPECT_HAS(c.status().message(), "'x'");
  c = parse_train_config("recompute: \"\"\n", "r.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_HAS(c.status().message(), "recompute");

  c = parse_train_config("model: {pattern: \"M*-\"}\nrecompute: \"-*\"\n", "r.yaml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  StatusOr<TrainConfig> back = parse_train_config(to_yaml(c.value()), "resolved.yaml");
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back.value().recompute, "-*");
  EXPECT_EQ(parse_train_config("", "r.yaml").value().recompute, "none");
}

// superlinear_keep_partials (Note [kept partials] in kernels/superlinear.h): off by default,
// round-trips, rejects non-booleans naming the key, and reaches every S block of the model.
TEST(KeepPartials, ConfigAndModelFlag) {
  EXPECT_FALSE(parse_train_config("", "k.yaml").value().superlinear_keep_partials);
  StatusOr<TrainConfig> c =
      parse_train_config("model: {pattern: \"MS*S\"}\nsuperlinear_keep_partials: true\n", "k.yaml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_TRUE(c.value().superlinear_keep_partials);
  StatusOr<TrainConfig> back = parse_train_config(to_yaml(c.value()), "resolved.yaml");
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_TRUE(back.value().superlinear_keep_partials);
  StatusOr<TrainConfig> bad = parse_train_config("superlinear_keep_partials: maybe\n", "k.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_HAS(bad.status().message(), "k.yaml:1");
  EXPECT_HAS(bad.status().message(), "superlinear_keep_partials");

  Generator gen(1);
  layers::HybridLM model(c.value().model, gen);
  auto flags = [&] {
    std::string f;
    for (int64_t i = 0; i < model.backbone().num_layers(); ++i)
      if (const layers::SuperlinearAttention* s = model.backbone().layer(i).superlinear())
        f += s->keep_partials() ? '1' : '0';
    return f;
  };
  EXPECT_EQ(flags(), "00");
  model.set_superlinear_keep_partials(true);
  EXPECT_EQ(flags(), "11");
  EXPECT_EQ(model.backbone().layer(2).superlinear(), nullptr);  // the '*' block
}

// configs/bench_100m.yaml (experiments/bench_train.sh) parses, and takes recompute overrides.
TEST(RecomputeKinds, BenchConfigParses) {
  const std::string root = std::string(__FILE__).substr(0, std::string(__FILE__).rfind("/tests/"));
  StatusOr<TrainConfig> c = load_train_config(root + "/configs/bench_100m.yaml", {"recompute=MS"});
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c.value().model.d_model, 768);
  EXPECT_EQ(std::count(c.value().model.pattern.begin(), c.value().model.pattern.end(), 'S'), 2);
  EXPECT_EQ(layers::recompute_kinds(c.value().recompute, c.value().model.pattern).value(), "MS");
}

const char* kTiny = R"(
model:
  vocab_size: 32
  d_model: 16
  pattern: "M*S-E"
  mamba: {n_heads: 2, head_dim: 8, state_size: 8, chunk_size: 8}
  attention: {n_heads: 2, n_kv_heads: 1, head_dim: 8}
  mlp: {intermediate_size: 32}
  moe: {n_routed_experts: 4, top_k: 2, intermediate_size: 16, shared_intermediate_size: 16}
data: {task: assoc_recall, n_pairs: 3, n_keys: 8, n_values: 8}
optimizer: {lr: 1.0e-2}
schedule: {kind: cosine, warmup_steps: 2}
logging: {every: 1, eval_batches: 1}
device: cpu
seed: 3
steps: 5
batch_size: 3
seq_len: 24
grad_accum: 2
)";

// The "loss" of every metrics record, in order.
std::vector<double> losses(const std::string& path) {
  std::ifstream in(path);
  std::vector<double> out;
  for (std::string line; std::getline(in, line);) {
    size_t at = line.find("\"loss\": ");
    if (at != std::string::npos) out.push_back(std::stod(line.substr(at + 8)));
  }
  return out;
}

TEST(RecomputeRun, LossTrajectoryIsBitIdentical) {
  const std::string dir =
      (fs::temp_directory_path() / ("sl_recompute_" + std::to_string(::getpid()))).string();
  fs::remove_all(dir);
  std::vector<TrainResult> results;
  for (const char* mode : {"none", "all"}) {
    StatusOr<TrainConfig> c = parse_train_config(
        kTiny, "tiny.yaml",
        {std::string("recompute=") + mode, "logging.metrics=" + dir + "/" + mode + ".jsonl"});
    ASSERT_TRUE(c.ok()) << c.status().message();
    TrainHooks hooks;
    hooks.quiet = true;
    hooks.keep_params = true;
    StatusOr<TrainResult> r = train(c.value(), hooks);
    ASSERT_TRUE(r.ok()) << r.status().message();
    results.push_back(std::move(r).value());
  }
  std::vector<double> plain = losses(dir + "/none.jsonl"), recomputed = losses(dir + "/all.jsonl");
  ASSERT_EQ(plain.size(), 5u);
  EXPECT_EQ(plain, recomputed);
  EXPECT_EQ(results[0].final_eval_loss, results[1].final_eval_loss);
  ASSERT_EQ(results[0].params.size(), results[1].params.size());
  for (size_t i = 0; i < results[0].params.size(); ++i) {
    const Tensor &a = results[0].params[i].second, &b = results[1].params[i].second;
    EXPECT_EQ(std::memcmp(a.data_ptr(), b.data_ptr(), a.nbytes()), 0) << results[0].params[i].first;
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace sl::trainer
