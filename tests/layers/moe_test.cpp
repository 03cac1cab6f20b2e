// Moe: routing against a host re-derivation of HF NemotronH's router, the dispatched forward and
// its gradients equal to the dense reference (every expert on every token), gradcheck in f64, the
// load-balancing loss against its formula, HF names and parameter count, errors, and the GPU
// against the CPU.
#include "layers/moe.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "tests/common/gpu.h"
#include "tests/common/tolerance.h"
#include "tests/layers/layer_check.h"

namespace sl::layers {
namespace {

struct Variant {
  std::string name, score;
  bool norm_topk;
  double scaling;
  int64_t shared, top_k;
};

ModelConfig moe_config(const Variant& v, int64_t d = 6, int64_t e = 5) {
  ModelConfig c;
  c.d_model = d;
  c.init_std = 0.5;
  c.moe.n_routed_experts = e;
  c.moe.top_k = v.top_k;
  c.moe.n_shared_experts = v.shared;
  c.moe.intermediate_size = 7;
  c.moe.shared_intermediate_size = 9;
  c.moe.score = v.score;
  c.moe.norm_topk_prob = v.norm_topk;
  c.moe.routed_scaling_factor = v.scaling;
  return c;
}

void PrintTo(const Variant& v, std::ostream* os) {
  *os << v.name;
}

const Variant kNemotron{"nemotron", "sigmoid", true, 2.5, 1, 2};

std::unique_ptr<Moe> make_moe(const ModelConfig& c, uint64_t seed, DType dt = DType::F64) {
  Generator gen(seed);
  auto m = std::make_unique<Moe>(c, gen);
  m->to(Device::cpu(), dt);
  return m;
}

TEST(Moe, RoutingMatchesHostDerivation) {
  for (const std::string score : {"sigmoid", "softmax"}) {
    ModelConfig c = moe_config({"", score, true, 2.5, 1, 2});
    auto m = make_moe(c, 1);
    const int64_t n = 9, e = 5, d = 6, k = 2;
    // A correction bias that changes the selection but, by HF's rule, not the weights.
    m->gate().e_score_correction_bias().set_value(
        Tensor::from_vector(std::vector<double>{0, 0.3, 0, -0.2, 0.1}, {e}));
    Tensor x = test::randn({n, d}, 2, DType::F64);
    MoeRouting r = m->route(ag::Var(x));
    auto xv = x.to_vector<double>(), wv = m->gate().weight().value().to_vector<double>();
    std::vector<double> bias{0, 0.3, 0, -0.2, 0.1};
    std::vector<int64_t> idx(static_cast<size_t>(n * k));
    std::vector<double> wts(static_cast<size_t>(n * k));
    for (int64_t t = 0; t < n; ++t) {
      std::vector<double> s(static_cast<size_t>(e));
      double z = 0;
      for (int64_t j = 0; j < e; ++j) {
        double l = 0;
        for (int64_t i = 0; i < d; ++i) l += xv[size_t(t * d + i)] * wv[size_t(j * d + i)];
        s[size_t(j)] = score == "sigmoid" ? 1 / (1 + std::exp(-l)) : std::exp(l);
        z += s[size_t(j)];
      }
      if (score == "softmax")
        for (double& v : s) v /= z;
      std::vector<int64_t> order(static_cast<size_t>(e));
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
        return s[size_t(a)] + bias[size_t(a)] > s[size_t(b)] + bias[size_t(b)];
      });
      double sum = s[size_t(order[0])] + s[size_t(order[1])];
      for (int64_t j = 0; j < k; ++j) {
        idx[size_t(t * k + j)] = order[size_t(j)];
        wts[size_t(t * k + j)] = s[size_t(order[size_t(j)])] / (sum + 1e-20) * 2.5;
      }
    }
    EXPECT_TRUE(test::AllEqual(r.topk_index, Tensor::from_vector(idx, {n, k}))) << score;
    EXPECT_TRUE(
        test::AllClose(r.topk_weight.value(), Tensor::from_vector(wts, {n, k}), {DType::F64, 8}))
        << score;
  }
}

