// The training loop end to end on a tiny model: resuming (from a hook stop or a signal) is bit
// for bit a straight run; SIGINT/SIGTERM write a checkpoint; NaN gradients skip the update and
// too many stop the run; a corrupt newest checkpoint is passed over; metrics are written.
#include "trainer/train.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/device.h"
#include "layers/hybrid_lm.h"
#include "tests/common/gpu.h"
#include "tests/trainer/train_fixture.h"
#include "trainer/checkpoint.h"

namespace sl::trainer {
namespace {

namespace fs = std::filesystem;

const std::string kTiny = test::tiny_config(R"(
optimizer: {lr: 1.0e-2}
schedule: {kind: cosine, warmup_steps: 2}
logging: {every: 1, eval_batches: 1}
seed: 5
steps: 8
batch_size: 4
seq_len: 16
grad_accum: 2
)");

class TrainTest : public test::TrainRunTest {
 protected:
  TrainConfig config(std::vector<std::string> overrides = {}) {
    overrides.insert(overrides.begin(), "checkpoint.dir=" + dir_);
    return parse(kTiny, "tiny.yaml", overrides);
  }
};

void expect_bit_identical(const TrainResult& a, const TrainResult& b) {
  ASSERT_EQ(a.params.size(), b.params.size());
  for (size_t i = 0; i < a.params.size(); ++i) {
    const Tensor &x = a.params[i].second, &y = b.params[i].second;
    ASSERT_EQ(a.params[i].first, b.params[i].first);
    ASSERT_EQ(x.shape(), y.shape());
    EXPECT_EQ(std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()), 0)
        << a.params[i].first << " differs";
  }
}

TEST_F(TrainTest, StopAndResumeIsBitIdenticalToAStraightRun) {
  TrainResult straight = run(config({"checkpoint.dir="}));
  EXPECT_EQ(straight.end_step, 8);
  EXPECT_FALSE(straight.interrupted);
  EXPECT_LT(straight.final_eval_loss, straight.initial_eval_loss);

  TrainHooks stop_at_4;
  stop_at_4.after_step = [](int64_t done) { return done < 4; };
  TrainResult first = run(config(), stop_at_4);
  EXPECT_TRUE(first.interrupted);
  EXPECT_EQ(first.end_step, 4);
  EXPECT_EQ(first.last_checkpoint, checkpoint_path(dir_, 4));

  TrainResult second = run(config());
  EXPECT_EQ(second.start_step, 4);
  EXPECT_EQ(second.end_step, 8);
  expect_bit_identical(straight, second);
  for (size_t i = 0; i < straight.params.size(); ++i) {  // the last 4 steps did move weights
    if (straight.params[i].first != "lm_head.weight") continue;
    EXPECT_NE(std::memcmp(straight.params[i].second.data_ptr(), first.params[i].second.data_ptr(),
                          first.params[i].second.nbytes()),
              0);
  }
}

TEST_F(TrainTest, SignalsCheckpointAndTheRunResumes) {
  TrainResult straight = run(config({"checkpoint.dir="}));
  for (int sig : {SIGINT, SIGTERM}) {
    fs::remove_all(dir_);
    TrainHooks raise_at_3;
    raise_at_3.after_step = [sig](int64_t done) {
      if (done == 3) std::raise(sig);
      return true;
    };
    TrainResult first = run(config(), raise_at_3);
    EXPECT_TRUE(first.interrupted);
    EXPECT_EQ(first.interrupt_signal, sig);
    EXPECT_EQ(first.end_step, 3);
    EXPECT_TRUE(fs::exists(checkpoint_path(dir_, 3)));
    struct sigaction now {};
    sigaction(sig, nullptr, &now);
    EXPECT_EQ(now.sa_handler, SIG_DFL) << "handler not restored for signal " << sig;
    TrainResult second = run(config());
    EXPECT_EQ(second.start_step, 3);
    expect_bit_identical(straight, second);
  }
}

TEST_F(TrainTest, NanGradientSkipsTheUpdate) {
  TrainConfig c = config({"steps=1", "debug.nan_grad_steps=[0]", "checkpoint.dir="});
  TrainResult r = run(c);
  EXPECT_EQ(r.skipped, 1);
  EXPECT_EQ(r.end_step, 1);
  Generator gen(c.seed);
  layers::HybridLM init(c.model, gen);
  auto named = init.named_parameters();
  ASSERT_EQ(named.size(), r.params.size());
  for (size_t i = 0; i < named.size(); ++i)
    EXPECT_EQ(std::memcmp(named[i].second.value().data_ptr(), r.params[i].second.data_ptr(),
                          r.params[i].second.nbytes()),
              0)
        << named[i].first << " changed by a skipped step";

  r = run(config({"debug.nan_grad_steps=[2, 5]", "checkpoint.dir="}));
  EXPECT_EQ(r.skipped, 2);
  EXPECT_EQ(r.end_step, 8);
  for (const auto& [name, t] : r.params)
    for (float v : t.to_vector<float>()) ASSERT_TRUE(std::isfinite(v)) << name;
}

TEST_F(TrainTest, TooManySkippedStepsStopTheRun) {
  TrainHooks hooks;
  hooks.quiet = true;
  StatusOr<TrainResult> r =
      train(config({"debug.nan_grad_steps=[0, 1, 2]", "max_skipped_steps=2"}), hooks);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("max_skipped_steps = 2"), std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find("step 3"), std::string::npos) << r.status().message();
}

