// `superlinear sweep`: a 2x1 grid of tiny runs completes and writes both tables; a rerun skips
// finished runs (logs untouched); a run without result.json resumes from its checkpoints; errors
// name the sweep file, line and key, and a bad run stops the sweep before anything starts.
//
// The children are the real `superlinear` program: $SL_SUPERLINEAR_BIN, else ../superlinear
// next to this test's directory (the build tree's layout).
#include "trainer/sweep.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace sl::trainer {
namespace {

namespace fs = std::filesystem;

const char* kBase = R"(model:
  vocab_size: 32
  d_model: 16
  pattern: "M-"
  mamba: {n_heads: 2, head_dim: 8, state_size: 8, chunk_size: 8}
  mlp: {intermediate_size: 32}
data: {task: assoc_recall, n_pairs: 3, n_keys: 8, n_values: 8}
checkpoint: {every: 2, resume: none}
logging: {every: 2, eval_batches: 1}
device: cpu
seed: 5
steps: 4
batch_size: 2
seq_len: 16
)";

std::string superlinear_bin() {
  if (const char* env = std::getenv("SL_SUPERLINEAR_BIN"); env && *env) return env;
  return (fs::read_symlink("/proc/self/exe").parent_path().parent_path() / "superlinear").string();
}

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class SweepTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() /
            ("sl_sweep_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    fs::remove_all(dir_);
    fs::create_directories(dir_ + "/configs");
    std::ofstream(dir_ + "/configs/base.yaml") << kBase;
    null_ = std::fopen("/dev/null", "w");
    opts_.exe = superlinear_bin();
    opts_.out = null_;
  }
  void TearDown() override {
    std::fclose(null_);
    fs::remove_all(dir_);
  }
  // A sweep file in dir_ whose base is configs/base.yaml (relative to the sweep file).
  SweepSpec sweep(const std::string& body) {
    const std::string path = dir_ + "/sweep.yaml";
    std::ofstream(path) << "base: configs/base.yaml\nout_dir: " << dir_ << "/out\n" << body;
    StatusOr<SweepSpec> s = load_sweep(path);
    SL_CHECK(s.ok()) << s.status().message();
    return s.value();
  }
  Status parse_error(const std::string& text) {
    StatusOr<SweepSpec> s = parse_sweep(text, dir_ + "/bad.yaml");
    if (!s.ok()) return s.status();
    return validate_sweep(s.value());
  }

  std::string dir_;
  std::FILE* null_ = nullptr;
  SweepOptions opts_;
};

TEST_F(SweepTest, GridRunsSkipsFinishedAndResumesInterrupted) {
  ASSERT_TRUE(fs::exists(opts_.exe)) << opts_.exe
                                     << " not found: build the superlinear target or set "
                                        "SL_SUPERLINEAR_BIN";
  SweepSpec s = sweep("grid:\n  optimizer.lr: [1.0e-2, 2.0e-3]\n  model.d_model: [16]\n");
  ASSERT_EQ(s.runs.size(), 2u);
  EXPECT_EQ(s.runs[0].name, "lr=1.0e-2,d_model=16");
  EXPECT_EQ(s.runs[1].name, "lr=2.0e-3,d_model=16");
  StatusOr<std::vector<RunOutcome>> r = run_sweep(s, opts_);
  ASSERT_TRUE(r.ok()) << r.status().message();
  for (size_t i = 0; i < 2; ++i) {
    const RunOutcome& o = r.value()[i];
    EXPECT_EQ(o.status, "done") << slurp(run_dir(s, s.runs[i]) + "/log.txt");
    EXPECT_EQ(o.result.steps, 4);
    EXPECT_TRUE(std::isfinite(o.result.eval_loss));
    EXPECT_TRUE(std::isfinite(o.result.train_loss));
    EXPECT_TRUE(fs::exists(run_dir(s, s.runs[i]) + "/ckpt_00000004.slck"));
  }
  EXPECT_NE(r.value()[0].result.eval_loss, r.value()[1].result.eval_loss);
  std::string csv = slurp(dir_ + "/out/results.csv");
  EXPECT_EQ(csv.rfind("name,optimizer.lr,model.d_model,status,steps,train_loss,eval_loss,", 0), 0u)
      << csv;
  EXPECT_NE(csv.find("\n\"lr=1.0e-2,d_model=16\",1.0e-2,16,done,4,"), std::string::npos) << csv;
  EXPECT_NE(csv.find("\n\"lr=2.0e-3,d_model=16\",2.0e-3,16,done,4,"), std::string::npos) << csv;
  std::string md = slurp(dir_ + "/out/results.md");
  EXPECT_NE(md.find("| lr=2.0e-3,d_model=16 | 2.0e-3 | 16 | done | 4 |"), std::string::npos) << md;

  // Rerun: nothing runs again, the logs and results stay as they were.
  const std::string log0 = run_dir(s, s.runs[0]) + "/log.txt";
  const std::string log1 = run_dir(s, s.runs[1]) + "/log.txt";
  const std::string text0 = slurp(log0), text1 = slurp(log1);
  const auto mtime1 = fs::last_write_time(log1);
  r = run_sweep(s, opts_);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r.value()[0].status, "done earlier");
  EXPECT_EQ(r.value()[1].status, "done earlier");
  EXPECT_EQ(slurp(log0), text0);
  EXPECT_EQ(slurp(log1), text1);
  EXPECT_EQ(fs::last_write_time(log1), mtime1);

  // Interrupted run 0: no result.json and no final checkpoint; it resumes at step 2.
  fs::remove(run_dir(s, s.runs[0]) + "/result.json");
  fs::remove(run_dir(s, s.runs[0]) + "/ckpt_00000004.slck");
  r = run_sweep(s, opts_);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r.value()[0].status, "done");
  EXPECT_EQ(r.value()[1].status, "done earlier");
  EXPECT_EQ(r.value()[0].result.steps, 4);
  std::string resumed = slurp(log0);
  ASSERT_GT(resumed.size(), text0.size());
  EXPECT_EQ(resumed.substr(0, text0.size()), text0) << "the log is appended to";
  EXPECT_NE(resumed.find("at step 2", text0.size()), std::string::npos) << resumed;
  EXPECT_EQ(slurp(log1), text1);
}

