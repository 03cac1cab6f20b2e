// The O(L^1.5) CPU reference of superlinear attention against the literal O(L^2) oracle (f64),
// chunked prefill and decode against full prefill rows, the top-k tie rule, early positions
// against dense causal attention, lower precisions, work counters and argument errors.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "kernels/superlinear.h"
#include "tests/common/tolerance.h"

namespace sl::kernels {
namespace {

using test::AllClose;
using test::AllEqual;
using test::Tol;

SuperlinearConfig cfg_int(int n, double q, int64_t s, int k, double fb, double ff) {
  return {n, 0.0, q, s, k, fb, ff};
}

// Packed documents: batch b splits [0, L) at L/3 + b and L/2 + 2b (when inside).
Tensor make_docs(int64_t B, int64_t L) {
  std::vector<int32_t> ds(size_t(B * L));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < L; ++t) {
      int64_t c1 = L / 3 + b, c2 = L / 2 + 2 * b, s = 0;
      if (c1 > 0 && t >= c1) s = c1;
      if (c2 > c1 && t >= c2) s = c2;
      ds[size_t(b * L + t)] = int32_t(s);
    }
  return Tensor::from_vector(ds, {B, L});
}

struct Case {
  std::string name;
  int64_t B, Hq, Hkv, Lq, Lkv, D;
  SuperlinearConfig cfg;
  bool docs;
};
void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name << " (" << c.cfg.str() << ")";
}

class SuperlinearVsOracle : public ::testing::TestWithParam<Case> {};

TEST_P(SuperlinearVsOracle, ForwardMatchesDenseOracle) {
  const Case& c = GetParam();
  uint64_t seed = std::hash<std::string>()(c.name);
  Tensor qa = test::randn({c.B, c.Hq, c.Lq, c.D}, seed + 1, DType::F64);
  Tensor qs = test::randn({c.B, c.Hq, c.Lq, c.D}, seed + 2, DType::F64);
  Tensor k = test::randn({c.B, c.Hkv, c.Lkv, c.D}, seed + 3, DType::F64);
  Tensor v = test::randn({c.B, c.Hkv, c.Lkv, c.D}, seed + 4, DType::F64);
  Tensor ds = c.docs ? make_docs(c.B, c.Lkv) : Tensor();
  SuperlinearForward f = superlinear_forward(qa, qs, k, v, c.cfg, ds);
  SuperlinearOracle o = superlinear_dense_oracle(qa, qs, k, v, c.cfg, ds);
  EXPECT_TRUE(AllEqual(f.anchors, o.anchors));
  EXPECT_TRUE(AllClose(f.scores, o.scores, Tol{DType::F64, c.D}));
  EXPECT_TRUE(AllClose(f.out, o.out, Tol{DType::F64, c.Lkv}));
}

INSTANTIATE_TEST_SUITE_P(
    Sweep, SuperlinearVsOracle,
    ::testing::Values(
        Case{"L1", 1, 1, 1, 1, 1, 8, SuperlinearConfig::balanced(), false},
        Case{"L2_k1", 1, 2, 2, 2, 2, 8, cfg_int(2, 0.5, 0, 1, 2, 0), false},
        Case{"L37_gqa4_s3_ff1_docs", 2, 4, 1, 37, 37, 16, cfg_int(2, 0.5, 3, 3, 2, 1), true},
        Case{"L37_k1_d8", 1, 2, 2, 37, 37, 8, cfg_int(2, 0.5, 0, 1, 2, 0), false},
        Case{"L37_s3_k1_ff0_docs", 1, 2, 1, 37, 37, 8, cfg_int(2, 0.5, 3, 1, 2, 0), true},
        Case{"L300_gqa4_s3_k3_ff1_docs", 1, 4, 1, 300, 300, 16, cfg_int(2, 0.5, 3, 3, 3, 1), true},
        Case{"L300_gqa16_balanced", 1, 16, 1, 300, 300, 8, SuperlinearConfig::balanced(), false},
        Case{"L300_s0_k3_ff1", 1, 2, 2, 300, 300, 8, cfg_int(2, 0.5, 0, 3, 2, 1), false},
        Case{"L101_float055_s3_docs", 1, 2, 1, 101, 101, 8,
             SuperlinearConfig{0, 0.55, 0.55, 3, 3, 3, 1}, true},
        Case{"L77_third_k2", 1, 2, 1, 77, 77, 8, cfg_int(3, 2.0 / 3, 0, 2, 3, 0), false},
        Case{"chunk50_of137_s3_docs", 2, 4, 2, 50, 137, 8, cfg_int(2, 0.5, 3, 3, 2, 1), true},
        Case{"decode_t136", 1, 4, 1, 1, 137, 16, SuperlinearConfig::balanced(), true}),
    [](const ::testing::TestParamInfo<Case>& i) { return i.param.name; });

