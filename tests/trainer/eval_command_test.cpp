// `superlinear eval`: the loaded model is the trained one (its eval loss equals that of the
// trainer's final weights), --checkpoint picks another step, the NIAH grid is written as CSV and
// PNG in grid order, and errors name the checkpoint, key or file. The eval: section round-trips.
#include "trainer/eval_command.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "trainer/train.h"

namespace sl::trainer {
namespace {

namespace fs = std::filesystem;

const char* kTiny = R"(model:
  vocab_size: 48
  d_model: 16
  pattern: "M*-"
  mamba: {n_heads: 2, head_dim: 8, state_size: 8, chunk_size: 8}
  attention: {n_heads: 2, n_kv_heads: 1, head_dim: 8}
  mlp: {intermediate_size: 32}
data: {task: niah_multikey, n_keys: 8, n_values: 8, n_haystack: 16, n_needles: 2}
optimizer: {lr: 1.0e-2}
checkpoint: {every: 3}
logging: {every: 3, eval_batches: 2}
eval:
  niah:
    task: niah_single
    lengths: [12, 20]
    depths: [0, 0.5, 1]
    samples: 5
    batch_size: 2
device: cpu
seed: 3
steps: 6
batch_size: 3
seq_len: 16
)";

class EvalCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() /
            ("sl_eval_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    config_ = dir_ + "/tiny.yaml";
    std::ofstream(config_) << kTiny;
    null_ = std::fopen("/dev/null", "w");
  }
  void TearDown() override {
    std::fclose(null_);
    fs::remove_all(dir_);
  }
  EvalOptions opts() {
    EvalOptions o;
    o.config_path = config_;
    o.overrides = {"checkpoint.dir=" + dir_ + "/ck"};
    return o;
  }
  TrainResult train_tiny() {
    StatusOr<TrainConfig> c = load_train_config(config_, opts().overrides);
    SL_CHECK(c.ok()) << c.status().message();
    TrainHooks h;
    h.quiet = true;
    h.keep_params = true;
    StatusOr<TrainResult> r = train(c.value(), h);
    SL_CHECK(r.ok()) << r.status().message();
    return std::move(r).value();
  }

  std::string dir_, config_;
  std::FILE* null_ = nullptr;
};

TEST_F(EvalCommandTest, LoadsTheLatestCheckpointAsTrained) {
  TrainResult trained = train_tiny();
  StatusOr<EvalReport> r = run_eval(opts(), null_);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r.value().step, 6);
  EXPECT_EQ(r.value().checkpoint, checkpoint_path(dir_ + "/ck", 6));
  // The trainer's own final evaluation used the same weights and batches.
  EXPECT_EQ(r.value().lm.loss, trained.final_eval_loss);
  EXPECT_EQ(r.value().lm.accuracy, trained.final_eval_accuracy);
  EXPECT_NEAR(r.value().lm.perplexity(), std::exp(trained.final_eval_loss), 1e-9);

  EvalOptions o = opts();
  o.checkpoint = checkpoint_path(dir_ + "/ck", 3);
  o.batches = 1;
  StatusOr<EvalReport> r3 = run_eval(o, null_);
  ASSERT_TRUE(r3.ok()) << r3.status().message();
  EXPECT_EQ(r3.value().step, 3);
  EXPECT_NE(r3.value().lm.loss, r.value().lm.loss);
  EXPECT_LT(r3.value().lm.scored, r.value().lm.scored);  // 1 batch instead of 2
}

