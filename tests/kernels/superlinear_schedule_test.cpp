// The superlinear schedule (spec §4, §5, §7, §10, §11): stripe offsets, anchors, window and span
// bounds against values worked out by hand from the formulas; coverage; config validation; the
// work counters against closed forms and their O(L^1.5) growth.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/superlinear.h"

namespace sl::kernels {
namespace {

using V = std::vector<int64_t>;

SuperlinearConfig cfg_int(int n, double q, int64_t s, int k, double fb, double ff) {
  return {n, 0.0, q, s, k, fb, ff};
}
SuperlinearConfig cfg_float(double p, double q, int64_t s, int k, double fb, double ff) {
  return {0, p, q, s, k, fb, ff};
}

TEST(SuperlinearSchedule, StripeOffsetsAndWindow) {
  SuperlinearConfig half = SuperlinearConfig::balanced(), third = cfg_int(3, 2.0 / 3, 0, 3, 3, 0);
  SuperlinearConfig f55 = SuperlinearConfig::upscaled();
  for (int64_t i = 1; i <= 6; ++i) {
    EXPECT_EQ(stripe_offset(half, i), i * i);
    EXPECT_EQ(stripe_offset(third, i), i * i * i);
  }
  // floor(i^(1/0.55)) = floor(i^1.8181..): 1, 3.53, 7.37, 12.44, 18.66, 25.99, 34.2.
  V f55_o = {1, 3, 7, 12, 18, 25, 34};
  for (int64_t i = 1; i <= 7; ++i) EXPECT_EQ(stripe_offset(f55, i), f55_o[size_t(i - 1)]) << i;
  EXPECT_EQ(window_len(half), 0);
  EXPECT_EQ(window_len(cfg_int(2, 0.5, 3, 3, 2, 0)), 15);        // o(4) - 1 = 16 - 1
  EXPECT_EQ(window_len(cfg_int(3, 0.7, 3, 3, 3, 0)), 63);        // 4^3 - 1
  EXPECT_EQ(window_len(f55), 2032);                              // spec §5
  EXPECT_EQ(window_len(cfg_float(0.55, 0.55, 3, 3, 3, 1)), 11);  // floor(4^1.818) - 1
  // Window start: max(s_b, t - W + 1); W = 0 gives the empty window [t + 1, t].
  EXPECT_EQ(sw_start(half, 20, 0), 21);
  EXPECT_EQ(sw_start(cfg_int(2, 0.5, 3, 3, 2, 0), 40, 0), 26);
  EXPECT_EQ(sw_start(cfg_int(2, 0.5, 3, 3, 2, 0), 40, 30), 30);
  EXPECT_EQ(sw_start(cfg_int(2, 0.5, 3, 3, 2, 0), 5, 0), 0);
}

TEST(SuperlinearSchedule, AnchorsByHand) {
  // p = 1/2, s = 0, t = 20: distances 1, 4, 9, 16 (25 > 21 visible).
  EXPECT_EQ(candidate_anchors(cfg_int(2, 0.5, 0, 3, 2, 0), 20, 0), (V{20, 17, 12, 5}));
  // s = 3 skips stripes 1..3: only distance 16.
  EXPECT_EQ(candidate_anchors(cfg_int(2, 0.5, 3, 3, 2, 0), 20, 0), (V{5}));
  EXPECT_EQ(candidate_anchors(cfg_int(2, 0.5, 3, 3, 2, 0), 40, 0), (V{25, 16, 5}));
  // Packed documents: s_b = 10, T = 11, distances 1, 4, 9 only; with s = 3 none.
  EXPECT_EQ(candidate_anchors(cfg_int(2, 0.5, 0, 3, 2, 0), 20, 10), (V{20, 17, 12}));
  EXPECT_EQ(candidate_anchors(cfg_int(2, 0.5, 3, 3, 2, 0), 20, 10), (V{}));
  EXPECT_EQ(candidate_anchors(cfg_int(2, 0.5, 3, 3, 2, 0), 40, 10), (V{25, 16}));
  // p = 1/3: distances 1, 8, 27 (64 > 31).
  EXPECT_EQ(candidate_anchors(cfg_int(3, 2.0 / 3, 0, 3, 3, 0), 30, 0), (V{30, 23, 4}));
  EXPECT_EQ(candidate_anchors(cfg_int(3, 2.0 / 3, 0, 3, 3, 0), 30, 5), (V{30, 23}));
  EXPECT_EQ(candidate_anchors(cfg_int(3, 2.0 / 3, 3, 3, 3, 0), 30, 0), (V{}));
  // Float path p = 0.55: distances 1, 3, 7, 12, 18 (25 > 21).
  EXPECT_EQ(candidate_anchors(cfg_float(0.55, 0.55, 0, 3, 3, 1), 20, 0), (V{20, 18, 14, 9, 3}));
  EXPECT_EQ(candidate_anchors(cfg_float(0.55, 0.55, 3, 3, 3, 1), 20, 0), (V{9, 3}));
  EXPECT_EQ(candidate_anchors(cfg_float(0.55, 0.55, 0, 3, 3, 1), 20, 8), (V{20, 18, 14, 9}));
  // The nearest candidate is sw_start - 1: window and stripes tile without a gap.
  for (int64_t s : {0, 3})
    for (int64_t t : {30, 100, 999}) {
      SuperlinearConfig c = cfg_int(2, 0.5, s, 3, 2, 0);
      EXPECT_EQ(candidate_anchors(c, t, 0).front(), sw_start(c, t, 0) - 1);
    }
}

TEST(SuperlinearSchedule, NumCandidatesIsFloorRootMinusS) {
  for (int64_t s : {0, 3})
    for (int64_t T = 1; T < 5000; T += 7) {
      int64_t r = int64_t(std::floor(std::sqrt(double(T))));  // exact for these T
      EXPECT_EQ(num_candidates(cfg_int(2, 0.5, s, 3, 2, 0), T), std::max<int64_t>(0, r - s)) << T;
      int64_t c3 = 0;
      while ((c3 + 1) * (c3 + 1) * (c3 + 1) <= T) ++c3;
      EXPECT_EQ(num_candidates(cfg_int(3, 2.0 / 3, s, 3, 3, 0), T), std::max<int64_t>(0, c3 - s));
    }
  EXPECT_EQ(num_candidates(SuperlinearConfig::balanced(), 65536), 256);  // spec §11
  EXPECT_EQ(num_candidates(SuperlinearConfig::balanced(), 1 << 20), 1024);
}

TEST(SuperlinearSchedule, SpanBoundsByHand) {
  // p = q = 1/2, f_b = 2, t = 20: len_b = ceil(2 sqrt 21) = ceil(9.17) = 10.
  SuperlinearConfig c = cfg_int(2, 0.5, 0, 3, 2, 0);
  EXPECT_EQ(len_b(c, 21), 10);
  V starts = {10, 7, 2, 0}, ends = {20, 17, 12, 5};
  V anchors = {20, 17, 12, 5};
  for (size_t j = 0; j < 4; ++j) {
    EXPECT_EQ(span_start(c, anchors[j], 20, 0), starts[j]);
    EXPECT_EQ(span_end(c, anchors[j], 20, 0), ends[j]);
  }
  // f_f = 1, W = 0: len_f = ceil(sqrt 21) = 5, end = min(a + 5, t, sw_start - 1 = t).
  c.f_f = 1;
  V ends_f = {20, 20, 17, 10};
  for (size_t j = 0; j < 4; ++j) EXPECT_EQ(span_end(c, anchors[j], 20, 0), ends_f[j]);
  // s = 3, f_b = 2, f_f = 1, t = 40: W = 15, sw_start = 26; len_b = ceil(12.81) = 13,
  // len_f = ceil(6.40) = 7; anchors 25, 16, 5.
  c = cfg_int(2, 0.5, 3, 3, 2, 1);
  V a3 = {25, 16, 5}, st3 = {12, 3, 0}, en3 = {25, 23, 12};
  for (size_t j = 0; j < 3; ++j) {
    EXPECT_EQ(span_start(c, a3[j], 40, 0), st3[j]);
    EXPECT_EQ(span_end(c, a3[j], 40, 0), en3[j]);
  }
  // Same with s_b = 10: T = 31, len_b = ceil(11.14) = 12, len_f = ceil(5.57) = 6.
  V a4 = {25, 16}, st4 = {13, 10}, en4 = {25, 22};
  for (size_t j = 0; j < 2; ++j) {
    EXPECT_EQ(span_start(c, a4[j], 40, 10), st4[j]);
    EXPECT_EQ(span_end(c, a4[j], 40, 10), en4[j]);
  }
  // Float path p = q = 0.55, f_b = 3, f_f = 1, t = 20: 21^0.55 = 5.336, len_b = ceil(16.008) =
  // 17, len_f = 6.
  c = cfg_float(0.55, 0.55, 0, 3, 3, 1);
  EXPECT_EQ(len_b(c, 21), 17);
  EXPECT_EQ(len_f(c, 21), 6);
  V a5 = {20, 18, 14, 9, 3}, st5 = {3, 1, 0, 0, 0}, en5 = {20, 20, 20, 15, 9};
  for (size_t j = 0; j < 5; ++j) {
    EXPECT_EQ(span_start(c, a5[j], 20, 0), st5[j]);
    EXPECT_EQ(span_end(c, a5[j], 20, 0), en5[j]);
  }
  // Perfect squares stay exact on the q = 1/2 path: 2 * sqrt(64 * 64) = 128.
  EXPECT_EQ(len_b(SuperlinearConfig::balanced(), 4096), 128);
  EXPECT_EQ(len_b(SuperlinearConfig::balanced(), 65536), 512);
}

// Brute force: every key s_b <= u <= t marked by the window or some candidate span.
bool covered_brute(const SuperlinearConfig& c, int64_t t, int64_t* first_gap) {
  std::vector<char> m(size_t(t + 1), 0);
  for (int64_t u = sw_start(c, t, 0); u <= t; ++u) m[size_t(u)] = 1;
  for (int64_t a : candidate_anchors(c, t, 0))
    for (int64_t u = span_start(c, a, t, 0); u <= span_end(c, a, t, 0); ++u) m[size_t(u)] = 1;
  for (int64_t u = t; u >= 0; --u)
    if (!m[size_t(u)]) {
      *first_gap = u;
      return false;
    }
  return true;
}

TEST(SuperlinearSchedule, CoverageHoldsForTheSpecSettings) {
  std::vector<SuperlinearConfig> good = {SuperlinearConfig::balanced(), cfg_int(2, 0.5, 3, 3, 2, 0),
                                         cfg_int(2, 0.5, 3, 3, 3, 1), SuperlinearConfig::upscaled(),
                                         cfg_float(0.5, 0.5, 0, 3, 2, 0)};
  for (const SuperlinearConfig& c : good) {
    EXPECT_EQ(coverage_gap(c, 3000), "") << c.str();
    EXPECT_TRUE(validate(c).ok()) << validate(c).ToString();
    int64_t gap = -1;
    for (int64_t t = 0; t < 400; ++t) ASSERT_TRUE(covered_brute(c, t, &gap)) << c.str() << t;
  }
}

TEST(SuperlinearSchedule, CoverageBreakingSettingsAreDetectedAndRejected) {
  std::vector<SuperlinearConfig> bad = {cfg_int(2, 0.5, 0, 3, 1, 0), cfg_int(2, 0.4, 0, 3, 2, 0)};
  for (const SuperlinearConfig& c : bad) {
    std::string gap = coverage_gap(c, 3000);
    ASSERT_NE(gap, "") << c.str();
    // The reported key really is uncovered (brute force at that t).
    int64_t t = std::stoll(gap.substr(2)), u = std::stoll(gap.substr(gap.find("u=") + 2));
    int64_t first = -1;
    EXPECT_FALSE(covered_brute(c, t, &first));
    EXPECT_EQ(first, u);
    Status st = validate(c);
    EXPECT_FALSE(st.ok()) << c.str();
    EXPECT_NE(st.message().find("coverage"), std::string::npos) << st.message();
    EXPECT_TRUE(validate(c, /*allow_no_coverage=*/true).ok());
  }
  // Equality q = 1 - p on the p = 1/3 integer path (1 - 1/3 != 2/3 in fp64): f_b = 3 passes,
  // f_b = 2 < 1/p is rejected.
  EXPECT_TRUE(validate(cfg_int(3, 2.0 / 3, 0, 3, 3, 0)).ok())
      << validate(cfg_int(3, 2.0 / 3, 0, 3, 3, 0)).ToString();
  EXPECT_FALSE(validate(cfg_int(3, 2.0 / 3, 0, 3, 2, 0)).ok());
}

TEST(SuperlinearSchedule, ValidateRejectsBadValues) {
  std::vector<SuperlinearConfig> bad = {
      cfg_int(7, 0.5, 0, 3, 2, 0),     cfg_int(1, 0.5, 0, 3, 2, 0),
      cfg_float(1.2, 0.5, 0, 3, 2, 0), cfg_float(0.0, 0.5, 0, 3, 2, 0),
      cfg_int(2, 1.0, 0, 3, 2, 0),     cfg_int(2, 0.5, -1, 3, 2, 0),
      cfg_int(2, 0.5, 0, 0, 2, 0),     cfg_int(2, 0.5, 0, 3, 0, 0),
      cfg_int(2, 0.5, 0, 3, 2, -1),    cfg_float(std::nan(""), 0.5, 0, 3, 2, 0)};
  for (const SuperlinearConfig& c : bad) {
    Status st = validate(c, /*allow_no_coverage=*/true);
    EXPECT_FALSE(st.ok()) << c.str();
    EXPECT_NE(st.message().find("superlinear config"), std::string::npos);
  }
}

TEST(SuperlinearSchedule, WorkCountersMatchClosedForms) {
  // Balanced: n(t) = floor(sqrt(t + 1)); the nearest k spans hold min(len_b, a) + 1 keys each.
  SuperlinearConfig c = SuperlinearConfig::balanced();
  const int64_t L = 3000;
  SuperlinearWork w = superlinear_work(c, L, 0);
  for (int64_t t = 0; t < L; ++t) {
    int64_t r = int64_t(std::floor(std::sqrt(double(t + 1))));
    int64_t lb = int64_t(std::ceil(2 * std::sqrt(double(t + 1)))), keys = 0;
    for (int64_t i = 1; i <= std::min<int64_t>(3, r); ++i) keys += std::min(lb, t + 1 - i * i) + 1;
    EXPECT_EQ(w.search[size_t(t)], r) << t;
    EXPECT_EQ(w.keys[size_t(t)], keys) << t;
  }
  // Spec §11: at L = 64K, 256 anchors and <= 3 * (512 + 1) = 1539 keys for the last query.
  SuperlinearWork last = superlinear_work(c, 1, 65535);
  EXPECT_EQ(last.search[0], 256);
  EXPECT_EQ(last.keys[0], 1539);
  // With s = 3, W = 15 window keys join; packed docs shorten both (T = t + 1 - s_b).
  SuperlinearConfig c3 = cfg_int(2, 0.5, 3, 2, 2, 0);
  std::vector<int32_t> ds(200, 0);
  for (int64_t t = 100; t < 200; ++t) ds[size_t(t)] = 100;
  SuperlinearWork w3 = superlinear_work(c3, 200, 0, ds);
  for (int64_t t = 0; t < 200; ++t) {
    int64_t T = t + 1 - ds[size_t(t)];
    int64_t r = int64_t(std::floor(std::sqrt(double(T))));
    int64_t lb = int64_t(std::ceil(2 * std::sqrt(double(T)))), keys = std::min<int64_t>(15, T);
    for (int64_t i = 4; i <= std::min<int64_t>(5, r); ++i) keys += std::min(lb, T - i * i) + 1;
    EXPECT_EQ(w3.search[size_t(t)], std::max<int64_t>(0, r - 3)) << t;
    EXPECT_EQ(w3.keys[size_t(t)], keys) << t;
  }
}

TEST(SuperlinearSchedule, TotalWorkGrowsAsLToTheOnePointFive) {
  // Least-squares slope of log(total work) against log(L), L = 2K .. 64K, counters only.
  SuperlinearConfig c = SuperlinearConfig::balanced();
  std::vector<double> xs, ys;
  for (int64_t L = 2048; L <= 65536; L *= 2) {
    SuperlinearWork w = superlinear_work(c, L, 0);
    xs.push_back(std::log(double(L)));
    ys.push_back(std::log(double(w.total_search + w.total_keys)));
  }
  double mx = 0, my = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    mx += xs[i] / double(xs.size());
    my += ys[i] / double(xs.size());
  }
  double num = 0, den = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    num += (xs[i] - mx) * (ys[i] - my);
    den += (xs[i] - mx) * (xs[i] - mx);
  }
  double e = num / den;
  EXPECT_GE(e, 1.4);
  EXPECT_LE(e, 1.6);
}

}  // namespace
}  // namespace sl::kernels