TEST(SuperlinearCpu, ChunkAndDecodeEqualPrefillRows) {
  const int64_t L = 61, D = 8;
  for (SuperlinearConfig cfg : {cfg_int(2, 0.5, 3, 3, 2, 1), SuperlinearConfig::balanced()}) {
    Tensor qa = test::randn({2, 4, L, D}, 11, DType::F64),
           qs = test::randn({2, 4, L, D}, 12, DType::F64);
    Tensor k = test::randn({2, 2, L, D}, 13, DType::F64),
           v = test::randn({2, 2, L, D}, 14, DType::F64);
    Tensor ds = make_docs(2, L);
    SuperlinearForward full = superlinear_forward(qa, qs, k, v, cfg, ds);
    // Chunk: queries 20..36 against the cache of keys 0..36; decode: one token at t.
    struct Chunk {
      int64_t start, len;
    };
    for (Chunk ch : {Chunk{20, 17}, Chunk{0, 5}, Chunk{60, 1}, Chunk{33, 1}, Chunk{0, 1}}) {
      int64_t end = ch.start + ch.len;
      SuperlinearForward part = superlinear_forward(
          qa.slice(2, ch.start, end), qs.slice(2, ch.start, end), k.slice(2, 0, end),
          v.slice(2, 0, end), cfg, ds.slice(1, 0, end).contiguous());
      EXPECT_TRUE(AllEqual(part.out, full.out.slice(2, ch.start, end))) << ch.start;
      EXPECT_TRUE(AllEqual(part.anchors, full.anchors.slice(2, ch.start, end))) << ch.start;
      // An explicit q_start with a longer cache reads no key past t.
      SuperlinearForward longer = superlinear_forward(
          qa.slice(2, ch.start, end), qs.slice(2, ch.start, end), k, v, cfg, ds, ch.start);
      EXPECT_TRUE(AllEqual(longer.out, full.out.slice(2, ch.start, end))) << ch.start;
    }
  }
}

TEST(SuperlinearCpu, TopKTieRuleFartherAnchorWins) {
  // t = 20, p = 1/2, s = 0: candidates 20, 17, 12, 5. Scores 2 * w with w = 1, 3, 2, 3 (K rows
  // 17 and 5 equal): the order is 5 (tie, farther), 17, 12, 20; the raw score has no 1/sqrt(D).
  const int64_t L = 21, D = 16;
  Tensor k = test::randn({1, 1, L, D}, 21, DType::F64);
  std::vector<double> kv = k.to_vector<double>();
  auto set_w = [&](int64_t u, double w) { kv[size_t(u * D)] = w; };
  for (int64_t u = 0; u < L; ++u) set_w(u, -5);
  set_w(20, 1);
  set_w(17, 3);
  set_w(12, 2);
  for (int64_t d = 0; d < D; ++d) kv[size_t(5 * D + d)] = kv[size_t(17 * D + d)];
  k = Tensor::from_vector(kv, {1, 1, L, D});
  std::vector<double> qsv(size_t(L * D), 0.0);
  for (int64_t t = 0; t < L; ++t) qsv[size_t(t * D)] = 2.0;
  Tensor qs = Tensor::from_vector(qsv, {1, 1, L, D});
  Tensor qa = test::randn({1, 1, L, D}, 22, DType::F64),
         v = test::randn({1, 1, L, D}, 23, DType::F64);
  const std::vector<int32_t> order = {5, 17, 12, 20, -1};
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<double> sc = {6, 6, 4, 2, -inf};
  for (int kk = 1; kk <= 5; ++kk) {
    SuperlinearConfig cfg = cfg_int(2, 0.5, 0, kk, 2, 0);
    SuperlinearForward f = superlinear_forward(qa, qs, k, v, cfg);
    SuperlinearOracle o = superlinear_dense_oracle(qa, qs, k, v, cfg);
    std::vector<int32_t> want(order.begin(), order.begin() + kk);
    std::vector<double> want_s(sc.begin(), sc.begin() + kk);
    Tensor wa = Tensor::from_vector(want, {1, 1, 1, kk});
    Tensor ws = Tensor::from_vector(want_s, {1, 1, 1, kk});
    EXPECT_TRUE(AllEqual(f.anchors.slice(2, 20, 21), wa)) << "k=" << kk;
    EXPECT_TRUE(AllEqual(f.scores.slice(2, 20, 21), ws)) << "k=" << kk;
    EXPECT_TRUE(AllEqual(o.anchors.slice(2, 20, 21), wa)) << "k=" << kk;
    EXPECT_TRUE(AllClose(f.out, o.out, Tol{DType::F64, L}));
  }
}

