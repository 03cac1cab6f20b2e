// ag::superlinear_attention: gradients w.r.t. Qa, Qs, K, V against central finite differences
// (f64), the routing gradient into Qs, determinism, and the f32 backward against f64.
#include "autograd/ops_superlinear.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "autograd/gradcheck.h"
#include "tests/common/tolerance.h"

namespace sl::ag {
namespace {

using kernels::SuperlinearConfig;

SuperlinearConfig cfg_of(int n, double p, double q, int64_t s, int k, double fb, double ff) {
  return {n, p, q, s, k, fb, ff};
}

// Documents start at 0 and at 3L/4 (batch 0) or L/3 (batch 1).
Tensor docs(int64_t B, int64_t L) {
  std::vector<int32_t> ds(size_t(B * L));
  for (int64_t b = 0; b < B; ++b) {
    int64_t cut = b == 0 ? 3 * L / 4 : L / 3;
    for (int64_t t = 0; t < L; ++t) ds[size_t(b * L + t)] = int32_t(t >= cut ? cut : 0);
  }
  return Tensor::from_vector(ds, {B, L});
}

struct GradCase {
  std::string name;
  int64_t B, Hq, Hkv, Lq, Lkv, D;
  SuperlinearConfig cfg;
  bool docs;
};
void PrintTo(const GradCase& c, std::ostream* os) {
  *os << c.name << " (" << c.cfg.str() << ")";
}

class SuperlinearGradcheck : public ::testing::TestWithParam<GradCase> {};

TEST_P(SuperlinearGradcheck, MatchesFiniteDifferences) {
  const GradCase& c = GetParam();
  uint64_t seed = std::hash<std::string>()(c.name);
  std::vector<Var> in = {
      Var(test::randn({c.B, c.Hq, c.Lq, c.D}, seed + 1, DType::F64), true, "qa"),
      Var(test::randn({c.B, c.Hq, c.Lq, c.D}, seed + 2, DType::F64), true, "qs"),
      Var(test::randn({c.B, c.Hkv, c.Lkv, c.D}, seed + 3, DType::F64), true, "k"),
      Var(test::randn({c.B, c.Hkv, c.Lkv, c.D}, seed + 4, DType::F64), true, "v")};
  Tensor ds = c.docs ? docs(c.B, c.Lkv) : Tensor();
  auto fn = [&](const std::vector<Var>& x) {
    return superlinear_attention(x[0], x[1], x[2], x[3], c.cfg, ds, c.Lkv - c.Lq);
  };
  GradcheckResult r = gradcheck(fn, in);
  EXPECT_TRUE(r.ok) << r.message;
  // The routing gradient reaches the search query when some query has two valid slots to mix;
  // with k = 1, or a single candidate, the gate is constantly 1 and dQs is exactly 0.
  std::vector<int32_t> dsv = c.docs ? ds.to_vector<int32_t>() : std::vector<int32_t>();
  bool routes = false;
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t t = c.Lkv - c.Lq; t < c.Lkv; ++t) {
      int64_t sb = c.docs ? dsv[size_t(b * c.Lkv + t)] : 0;
      routes = routes || (c.cfg.k > 1 && kernels::num_candidates(c.cfg, t + 1 - sb) > 1);
    }
  EXPECT_EQ(routes, c.name != "third_k1") << "the case list meant every case but k = 1 to route";
  double max_dqs = 0;
  for (double x : in[1].grad().to_vector<double>()) max_dqs = std::max(max_dqs, std::fabs(x));
  if (routes)
    EXPECT_GT(max_dqs, 1e-3);
  else
    EXPECT_EQ(max_dqs, 0.0);
}

INSTANTIATE_TEST_SUITE_P(
    Small, SuperlinearGradcheck,
    ::testing::Values(
        GradCase{"balanced_gqa2", 1, 2, 1, 23, 23, 4, SuperlinearConfig::balanced(), false},
        GradCase{"s3_k2_ff1_docs", 2, 2, 1, 37, 37, 4, cfg_of(2, 0, 0.5, 3, 2, 2, 1), true},
        GradCase{"float055_s3_chunk", 1, 2, 1, 9, 31, 4, cfg_of(0, 0.55, 0.55, 3, 3, 3, 1), false},
        GradCase{"third_k1", 1, 1, 1, 19, 19, 4, cfg_of(3, 0, 2.0 / 3, 0, 1, 3, 0), false},
        GradCase{"k4_ff1_decode", 1, 4, 1, 1, 40, 4, cfg_of(2, 0, 0.5, 0, 4, 2, 1), true}),
    [](const ::testing::TestParamInfo<GradCase>& i) { return i.param.name; });

TEST(SuperlinearAutograd, BackwardIsDeterministicAndF32MatchesF64) {
  const int64_t L = 47, D = 8;
  SuperlinearConfig cfg = cfg_of(2, 0, 0.5, 3, 3, 2, 1);
  Tensor ds = docs(1, L);
  Tensor qa = test::randn({1, 4, L, D}, 7), qs = test::randn({1, 4, L, D}, 8);
  Tensor k = test::randn({1, 2, L, D}, 9), v = test::randn({1, 2, L, D}, 10);
  Tensor dout = test::randn({1, 4, L, D}, 11);
  auto grads = [&](DType dt) {
    std::vector<Var> x = {Var(qa.to(dt), true), Var(qs.to(dt), true), Var(k.to(dt), true),
                          Var(v.to(dt), true)};
    superlinear_attention(x[0], x[1], x[2], x[3], cfg, ds).backward(dout.to(dt));
    return std::vector<Tensor>{x[0].grad(), x[1].grad(), x[2].grad(), x[3].grad()};
  };
  std::vector<Tensor> a = grads(DType::F32), b = grads(DType::F32), ref = grads(DType::F64);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_TRUE(test::AllEqual(a[i], b[i])) << "input " << i;
    EXPECT_TRUE(test::AllClose(a[i], ref[i], test::Tol{DType::F32, L})) << "input " << i;
  }
}

TEST(SuperlinearAutograd, OnlyRequestedGradientsAndErrors) {
  Tensor q = test::randn({1, 2, 9, 4}, 1, DType::F64),
         kv = test::randn({1, 1, 9, 4}, 2, DType::F64);
  Var qa(q, true), qs(q.clone(), false), k(kv, false), v(kv.clone(), true);
  Var out = superlinear_attention(qa, qs, k, v, SuperlinearConfig::balanced());
  out.backward(test::randn({1, 2, 9, 4}, 3, DType::F64));
  EXPECT_TRUE(qa.grad().defined());
  EXPECT_TRUE(v.grad().defined());
  EXPECT_FALSE(qs.grad().defined());
  EXPECT_FALSE(k.grad().defined());
  try {
    superlinear_attention(qa, Var(), k, v, SuperlinearConfig::balanced());
    ADD_FAILURE() << "no error for an undefined input";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("superlinear_attention"), std::string::npos);
  }
}

}  // namespace
}  // namespace sl::ag
