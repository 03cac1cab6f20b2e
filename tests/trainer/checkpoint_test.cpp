// Checkpoint files: exact round trip of tensors of every stored dtype and of texts; truncated,
// bit-flipped and foreign files rejected with the file named; the newest corrupt checkpoint is
// never taken as the latest; pruning keeps the newest; no temporary file is left behind.
#include "trainer/checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

namespace sl::trainer {
namespace {

namespace fs = std::filesystem;

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() /
            ("sl_ckpt_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  CheckpointData sample(float base) {
    CheckpointData d;
    Generator gen(3);
    d.add("param/w", Tensor::randn({3, 5}, gen));
    d.add("param/b", Tensor::full({7}, base, DType::F32));
    d.add("adam/w/step", Tensor::from_vector<int64_t>({42}, {1}));
    d.add("half", Tensor::randn({2, 2, 2}, gen, DType::BF16));
    d.add("scalar", Tensor::full({}, 2.5, DType::F64));
    d.texts["config"] = "model:\n  d_model: 8\n";
    return d;
  }
  std::string dir_;
};

std::vector<char> bytes_of(const Tensor& t) {
  std::vector<char> out(t.nbytes());
  std::memcpy(out.data(), t.contiguous().data_ptr(), out.size());
  return out;
}

TEST_F(CheckpointTest, RoundTripIsExact) {
  CheckpointData d = sample(1.0f);
  std::string path = checkpoint_path(dir_, 7);
  EXPECT_EQ(fs::path(path).filename().string(), "ckpt_00000007.slck");
  ASSERT_TRUE(write_checkpoint(path, d).ok());
  StatusOr<CheckpointData> r = read_checkpoint(path);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r.value().tensors.size(), d.tensors.size());
  for (const auto& [name, t] : d.tensors) {
    const Tensor* got = r.value().find(name);
    ASSERT_NE(got, nullptr) << name;
    EXPECT_EQ(got->dtype(), t.dtype()) << name;
    EXPECT_EQ(got->shape(), t.shape()) << name;
    EXPECT_EQ(bytes_of(*got), bytes_of(t)) << name;
  }
  EXPECT_EQ(r.value().texts.at("config"), d.texts.at("config"));
  for (const auto& e : fs::directory_iterator(dir_))
    EXPECT_EQ(e.path().filename().string()[0] == '.', false) << "left behind: " << e.path();
}

TEST_F(CheckpointTest, DamagedFilesAreCorruptionNamingTheFile) {
  std::string path = checkpoint_path(dir_, 1);
  ASSERT_TRUE(write_checkpoint(path, sample(1.0f)).ok());
  std::string good;
  {
    std::ifstream in(path, std::ios::binary);
    good.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  auto expect_corrupt = [&](const std::string& content, const char* what) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
    StatusOr<CheckpointData> r = read_checkpoint(path);
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_EQ(r.status().code(), Status::Code::kCorruption) << what;
    EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status().message();
  };
  expect_corrupt(good.substr(0, good.size() / 2), "truncated");
  expect_corrupt(good.substr(0, 10), "header only");
  std::string flipped = good;
  flipped[flipped.size() / 2] ^= 0x10;
  expect_corrupt(flipped, "one bit flipped");
  expect_corrupt("model:\n  d_model: 8\n" + std::string(40, ' '), "not a checkpoint");
}

TEST_F(CheckpointTest, LatestValidSkipsCorruptNewest) {
  ASSERT_TRUE(write_checkpoint(checkpoint_path(dir_, 10), sample(1.0f)).ok());
  ASSERT_TRUE(write_checkpoint(checkpoint_path(dir_, 20), sample(2.0f)).ok());
  fs::resize_file(checkpoint_path(dir_, 20), 100);
  CheckpointData d;
  std::vector<std::string> warnings;
  StatusOr<std::string> p = latest_valid_checkpoint(dir_, &d, &warnings);
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(p.value(), checkpoint_path(dir_, 10));
  EXPECT_EQ(d.find("param/b")->to_vector<float>()[0], 1.0f);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("ckpt_00000020.slck"), std::string::npos) << warnings[0];
  fs::resize_file(checkpoint_path(dir_, 10), 5);
  p = latest_valid_checkpoint(dir_, &d, &warnings);
  EXPECT_EQ(p.status().code(), Status::Code::kNotFound);
}

TEST_F(CheckpointTest, PruneKeepsTheNewest) {
  for (int64_t s : {5, 15, 10, 20})
    ASSERT_TRUE(write_checkpoint(checkpoint_path(dir_, s), sample(float(s))).ok());
  prune_checkpoints(dir_, 2);
  auto left = list_checkpoints(dir_);
  ASSERT_EQ(left.size(), 2u);
  EXPECT_EQ(left[0].first, 15);
  EXPECT_EQ(left[1].first, 20);
  EXPECT_TRUE(list_checkpoints(dir_ + "/absent").empty());
}

}  // namespace
}  // namespace sl::trainer
