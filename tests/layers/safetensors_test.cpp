// Safetensors: exact round trip of every supported dtype (strided input, scalars and empty
// tensors included), the reference layout (header padded to 8 bytes, tensors aligned), a
// hand-written file read independently of the writer, sharded round trip, and every malformed
// case rejected with the file and the tensor named.
#include "layers/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

namespace sl::layers {
namespace {

namespace fs = std::filesystem;

std::vector<char> bytes_of(const Tensor& t) {
  Tensor c = t.contiguous();
  std::vector<char> out(c.nbytes());
  if (!out.empty()) std::memcpy(out.data(), c.data_ptr(), out.size());
  return out;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}

// u64 length | header | data, the header taken verbatim.
std::string file_bytes(const std::string& header, const std::string& data, int64_t len = -1) {
  uint64_t n = len < 0 ? header.size() : uint64_t(len);
  std::string out(reinterpret_cast<const char*>(&n), 8);
  return out + header + data;
}

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() /
            ("sl_safetensors_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (fs::path(dir_) / name).string(); }

  SafetensorsData sample() {
    Generator gen(5);
    SafetensorsData d;
    d.add("model.w", Tensor::randn({4, 3}, gen).transpose(0, 1));  // strided
    d.add("model.half", Tensor::randn({2, 5}, gen, DType::BF16));
    d.add("model.f16", Tensor::randn({3}, gen, DType::F16));
    d.add("double", Tensor::randn({2, 2}, gen, DType::F64));
    d.add("ids", Tensor::from_vector<int64_t>({-1, 1LL << 40, 7}, {3}));
    d.add("i32", Tensor::from_vector<int32_t>({5, -6}, {1, 2}));
    d.add("scalar", Tensor::full({}, 2.5, DType::F32));
    d.add("empty", Tensor::empty({0, 3}, DType::F32));
    d.metadata["format"] = "pt";
    d.metadata["note \"quoted\"\n"] = "\\ back";
    return d;
  }

  // Expects the read of `bytes` to fail with a message containing every one of `parts`.
  void expect_rejected(const std::string& bytes, std::vector<std::string> parts,
                       Status::Code code = Status::Code::kCorruption) {
    const std::string p = path("bad.safetensors");
    spit(p, bytes);
    StatusOr<SafetensorsData> r = read_safetensors(p);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), code) << r.status().message();
    parts.push_back(p);
    for (const std::string& s : parts)
      EXPECT_NE(r.status().message().find(s), std::string::npos)
          << "'" << s << "' not in: " << r.status().message();
  }

  std::string dir_;
};

void expect_same(const SafetensorsData& a, const SafetensorsData& b) {
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (const auto& [name, t] : a.tensors) {
    const Tensor* got = b.find(name);
    ASSERT_NE(got, nullptr) << name;
    EXPECT_EQ(got->dtype(), t.dtype()) << name;
    EXPECT_EQ(got->shape(), t.shape()) << name;
    EXPECT_EQ(bytes_of(*got), bytes_of(t)) << name;
  }
}

TEST_F(SafetensorsTest, RoundTripOfEveryDtypeIsExact) {
  SafetensorsData d = sample();
  ASSERT_TRUE(write_safetensors(path("a.safetensors"), d).ok());
  StatusOr<SafetensorsData> r = read_safetensors(path("a.safetensors"));
  ASSERT_TRUE(r.ok()) << r.status().message();
  expect_same(d, r.value());
  EXPECT_EQ(r.value().metadata, d.metadata);
  EXPECT_EQ(r.value().find("model.w")->shape(), Dims({3, 4}));
  for (const auto& e : fs::directory_iterator(dir_))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
}

TEST_F(SafetensorsTest, HeaderIsPaddedAndTensorsAligned) {
  ASSERT_TRUE(write_safetensors(path("a.safetensors"), sample()).ok());
  std::string bytes = slurp(path("a.safetensors"));
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes[8], '{');
  StatusOr<std::vector<SafetensorsEntry>> h = read_safetensors_header(path("a.safetensors"));
  ASSERT_TRUE(h.ok()) << h.status().message();
  for (const SafetensorsEntry& e : h.value())
    EXPECT_EQ((8 + n + e.begin) % dtype_size(e.dtype), 0u) << e.name;
}

