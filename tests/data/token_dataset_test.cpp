// Token files: writer/reader round trip in both token dtypes, the atomic write, and every kind of
// bad file (missing, not HDF5, truncated, overwritten, wrong attributes, dtypes and offsets,
// empty, ids past the vocabulary) rejected with a message that names the file.
#include "data/token_dataset.h"

#include <gtest/gtest.h>
#include <hdf5.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

namespace sl::data {
namespace {

namespace fs = std::filesystem;

class TokenDatasetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::path(::testing::TempDir()) /
            ("sl_tokens_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string file(const std::string& name) const { return (fs::path(dir_) / name).string(); }

  // Writes docs with the writer; expects success.
  std::string write(const std::string& name, int64_t vocab,
                    const std::vector<std::vector<int32_t>>& docs) {
    std::string p = file(name);
    StatusOr<TokenDatasetWriter> w = TokenDatasetWriter::create(p, vocab, "test");
    EXPECT_TRUE(w.ok()) << w.status().message();
    for (const auto& d : docs) EXPECT_TRUE(w.value().append(d).ok());
    Status s = w.value().close();
    EXPECT_TRUE(s.ok()) << s.message();
    return p;
  }

  std::string dir_;
};

std::vector<std::vector<int32_t>> random_docs(int64_t vocab, std::vector<int64_t> lengths,
                                              uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> id(0, vocab - 1);
  std::vector<std::vector<int32_t>> docs;
  for (int64_t n : lengths) {
    docs.emplace_back();
    for (int64_t i = 0; i < n; ++i) docs.back().push_back(int32_t(id(rng)));
  }
  return docs;
}

void expect_round_trip(const std::string& path, int64_t vocab, int bytes,
                       const std::vector<std::vector<int32_t>>& docs) {
  StatusOr<TokenDataset> d = TokenDataset::open(path);
  ASSERT_TRUE(d.ok()) << d.status().message();
  const TokenDataset& t = d.value();
  EXPECT_EQ(t.vocab_size(), vocab);
  EXPECT_EQ(t.tokenizer(), "test");
  EXPECT_EQ(t.bytes_per_token(), bytes);
  ASSERT_EQ(t.n_docs(), int64_t(docs.size()));
  std::vector<int32_t> all;
  for (size_t i = 0; i < docs.size(); ++i) {
    EXPECT_EQ(t.doc_offsets()[i], int64_t(all.size()));
    StatusOr<std::vector<int32_t>> got = t.document(int64_t(i));
    ASSERT_TRUE(got.ok()) << got.status().message();
    EXPECT_EQ(got.value(), docs[i]) << "document " << i;
    all.insert(all.end(), docs[i].begin(), docs[i].end());
  }
  EXPECT_EQ(t.n_tokens(), int64_t(all.size()));
  EXPECT_EQ(t.doc_offsets().back(), int64_t(all.size()));
  // A range across document (and chunk) boundaries.
  int64_t start = int64_t(all.size()) / 3, n = int64_t(all.size()) / 2;
  StatusOr<std::vector<int32_t>> mid = t.read(start, n);
  ASSERT_TRUE(mid.ok()) << mid.status().message();
  EXPECT_EQ(mid.value(), std::vector<int32_t>(all.begin() + start, all.begin() + start + n));
  EXPECT_FALSE(t.read(int64_t(all.size()) - 1, 2).ok());
  EXPECT_FALSE(t.document(t.n_docs()).ok());
}

TEST_F(TokenDatasetTest, RoundTripUint16AcrossChunks) {
  // A document longer than a chunk (65536 tokens), an empty one, and the largest id.
  auto docs = random_docs(65536, {5, 0, 70000, 1, 300}, 1);
  docs[3][0] = 65535;
  std::string p = write("u16.h5", 65536, docs);
  expect_round_trip(p, 65536, 2, docs);
}

TEST_F(TokenDatasetTest, RoundTripInt32ForALargeVocabulary) {
  auto docs = random_docs(100000, {17, 4, 0, 250}, 2);
  docs[0][0] = 99999;
  docs[0][1] = 65536;
  std::string p = write("i32.h5", 100000, docs);
  expect_round_trip(p, 100000, 4, docs);
}

TEST_F(TokenDatasetTest, WriterIsAtomicAndRejectsBadIds) {
  std::string p = file("out.h5");
  {
    StatusOr<TokenDatasetWriter> w = TokenDatasetWriter::create(p, 10, "test");
    ASSERT_TRUE(w.ok());
    EXPECT_TRUE(w.value().append({1, 2, 3}).ok());
    Status s = w.value().append({4, 10});
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find(p), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("10"), std::string::npos) << s.message();
    EXPECT_FALSE(w.value().append({-1}).ok());
    EXPECT_FALSE(fs::exists(p));  // still under its temporary name
  }                               // dropped without close(): nothing is left
  EXPECT_TRUE(fs::is_empty(dir_));

