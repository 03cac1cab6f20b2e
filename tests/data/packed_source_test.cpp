// Packed batches from a token file. Every token of the test file is 1 + its position in the file,
// so a batch can be read back independently: which document each token came from, whether it
// starts or ends one, and what its successor is. Checked: packing boundaries (seq_idx changes
// exactly at document starts, targets ignored at document ends, every token of an epoch an input
// once), shuffling by (seed, epoch), random access, shards disjoint and covering, the held-out
// split, and errors naming the key and the file.
#include "data/packed_source.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

namespace sl::data {
namespace {

namespace fs = std::filesystem;

// Document lengths: empty, single-token, and longer than a row (seq_len 8).
const std::vector<int64_t> kLengths = {5, 1, 0, 19, 8, 3, 12, 1, 7, 9, 2, 30, 4, 6, 11, 2};

class PackedSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::path(::testing::TempDir()) /
            ("sl_packed_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    path_ = write("train.h5", kLengths, 0);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Token = 1 + first_id + position in the file; doc_of_ maps a token to its document.
  std::string write(const std::string& name, const std::vector<int64_t>& lengths,
                    int32_t first_id) {
    std::string p = (fs::path(dir_) / name).string();
    StatusOr<TokenDatasetWriter> w = TokenDatasetWriter::create(p, 1000, "test");
    SL_CHECK(w.ok()) << w.status().message();
    int32_t next = first_id + 1;
    for (size_t d = 0; d < lengths.size(); ++d) {
      std::vector<int32_t> doc;
      for (int64_t i = 0; i < lengths[d]; ++i) {
        doc_of_[next] = {name, int64_t(d)};
        if (i == 0) starts_.insert(next);
        if (i == lengths[d] - 1) ends_.insert(next);
        doc.push_back(next++);
      }
      SL_CHECK(w.value().append(doc).ok());
    }
    SL_CHECK(w.value().close().ok());
    return p;
  }

  DataConfig config() const {
    DataConfig c;
    c.source = "hdf5";
    c.path = path_;
    c.eval_fraction = 0.25;  // 16 documents: the last 4 held out
    return c;
  }
  static SourceShape shape(int64_t B = 3, uint64_t seed = 7, int rank = 0, int world = 1) {
    SourceShape s;
    s.vocab_size = 1000, s.batch_size = B, s.seq_len = 8, s.seed = seed;
    s.rank = rank, s.world = world;
    return s;
  }
  static std::unique_ptr<PackedSource> open(const DataConfig& c, const SourceShape& s) {
    StatusOr<std::unique_ptr<PackedSource>> p = PackedSource::open(c, s);
    SL_CHECK(p.ok()) << p.status().message();
    return std::move(p).value();
  }

  // Checks one batch against the token numbering; returns its real (non-padding) input tokens.
  std::vector<int32_t> check_batch(const Batch& b) {
    const int64_t B = b.ids.size(0), T = b.ids.size(1);
    auto ids = b.ids.to_vector<int32_t>();
    auto tgt = b.targets.to_vector<int64_t>();
    auto seq = b.seq_idx.to_vector<int32_t>();
    std::vector<int32_t> real;
    int64_t scored = 0;
    for (int64_t r = 0; r < B; ++r) {
      EXPECT_EQ(seq[size_t(r * T)], 0);
      for (int64_t t = 0; t < T; ++t) {
        const size_t i = size_t(r * T + t);
        scored += tgt[i] != kIgnoreIndex;
        if (ids[i] == kPadToken) {  // padding: the rest of the row, unscored, its own document
          EXPECT_EQ(tgt[i], kIgnoreIndex);
          if (t > 0) {
            EXPECT_EQ(seq[i], seq[i - 1] + (ids[i - 1] != kPadToken ? 1 : 0));
          }
          continue;
        }
        real.push_back(ids[i]);
        EXPECT_TRUE(doc_of_.count(ids[i])) << ids[i];
        if (t > 0) {
          EXPECT_NE(ids[i - 1], kPadToken) << "a token after padding";
          bool starts = starts_.count(ids[i]) > 0;
          EXPECT_EQ(seq[i] != seq[i - 1], starts) << "row " << r << " t " << t;
          EXPECT_EQ(seq[i] - seq[i - 1], starts ? 1 : 0);
          EXPECT_TRUE(starts || ids[i] == ids[i - 1] + 1) << "a document continues in order";
        }
        const int64_t want = ends_.count(ids[i]) ? kIgnoreIndex : int64_t(ids[i]) + 1;
        EXPECT_EQ(tgt[i], want) << "token " << ids[i] << ": its document's next token or ignored";
      }
    }
    EXPECT_EQ(b.n_scored, scored);
    return real;
  }

  std::string dir_, path_;
  std::map<int32_t, std::pair<std::string, int64_t>> doc_of_;
  std::set<int32_t> starts_, ends_;
};

int64_t count_tokens(const std::vector<int64_t>& lengths, size_t first, size_t end) {
  int64_t n = 0;
  for (size_t i = first; i < end; ++i) n += lengths[i];
  return n;
}

TEST_F(PackedSourceTest, AnEpochHasEveryTrainingTokenOnceAndBoundariesAreMarked) {
  const int64_t B = 3;
  auto src = open(config(), shape(B));
  const int64_t train_tokens = count_tokens(kLengths, 0, 12);
  EXPECT_EQ(src->tokens_per_epoch(Split::kTrain), train_tokens);
  const int64_t R = src->rows_per_epoch(Split::kTrain);
  EXPECT_EQ(R, (train_tokens + 7) / 8);
  std::multiset<int32_t> seen;
  for (int64_t i = 0; i * B < R; ++i) {
    Batch b = src->batch(i, Split::kTrain);
    ASSERT_EQ(b.ids.shape(), (Dims{B, 8}));
    std::vector<int32_t> real = check_batch(b);
    // Rows past the epoch belong to the next one: keep only this epoch's rows.
    const int64_t keep_rows = std::min<int64_t>(B, R - i * B);
    auto ids = b.ids.to_vector<int32_t>();
    for (int64_t k = 0; k < keep_rows * 8; ++k)
      if (ids[size_t(k)] != kPadToken) seen.insert(ids[size_t(k)]);
  }
  EXPECT_EQ(int64_t(seen.size()), train_tokens);
  for (const auto& [tok, where] : doc_of_) {
    if (where.second < 12)
      EXPECT_EQ(seen.count(tok), 1u) << "token " << tok;
    else
      EXPECT_EQ(seen.count(tok), 0u) << "held-out token " << tok << " in training";
  }
}

TEST_F(PackedSourceTest, HeldOutDocumentsFormTheEvalSplit) {
  auto src = open(config(), shape(2));
  EXPECT_EQ(src->documents(Split::kEval), (std::vector<int64_t>{12, 13, 14, 15}));
  const int64_t R = src->rows_per_epoch(Split::kEval);
  std::vector<int32_t> all;
  for (int64_t i = 0; i * 2 < R; ++i) {
    std::vector<int32_t> real = check_batch(src->batch(i, Split::kEval));
    all.insert(all.end(), real.begin(), real.end());
  }
  // Unshuffled: the held-out tokens in file order (the next epoch's rows start again).
  std::vector<int32_t> expect;
  for (const auto& [tok, where] : doc_of_)
    if (where.second >= 12) expect.push_back(tok);
  all.resize(expect.size());
  EXPECT_EQ(all, expect);
  EXPECT_EQ(src->batch(0, Split::kEval).ids.to_vector<int32_t>(),
            src->batch(R, Split::kEval).ids.to_vector<int32_t>());  // wraps around (B * R rows)
}

TEST_F(PackedSourceTest, ShuffleDependsOnSeedAndEpochOnly) {
  auto a = open(config(), shape(3, 7));
  auto b = open(config(), shape(3, 7));
  auto other_seed = open(config(), shape(3, 8));
  EXPECT_EQ(a->epoch_order(Split::kTrain, 0), b->epoch_order(Split::kTrain, 0));
  EXPECT_NE(a->epoch_order(Split::kTrain, 0), other_seed->epoch_order(Split::kTrain, 0));
  EXPECT_NE(a->epoch_order(Split::kTrain, 0), a->epoch_order(Split::kTrain, 1));
  std::vector<int64_t> sorted = a->epoch_order(Split::kTrain, 3);
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, a->documents(Split::kTrain));  // a permutation of the training documents