TEST(SuperlinearCpu, EarlyPositionsAreDenseCausalAttention) {
  // s = 3: W = 15, so queries t < 15 have no candidate and attend exactly to keys 0..t.
  const int64_t L = 37, D = 8;
  Tensor qa = test::randn({1, 2, L, D}, 31, DType::F64),
         qs = test::randn({1, 2, L, D}, 32, DType::F64);
  Tensor k = test::randn({1, 1, L, D}, 33, DType::F64),
         v = test::randn({1, 1, L, D}, 34, DType::F64);
  SuperlinearForward f = superlinear_forward(qa, qs, k, v, cfg_int(2, 0.5, 3, 3, 2, 0));
  std::vector<double> Q = qa.to_vector<double>(), Kv = k.to_vector<double>(),
                      Vv = v.to_vector<double>(), ref(size_t(2 * 15 * D));
  for (int64_t h = 0; h < 2; ++h)
    for (int64_t t = 0; t < 15; ++t) {
      std::vector<double> z(size_t(t + 1));
      double m = -1e300, sum = 0;
      for (int64_t u = 0; u <= t; ++u) {
        double s = 0;
        for (int64_t d = 0; d < D; ++d) s += Q[size_t((h * L + t) * D + d)] * Kv[size_t(u * D + d)];
        z[size_t(u)] = s / std::sqrt(double(D));
        m = std::max(m, z[size_t(u)]);
      }
      for (int64_t u = 0; u <= t; ++u) sum += std::exp(z[size_t(u)] - m);
      for (int64_t d = 0; d < D; ++d) {
        double acc = 0;
        for (int64_t u = 0; u <= t; ++u)
          acc += std::exp(z[size_t(u)] - m) / sum * Vv[size_t(u * D + d)];
        ref[size_t((h * 15 + t) * D + d)] = acc;
      }
    }
  EXPECT_TRUE(AllClose(f.out.slice(2, 0, 15), Tensor::from_vector(ref, {1, 2, 15, D}),
                       Tol{DType::F64, 15}));
  Tensor none = Tensor::full({1, 2, 15, 3}, -1, DType::I32);
  EXPECT_TRUE(AllEqual(f.anchors.slice(2, 0, 15), none));
  // From t = 15 on the stripe-4 anchor t - 15 exists.
  EXPECT_EQ(f.anchors.slice(2, 15, 16).contiguous().to_vector<int32_t>()[0], 0);
}

TEST(SuperlinearCpu, LowerPrecisionsMatchF64) {
  const int64_t L = 57, D = 16;
  SuperlinearConfig cfg = cfg_int(2, 0.5, 3, 3, 2, 1);
  Tensor ds = make_docs(1, L);
  for (DType dt : {DType::F32, DType::BF16}) {
    Tensor qa = test::randn({1, 4, L, D}, 41, dt), qs = test::randn({1, 4, L, D}, 42, dt);
    Tensor k = test::randn({1, 2, L, D}, 43, dt), v = test::randn({1, 2, L, D}, 44, dt);
    SuperlinearForward lo = superlinear_forward(qa, qs, k, v, cfg, ds);
    SuperlinearForward hi = superlinear_forward(qa.to(DType::F64), qs.to(DType::F64),
                                                k.to(DType::F64), v.to(DType::F64), cfg, ds);
    EXPECT_EQ(lo.out.dtype(), dt);
    EXPECT_EQ(lo.scores.dtype(), DType::F32);
    // The reference computes in f64 internally: only the output rounding to dt remains.
    EXPECT_TRUE(AllClose(lo.out, hi.out, Tol{dt, 1})) << dtype_name(dt);
    EXPECT_TRUE(AllEqual(lo.anchors, hi.anchors)) << dtype_name(dt);
  }
}

TEST(SuperlinearCpu, WorkCountersMatchClosedForms) {
  const int64_t L = 300, D = 8;
  SuperlinearConfig cfg = cfg_int(2, 0.5, 3, 3, 2, 0);
  Tensor ds = make_docs(1, L);
  Tensor qa = test::randn({1, 1, L, D}, 51, DType::F64),
         qs = test::randn({1, 1, L, D}, 52, DType::F64);
  Tensor k = test::randn({1, 1, L, D}, 53, DType::F64),
         v = test::randn({1, 1, L, D}, 54, DType::F64);
  SuperlinearWork done;
  SuperlinearForward f = superlinear_forward(qa, qs, k, v, cfg, ds, -1, &done);
  std::vector<int32_t> dsv = ds.to_vector<int32_t>(), an = f.anchors.to_vector<int32_t>();
  SuperlinearWork counted = superlinear_work(cfg, L, 0, dsv, an);
  EXPECT_EQ(done.search, counted.search);
  EXPECT_EQ(done.keys, counted.keys);
  EXPECT_EQ(done.total_keys, counted.total_keys);
  for (int64_t t = 0; t < L; ++t) {
    int64_t T = t + 1 - dsv[size_t(t)];
    int64_t r = int64_t(std::floor(std::sqrt(double(T))));
    EXPECT_EQ(done.search[size_t(t)], std::max<int64_t>(0, r - 3)) << t;
    // Window min(W, T) plus each kept span: a - max(a - len_b, s_b) + 1 keys.
    int64_t lb = int64_t(std::ceil(2 * std::sqrt(double(T)))), keys = std::min<int64_t>(15, T);
    for (int j = 0; j < 3; ++j) {
      int64_t a = an[size_t(t * 3 + j)];
      if (a >= 0) keys += a - std::max<int64_t>(a - lb, dsv[size_t(t)]) + 1;
    }
    EXPECT_EQ(done.keys[size_t(t)], keys) << t;
  }
}

