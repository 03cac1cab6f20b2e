// `superlinear data build` and `data info` on a temporary tree of text files: the documents of
// each mode decode back to the input text, directories are read in sorted order, hidden entries
// and the output file are skipped, and bad arguments give usage or an error naming the input.
#include "data/build_command.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "data/byte_tokenizer.h"
#include "data/token_dataset.h"

namespace sl::data {
namespace {

namespace fs = std::filesystem;

class BuildCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::path(::testing::TempDir()) /
            ("sl_build_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    fs::remove_all(dir_);
    put("corpus/b.txt", "second file\nhas two lines\n");
    put("corpus/a.txt", "first file");
    put("corpus/sub/c.txt", "third|||file|||||||end");
    put("corpus/empty.txt", "");
    put("corpus/.hidden/skip.txt", "never read");
    put("corpus/.skip.txt", "never read");
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& rel) const { return (fs::path(dir_) / rel).string(); }
  void put(const std::string& rel, const std::string& text) {
    fs::create_directories(fs::path(path(rel)).parent_path());
    std::ofstream(path(rel), std::ios::binary) << text;
  }
  // Runs `data build` with the given mode arguments on corpus/; returns the decoded documents.
  std::vector<std::string> build(std::vector<std::string> mode) {
    std::vector<std::string> args = {"build", "--output", path("out.h5")};
    args.insert(args.end(), mode.begin(), mode.end());
    args.push_back(path("corpus"));
    std::FILE* sink = std::tmpfile();
    int rc = data_command(args, sink, sink);
    std::fclose(sink);
    EXPECT_EQ(rc, 0);
    StatusOr<TokenDataset> d = TokenDataset::open(path("out.h5"));
    EXPECT_TRUE(d.ok()) << d.status().message();
    if (!d.ok()) return {};
    EXPECT_EQ(d.value().vocab_size(), bytes::kVocabSize);
    EXPECT_EQ(d.value().tokenizer(), "bytes");
    std::vector<std::string> docs;
    for (int64_t i = 0; i < d.value().n_docs(); ++i) {
      std::vector<int32_t> ids = d.value().document(i).value();
      EXPECT_EQ(ids.front(), bytes::kBos);
      EXPECT_EQ(ids.back(), bytes::kEos);
      EXPECT_EQ(ids.size(), bytes::decode(ids).size() + 2);
      docs.push_back(bytes::decode(ids));
    }
    return docs;
  }
  std::string dir_;
};

TEST(ByteTokenizer, RoundTripsEveryByte) {
  std::string all;
  for (int b = 0; b < 256; ++b) all += char(b);
  std::vector<int32_t> ids = bytes::encode_document(all);
  ASSERT_EQ(ids.size(), 258u);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(ids[size_t(b) + 1], bytes::kFirstByte + b);
  EXPECT_EQ(bytes::decode(ids), all);
}

TEST_F(BuildCommandTest, DocumentPerFileInSortedOrder) {
  EXPECT_EQ(build({}), (std::vector<std::string>{"first file", "second file\nhas two lines\n",
                                                 "third|||file|||||||end"}));
}

TEST_F(BuildCommandTest, DocumentPerLine) {
  put("corpus/b.txt", "second file\r\n\nhas two lines\n");
  EXPECT_EQ(build({"--doc-per-line"}),
            (std::vector<std::string>{"first file", "second file", "has two lines",
                                      "third|||file|||||||end"}));
}

TEST_F(BuildCommandTest, DocumentsBetweenSeparators) {
  EXPECT_EQ(build({"--separator", "|||"}),
            (std::vector<std::string>{"first file", "second file\nhas two lines\n", "third", "file",
                                      "|end"}));
}

TEST_F(BuildCommandTest, OutputInsideTheInputTreeIsNotRead) {
  std::vector<std::string> args = {"build", "--output", path("corpus/out.h5"), path("corpus")};
  std::FILE* sink = std::tmpfile();
  ASSERT_EQ(data_command(args, sink, sink), 0);
  ASSERT_EQ(data_command(args, sink, sink), 0);  // again, with the first output present
  std::fclose(sink);
  StatusOr<TokenDataset> d = TokenDataset::open(path("corpus/out.h5"));
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d.value().n_docs(), 3);
}

TEST_F(BuildCommandTest, SummaryCountsAndInfo) {
  BuildOptions o;
  o.output = path("out.h5");
  o.inputs = {path("corpus/a.txt"), path("corpus/b.txt")};  // in the order given
  StatusOr<BuildSummary> s = build_token_dataset(o);
  ASSERT_TRUE(s.ok()) << s.status().message();
  const int64_t text = 10 + 26;
  EXPECT_EQ(s.value().files, 2);
  EXPECT_EQ(s.value().documents, 2);
  EXPECT_EQ(s.value().text_bytes, text);
  EXPECT_EQ(s.value().tokens, text + 2 * 2);
  EXPECT_EQ(s.value().file_bytes, int64_t(fs::file_size(o.output)));
  EXPECT_GT(s.value().compression_ratio(), 0);

  std::FILE* out = std::tmpfile();
  ASSERT_EQ(data_command({"info", o.output}, out, out), 0);
  std::rewind(out);
  char buf[1024] = {};
  size_t n = std::fread(buf, 1, sizeof(buf) - 1, out);
  std::fclose(out);
  std::string printed(buf, n);
  EXPECT_NE(printed.find("2 documents, 40 tokens"), std::string::npos) << printed;
}

TEST_F(BuildCommandTest, BadArgumentsAndInputs) {
  std::FILE* sink = std::tmpfile();
  EXPECT_EQ(data_command({}, sink, sink), 2);
  EXPECT_EQ(data_command({"frobnicate"}, sink, sink), 2);
  EXPECT_EQ(data_command({"build", path("corpus")}, sink, sink), 2);  // no --output
  EXPECT_EQ(data_command({"build", "--output", path("o.h5")}, sink, sink), 2);
  EXPECT_EQ(data_command({"build", "--output", path("o.h5"), "--doc-per-line", "--separator", "x",
                          path("corpus")},
                         sink, sink),
            2);
  EXPECT_EQ(data_command({"build", "--output", path("o.h5"), path("nope")}, sink, sink), 1);
  EXPECT_EQ(data_command({"info", path("nope.h5")}, sink, sink), 1);
  std::fclose(sink);
  EXPECT_FALSE(fs::exists(path("o.h5")));

  BuildOptions o;
  o.output = path("o.h5");
  o.inputs = {path("corpus/a.txt"), path("missing.txt")};
  StatusOr<BuildSummary> s = build_token_dataset(o);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find(path("missing.txt")), std::string::npos);
  o.inputs = {path("corpus/empty.txt")};
  s = build_token_dataset(o);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find(o.output), std::string::npos) << s.status().message();
  EXPECT_FALSE(fs::exists(o.output));
}

}  // namespace
}  // namespace sl::data