  // Random access: any order of requests gives the same batches as a fresh source.
  auto ids = [](const Batch& x) { return x.ids.to_vector<int32_t>(); };
  Batch late = a->batch(11, Split::kTrain);  // a later epoch first
  Batch early = a->batch(0, Split::kTrain);
  EXPECT_EQ(ids(b->batch(0, Split::kTrain)), ids(early));
  EXPECT_EQ(ids(b->batch(11, Split::kTrain)), ids(late));
  EXPECT_EQ(late.targets.to_vector<int64_t>(),
            b->batch(11, Split::kTrain).targets.to_vector<int64_t>());
  EXPECT_NE(ids(other_seed->batch(0, Split::kTrain)), ids(early));
  check_batch(late);

  DataConfig in_order = config();
  in_order.shuffle = false;
  auto plain = open(in_order, shape(1));
  EXPECT_EQ(plain->epoch_order(Split::kTrain, 5), plain->documents(Split::kTrain));
  EXPECT_EQ(ids(plain->batch(0, Split::kTrain)), (std::vector<int32_t>{1, 2, 3, 4, 5, 6, 7, 8}));
}

TEST_F(PackedSourceTest, RanksGetDisjointRowsThatCoverTheEpoch) {
  const int W = 3, B = 2;
  auto single = open(config(), shape(B));
  const int64_t R = single->rows_per_epoch(Split::kTrain);
  std::multiset<int32_t> seen;
  for (int rank = 0; rank < W; ++rank) {
    auto src = open(config(), shape(B, 7, rank, W));
    for (int64_t i = 0; (i * W + rank) * B < R; ++i) {
      Batch b = src->batch(i, Split::kTrain);
      EXPECT_EQ(b.ids.to_vector<int32_t>(),
                single->batch(i * W + rank, Split::kTrain).ids.to_vector<int32_t>());
      auto ids = b.ids.to_vector<int32_t>();
      const int64_t first_row = (i * W + rank) * B;
      for (int64_t r = 0; r < B && first_row + r < R; ++r)
        for (int64_t t = 0; t < 8; ++t)
          if (ids[size_t(r * 8 + t)] != kPadToken) seen.insert(ids[size_t(r * 8 + t)]);
    }
  }
  EXPECT_EQ(int64_t(seen.size()), count_tokens(kLengths, 0, 12));
  for (int32_t tok : seen) EXPECT_EQ(seen.count(tok), 1u) << "token " << tok;
}

TEST_F(PackedSourceTest, SeparateEvalFile) {
  DataConfig c = config();
  c.eval_path = write("eval.h5", {4, 6}, 500);
  auto src = open(c, shape(2));
  EXPECT_EQ(src->documents(Split::kTrain).size(), 15u);  // all non-empty documents train
  EXPECT_EQ(src->tokens_per_epoch(Split::kEval), 10);
  std::vector<int32_t> real = check_batch(src->batch(0, Split::kEval));
  EXPECT_EQ(real, (std::vector<int32_t>{501, 502, 503, 504, 505, 506, 507, 508, 509, 510}));
}

TEST_F(PackedSourceTest, ErrorsNameTheKeyAndTheFile) {
  auto fails = [&](const DataConfig& c, SourceShape s, const std::vector<std::string>& parts) {
    StatusOr<std::unique_ptr<BatchSource>> r = make_batch_source(c, s);
    ASSERT_FALSE(r.ok());
    for (const std::string& p : parts)
      EXPECT_NE(r.status().message().find(p), std::string::npos) << r.status().message();
  };
  DataConfig c = config();
  c.path = (fs::path(dir_) / "missing.h5").string();
  fails(c, shape(), {"data.path", c.path, "no such file"});
  c = config();
  c.eval_path = (fs::path(dir_) / "missing_eval.h5").string();
  fails(c, shape(), {"data.eval_path", c.eval_path});
  SourceShape small = shape();
  small.vocab_size = 500;
  fails(config(), small, {"data.path", path_, "vocab_size 1000", "model.vocab_size is 500"});
  c = config();
  c.eval_fraction = 0;
  fails(c, shape(), {"data.eval_fraction"});
  c.path = "";
  fails(c, shape(), {"data.path"});
  c = config();
  c.source = "parquet";
  fails(c, shape(), {"data.source", "parquet"});
  c = config();
  c.path = write("one.h5", {3}, 900);
  fails(c, shape(), {"data.eval_fraction", c.path, "1 document"});

  StatusOr<std::unique_ptr<BatchSource>> ok = make_batch_source(config(), shape());
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_NE(ok.value()->describe().find(path_), std::string::npos);
}

}  // namespace
}  // namespace sl::data
