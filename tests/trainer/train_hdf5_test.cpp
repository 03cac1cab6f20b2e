// Training on an HDF5 token file made by `data build` from text: the run is finite and learns,
// resuming is bit for bit a straight run, and the `data:` keys of source hdf5 are parsed,
// printed, validated and checked against the model's vocabulary.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "data/build_command.h"
#include "tests/trainer/train_fixture.h"
#include "trainer/checkpoint.h"
#include "trainer/train.h"

namespace sl::trainer {
namespace {

namespace fs = std::filesystem;

// The model section of configs/quickstart.yaml, shrunk; the byte tokenizer's vocabulary.
const char* kTiny = R"(
model:
  vocab_size: 259
  d_model: 16
  pattern: "M*M-"
  mamba: {n_heads: 2, head_dim: 8, state_size: 8, chunk_size: 8}
  attention: {n_heads: 2, n_kv_heads: 1, head_dim: 8}
  mlp: {intermediate_size: 32}
data: {source: hdf5, eval_fraction: 0.2}
optimizer: {lr: 1.0e-2}
schedule: {kind: cosine, warmup_steps: 2}
logging: {every: 1, eval_batches: 2}
device: cpu
seed: 3
steps: 10
batch_size: 4
seq_len: 32
)";

class TrainHdf5Test : public test::TrainRunTest {
 protected:
  void SetUp() override {
    TrainRunTest::SetUp();
    fs::create_directories(dir_ + "/text");
    const char* words[] = {"the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far"};
    for (int f = 0; f < 10; ++f) {
      std::ofstream out(dir_ + "/text/doc" + std::to_string(f) + ".txt");
      for (int w = 0; w < 40; ++w) out << words[(f * 7 + w * 3) % 10] << (w % 8 == 7 ? ".\n" : " ");
    }
    data::BuildOptions o;
    o.output = dir_ + "/tokens.h5";
    o.inputs = {dir_ + "/text"};
    StatusOr<data::BuildSummary> s = data::build_token_dataset(o);
    SL_CHECK(s.ok()) << s.status().message();
  }
  StatusOr<TrainConfig> parse_hdf5(std::vector<std::string> overrides = {}) {
    overrides.insert(overrides.begin(), "data.path=" + dir_ + "/tokens.h5");
    overrides.insert(overrides.begin(), "checkpoint.dir=" + dir_ + "/ckpt");
    return parse_train_config(kTiny, "tiny_hdf5.yaml", overrides);
  }
  TrainConfig config(std::vector<std::string> overrides = {}) {
    StatusOr<TrainConfig> c = parse_hdf5(std::move(overrides));
    SL_CHECK(c.ok()) << c.status().message();
    return c.value();
  }
};

TEST_F(TrainHdf5Test, TrainsAndResumesBitIdentically) {
  TrainResult straight = run(config({"checkpoint.dir="}));
  EXPECT_EQ(straight.end_step, 10);
  EXPECT_TRUE(std::isfinite(straight.last_loss));
  EXPECT_TRUE(std::isfinite(straight.final_eval_loss));
  EXPECT_LT(straight.final_eval_loss, straight.initial_eval_loss);

  TrainHooks stop_at_5;
  stop_at_5.after_step = [](int64_t done) { return done < 5; };
  TrainResult first = run(config(), stop_at_5);
  EXPECT_TRUE(first.interrupted);
  EXPECT_EQ(first.end_step, 5);
  TrainResult second = run(config());
  EXPECT_EQ(second.start_step, 5);
  EXPECT_EQ(second.end_step, 10);
  ASSERT_EQ(straight.params.size(), second.params.size());
  for (size_t i = 0; i < straight.params.size(); ++i) {
    const Tensor &x = straight.params[i].second, &y = second.params[i].second;
    EXPECT_EQ(std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()), 0)
        << straight.params[i].first << " differs";
  }
}

TEST_F(TrainHdf5Test, DataKeysRoundTripAndAreValidated) {
  TrainConfig c = config({"data.shuffle=false", "data.eval_fraction=0.5"});
  EXPECT_EQ(c.data.source, "hdf5");
  EXPECT_FALSE(c.data.shuffle);
  StatusOr<TrainConfig> back = parse_train_config(to_yaml(c), "printed.yaml");
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(to_yaml(back.value()), to_yaml(c));
  EXPECT_EQ(back.value().data.path, c.data.path);
  EXPECT_EQ(back.value().data.eval_fraction, 0.5);

  auto rejects = [&](std::vector<std::string> o, const std::string& what) {
    StatusOr<TrainConfig> r = parse_hdf5(std::move(o));
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_NE(r.status().message().find(what), std::string::npos) << r.status().message();
  };
  rejects({"data.source=csv"}, "data.source");
  rejects({"data.path="}, "data.path");
  rejects({"data.eval_fraction=1.5"}, "data.eval_fraction");
  rejects({"data.shuffle=maybe"}, "data.shuffle");
  // The synthetic keys are not checked against a token file's run.
  EXPECT_TRUE(parse_hdf5({"data.n_pairs=1000"}).ok());
}

TEST_F(TrainHdf5Test, FileProblemsAreStatusNamingTheKeyAndFile) {
  StatusOr<TrainResult> r = train(config({"model.vocab_size=200", "checkpoint.dir="}));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("model.vocab_size is 200"), std::string::npos)
      << r.status().message();
  std::string missing = dir_ + "/nope.h5";
  r = train(config({"data.path=" + missing, "checkpoint.dir="}));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("data.path: " + missing), std::string::npos)
      << r.status().message();
}

}  // namespace
}  // namespace sl::trainer
