// What the trainer tests share: the tiny hybrid they train ("M*-", d_model 16, 32 tokens, on the
// CPU, synthetic recall) as YAML for a test to extend, and a fixture with a per-test temporary
// directory and quiet training runs that keep the final weights.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "trainer/config.h"
#include "trainer/train.h"

namespace sl::test {

// The model, data and device sections; `more` appends the keys a test varies (optimizer,
// logging, steps, batch_size, seq_len, ...).
inline std::string tiny_config(const std::string& more) {
  return R"(
model:
  vocab_size: 32
  d_model: 16
  pattern: "M*-"
  mamba: {n_heads: 2, head_dim: 8, state_size: 8, chunk_size: 8}
  attention: {n_heads: 2, n_kv_heads: 1, head_dim: 8}
  mlp: {intermediate_size: 32}
data: {task: assoc_recall, n_pairs: 3, n_keys: 8, n_values: 8}
device: cpu
)" + more;
}

// dir_: a fresh directory per test (removed after it), unique per process and test name.
class TrainRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (std::filesystem::temp_directory_path() /
            ("sl_train_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->test_suite_name() + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // The config parsed from `yaml` with `overrides`; a parse error fails the test program.
  static trainer::TrainConfig parse(const std::string& yaml, const std::string& file,
                                    const std::vector<std::string>& overrides) {
    StatusOr<trainer::TrainConfig> c = trainer::parse_train_config(yaml, file, overrides);
    SL_CHECK(c.ok()) << c.status().message();
    return c.value();
  }
  // A quiet run keeping the final master weights in TrainResult::params.
  static StatusOr<trainer::TrainResult> try_run(const trainer::TrainConfig& c,
                                                trainer::TrainHooks hooks = {}) {
    hooks.quiet = true;
    hooks.keep_params = true;
    return trainer::train(c, hooks);
  }
  static trainer::TrainResult run(const trainer::TrainConfig& c, trainer::TrainHooks hooks = {}) {
    StatusOr<trainer::TrainResult> r = try_run(c, std::move(hooks));
    SL_CHECK(r.ok()) << r.status().message();
    return std::move(r).value();
  }

  std::string dir_;
};

}  // namespace sl::test
