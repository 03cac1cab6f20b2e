// Mlp (Nemotron-H relu² and SwiGLU): forward against host loops, HF names, gradcheck in f64 w.r.t.
// the input and every parameter, errors, and the GPU against the CPU.
#include "layers/mlp.h"

#include <gtest/gtest.h>

#include <cmath>

#include "autograd/gradcheck.h"
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

// rows x [r, in] times w [out, in]ᵀ plus b, on the host in f64.
std::vector<double> host_linear(const std::vector<double>& x, int64_t rows, int64_t in,
                                const ag::Var& w, const ag::Var& b) {
  auto wv = w.value().to_vector<double>();
  int64_t out = w.size(0);
  std::vector<double> bv = b.defined() ? b.value().to_vector<double>() : std::vector<double>(out);
  std::vector<double> y(static_cast<size_t>(rows * out));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double acc = bv[size_t(o)];
      for (int64_t i = 0; i < in; ++i) acc += x[size_t(r * in + i)] * wv[size_t(o * in + i)];
      y[size_t(r * out + o)] = acc;
    }
  return y;
}

std::unique_ptr<Mlp> make_mlp(const std::string& act, bool bias, uint64_t seed, int64_t d = 6,
                              int64_t inter = 10) {
  Generator gen(seed);
  auto m = std::make_unique<Mlp>(d, inter, act, bias, 0.4, gen);
  for (auto& [n, p] : m->named_parameters())
    if (n.ends_with("bias"))
      p.set_value(test::randn(p.shape(), seed + 100, DType::F32, Device::cpu(), 0.3));
  return m;
}

class MlpAct : public ::testing::TestWithParam<std::string> {};

TEST_P(MlpAct, ForwardMatchesHostLoops) {
  const std::string act = GetParam();
  auto m = make_mlp(act, true, 1);
  m->to(Device::cpu(), DType::F64);
  auto p = [&](const std::string& n) { return m->find_parameter(n); };
  Tensor x = test::randn({2, 3, 6}, 2, DType::F64);
  std::vector<double> xv = x.to_vector<double>();
  std::vector<double> up = host_linear(xv, 6, 6, p("up_proj.weight"), p("up_proj.bias"));
  std::vector<double> h(up.size());
  if (act == "relu2") {
    for (size_t i = 0; i < up.size(); ++i) h[i] = up[i] > 0 ? up[i] * up[i] : 0;
  } else {
    std::vector<double> g = host_linear(xv, 6, 6, p("gate_proj.weight"), p("gate_proj.bias"));
    for (size_t i = 0; i < up.size(); ++i) h[i] = g[i] / (1 + std::exp(-g[i])) * up[i];
  }
  std::vector<double> y = host_linear(h, 6, 10, p("down_proj.weight"), p("down_proj.bias"));
  EXPECT_TRUE(test::AllClose(m->forward(ag::Var(x)).value(), Tensor::from_vector(y, {2, 3, 6}),
                             {DType::F64, 16}));
}

TEST_P(MlpAct, GradcheckF64) {
  auto m = make_mlp(GetParam(), true, 3, 4, 5);
  m->to(Device::cpu(), DType::F64);
  std::vector<ag::Var> inputs{ag::Var(test::randn({2, 3, 4}, 4, DType::F64), true, "x")};
  for (auto& p : m->parameters()) inputs.push_back(p);
  auto res =
      ag::gradcheck([&](const std::vector<ag::Var>& in) { return m->forward(in[0]); }, inputs);
  EXPECT_TRUE(res.ok) << res.message;
}

INSTANTIATE_TEST_SUITE_P(Activations, MlpAct, ::testing::Values("relu2", "swiglu"));

TEST(Mlp, HfNames) {
  EXPECT_EQ(names(*make_mlp("relu2", false, 5)),
            (std::vector<std::string>{"up_proj.weight", "down_proj.weight"}));
  EXPECT_EQ(names(*make_mlp("swiglu", true, 5)),
            (std::vector<std::string>{"gate_proj.weight", "gate_proj.bias", "up_proj.weight",
                                      "up_proj.bias", "down_proj.weight", "down_proj.bias"}));
  EXPECT_EQ(make_mlp("relu2", false, 5, 6, 10)->num_parameters(), 2 * 6 * 10);
}

TEST(Mlp, UnknownActivationIsAnError) {
  Generator gen(0);
  try {
    Mlp m(4, 8, "gelu", false, 0.02, gen);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Mlp"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("gelu"), std::string::npos) << e.what();
  }
}

class MlpGpu : public ::testing::TestWithParam<std::tuple<std::string, DType>> {};

TEST_P(MlpGpu, MatchesCpu) {
  SL_REQUIRE_GPU();
  auto [act, dt] = GetParam();
  test::expect_gpu_matches_cpu<Mlp>([act = act] { return make_mlp(act, true, 31, 129, 67); },
                                    [](Mlp& m, const ag::Var& x) { return m.forward(x); },
                                    {3, 37, 129}, dt, 32);
}

INSTANTIATE_TEST_SUITE_P(ActivationsDtypes, MlpGpu,
                         ::testing::Combine(::testing::Values("relu2", "swiglu"),
                                            ::testing::Values(DType::F32, DType::BF16)),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_" +
                                  dtype_name(std::get<1>(info.param));
                         });

}  // namespace
}  // namespace sl::layers
