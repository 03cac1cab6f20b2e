// Linear, Embedding, RMSNorm, cast and ModuleList: forward against plain loops, gradcheck in f64
// through the layers' parameters and inputs, HF parameter names, errors, and the GPU against the
// CPU (tests/layers/layer_check.h).
#include "layers/linear.h"

#include <gtest/gtest.h>

#include <cmath>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "tests/common/gpu.h"
#include "tests/common/tolerance.h"
#include "tests/layers/layer_check.h"

namespace sl::layers {
namespace {

std::vector<std::string> names(const Module& m) {
  std::vector<std::string> out;
  for (auto& [n, _] : m.named_parameters()) out.push_back(n);
  return out;
}

TEST(Linear, ForwardMatchesLoopsAndInit) {
  Generator gen(1);
  Linear lin(5, 3, /*bias=*/true, 0.5, gen);
  EXPECT_EQ(names(lin), (std::vector<std::string>{"weight", "bias"}));
  EXPECT_EQ(lin.num_parameters(), 5 * 3 + 3);
  EXPECT_TRUE(test::AllEqual(lin.bias().value(), Tensor::zeros({3}, DType::F32)));
  lin.bias().set_value(test::randn({3}, 2));
  lin.to(Device::cpu(), DType::F64);
  Tensor x = test::randn({2, 4, 5}, 3, DType::F64);
  Tensor y = lin.forward(ag::Var(x)).value();
  ASSERT_EQ(y.shape(), (Dims{2, 4, 3}));
  auto xv = x.to_vector<double>(), wv = lin.weight().value().to_vector<double>(),
       bv = lin.bias().value().to_vector<double>();
  std::vector<double> expect(2 * 4 * 3);
  for (int r = 0; r < 8; ++r)
    for (int o = 0; o < 3; ++o) {
      double acc = bv[o];
      for (int i = 0; i < 5; ++i) acc += xv[r * 5 + i] * wv[o * 5 + i];
      expect[r * 3 + o] = acc;
    }
  EXPECT_TRUE(test::AllClose(y, Tensor::from_vector(expect, {2, 4, 3}), {DType::F64, 5}));
  Linear nobias(5, 3, false, 0.02, gen);
  EXPECT_EQ(names(nobias), (std::vector<std::string>{"weight"}));
}

TEST(Linear, InitIsNormalWithInitStd) {
  Generator gen(4);
  Linear lin(200, 100, false, 0.02, gen);
  auto w = lin.weight().value().to_vector<float>();
  double s = 0, ss = 0;
  for (float v : w) s += v, ss += double(v) * v;
  double mean = s / double(w.size()), std = std::sqrt(ss / double(w.size()) - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.02 * 5 / std::sqrt(double(w.size())));
  EXPECT_NEAR(std, 0.02, 0.02 * 0.02);
}

TEST(Embedding, PicksRows) {
  Generator gen(5);
  Embedding emb(7, 4, 1.0, gen);
  EXPECT_EQ(names(emb), (std::vector<std::string>{"weight"}));
  Tensor ids = Tensor::from_vector(std::vector<int32_t>{6, 0, 3, 3}, {2, 2});
  Tensor y = emb.forward(ids).value();
  ASSERT_EQ(y.shape(), (Dims{2, 2, 4}));
  EXPECT_TRUE(test::AllEqual(y.select(0, 0).select(0, 0), emb.weight().value().select(0, 6)));
  EXPECT_TRUE(test::AllEqual(y.select(0, 1).select(0, 1), emb.weight().value().select(0, 3)));
}

TEST(RMSNorm, ForwardMatchesFormula) {
  RMSNorm norm(6, 1e-5);
  EXPECT_TRUE(test::AllEqual(norm.weight().value(), Tensor::full({6}, 1.0, DType::F32)));
  norm.to(Device::cpu(), DType::F64);
  norm.weight().set_value(test::rand({6}, 6, 0.5, 1.5, DType::F64));
  Tensor x = test::randn({3, 6}, 7, DType::F64);
  Tensor y = norm.forward(ag::Var(x)).value();
  auto xv = x.to_vector<double>(), wv = norm.weight().value().to_vector<double>();
  std::vector<double> expect(18);
  for (int r = 0; r < 3; ++r) {
    double ms = 0;
    for (int c = 0; c < 6; ++c) ms += xv[r * 6 + c] * xv[r * 6 + c] / 6;
    for (int c = 0; c < 6; ++c) expect[r * 6 + c] = xv[r * 6 + c] / std::sqrt(ms + 1e-5) * wv[c];
  }
  EXPECT_TRUE(test::AllClose(y, Tensor::from_vector(expect, {3, 6}), {DType::F64, 6}));
}

TEST(Layers, GradcheckF64) {
  Generator gen(8);
  Linear lin(4, 3, true, 0.5, gen);
  RMSNorm norm(3, 1e-5);
  Embedding emb(5, 4, 1.0, gen);
  for (Module* m : std::vector<Module*>{&lin, &norm, &emb}) m->to(Device::cpu(), DType::F64);
  lin.bias().set_value(test::randn({3}, 9, DType::F64));
  norm.weight().set_value(test::rand({3}, 10, 0.5, 1.5, DType::F64));
  Tensor ids = Tensor::from_vector(std::vector<int64_t>{1, 4, 4, 0, 2, 1}, {2, 3});
  ag::Var x(test::randn({2, 3, 4}, 11, DType::F64), true, "x");
  // x + embedding(ids) -> Linear -> RMSNorm: gradients of x and of every parameter.
  std::vector<ag::Var> inputs{x};
  for (Module* m : std::vector<Module*>{&lin, &norm, &emb})
    for (auto& p : m->parameters()) inputs.push_back(p);
  auto res = ag::gradcheck(
      [&](const std::vector<ag::Var>& in) {
        return norm.forward(lin.forward(ag::add(in[0], emb.forward(ids))));
      },
      inputs);
  EXPECT_TRUE(res.ok) << res.message;
}

TEST(Layers, CastConvertsValueAndGradient) {
  ag::Var x(test::randn({3, 5}, 12, DType::F64), true);
  ag::Var y = cast(x, DType::F32);
  EXPECT_EQ(y.dtype(), DType::F32);
  EXPECT_TRUE(test::AllEqual(y.value(), x.value().to(DType::F32)));
  EXPECT_EQ(cast(y, DType::F32).value().storage(), y.value().storage());
  Tensor g = test::randn({3, 5}, 13);
  y.backward(g);
  EXPECT_EQ(x.grad().dtype(), DType::F64);
  EXPECT_TRUE(test::AllEqual(x.grad(), g.to(DType::F64)));
}

TEST(Layers, ModuleListNamesChildrenByIndex) {
  struct Holder : Module {
    Holder() {
      Generator gen(0);
      auto& list = register_module("layers", std::make_unique<ModuleList<Linear>>());
      for (int i = 0; i < 3; ++i) list.append(std::make_unique<Linear>(2, 2, i == 1, 0.02, gen));
    }
  } h;
  EXPECT_EQ(names(h), (std::vector<std::string>{"layers.0.weight", "layers.1.weight",
                                                "layers.1.bias", "layers.2.weight"}));
}

TEST(Layers, BadInputIsAnError) {
  Generator gen(0);
  Linear lin(4, 3, false, 0.02, gen);
  try {
    lin.forward(ag::Var(Tensor::zeros({2, 5}, DType::F32)));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Linear"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[2, 5]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Linear(0, 3, false, 0.02, gen), Error);
}

class LayersGpu : public ::testing::TestWithParam<DType> {};

TEST_P(LayersGpu, LinearMatchesCpu) {
  SL_REQUIRE_GPU();
  test::expect_gpu_matches_cpu<Linear>(
      [] {
        Generator gen(21);
        auto m = std::make_unique<Linear>(129, 37, true, 0.1, gen);
        m->bias().set_value(test::randn({37}, 22));
        return m;
      },
      [](Linear& m, const ag::Var& x) { return m.forward(x); }, {3, 5, 129}, GetParam(), 23);
}

TEST_P(LayersGpu, RMSNormMatchesCpu) {
  SL_REQUIRE_GPU();
  test::expect_gpu_matches_cpu<RMSNorm>(
      [] {
        auto m = std::make_unique<RMSNorm>(129, 1e-5);
        m->weight().set_value(test::rand({129}, 24, 0.5, 1.5));
        return m;
      },
      [](RMSNorm& m, const ag::Var& x) { return m.forward(x); }, {3, 37, 129}, GetParam(), 25);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, LayersGpu, ::testing::Values(DType::F32, DType::BF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace sl::layers