class MoeVariant : public ::testing::TestWithParam<Variant> {};

// Forward and every gradient of the dispatched MoE equal the dense reference.
TEST_P(MoeVariant, DispatchedEqualsDense) {
  ModelConfig c = moe_config(GetParam());
  auto a = make_moe(c, 3), b = make_moe(c, 3);
  Tensor x = test::randn({2, 7, 6}, 4, DType::F64);
  Tensor gy = test::randn({2, 7, 6}, 5, DType::F64);
  ag::Var xa(x, true), xb(x, true);
  ag::Var ya = a->forward(xa), yb = b->forward_dense(xb);
  EXPECT_TRUE(test::AllClose(ya.value(), yb.value(), {DType::F64, 64}));
  EXPECT_EQ(a->last_counts(), b->last_counts());
  EXPECT_EQ(std::accumulate(a->last_counts().begin(), a->last_counts().end(), int64_t(0)),
            14 * c.moe.top_k);
  // Loss = <y, gy> + aux: gradients of the aux loss flow through the router too.
  ag::Var la = ag::add(ag::sum_all(ag::mul(ya, ag::Var(gy))), a->aux_loss());
  ag::Var lb = ag::add(ag::sum_all(ag::mul(yb, ag::Var(gy))), b->aux_loss());
  EXPECT_NEAR(a->aux_loss().value().item(), b->aux_loss().value().item(), 1e-12);
  la.backward();
  lb.backward();
  EXPECT_TRUE(test::AllClose(xa.grad(), xb.grad(), {DType::F64, 64}));
  auto pa = a->named_parameters(), pb = b->named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    const Tensor &ga = pa[i].second.grad(), &gb = pb[i].second.grad();
    if (pa[i].first == "gate.e_score_correction_bias") {
      EXPECT_FALSE(ga.defined() || gb.defined()) << "selection only: no gradient";
      continue;
    }
    // An expert with no token has no gradient dispatched; the dense reference gives it zeros.
    Tensor ref = gb.defined() ? gb : Tensor::zeros(pb[i].second.shape(), DType::F64);
    if (!ga.defined()) {
      EXPECT_TRUE(test::AllEqual(ref, Tensor::zeros(ref.shape(), DType::F64))) << pa[i].first;
      continue;
    }
    EXPECT_TRUE(test::AllClose(ga, ref, {DType::F64, 64})) << pa[i].first;
  }
}

TEST_P(MoeVariant, GradcheckF64) {
  ModelConfig c = moe_config(GetParam(), 4, 4);
  c.moe.intermediate_size = 3;
  c.moe.shared_intermediate_size = 3;
  auto m = make_moe(c, 6);
  std::vector<ag::Var> inputs{ag::Var(test::randn({2, 3, 4}, 7, DType::F64), true, "x")};
  for (auto& [n, p] : m->named_parameters()) inputs.push_back(p);
  auto res = ag::gradcheck(
      [&](const std::vector<ag::Var>& in) {
        ag::Var y = m->forward(in[0]);
        return ag::add(ag::sum_all(ag::mul(y, y)), ag::scale(m->aux_loss(), 3.0));
      },
      inputs);
  EXPECT_TRUE(res.ok) << res.message;
}

INSTANTIATE_TEST_SUITE_P(
    Variants, MoeVariant,
    ::testing::Values(kNemotron, Variant{"softmax_plain_noshared", "softmax", false, 1.0, 0, 2},
                      Variant{"sigmoid_top1", "sigmoid", false, 1.0, 1, 1},
                      Variant{"softmax_norm_top3", "softmax", true, 1.5, 0, 3}),
    [](const auto& info) { return info.param.name; });