void expect_error(const std::function<void()>& fn, const std::string& what) {
  try {
    fn();
    ADD_FAILURE() << "no error for " << what;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("superlinear_attention"), std::string::npos) << e.what();
  }
}

TEST(SuperlinearCpu, BadArgumentsThrowNamingTheOp) {
  SuperlinearConfig cfg = SuperlinearConfig::balanced();
  Tensor q = test::randn({1, 4, 8, 8}, 1, DType::F64), k = test::randn({1, 2, 8, 8}, 2, DType::F64);
  Tensor k3 = test::randn({1, 3, 8, 8}, 3, DType::F64);
  expect_error([&] { superlinear_forward(q, q, k.slice(3, 0, 4), k, cfg); }, "head dim");
  expect_error([&] { superlinear_forward(q, q, k3, k3, cfg); }, "Hq % Hkv");
  expect_error([&] { superlinear_forward(q, q.to(DType::F32), k, k, cfg); }, "dtype");
  expect_error([&] { superlinear_forward(q, q, k, k, cfg, Tensor(), 3); }, "q_start");
  SuperlinearConfig bad = cfg;
  bad.k = 0;
  expect_error([&] { superlinear_forward(q, q, k, k, bad); }, "config");
  Tensor ds = Tensor::from_vector(std::vector<int32_t>{0, 0, 5, 0, 0, 0, 0, 0}, {1, 8});
  expect_error([&] { superlinear_forward(q, q, k, k, cfg, ds); }, "doc_starts > t");
  expect_error([&] { superlinear_forward(q, q, k, k, cfg, ds.to(DType::F32)); }, "doc dtype");
}

// Note [saved for backward]: the CPU backward reads all of the metadata, so drop_unsaved keeps
// it there (only the output goes), and a backward without the scores or lse_w is an error naming
// them.
TEST(SuperlinearCpu, SavedStateKeepsWhatTheCpuBackwardReads) {
  const SuperlinearConfig cfg = SuperlinearConfig::balanced();
  const Tensor q = test::randn({1, 4, 20, 8}, 1, DType::F64);
  const Tensor k = test::randn({1, 2, 20, 8}, 2, DType::F64);
  SuperlinearForward f = superlinear_forward(q, q, k, k, cfg);
  SuperlinearForward saved = f;
  drop_unsaved(saved, q, k, cfg);
  EXPECT_FALSE(saved.out.defined());
  EXPECT_TRUE(saved.scores.defined() && saved.lse_w.defined() && saved.lse_s.defined() &&
              saved.anchors.defined());
  const SuperlinearGrads a = superlinear_backward(q, q, q, k, k, saved, cfg);
  const SuperlinearGrads b = superlinear_backward(q, q, q, k, k, f, cfg);
  EXPECT_TRUE(AllEqual(a.dqs, b.dqs) && AllEqual(a.dk, b.dk));
  for (const char* field : {"scores", "lse_w"}) {
    SuperlinearForward missing = saved;
    (std::string(field) == "scores" ? missing.scores : missing.lse_w) = Tensor();
    try {
      (void)superlinear_backward(q, q, q, k, k, missing, cfg);
      ADD_FAILURE() << "no error without fwd." << field;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("fwd.") + field + " is undefined"),
                std::string::npos)
          << e.what();
    }
  }
}

// superlinear_search_kernel names what the forward runs (the bench's 'search' column): on the CPU
// the reference, whatever the shapes; the CUDA answers are in superlinear_gpu_test.cpp.
TEST(SuperlinearCpu, SearchKernelIsTheReference) {
  const Tensor qa = Tensor::zeros({1, 4, 8, 64}, DType::BF16),
               k = Tensor::zeros({1, 2, 8, 64}, DType::BF16);
  EXPECT_EQ(superlinear_search_kernel(qa, k), "cpu");
  EXPECT_THROW(superlinear_search_kernel(qa, Tensor::zeros({2, 8, 64}, DType::BF16)), Error);
}

}  // namespace
}  // namespace sl::kernels
