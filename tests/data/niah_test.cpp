// NIAH tasks: batches are pure functions of their arguments; every variant read back from the
// tokens alone (needles, query, answers, scored targets); the asked needles at the requested depth;
// errors name the key; the tasks reach the trainer through data.task and make_batch_source.
#include "data/niah.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "data/batch_source.h"
#include "trainer/config.h"

namespace sl::data {
namespace {

constexpr int64_t kVocab = 64;

SyntheticConfig niah(const std::string& task, int64_t needles = 0, double depth = -1) {
  SyntheticConfig c;
  c.task = task;
  c.n_keys = 12;
  c.n_values = 10;
  c.n_haystack = 20;
  c.n_needles = needles;
  c.needle_depth = depth;
  return c;
}

// A row read back from its tokens, without the generator's help.
struct Row {
  std::vector<std::pair<int32_t, int32_t>> needles;  // (key, value) in context order
  std::vector<int64_t> needle_pos;                   // position of each needle's key
  std::vector<int64_t> noise_before;                 // noise tokens before each needle
  int64_t n_noise = 0, sep = -1;
};

Row read_row(const SyntheticConfig& c, const int32_t* x, int64_t T) {
  const int32_t v0 = int32_t(kFirstKeyToken + c.n_keys), h0 = int32_t(v0 + c.n_values);
  auto is_key = [&](int32_t t) { return t >= kFirstKeyToken && t < v0; };
  auto is_value = [&](int32_t t) { return t >= v0 && t < h0; };
  auto is_noise = [&](int32_t t) { return t >= h0 && t < h0 + c.n_haystack; };
  Row r;
  for (int64_t t = 0; t < T; ++t) {
    if (x[t] == kSepToken) {
      r.sep = t;
      break;
    }
    if (is_noise(x[t])) {
      ++r.n_noise;
    } else if (is_key(x[t])) {
      EXPECT_TRUE(t + 1 < T && is_value(x[t + 1])) << "key at " << t << " without a value";
      r.needles.emplace_back(x[t], x[t + 1]);
      r.needle_pos.push_back(t);
      r.noise_before.push_back(r.n_noise);
      ++t;
    } else {
      ADD_FAILURE() << "token " << x[t] << " at " << t << " is neither noise nor a needle";
    }
  }
  EXPECT_GE(r.sep, 0) << "no separator";
  return r;
}

// Checks one row of any variant; returns the noise tokens before the asked block.
int64_t check_row(const SyntheticConfig& c, const int32_t* x, const int64_t* y, int64_t T) {
  Row r = read_row(c, x, T);
  const int64_t N = niah_needles(c);
  EXPECT_EQ(int64_t(r.needles.size()), N);
  std::map<int32_t, int32_t> value_of;
  for (auto [k, v] : r.needles) value_of[k] = v;
  for (int64_t t = 0; t <= r.sep; ++t) EXPECT_EQ(y[t], kIgnoreIndex) << "context target at " << t;
  std::vector<size_t> asked;  // indices into r.needles
  if (c.task == "niah_multivalue") {
    std::set<int32_t> values;
    for (auto [k, v] : r.needles) {
      EXPECT_EQ(k, r.needles[0].first) << "multivalue needles with different keys";
      values.insert(v);
    }
    EXPECT_EQ(int64_t(values.size()), N) << "values repeated";
    EXPECT_EQ(r.sep + 2 + N, T);
    EXPECT_EQ(x[r.sep + 1], r.needles[0].first);
    for (int64_t i = 0; i < N; ++i) {
      EXPECT_EQ(y[r.sep + 1 + i], r.needles[size_t(i)].second) << "answer " << i;
      EXPECT_EQ(x[r.sep + 2 + i], r.needles[size_t(i)].second);
      asked.push_back(size_t(i));
    }
    EXPECT_EQ(y[T - 1], kIgnoreIndex);
  } else {
    EXPECT_EQ(int64_t(value_of.size()), N) << "keys repeated";
    const int64_t Q = (T - r.sep - 1) / 2;
    EXPECT_EQ(r.sep + 1 + 2 * Q, T);
    std::set<int32_t> queried;
    for (int64_t q = 0; q < Q; ++q) {
      const int64_t t = r.sep + 1 + 2 * q;
      EXPECT_TRUE(value_of.count(x[t])) << "query " << x[t] << " is not a needle's key";
      EXPECT_EQ(y[t], value_of[x[t]]);
      EXPECT_EQ(x[t + 1], value_of[x[t]]);
      EXPECT_EQ(y[t + 1], kIgnoreIndex);
      EXPECT_TRUE(queried.insert(x[t]).second) << "key asked twice";
    }
    EXPECT_EQ(Q, niah_asked(c));
    for (size_t i = 0; i < r.needles.size(); ++i)
      if (queried.count(r.needles[i].first)) asked.push_back(i);
  }
  if (asked.empty()) return -1;
  for (size_t j = 1; j < asked.size(); ++j)
    EXPECT_EQ(r.needle_pos[asked[j]], r.needle_pos[asked[0]] + 2 * int64_t(j))
        << "asked needles are not one block";
  EXPECT_EQ(r.n_noise, r.sep - 2 * N);
  return r.noise_before[asked[0]];
}

class NiahVariant : public ::testing::TestWithParam<const char*> {};

TEST_P(NiahVariant, SameArgumentsSameBatchOtherwiseDifferent) {
  SyntheticConfig c = niah(GetParam());
  auto ids = [&](uint64_t seed, int64_t index, int rank, Split split) {
    return niah_batch(c, kVocab, 3, 40, seed, index, rank, split).ids.to_vector<int32_t>();
  };
  Batch a = niah_batch(c, kVocab, 3, 40, 7, 5, 0, Split::kTrain);
  EXPECT_EQ(a.ids.to_vector<int32_t>(), ids(7, 5, 0, Split::kTrain));
  EXPECT_EQ(a.targets.to_vector<int64_t>(),
            niah_batch(c, kVocab, 3, 40, 7, 5, 0, Split::kTrain).targets.to_vector<int64_t>());
  EXPECT_NE(a.ids.to_vector<int32_t>(), ids(7, 6, 0, Split::kTrain));
  EXPECT_NE(a.ids.to_vector<int32_t>(), ids(8, 5, 0, Split::kTrain));
  EXPECT_NE(a.ids.to_vector<int32_t>(), ids(7, 5, 1, Split::kTrain));
  EXPECT_NE(a.ids.to_vector<int32_t>(), ids(7, 5, 0, Split::kEval));
  // synthetic_batch is the trainer's entry point: the same batch.
  EXPECT_EQ(a.ids.to_vector<int32_t>(),
            synthetic_batch(c, kVocab, 3, 40, 7, 5, 0, Split::kTrain).ids.to_vector<int32_t>());
}

TEST_P(NiahVariant, AnswersAreTheNeedlesValuesAndCountsMatch) {
  for (int64_t needles : {0, 1, 3}) {
    SyntheticConfig c = niah(GetParam(), needles);
    if (c.task == "niah_single" && needles > 1) continue;
    for (int64_t T : {24, 57}) {
      const int64_t B = 6;
      Batch b = niah_batch(c, kVocab, B, T, 3, 11);
      auto x = b.ids.to_vector<int32_t>();
      auto y = b.targets.to_vector<int64_t>();
      int64_t scored = 0;
      for (int64_t v : y) scored += v != kIgnoreIndex;
      EXPECT_EQ(b.n_scored, scored);
      const int64_t N = needles ? needles : (c.task == "niah_single" ? 1 : 4);
      const int64_t per_row = c.task == "niah_multivalue" || c.task == "niah_multiquery" ? N : 1;
      EXPECT_EQ(scored, B * per_row) << c.task << " with " << needles << " needles";
      for (int64_t r = 0; r < B; ++r) check_row(c, x.data() + r * T, y.data() + r * T, T);
    }
  }
}

TEST_P(NiahVariant, AskedNeedlesSitAtTheRequestedDepth) {
  const int64_t B = 4, T = 61;
  for (double d : {0.0, 0.3, 0.5, 1.0}) {
    SyntheticConfig c = niah(GetParam(), GetParam() == std::string("niah_single") ? 1 : 3, d);
    Batch b = niah_batch(c, kVocab, B, T, 1, 2);
    auto x = b.ids.to_vector<int32_t>();
    auto y = b.targets.to_vector<int64_t>();
    for (int64_t r = 0; r < B; ++r) {
      Row row = read_row(c, x.data() + r * T, T);
      int64_t before = check_row(c, x.data() + r * T, y.data() + r * T, T);
      EXPECT_EQ(before, std::llround(d * double(row.n_noise))) << "depth " << d << " row " << r;
    }
  }
  SyntheticConfig c = niah(GetParam(), 0, -1);
  Batch b = niah_batch(c, kVocab, 64, T, 1, 2);
  auto x = b.ids.to_vector<int32_t>();
  auto y = b.targets.to_vector<int64_t>();
  double lo = 1, hi = 0;
  for (int64_t r = 0; r < 64; ++r) {
    Row row = read_row(c, x.data() + r * T, T);
    double f = double(check_row(c, x.data() + r * T, y.data() + r * T, T)) / double(row.n_noise);
    lo = std::min(lo, f);
    hi = std::max(hi, f);
  }
  EXPECT_LT(lo, 0.2) << "random depth never near the start";
  EXPECT_GT(hi, 0.8) << "random depth never near the end";
}

INSTANTIATE_TEST_SUITE_P(Tasks, NiahVariant,
                         ::testing::Values("niah_single", "niah_multikey", "niah_multivalue",
                                           "niah_multiquery"));

TEST(Niah, MultiqueryAsksNQueriesOfTheNeedles) {
  SyntheticConfig c = niah("niah_multiquery", 5, 0.5);
  c.n_queries = 2;
  const int64_t B = 5, T = 40;
  Batch b = niah_batch(c, kVocab, B, T, 9, 0);
  EXPECT_EQ(b.n_scored, B * 2);
  auto x = b.ids.to_vector<int32_t>();
  auto y = b.targets.to_vector<int64_t>();
  for (int64_t r = 0; r < B; ++r) check_row(c, x.data() + r * T, y.data() + r * T, T);
}

void expect_error(const SyntheticConfig& c, int64_t vocab, int64_t T, const std::string& key) {
  Status s = validate_synthetic(c, vocab, T);
  ASSERT_FALSE(s.ok()) << "expected an error on " << key;
  EXPECT_NE(s.message().find("data." + key + ":"), std::string::npos) << s.message();
  EXPECT_THROW(synthetic_batch(c, vocab, 1, T, 0, 0), Error);
}

TEST(Niah, ErrorsNameTheKey) {
  expect_error(niah("niah_single", 2), kVocab, 40, "n_needles");
  expect_error(niah("niah_multikey", 13), kVocab, 80, "n_needles");    // > n_keys
  expect_error(niah("niah_multivalue", 11), kVocab, 80, "n_needles");  // > n_values
  expect_error(niah("niah_multikey", 4), kVocab, 11, "n_needles");     // too long for T
  expect_error(niah("niah_single", 1, 1.5), kVocab, 40, "needle_depth");
  expect_error(niah("niah_single", 1, -0.5), kVocab, 40, "needle_depth");
  expect_error(niah("niah_single"), 40, 40, "n_haystack");  // 2 + 12 + 10 + 20 > 40
  SyntheticConfig q = niah("niah_multiquery", 3);
  q.n_queries = 4;
  expect_error(q, kVocab, 40, "n_queries");
  SyntheticConfig h = niah("niah_single");
  h.n_haystack = 0;
  expect_error(h, kVocab, 40, "n_haystack");
  Status s = validate_synthetic(niah("niah_sinlge"), kVocab, 40);
  EXPECT_NE(s.message().find("data.task:"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("niah_multiquery"), std::string::npos) << s.message();
  // The smallest row that fits: 2 needle tokens, 1 noise token and SEP k v.
  EXPECT_TRUE(validate_synthetic(niah("niah_single"), kVocab, 6).ok());
  EXPECT_FALSE(validate_synthetic(niah("niah_single"), kVocab, 5).ok());
}

TEST(Niah, TrainConfigReachesTheTask) {
  const char* yaml = R"(
model: {vocab_size: 64, d_model: 16, pattern: "-", mlp: {intermediate_size: 16}}
data: {task: niah_multikey, n_keys: 12, n_values: 10, n_haystack: 20, n_needles: 3,
       needle_depth: 0.25}
seq_len: 32
batch_size: 2
)";
  StatusOr<trainer::TrainConfig> c = trainer::parse_train_config(yaml, "niah.yaml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c.value().data.n_needles, 3);
  EXPECT_EQ(c.value().data.needle_depth, 0.25);
  EXPECT_EQ(c.value().data.n_haystack, 20);
  StatusOr<trainer::TrainConfig> again =
      trainer::parse_train_config(trainer::to_yaml(c.value()), "again.yaml");
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(again.value().data.needle_depth, 0.25);
  SourceShape shape;
  shape.vocab_size = 64;
  shape.batch_size = 2;
  shape.seq_len = 32;
  auto src = make_batch_source(c.value().data, shape);
  ASSERT_TRUE(src.ok()) << src.status().message();
  Batch b = src.value()->batch(0, Split::kEval);
  auto x = b.ids.to_vector<int32_t>();
  auto y = b.targets.to_vector<int64_t>();
  for (int64_t r = 0; r < 2; ++r)
    check_row(c.value().data, x.data() + r * 32, y.data() + r * 32, 32);

  StatusOr<trainer::TrainConfig> bad =
      trainer::parse_train_config(yaml, "niah.yaml", {"data.needle_depth=2"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("data.needle_depth"), std::string::npos)
      << bad.status().message();
  bad = trainer::parse_train_config(yaml, "niah.yaml", {"data.n_needles=40"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("data.n_needles"), std::string::npos)
      << bad.status().message();
}

}  // namespace
}  // namespace sl::data