  StatusOr<TokenDatasetWriter> empty = TokenDatasetWriter::create(p, 10, "test");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty.value().append({}).ok());
  Status s = empty.value().close();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find(p), std::string::npos) << s.message();
  EXPECT_TRUE(fs::is_empty(dir_));

  StatusOr<TokenDatasetWriter> bad_dir =
      TokenDatasetWriter::create(file("no/such/dir/x.h5"), 10, "test");
  ASSERT_FALSE(bad_dir.ok());
  EXPECT_NE(bad_dir.status().message().find("no/such/dir/x.h5"), std::string::npos);
}

// ---- files written by hand, to break one rule at a time ----

struct RawFile {
  bool format = true;
  std::string format_value = kTokenFormat;
  bool version = true;
  int64_t version_value = 1;
  bool vocab = true;
  bool vocab_as_string = false;
  int64_t vocab_value = 100;
  bool tokenizer = true;
  hid_t token_type = H5T_STD_U16LE;
  int token_rank = 1;
  std::vector<int64_t> tokens = {1, 2, 3, 4, 5};
  bool offsets = true;
  hid_t offset_type = H5T_STD_I64LE;
  std::vector<int64_t> offsets_value = {0, 2, 5};
};

// Variable-length string attributes, as h5py writes them.
void str_attr(hid_t f, const char* name, const std::string& v) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  hid_t s = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(f, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
  const char* p = v.c_str();
  H5Awrite(a, t, &p);
  H5Aclose(a), H5Sclose(s), H5Tclose(t);
}

void int_attr(hid_t f, const char* name, int64_t v) {
  hid_t s = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(f, name, H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_INT64, &v);
  H5Aclose(a), H5Sclose(s);
}

void dataset(hid_t f, const char* name, hid_t type, int rank, const std::vector<int64_t>& v) {
  hsize_t dims[2] = {v.size(), 1};
  hid_t s = H5Screate_simple(rank, dims, nullptr);
  hid_t d = H5Dcreate2(f, name, type, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (!v.empty()) H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
  H5Dclose(d), H5Sclose(s);
}

void write_raw(const std::string& path, const RawFile& r) {
  hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  if (r.format) str_attr(f, "format", r.format_value);
  if (r.version) int_attr(f, "version", r.version_value);
  if (r.vocab && r.vocab_as_string) str_attr(f, "vocab_size", std::to_string(r.vocab_value));
  if (r.vocab && !r.vocab_as_string) int_attr(f, "vocab_size", r.vocab_value);
  if (r.tokenizer) str_attr(f, "tokenizer", "test");
  dataset(f, "tokens", r.token_type, r.token_rank, r.tokens);
  if (r.offsets) dataset(f, "doc_offsets", r.offset_type, 1, r.offsets_value);
  H5Fclose(f);
}

// Opening (and, if that succeeds, reading every token) fails with a message naming the file and
// containing `what`.
void expect_rejected(const std::string& path, const std::string& what) {
  StatusOr<TokenDataset> d = TokenDataset::open(path);
  Status s = d.status();
  if (d.ok()) s = d.value().read(0, d.value().n_tokens()).status();
  ASSERT_FALSE(s.ok()) << path << " was accepted";
  EXPECT_EQ(s.message().rfind(path, 0), 0u) << s.message();
  EXPECT_NE(s.message().find(what), std::string::npos) << s.message();
}

TEST_F(TokenDatasetTest, HandWrittenFileWithVariableLengthStringsIsRead) {
  std::string p = file("ok.h5");
  write_raw(p, RawFile{});
  StatusOr<TokenDataset> d = TokenDataset::open(p);
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d.value().tokenizer(), "test");
  EXPECT_EQ(d.value().document(1).value(), (std::vector<int32_t>{3, 4, 5}));
}

