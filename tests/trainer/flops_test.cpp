// Model FLOPs per token against hand counts written out from the layer shapes (Mamba-2,
// attention with and without a sliding window, MLP, MoE, tied embeddings); the device peak
// table; MFU on the progress line and in the metrics.
#include "trainer/flops.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "tests/trainer/train_fixture.h"
#include "trainer/metrics.h"
#include "trainer/train.h"

namespace sl::trainer {
namespace {

namespace fs = std::filesystem;

layers::ModelConfig small(const std::string& pattern) {
  layers::ModelConfig c;
  c.vocab_size = 32;
  c.d_model = 16;
  c.pattern = pattern;
  c.mamba.n_heads = 2, c.mamba.head_dim = 8, c.mamba.state_size = 8, c.mamba.n_groups = 1;
  c.mamba.conv_kernel = 4, c.mamba.chunk_size = 8;
  c.attention.n_heads = 2, c.attention.n_kv_heads = 1, c.attention.head_dim = 8;
  c.mlp.intermediate_size = 32, c.mlp.activation = "relu2";
  c.moe.n_routed_experts = 4, c.moe.top_k = 2, c.moe.n_shared_experts = 1;
  c.moe.intermediate_size = 8, c.moe.shared_intermediate_size = 12;
  return c;
}

FlopsPerToken count(const layers::ModelConfig& c, int64_t T) {
  Generator gen(1);
  layers::HybridLM model(c, gen);
  return model_flops_per_token(model, T);
}

TEST(Flops, HandCountOfAMambaAttentionMlpModel) {
  const int64_t T = 16;
  FlopsPerToken f = count(small("M*-"), T);
  // C = 16, V = 32. Mamba: inner = 2 * 8 = 16, in_proj [16 + (16 + 2 * 8) + 2, 16] = 50 x 16,
  // out_proj 16 x 16. Attention: q 16 x 16, k 8 x 16, v 8 x 16, o 16 x 16. MLP (relu2): up
  // 32 x 16, down 16 x 32. lm_head 32 x 16.
  const int64_t n_mm = 50 * 16 + 16 * 16 + (16 + 8 + 8 + 16) * 16 + 2 * 32 * 16 + 32 * 16;
  EXPECT_EQ(f.matmul_params, n_mm);
  EXPECT_EQ(f.matmul, 6.0 * n_mm);
  // Attention: 12 * H * D * ctx, ctx = mean of t + 1 over t < 16 = 8.5.
  EXPECT_DOUBLE_EQ(f.attention, 12.0 * 2 * 8 * 8.5);
  // Mamba: conv 4 taps x (16 + 2 * 8) channels; chunk Q = 8, causal half (8 + 1) / 2 = 4.5:
  // scores G N 4.5 = 36, scores x X: H P 4.5 = 72; state and read-out 2 H P N = 256.
  EXPECT_DOUBLE_EQ(f.ssd, 6.0 * (4 * 32 + 36 + 72 + 256));
  EXPECT_DOUBLE_EQ(f.total(), f.matmul + f.attention + f.ssd);

  // The chunk is capped by T: with T = 4, Q = 4 and the causal half 2.5; ctx = 2.5.
  FlopsPerToken g = count(small("M*"), 4);
  EXPECT_DOUBLE_EQ(g.ssd, 6.0 * (4 * 32 + 8 * 2.5 + 16 * 2.5 + 256));
  EXPECT_DOUBLE_EQ(g.attention, 12.0 * 16 * 2.5);
}

TEST(Flops, SlidingWindowTiedEmbeddingsAndExperts) {
  layers::ModelConfig c = small("*");
  c.attention.sliding_window = 4;
  // Keys seen by t = 0..15: 1, 2, 3, then 4 thirteen times.
  EXPECT_DOUBLE_EQ(count(c, 16).attention, 12.0 * 16 * (1 + 2 + 3 + 4 * 13) / 16.0);

  layers::ModelConfig tied = small("-");
  tied.tie_embeddings = true;
  EXPECT_EQ(count(tied, 8).matmul_params, count(small("-"), 8).matmul_params);

  // MoE: router 4 x 16; 4 routed relu2 experts of 2 x 8 x 16, top 2 of 4 active; shared expert
  // 2 x 12 x 16; lm_head.
  FlopsPerToken e = count(small("E"), 8);
  EXPECT_EQ(e.matmul_params, 4 * 16 + 2 * (2 * 8 * 16) + 2 * 12 * 16 + 32 * 16);
  EXPECT_EQ(e.attention, 0);
  EXPECT_EQ(e.ssd, 0);
}

TEST(Flops, SuperlinearBlocksCountSearchAndAttendedKeys) {
  layers::ModelConfig c = small("S");
  const int64_t T = 64;
  kernels::SuperlinearWork w = kernels::superlinear_work(c.superlinear, T, 0);
  ASSERT_GT(w.total_keys, 0);
  EXPECT_DOUBLE_EQ(count(c, T).attention,
                   6.0 * 16 * (double(w.total_search) + 2 * double(w.total_keys)) / T);
  // Sublinear keys per query: far below dense causal attention at long T.
  EXPECT_LT(count(c, 4096).attention, 0.2 * count(small("*"), 4096).attention);
}

TEST(Flops, PeakByDeviceName) {
  EXPECT_EQ(peak_tflops_for("NVIDIA H100 80GB HBM3"), 989);
  EXPECT_EQ(peak_tflops_for("NVIDIA H100 SXM5 80GB"), 989);
  EXPECT_EQ(peak_tflops_for("NVIDIA H200"), 989);
  EXPECT_EQ(peak_tflops_for("NVIDIA H100 PCIe"), 0);
  EXPECT_EQ(peak_tflops_for("NVIDIA A100-SXM4-80GB"), 0);
  EXPECT_EQ(peak_tflops_for(""), 0);
  EXPECT_EQ(device_name(Device::cpu()), "");
  EXPECT_EQ(resolve_peak_tflops(0, Device::cpu()), 0);
  EXPECT_EQ(resolve_peak_tflops(312, Device::cpu()), 312);
}

std::string printed(const Progress& p) {
  std::FILE* f = std::tmpfile();
  Console con(f, false);
  con.progress(p);
  std::rewind(f);
  char buf[512] = {};
  size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  return std::string(buf, n);
}

TEST(Mfu, ProgressLineShowsItOnlyWhenKnown) {
  Progress p;
  p.step = 3, p.total = 10, p.tokens_per_s = 1000;
  EXPECT_EQ(printed(p).find("mfu"), std::string::npos) << printed(p);
  p.mfu = 0.4123;
  EXPECT_NE(printed(p).find("| mfu 41.2% |"), std::string::npos) << printed(p);
}

TEST(Mfu, MetricsCarryItWithAConfiguredPeak) {
  const std::string dir =
      (fs::temp_directory_path() / ("sl_mfu_" + std::to_string(::getpid()))).string();
  fs::remove_all(dir);
  const std::string tiny = test::tiny_config(R"(
logging: {every: 1, eval_batches: 0}
steps: 2
batch_size: 2
seq_len: 16
)");
  for (double peak : {0.0, 1e-3}) {
    const std::string metrics = dir + "/m" + std::to_string(peak > 0) + ".jsonl";
    StatusOr<TrainConfig> c = parse_train_config(
        tiny, "tiny.yaml",
        {"logging.metrics=" + metrics, "logging.peak_tflops=" + std::to_string(peak)});
    ASSERT_TRUE(c.ok()) << c.status().message();
    TrainHooks hooks;
    hooks.quiet = true;
    ASSERT_TRUE(train(c.value(), hooks).ok());
    Generator gen(c.value().seed);
    layers::HybridLM model(c.value().model, gen);
    const double fpt = model_flops_per_token(model, 16).total();
    std::ifstream in(metrics);
    std::string line;
    int records = 0;
    while (std::getline(in, line)) {
      ++records;
      size_t at = line.find("\"mfu\": ");
      if (peak == 0) {
        EXPECT_EQ(at, std::string::npos) << line;
        continue;
      }
      ASSERT_NE(at, std::string::npos) << line;
      double mfu = std::stod(line.substr(at + 7));
      double tps = std::stod(line.substr(line.find("\"tokens_per_s\": ") + 16));
      EXPECT_NEAR(mfu, fpt * tps / (peak * 1e12), 1e-6 * mfu) << line;
    }
    EXPECT_EQ(records, 2);
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace sl::trainer