TEST_F(SafetensorsTest, ReadsAHandWrittenFile) {
  // Independent of the writer: spaces, keys in any order, metadata last.
  float w[2] = {1.5f, -2.0f};
  uint16_t h = 0x3f80;  // bf16 1.0
  std::string data(reinterpret_cast<const char*>(w), 8);
  data += std::string(reinterpret_cast<const char*>(&h), 2);
  std::string header =
      R"({"b": {"shape": [1], "data_offsets": [8, 10], "dtype": "BF16"}, )"
      R"("a": {"dtype":"F32","shape":[2],"data_offsets":[0,8]}, "__metadata__": {"x": "y"}})";
  spit(path("h.safetensors"), file_bytes(header, data));
  StatusOr<SafetensorsData> r = read_safetensors(path("h.safetensors"));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r.value().find("a")->to_vector<float>(), std::vector<float>({1.5f, -2.0f}));
  EXPECT_EQ(r.value().find("b")->to(DType::F32).to_vector<float>(), std::vector<float>({1.0f}));
  EXPECT_EQ(r.value().metadata.at("x"), "y");
}

TEST_F(SafetensorsTest, ShardedRoundTrip) {
  SafetensorsData d = sample();
  StatusOr<std::vector<std::string>> files = write_safetensors_dir(dir_, d, 40);
  ASSERT_TRUE(files.ok()) << files.status().message();
  ASSERT_GT(files.value().size(), 3u);
  EXPECT_EQ(files.value().back(), "model.safetensors.index.json");
  EXPECT_EQ(files.value().front(), "model-00001-of-0000" +
                                       std::to_string(files.value().size() - 1) + ".safetensors");
  for (const std::string& f : files.value()) EXPECT_TRUE(fs::exists(path(f))) << f;
  StatusOr<SafetensorsData> r = read_safetensors_dir(dir_);
  ASSERT_TRUE(r.ok()) << r.status().message();
  expect_same(d, r.value());

  // Unsharded again: the stale index goes, so the directory reads as the single file.
  files = write_safetensors_dir(dir_, d, 0);
  ASSERT_TRUE(files.ok()) << files.status().message();
  EXPECT_EQ(files.value(), std::vector<std::string>{"model.safetensors"});
  EXPECT_FALSE(fs::exists(path("model.safetensors.index.json")));
  r = read_safetensors_dir(dir_);
  ASSERT_TRUE(r.ok()) << r.status().message();
  expect_same(d, r.value());
}

TEST_F(SafetensorsTest, ShardedIndexMismatchesAreRejected) {
  SafetensorsData d = sample();
  StatusOr<std::vector<std::string>> files = write_safetensors_dir(dir_, d, 40);
  ASSERT_TRUE(files.ok()) << files.status().message();
  const std::string index = path("model.safetensors.index.json");
  std::string text = slurp(index);
  // A name in weight_map that no shard holds.
  std::string extra = text;
  extra.insert(extra.find("\"weight_map\": {") + 15,
               "\n    \"ghost.weight\": \"" + files.value().front() + "\",");
  spit(index, extra);
  StatusOr<SafetensorsData> r = read_safetensors_dir(dir_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("ghost.weight"), std::string::npos) << r.status().message();
  // A tensor of a shard missing from weight_map.
  std::string missing = text;
  size_t at = missing.find("\"ids\"");
  ASSERT_NE(at, std::string::npos);
  missing.replace(at, 5, "\"idz\"");
  spit(index, missing);
  r = read_safetensors_dir(dir_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("'ids'"), std::string::npos) << r.status().message();
  spit(index, "{\"weight_map\": [");
  r = read_safetensors_dir(dir_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(index), std::string::npos) << r.status().message();
}