TEST_F(EvalCommandTest, NiahGridWritesCsvAndPngInGridOrder) {
  train_tiny();
  EvalOptions o = opts();
  o.out_dir = dir_ + "/out";
  StatusOr<EvalReport> r = run_eval(o, null_);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const std::vector<NiahCell>& cells = r.value().niah;
  ASSERT_EQ(cells.size(), 6u);
  EXPECT_EQ(r.value().csv_path, dir_ + "/out/niah.csv");
  std::ifstream f(r.value().csv_path);
  std::string line;
  ASSERT_TRUE(std::getline(f, line));
  EXPECT_EQ(line.rfind("# NIAH niah_single", 0), 0u) << line;
  ASSERT_TRUE(std::getline(f, line));
  EXPECT_EQ(line, "length,depth,accuracy,loss,rows,scored");
  const int64_t lengths[] = {12, 20};
  const double depths[] = {0, 0.5, 1};
  for (size_t i = 0; i < 6; ++i) {
    ASSERT_TRUE(std::getline(f, line)) << "row " << i;
    std::stringstream ss(line);
    std::string field[6];
    for (std::string& s : field) std::getline(ss, s, ',');
    EXPECT_EQ(std::stoll(field[0]), lengths[i / 3]);
    EXPECT_EQ(std::stod(field[1]), depths[i % 3]);
    const double acc = std::stod(field[2]);
    EXPECT_GE(acc, 0);
    EXPECT_LE(acc, 1);
    EXPECT_EQ(std::stoll(field[4]), 6);  // 5 samples rounded up to batches of 2
    EXPECT_EQ(std::stoll(field[5]), 6);  // niah_single: one answer per row
    EXPECT_NEAR(acc * 6, std::round(acc * 6), 1e-4) << "not a fraction of 6 answers";
    EXPECT_NEAR(acc, cells[i].accuracy, 1e-6);
  }
  EXPECT_FALSE(std::getline(f, line));
  std::ifstream png(r.value().png_path, std::ios::binary);
  char sig[8] = {};
  png.read(sig, 8);
  EXPECT_EQ(std::string(sig + 1, 3), "PNG");
}

TEST_F(EvalCommandTest, ErrorsNameTheProblem) {
  StatusOr<EvalReport> r = run_eval(opts(), null_);  // nothing trained yet
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("checkpoint.dir"), std::string::npos) << r.status().message();

  train_tiny();
  EvalOptions o = opts();
  o.overrides.push_back("model.d_model=32");
  r = run_eval(o, null_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("different model configuration"), std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find("ckpt_00000006.slck"), std::string::npos);

  o = opts();
  o.checkpoint = dir_ + "/missing.slck";
  r = run_eval(o, null_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("missing.slck"), std::string::npos);

  o = opts();
  o.overrides.push_back("eval.niah.lengths=[5]");  // needle, 1 noise token, SEP k v: 6
  r = run_eval(o, null_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("eval.niah.lengths"), std::string::npos)
      << r.status().message();

  o = opts();
  o.overrides.push_back("eval.niah.task=copy");
  r = run_eval(o, null_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("eval.niah.task"), std::string::npos);

  EXPECT_EQ(eval_command({}), 2);
  EXPECT_EQ(eval_command({config_, "--batches", "x"}), 2);
  EXPECT_EQ(eval_command({config_, "--bogus"}), 2);
}

TEST(EvalConfig, UnknownKeysNameFileAndLineAndTheSectionRoundTrips) {
  StatusOr<TrainConfig> bad = parse_train_config(
      "model: {vocab_size: 48, d_model: 16, pattern: \"-\", mlp: {intermediate_size: 16}}\n"
      "eval:\n  niah:\n    lengths: [16]\n    lenghts: [32]\n",
      "bad.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("bad.yaml:5"), std::string::npos) << bad.status().message();
  EXPECT_NE(bad.status().message().find("eval.niah.lenghts"), std::string::npos);
  bad = parse_train_config(
      "model: {vocab_size: 48, d_model: 16, pattern: \"-\", mlp: {intermediate_size: 16}}\n"
      "eval: {niha: {}}\n",
      "bad.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("eval.niha"), std::string::npos);
  bad = parse_train_config(kTiny, "tiny.yaml", {"eval.niah.depths=[0, 2]"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("eval.niah.depths"), std::string::npos);

  StatusOr<TrainConfig> c = parse_train_config(kTiny, "tiny.yaml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  StatusOr<TrainConfig> again = parse_train_config(to_yaml(c.value()), "again.yaml");
  ASSERT_TRUE(again.ok()) << again.status().message();
  const NiahEvalConfig &a = c.value().eval.niah, &b = again.value().eval.niah;
  EXPECT_EQ(b.task, "niah_single");
  EXPECT_EQ(b.lengths, (std::vector<int64_t>{12, 20}));
  EXPECT_EQ(b.depths, a.depths);
  EXPECT_EQ(b.samples, 5);
  EXPECT_EQ(b.batch_size, 2);
  EXPECT_EQ(to_yaml(again.value()), to_yaml(c.value()));
}

}  // namespace
}  // namespace sl::trainer
