// Synthetic tasks: batches are pure functions of (seed, index, rank, split); the recall and copy
// layouts and their scored targets checked against an independent reading of the tokens; errors.
#include "data/synthetic.h"

#include <gtest/gtest.h>

#include <map>

namespace sl::data {
namespace {

SyntheticConfig recall() {
  SyntheticConfig c;
  c.n_pairs = 6;
  c.n_keys = 20;
  c.n_values = 10;
  return c;
}

TEST(Synthetic, SameArgumentsSameBatchOtherwiseDifferent) {
  SyntheticConfig c = recall();
  Batch a = synthetic_batch(c, 256, 4, 32, 7, 5);
  Batch b = synthetic_batch(c, 256, 4, 32, 7, 5);
  EXPECT_EQ(a.ids.to_vector<int32_t>(), b.ids.to_vector<int32_t>());
  EXPECT_EQ(a.targets.to_vector<int64_t>(), b.targets.to_vector<int64_t>());
  auto ids = a.ids.to_vector<int32_t>();
  EXPECT_NE(ids, synthetic_batch(c, 256, 4, 32, 7, 6).ids.to_vector<int32_t>());
  EXPECT_NE(ids, synthetic_batch(c, 256, 4, 32, 8, 5).ids.to_vector<int32_t>());
  EXPECT_NE(ids, synthetic_batch(c, 256, 4, 32, 7, 5, 1).ids.to_vector<int32_t>());
  EXPECT_NE(ids, synthetic_batch(c, 256, 4, 32, 7, 5, 0, Split::kEval).ids.to_vector<int32_t>());
}

TEST(Synthetic, RecallAnswersAreThePairedValues) {
  SyntheticConfig c = recall();
  const int64_t B = 5, T = 40, P = c.n_pairs, Q = (T - 2 * P - 1) / 2;
  Batch b = synthetic_batch(c, 64, B, T, 3, 11);
  ASSERT_EQ(b.ids.dtype(), DType::I32);
  ASSERT_EQ(b.targets.dtype(), DType::I64);
  auto ids = b.ids.to_vector<int32_t>();
  auto tgt = b.targets.to_vector<int64_t>();
  EXPECT_EQ(b.n_scored, B * Q);
  for (int64_t r = 0; r < B; ++r) {
    const int32_t* x = ids.data() + r * T;
    const int64_t* y = tgt.data() + r * T;
    std::map<int32_t, int32_t> pairs;
    for (int64_t i = 0; i < P; ++i) {
      int32_t k = x[2 * i], v = x[2 * i + 1];
      EXPECT_GE(k, kFirstKeyToken);
      EXPECT_LT(k, kFirstKeyToken + c.n_keys);
      EXPECT_GE(v, kFirstKeyToken + c.n_keys);
      EXPECT_LT(v, kFirstKeyToken + c.n_keys + c.n_values);
      EXPECT_TRUE(pairs.emplace(k, v).second) << "key " << k << " repeated in row " << r;
      EXPECT_EQ(y[2 * i], kIgnoreIndex);
      EXPECT_EQ(y[2 * i + 1], kIgnoreIndex);
    }
    EXPECT_EQ(x[2 * P], kSepToken);
    for (int64_t q = 0; q < Q; ++q) {
      int64_t t = 2 * P + 1 + 2 * q;
      ASSERT_TRUE(pairs.count(x[t])) << "query " << x[t] << " is not a key of row " << r;
      EXPECT_EQ(y[t], pairs[x[t]]);
      EXPECT_EQ(x[t + 1], pairs[x[t]]);  // the answer follows its query
      EXPECT_EQ(y[t + 1], kIgnoreIndex);
    }
    for (int64_t t = 2 * P + 1 + 2 * Q; t < T; ++t) {
      EXPECT_EQ(x[t], kPadToken);
      EXPECT_EQ(y[t], kIgnoreIndex);
    }
  }
}

TEST(Synthetic, CopyScoresTheSecondCopy) {
  SyntheticConfig c;
  c.task = "copy";
  c.copy_len = 7;
  const int64_t B = 3, T = 20, N = 7;
  Batch b = synthetic_batch(c, 256, B, T, 1, 0);
  auto ids = b.ids.to_vector<int32_t>();
  auto tgt = b.targets.to_vector<int64_t>();
  EXPECT_EQ(b.n_scored, B * N);
  for (int64_t r = 0; r < B; ++r) {
    const int32_t* x = ids.data() + r * T;
    const int64_t* y = tgt.data() + r * T;
    EXPECT_EQ(x[N], kSepToken);
    for (int64_t i = 0; i < N; ++i) {
      EXPECT_EQ(x[N + 1 + i], x[i]);
      EXPECT_EQ(y[N + i], x[i]);  // next-token targets over the copy
      EXPECT_EQ(y[i], kIgnoreIndex);
    }
    for (int64_t t = 2 * N; t < T; ++t) EXPECT_EQ(y[t], kIgnoreIndex);
    for (int64_t t = 2 * N + 1; t < T; ++t) EXPECT_EQ(x[t], kPadToken);
  }
}

TEST(Synthetic, ErrorsNameTheKey) {
  SyntheticConfig c = recall();
  Status s = validate_synthetic(c, 20, 64);  // 2 + 20 + 10 tokens > 20
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("data.n_values"), std::string::npos) << s.message();
  c.n_pairs = 30;
  s = validate_synthetic(c, 256, 64);
  EXPECT_NE(s.message().find("data.n_pairs"), std::string::npos) << s.message();
  c = recall();
  s = validate_synthetic(c, 256, 12);  // 6 pairs need 13+ tokens
  EXPECT_NE(s.message().find("data.n_pairs"), std::string::npos) << s.message();
  c.task = "sorting";
  s = validate_synthetic(c, 256, 64);
  EXPECT_NE(s.message().find("data.task"), std::string::npos) << s.message();
  EXPECT_THROW(synthetic_batch(c, 256, 2, 64, 0, 0), Error);
}

}  // namespace
}  // namespace sl::data