TEST_F(SafetensorsTest, TruncatedFilesAreRejected) {
  ASSERT_TRUE(write_safetensors(path("a.safetensors"), sample()).ok());
  const std::string bytes = slurp(path("a.safetensors"));
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  for (size_t cut : {size_t(0), size_t(5), size_t(8), size_t(8 + n / 2), size_t(8 + n),
                     bytes.size() - 1}) {
    SCOPED_TRACE("cut at " + std::to_string(cut) + " of " + std::to_string(bytes.size()));
    expect_rejected(bytes.substr(0, cut), {});
  }
  // Cut in the data: the message names the tensor that no longer fits ("model.half" is last:
  // larger dtypes first, then by name).
  expect_rejected(bytes.substr(0, bytes.size() - 1), {"'model.half'", "truncated"});
}

TEST_F(SafetensorsTest, CorruptHeaderLengthIsRejected) {
  std::string header = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  std::string data(4, '\0');
  expect_rejected(file_bytes(header, data, int64_t(header.size() + 5)), {"header length"});
  expect_rejected(file_bytes(header, data, int64_t(1) << 50), {"header length"});
  expect_rejected(file_bytes(header, data, int64_t(header.size() - 3)), {"JSON"});
}

TEST_F(SafetensorsTest, BadJsonIsRejected) {
  std::string data(4, '\0');
  expect_rejected(file_bytes(R"({"a":{"dtype":"F32","shape":[1})", data), {"not valid JSON"});
  expect_rejected(file_bytes(R"([1, 2])", data), {"'{'"});
  expect_rejected(file_bytes(R"({"a": 5})", data), {"'a'", "not a JSON object"});
  expect_rejected(file_bytes(R"({"a":{"dtype":"F32","shape":[1]}})", data), {"'a'", "needs"});
  expect_rejected(file_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})",
                             data),
                  {"'a'", "\"x\""});
  expect_rejected(
      file_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                 R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                 std::string(8, '\0')),
      {"'a'", "twice"});
  expect_rejected(file_bytes(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", data),
                  {"'a'", "shape"});
  expect_rejected(file_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", data),
                  {"'a'", "data_offsets"});
}

TEST_F(SafetensorsTest, WrongDtypeIsRejected) {
  std::string data(4, '\0');
  expect_rejected(file_bytes(R"({"w":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}})", data),
                  {"'w'", "F33"});
  expect_rejected(file_bytes(R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", data),
                  {"'w'", "U8", "not supported"}, Status::Code::kInvalidArgument);
}

TEST_F(SafetensorsTest, BadOffsetsAreRejected) {
  std::string data(12, '\0');
  // Overlapping.
  expect_rejected(file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                             data),
                  {"'b'", "overlap"});
  // Past the data section.
  expect_rejected(file_bytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", data),
                  {"'a'", "past the data section"});
  // A gap, and bytes after the last tensor.
  expect_rejected(file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", data),
                  {"'a'", "gap"});
  expect_rejected(file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", data),
                  {"cover 8"});
  // End before begin.
  expect_rejected(file_bytes(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", data),
                  {"'a'", "end before"});
}

TEST_F(SafetensorsTest, ShapeMismatchIsRejected) {
  std::string data(8, '\0');
  expect_rejected(file_bytes(R"({"a":{"dtype":"BF16","shape":[3],"data_offsets":[0,8]}})", data),
                  {"'a'", "[3]", "6 bytes", "span 8"});
}

TEST_F(SafetensorsTest, WriterRejectsBadNames) {
  SafetensorsData d;
  d.add("x", Tensor::zeros({1}, DType::F32));
  d.add("x", Tensor::zeros({1}, DType::F32));
  Status s = write_safetensors(path("w.safetensors"), d);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("'x'"), std::string::npos) << s.message();
  EXPECT_FALSE(fs::exists(path("w.safetensors")));
}

TEST(JsonQuote, Escapes) {
  EXPECT_EQ(json_quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
}

}  // namespace
}  // namespace sl::layers