TEST_F(TrainTest, CorruptNewestCheckpointIsNeverResumed) {
  TrainResult full = run(config({"steps=6", "checkpoint.every=2", "checkpoint.keep=5"}));
  EXPECT_EQ(list_checkpoints(dir_).size(), 3u);  // 2, 4, 6
  fs::resize_file(checkpoint_path(dir_, 6), fs::file_size(checkpoint_path(dir_, 6)) - 9);
  TrainResult resumed = run(config({"steps=6"}));
  EXPECT_EQ(resumed.start_step, 4);
  EXPECT_EQ(resumed.end_step, 6);
  expect_bit_identical(full, resumed);  // redone from step 4, same result

  fs::resize_file(checkpoint_path(dir_, 6), 40);
  TrainHooks hooks;
  hooks.quiet = true;
  StatusOr<TrainResult> r = train(config({"checkpoint.resume=" + checkpoint_path(dir_, 6)}), hooks);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kCorruption);
  EXPECT_NE(r.status().message().find("ckpt_00000006.slck"), std::string::npos)
      << r.status().message();
}

TEST_F(TrainTest, ResumeRejectsAnotherModel) {
  run(config({"steps=2"}));
  TrainHooks hooks;
  hooks.quiet = true;
  StatusOr<TrainResult> r = train(config({"model.d_model=24", "steps=4"}), hooks);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("different model configuration"), std::string::npos)
      << r.status().message();
}

TEST_F(TrainTest, MetricsAreJsonLines) {
  run(config({"steps=3", "logging.eval_every=2"}));
  std::ifstream in(dir_ + "/metrics.jsonl");
  ASSERT_TRUE(in) << "no metrics file";
  std::string line;
  int train_lines = 0, eval_lines = 0;
  while (std::getline(in, line)) {
    ASSERT_EQ(line.front(), '{');
    ASSERT_EQ(line.back(), '}');
    if (line.find("\"loss\"") != std::string::npos) {
      ++train_lines;
      for (const char* k :
           {"\"step\"", "\"lr\"", "\"tokens_per_s\"", "\"grad_norm\"", "\"skipped\""})
        EXPECT_NE(line.find(k), std::string::npos) << k << " missing in " << line;
    }
    eval_lines += line.find("\"eval_accuracy\"") != std::string::npos;
  }
  EXPECT_EQ(train_lines, 3);
  EXPECT_EQ(eval_lines, 3);  // before, at step 2, after
}

TEST_F(TrainTest, CudaWithoutAGpuIsAClearError) {
  if (cuda_available()) GTEST_SKIP() << "a GPU is visible";
  TrainHooks hooks;
  hooks.quiet = true;
  StatusOr<TrainResult> r = train(config({"device=cuda"}), hooks);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("device: \"cuda\""), std::string::npos)
      << r.status().message();
}

TEST_F(TrainTest, Bf16MixedPrecisionTrainsOnTheCpu) {
  TrainResult r = run(config({"precision=bf16", "checkpoint.dir="}));
  EXPECT_EQ(r.skipped, 0);
  EXPECT_TRUE(std::isfinite(r.final_eval_loss));
  EXPECT_LT(r.final_eval_loss, r.initial_eval_loss);
  for (const auto& [name, t] : r.params) EXPECT_EQ(t.dtype(), DType::F32) << name;
}

// The GPU run in f32 follows the CPU run (same data, same init) to within accumulated rounding;
// in bf16 (the default on a GPU) it trains, and its resume is bit for bit.
TEST_F(TrainTest, GpuTrainsLikeTheCpu) {
  SL_REQUIRE_GPU();
  TrainResult cpu = run(config({"checkpoint.dir="}));
  TrainResult gpu = run(config({"checkpoint.dir=", "device=cuda", "precision=f32"}));
  ASSERT_EQ(cpu.params.size(), gpu.params.size());
  // Adam turns near-zero gradient noise into full-size steps, so compare the weights as a whole
  // (relative L2 over every parameter) rather than element by element.
  double diff = 0, norm = 0;
  for (size_t i = 0; i < cpu.params.size(); ++i) {
    std::vector<float> a = cpu.params[i].second.to_vector<float>();
    std::vector<float> b = gpu.params[i].second.to_vector<float>();
    ASSERT_EQ(a.size(), b.size()) << cpu.params[i].first;
    for (size_t j = 0; j < a.size(); ++j) {
      diff += (double(a[j]) - b[j]) * (double(a[j]) - b[j]);
      norm += double(a[j]) * a[j];
    }
  }
  EXPECT_LT(std::sqrt(diff / norm), 1e-2);
  EXPECT_NEAR(cpu.final_eval_loss, gpu.final_eval_loss, 2e-2 * cpu.final_eval_loss);

  TrainResult straight = run(config({"checkpoint.dir=", "device=cuda"}));
  EXPECT_LT(straight.final_eval_loss, straight.initial_eval_loss);
  TrainHooks stop_at_4;
  stop_at_4.after_step = [](int64_t done) { return done < 4; };
  run(config({"device=cuda"}), stop_at_4);
  expect_bit_identical(straight, run(config({"device=cuda"})));
}

}  // namespace
}  // namespace sl::trainer