TEST(Moe, AuxLossMatchesFormula) {
  for (const std::string score : {"sigmoid", "softmax"}) {
    ModelConfig c = moe_config({"", score, true, 1.0, 0, 2});
    auto m = make_moe(c, 8);
    const int64_t n = 11, e = 5;
    Tensor x = test::randn({n, 6}, 9, DType::F64);
    m->forward(ag::Var(x));
    MoeRouting r = m->route(ag::Var(x));
    auto s = ag::linear(ag::Var(x), m->gate().weight()).value().to_vector<double>();
    std::vector<double> pmean(size_t(e), 0.0);
    for (int64_t t = 0; t < n; ++t) {
      double z = 0;
      for (int64_t j = 0; j < e; ++j) {
        double& v = s[size_t(t * e + j)];
        v = score == "sigmoid" ? 1 / (1 + std::exp(-v)) : std::exp(v);
        z += v;
      }
      for (int64_t j = 0; j < e; ++j) pmean[size_t(j)] += s[size_t(t * e + j)] / z / double(n);
    }
    double expect = 0;
    for (int64_t j = 0; j < e; ++j)
      expect += double(e) * double(r.counts[size_t(j)]) / double(n * 2) * pmean[size_t(j)];
    EXPECT_NEAR(m->aux_loss().value().item(), expect, 1e-12) << score;
  }
}

TEST(Moe, AuxLossIsOneForUniformProbabilities) {
  ModelConfig c = moe_config({"", "softmax", true, 1.0, 0, 1}, 4, 4);
  auto m = make_moe(c, 10);
  // Zero router: uniform probabilities; ties go to expert 0, so f = (1, 0, 0, 0) and P = 1/4.
  m->gate().weight().set_value(Tensor::zeros({4, 4}, DType::F64));
  m->forward(ag::Var(test::randn({8, 4}, 11, DType::F64)));
  EXPECT_EQ(m->last_counts(), (std::vector<int64_t>{8, 0, 0, 0}));
  EXPECT_NEAR(m->aux_loss().value().item(), 1.0, 1e-12);
}

TEST(Moe, HfNamesAndParameterCount) {
  ModelConfig c = moe_config(kNemotron, 6, 3);
  auto m = make_moe(c, 12);
  std::vector<std::string> names;
  for (auto& [n, _] : m->named_parameters()) names.push_back(n);
  EXPECT_EQ(names, (std::vector<std::string>{
                       "experts.0.up_proj.weight", "experts.0.down_proj.weight",
                       "experts.1.up_proj.weight", "experts.1.down_proj.weight",
                       "experts.2.up_proj.weight", "experts.2.down_proj.weight", "gate.weight",
                       "gate.e_score_correction_bias", "shared_experts.up_proj.weight",
                       "shared_experts.down_proj.weight"}));
  EXPECT_EQ(m->num_parameters(), 3 * 2 * 6 * 7 + 3 * 6 + 3 + 2 * 6 * 9);
}

TEST(Moe, BadConfigIsAnError) {
  ModelConfig c = moe_config(kNemotron);
  c.moe.top_k = 6;
  Generator gen(0);
  try {
    Moe m(c, gen);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Moe: top_k 6"), std::string::npos) << e.what();
  }
  c = moe_config(kNemotron);
  auto m = make_moe(c, 1);
  EXPECT_THROW(m->forward(ag::Var(Tensor::zeros({3, 5}, DType::F64))), Error);
}

class MoeGpu : public ::testing::TestWithParam<DType> {};

TEST_P(MoeGpu, DispatchedMatchesCpu) {
  SL_REQUIRE_GPU();
  ModelConfig c = moe_config(kNemotron, 129, 8);
  c.init_std = 0.1;
  c.moe.intermediate_size = 67;
  c.moe.shared_intermediate_size = 45;
  c.moe.aux_loss_coef = 0.1;
  test::expect_gpu_matches_cpu<Moe>(
      [c] {
        Generator gen(41);
        return std::make_unique<Moe>(c, gen);
      },
      // The aux loss joins the output so that its gradient is checked too.
      [](Moe& m, const ag::Var& x) {
        ag::Var y = m.forward(x);
        return ag::add(y, cast(ag::reshape(m.aux_loss(), {1, 1, 1}), y.dtype()));
      },
      {3, 37, 129}, GetParam(), 42);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, MoeGpu, ::testing::Values(DType::F32, DType::BF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace sl::layers