TEST_F(SweepTest, RunsListNamesAndSharedSet) {
  SweepSpec s = sweep(
      "set: {steps: 3}\nparallel: gpus\nruns:\n  - {name: small, set: {model.d_model: 16}}\n"
      "  - set: {model.d_model: 24, model.mamba.head_dim: 12}\n");
  ASSERT_EQ(s.runs.size(), 2u);
  EXPECT_EQ(s.runs[0].name, "small");
  EXPECT_EQ(s.runs[1].name, "d_model=24,head_dim=12");
  EXPECT_TRUE(s.gpus);
  EXPECT_EQ(s.keys, (std::vector<std::string>{"model.d_model", "model.mamba.head_dim"}));
  std::vector<std::string> o = run_overrides(s, s.runs[1]);
  ASSERT_GE(o.size(), 4u);
  EXPECT_EQ(o[0], "steps=3");
  EXPECT_EQ(o[1], "model.d_model=24");
  EXPECT_NE(std::find(o.begin(), o.end(), "checkpoint.dir=" + run_dir(s, s.runs[1])), o.end());
  EXPECT_NE(std::find(o.begin(), o.end(), "checkpoint.resume=auto"), o.end());
  EXPECT_EQ(s.base, dir_ + "/configs/base.yaml");
  EXPECT_TRUE(validate_sweep(s).ok()) << validate_sweep(s).message();
  // Two keys with one last component keep their whole dotted names.
  SweepSpec c = sweep("grid:\n  model.mamba.head_dim: [8]\n  model.attention.head_dim: [8]\n");
  EXPECT_EQ(c.runs[0].name, "model.mamba.head_dim=8,model.attention.head_dim=8");
}

TEST_F(SweepTest, ErrorsNameFileLineAndKey) {
  auto expect = [&](const std::string& text, const std::vector<std::string>& parts) {
    Status s = parse_error(text);
    ASSERT_FALSE(s.ok()) << text;
    for (const std::string& p : parts)
      EXPECT_NE(s.message().find(p), std::string::npos) << "'" << p << "' not in: " << s.message();
  };
  const std::string head = "base: configs/base.yaml\nout_dir: " + dir_ + "/out\n";
  expect("out_dir: x\ngrid: {steps: [1]}\n", {"bad.yaml", "base"});
  expect(head + "gird: {steps: [1]}\n", {"bad.yaml:3", "gird", "unknown key"});
  expect(head + "grid: {steps: []}\n", {"bad.yaml:3", "grid.steps"});
  expect(head + "grid: {steps: [1]}\nruns: [{set: {steps: 2}}]\n", {"exactly one of grid"});
  expect(head + "runs: [{name: a, set: {steps: 2}}, {name: a, set: {steps: 3}}]\n", {"'a'"});
  expect(head + "runs: [{nmae: a}]\n", {"bad.yaml:3", "runs.nmae"});
  expect(head + "parallel: many\ngrid: {steps: [1]}\n", {"bad.yaml:3", "parallel"});
  expect("base: nowhere.yaml\nout_dir: x\ngrid: {steps: [1]}\n", {"bad.yaml", "nowhere.yaml"});
  expect(head + "grid:\n  steps: [2]\n  model.bogus: [1]\n", {"bad.yaml:5", "model.bogus"});
  expect(head + "runs:\n  - name: x\n    set:\n      steps: 2\n      optimizer.lr: -1\n",
         {"bad.yaml:7", "run 'x'", "optimizer.lr"});
  expect(head + "grid:\n  optimizer.lr: [1.0e-2, -1]\n", {"run 'lr=-1'", "optimizer.lr"});

  // A sweep with one bad run starts none of them.
  SweepSpec s = sweep("grid:\n  optimizer.lr: [1.0e-2, abc]\n");
  StatusOr<std::vector<RunOutcome>> r = run_sweep(s, opts_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("optimizer.lr"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir_ + "/out")) << "a run started before validation failed";
  EXPECT_EQ(sweep_command({}, opts_.exe), 2);
  EXPECT_EQ(sweep_command({dir_ + "/missing.yaml"}, opts_.exe), 1);
}

TEST(RunResult, JsonRoundTripWithNaNAsNull) {
  const std::string dir =
      (fs::temp_directory_path() / ("sl_result_" + std::to_string(::getpid()))).string();
  fs::create_directories(dir);
  TrainResult t;
  t.end_step = 7;
  t.last_loss = 1.25;
  t.final_eval_loss = 2.0 / 3.0;
  t.seconds = 0.5;
  ASSERT_TRUE(write_result_json(dir, t).ok());
  StatusOr<RunResult> r = read_result_json(dir + "/result.json");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r.value().steps, 7);
  EXPECT_EQ(r.value().train_loss, 1.25);
  EXPECT_EQ(r.value().eval_loss, 2.0 / 3.0);
  EXPECT_TRUE(std::isnan(r.value().eval_accuracy));
  std::ofstream(dir + "/bad.json") << "{\"steps\": [";
  StatusOr<RunResult> bad = read_result_json(dir + "/bad.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("bad.json"), std::string::npos);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace sl::trainer