TEST_F(TokenDatasetTest, EachBrokenRuleIsNamed) {
  struct Case {
    const char* name;
    void (*edit)(RawFile*);
    const char* what;
  };
  const Case cases[] = {
      {"no_format", [](RawFile* r) { r->format = false; }, "'format'"},
      {"wrong_format", [](RawFile* r) { r->format_value = "other"; }, "other"},
      {"no_version", [](RawFile* r) { r->version = false; }, "'version'"},
      {"version_2", [](RawFile* r) { r->version_value = 2; }, "version 2"},
      {"no_vocab", [](RawFile* r) { r->vocab = false; }, "'vocab_size'"},
      {"vocab_string", [](RawFile* r) { r->vocab_as_string = true; }, "'vocab_size' must be"},
      {"no_tokenizer", [](RawFile* r) { r->tokenizer = false; }, "'tokenizer'"},
      {"float_tokens", [](RawFile* r) { r->token_type = H5T_IEEE_F32LE; }, "/tokens has dtype"},
      {"int64_tokens", [](RawFile* r) { r->token_type = H5T_STD_I64LE; }, "int64"},
      {"rank2_tokens", [](RawFile* r) { r->token_rank = 2; }, "rank 2"},
      {"empty_tokens",
       [](RawFile* r) {
         r->tokens.clear();
         r->offsets_value = {0};
       },
       "empty"},
      {"no_offsets", [](RawFile* r) { r->offsets = false; }, "/doc_offsets"},
      {"int32_offsets", [](RawFile* r) { r->offset_type = H5T_STD_I32LE; }, "expected int64"},
      {"offsets_start",
       [](RawFile* r) {
         r->offsets_value = {1, 2, 5};
       },
       "[0] is 1"},
      {"offsets_decrease",
       [](RawFile* r) {
         r->offsets_value = {0, 4, 3, 5};
       },
       "decreases"},
      {"offsets_end",
       [](RawFile* r) {
         r->offsets_value = {0, 2, 4};
       },
       "ends at 4"},
      {"id_past_vocab", [](RawFile* r) { r->tokens[3] = 100; }, "token 3 has id 100"},
      {"u16_big_vocab", [](RawFile* r) { r->vocab_value = 70000; }, "needs int32"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    RawFile r;
    c.edit(&r);
    std::string p = file(std::string(c.name) + ".h5");
    write_raw(p, r);
    expect_rejected(p, c.what);
  }
}

TEST_F(TokenDatasetTest, MissingNotHdf5TruncatedAndOverwrittenFiles) {
  expect_rejected(file("missing.h5"), "no such file");
  expect_rejected(dir_, "directory");
  std::string text = file("text.h5");
  std::ofstream(text) << "just some text, not HDF5\n";
  expect_rejected(text, "not an HDF5 file");

  auto docs = random_docs(259, {3000, 5000, 2000}, 3);
  std::string good = write("good.h5", 259, docs);
  std::ifstream in(good, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), 4096u);

  std::string truncated = file("truncated.h5");
  std::ofstream(truncated, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size() / 2));
  expect_rejected(truncated, "");

  std::string garbage = file("garbage.h5");  // the HDF5 signature, then noise
  std::string noise = bytes;
  std::mt19937 rng(4);
  for (size_t i = 8; i < noise.size(); ++i) noise[i] = char(rng());
  std::ofstream(garbage, std::ios::binary).write(noise.data(), std::streamsize(noise.size()));
  expect_rejected(garbage, "");

  std::string overwritten = file("overwritten.h5");  // the middle half replaced by noise
  std::string mid = bytes;
  for (size_t i = mid.size() / 4; i < 3 * mid.size() / 4; ++i) mid[i] = char(rng());
  std::ofstream(overwritten, std::ios::binary).write(mid.data(), std::streamsize(mid.size()));
  expect_rejected(overwritten, "");
}

}  // namespace
}  // namespace sl::data
